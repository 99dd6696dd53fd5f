//! A large, known TCP population for the performance benchmark (`bench/run.sh`).
//!
//! ```text
//! loadgen [--sockets S] [--procs P] [--close-wait F] [--ipv6 F] [--other-fds N]
//!         [--hold-secs T]
//! ```
//!
//! Builds S TCP sockets (S/2 loopback connections, both ends held on this
//! host, plus one listener per worker per family, not counted in S) across P
//! worker processes:
//! - a fraction F of the S sockets (default 0.2) is in CLOSE_WAIT: the client
//!   end of such a connection is shut down for writing and kept (FIN_WAIT2,
//!   held), the server end is never closed. The rest are ESTABLISHED pairs;
//! - every fourth worker is forked by the worker before it, after that one
//!   built its sockets: it keeps one in ten of its parent's CLOSE_WAIT fds
//!   (the forked-child leak: the same socket held by two processes), closes
//!   the rest of what it inherited, and builds its own share;
//! - every worker also holds N (default 20) fds that are not sockets (/dev/null);
//! - connections go to a listener of the worker's own on 127.1.X.Y:5000, or,
//!   for a fraction of them (default 0.1), on [::1] (a port the kernel picks), so no
//!   destination needs more than a few thousand ephemeral ports.
//!
//! When root, it first unshares a network AND a pid namespace: the workers run
//! under an init of their own (pid 1 there), and the load is invisible to the
//! host's tables; tools see it with `nsenter --net=/proc/PID/ns/net`. It raises
//! RLIMIT_NOFILE as far as a worker needs (S/P fds + 40); when the machine's
//! cap is lower, it says so: use more processes.
//!
//! It prints one JSON line on stdout when everything is built (`pid`, `netns`,
//! `sockets`, `close_wait`, `fin_wait2`, `established`, `listeners`,
//! `processes`, `fds`, `seconds`), then holds until stdin reaches EOF or
//! `--hold-secs` (default 3600) pass. Every worker has PR_SET_PDEATHSIG
//! (SIGKILL), and the init is killed on exit, which ends the whole pid
//! namespace: nothing outlives it.

#[path = "common/netns.rs"]
mod netns;

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::{fork, ForkResult, Pid};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// Listen backlog of every worker's listeners (the clients connect all at once).
const BACKLOG: i32 = 4096;

#[derive(Debug, Clone)]
struct Opts {
    sockets: usize,
    procs: usize,
    close_wait: f64,
    ipv6: f64,
    other_fds: usize,
    hold_secs: u64,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        sockets: 50_000,
        procs: 200,
        close_wait: 0.2,
        ipv6: 0.1,
        other_fds: 20,
        hold_secs: 3600,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--sockets" => o.sockets = value()?.parse()?,
            "--procs" => o.procs = value()?.parse()?,
            "--close-wait" => o.close_wait = value()?.parse()?,
            "--ipv6" => o.ipv6 = value()?.parse()?,
            "--other-fds" => o.other_fds = value()?.parse()?,
            "--hold-secs" => o.hold_secs = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    ensure!(o.procs >= 1 && o.procs <= 60_000, "--procs 1..60000");
    ensure!((0.0..=0.5).contains(&o.close_wait), "--close-wait 0..0.5");
    ensure!((0.0..=1.0).contains(&o.ipv6), "--ipv6 0..1");
    Ok(o)
}

/// What one worker builds.
#[derive(Debug, Clone, Copy)]
struct Share {
    index: usize,
    connections: usize,
    close_wait: usize,
}

fn shares(o: &Opts) -> Vec<Share> {
    let conns = o.sockets / 2;
    // Each CLOSE_WAIT connection gives one CLOSE_WAIT socket (and one FIN_WAIT2).
    let cw_total = ((o.sockets as f64) * o.close_wait).round() as usize;
    (0..o.procs)
        .map(|i| {
            let part = |n: usize| n / o.procs + usize::from(i < n % o.procs);
            Share {
                index: i,
                connections: part(conns),
                close_wait: part(cw_total.min(conns)),
            }
        })
        .collect()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("loadgen: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let o = parse_args()?;
    let started = Instant::now();
    let shares = shares(&o);
    let max_share = shares.iter().map(|s| s.connections * 2).max().unwrap_or(0);
    // A forked child briefly holds its parent's fds too.
    raise_nofile((2 * max_share + 2 * o.other_fds + 64) as u64)?;
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        use nix::sched::CloneFlags;
        nix::sched::unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWPID)
            .context("unshare(CLONE_NEWNET | CLONE_NEWPID)")?;
        netns::loopback_up()?;
        // Per namespace: more ephemeral ports, room for the accept queues.
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "10000 65000");
    }
    let (ready_r, ready_w) = nix::unistd::pipe().context("pipe")?;
    // SAFETY: single-threaded here; the child only runs our code and exits.
    let init = match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(ready_r);
            let code = match init_main(&o, &shares, ready_w) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("loadgen init: {e:#}");
                    2
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    let result = wait_ready(&o, ready_r, started);
    match result {
        Ok(ref line) => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
            drop(out);
            hold(o.hold_secs);
        }
        Err(ref e) => eprintln!("loadgen: {e:#}"),
    }
    let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(init, None);
    result.map(|_| ())
}

/// Wait for one byte per worker ('+' built, 'E' failed), then describe the load.
fn wait_ready(o: &Opts, ready: OwnedFd, started: Instant) -> Result<serde_json::Value> {
    let mut got = 0;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(600);
    while got < o.procs {
        ensure!(Instant::now() < deadline, "workers not ready after 600 s");
        let n = nix::unistd::read(&ready, &mut buf).context("read ready pipe")?;
        ensure!(
            n > 0,
            "a worker exited before it was ready ({got} of {} ready)",
            o.procs
        );
        ensure!(!buf[..n].contains(&b'E'), "a worker failed (see above)");
        got += n;
    }
    let netns = std::fs::metadata("/proc/self/ns/net")?.ino();
    let s = shares(o);
    let cw: usize = s.iter().map(|s| s.close_wait).sum();
    let conns: usize = s.iter().map(|s| s.connections).sum();
    let with_v6 = o.ipv6 > 0.0;
    // Forked children keep one in ten of their parent's CLOSE_WAIT fds.
    let shared: usize = s
        .iter()
        .filter(|c| c.index % 4 == 1)
        .map(|c| s[c.index - 1].close_wait.div_ceil(10))
        .sum();
    Ok(serde_json::json!({
        "pid": std::process::id(),
        "netns": netns,
        "sockets": conns * 2,
        "close_wait": cw,
        "fin_wait2": cw,
        "established": 2 * (conns - cw),
        "listeners": o.procs * (1 + usize::from(with_v6)),
        "processes": o.procs,
        "fds": conns * 2 + o.procs * (o.other_fds + 1 + usize::from(with_v6)) + shared,
        "shared_close_wait_fds": shared,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// Until stdin reaches EOF (or fails), or the deadline.
fn hold(secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let ms = left.as_millis().min(60_000) as i32;
        let mut pfd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if r > 0 {
            // SAFETY: reads into our buffer.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
        }
    }
}

/// Dies with its parent (SIGKILL); false when the parent is already gone.
fn die_with_parent(parent: Pid) -> bool {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    nix::unistd::getppid() == parent
}

/// The init of the pid namespace (when root): forks the workers, reaps them.
fn init_main(o: &Opts, shares: &[Share], ready: OwnedFd) -> Result<()> {
    let parent = nix::unistd::getppid();
    if !die_with_parent(parent) {
        return Ok(());
    }
    let me = nix::unistd::getpid();
    for s in shares.iter().filter(|s| s.index % 4 != 1) {
        let next = shares
            .get(s.index + 1)
            .filter(|n| n.index % 4 == 1)
            .copied();
        // SAFETY: single-threaded process.
        match unsafe { fork() }.context("fork worker")? {
            ForkResult::Child => {
                if !die_with_parent(me) {
                    std::process::exit(0);
                }
                worker(o, *s, next, &ready);
            }
            ForkResult::Parent { .. } => {}
        }
    }
    drop(ready);
    // Reap until killed.
    loop {
        match nix::sys::wait::wait() {
            Ok(_) => {}
            Err(nix::errno::Errno::ECHILD) => std::thread::sleep(Duration::from_secs(3600)),
            Err(_) => {}
        }
    }
}

/// Build one share, fork the next worker when it is this one's child, then hold.
fn worker(o: &Opts, share: Share, child: Option<Share>, ready: &OwnedFd) -> ! {
    let built = build(o, share);
    let mut ok = built.is_ok();
    if let Err(e) = &built {
        eprintln!("loadgen worker {}: {e:#}", share.index);
    }
    if let (Ok(held), Some(c)) = (&built, child) {
        let me = nix::unistd::getpid();
        // SAFETY: single-threaded process.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                if !die_with_parent(me) {
                    std::process::exit(0);
                }
                // Keep one in ten of the parent's CLOSE_WAIT ends, close the rest.
                let keep: Vec<i32> = held.close_wait.iter().step_by(10).copied().collect();
                for fd in held.all_fds() {
                    if !keep.contains(&fd) {
                        // SAFETY: an fd inherited from the parent, closed once.
                        unsafe { libc::close(fd) };
                    }
                }
                worker(o, c, None, ready);
            }
            Ok(ForkResult::Parent { .. }) => {}
            Err(e) => {
                eprintln!("loadgen worker {}: fork: {e}", share.index);
                ok = false;
            }
        }
    }
    let _ = nix::unistd::write(ready, if ok { b"+" } else { b"E" });
    loop {
        // SAFETY: waits for a signal; PDEATHSIG ends it.
        unsafe { libc::pause() };
    }
}

/// The fds one worker built, as raw numbers (it never closes them itself).
struct Held {
    listeners: Vec<i32>,
    established: Vec<i32>,
    close_wait: Vec<i32>,
    fin_wait2: Vec<i32>,
    other: Vec<i32>,
}

impl Held {
    fn all_fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.listeners
            .iter()
            .chain(&self.established)
            .chain(&self.close_wait)
            .chain(&self.fin_wait2)
            .chain(&self.other)
            .copied()
    }
}

fn into_raw(s: TcpStream) -> i32 {
    std::os::fd::IntoRawFd::into_raw_fd(s)
}

fn build(o: &Opts, share: Share) -> Result<Held> {
    let i = share.index;
    let v4: SocketAddr = (Ipv4Addr::new(127, 1, (i >> 8) as u8, (i & 255) as u8), 5000).into();
    // Port 0: the kernel picks one no ephemeral client port already took.
    let v6: SocketAddr = (Ipv6Addr::LOCALHOST, 0).into();
    let mut held = Held {
        listeners: Vec::new(),
        established: Vec::new(),
        close_wait: Vec::new(),
        fin_wait2: Vec::new(),
        other: Vec::new(),
    };
    for _ in 0..o.other_fds {
        let f = std::fs::File::open("/dev/null").context("open /dev/null")?;
        held.other.push(std::os::fd::IntoRawFd::into_raw_fd(f));
    }
    let l4 = netns::listen(v4, BACKLOG)?;
    let l6 = if o.ipv6 > 0.0 {
        Some(netns::listen(v6, BACKLOG)?)
    } else {
        None
    };
    // Every k-th connection goes over IPv6.
    let every = if o.ipv6 > 0.0 {
        (1.0 / o.ipv6).round().max(1.0) as usize
    } else {
        usize::MAX
    };
    for n in 0..share.connections {
        let (addr, l) = match &l6 {
            Some(l6) if n % every == every - 1 => (l6.local_addr()?, l6),
            _ => (v4, &l4),
        };
        let c = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        let (s, _) = l.accept().context("accept")?;
        if n < share.close_wait {
            c.shutdown(Shutdown::Write)?;
            held.fin_wait2.push(into_raw(c));
            held.close_wait.push(into_raw(s));
        } else {
            held.established.push(into_raw(c));
            held.established.push(into_raw(s));
        }
    }
    held.listeners.push(std::os::fd::IntoRawFd::into_raw_fd(l4));
    if let Some(l6) = l6 {
        held.listeners.push(std::os::fd::IntoRawFd::into_raw_fd(l6));
    }
    Ok(held)
}

/// RLIMIT_NOFILE soft (and, when allowed, hard) up to `need`.
fn raise_nofile(need: u64) -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes into our struct.
    ensure!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0,
        "getrlimit"
    );
    if lim.rlim_cur >= need {
        return Ok(());
    }
    let set = |cur: u64, max: u64| {
        let l = libc::rlimit {
            rlim_cur: cur,
            rlim_max: max,
        };
        // SAFETY: reads our struct.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 }
    };
    // Root may raise the hard limit too, up to fs.nr_open.
    if (need <= lim.rlim_max && set(need, lim.rlim_max)) || set(need, need) {
        return Ok(());
    }
    bail!(
        "a worker needs {need} fds but RLIMIT_NOFILE is capped at {} here: use more --procs",
        lim.rlim_max
    )
}
