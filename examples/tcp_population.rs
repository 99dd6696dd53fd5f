//! A known population of TCP sockets in a fresh network namespace, for the
//! live tests of `cwleak states` and `cwleak sysctl` (needs root).
//!
//! ```text
//! tcp_population [--established N] [--time-wait N] [--close-wait N]
//!                [--unaccepted N] [--orphans N] [--overflow] [--backlog N]
//!                [--port P] [--sysctl NAME=VALUE]... [--in-place]
//! ```
//!
//! It unshares its network namespace (with `--in-place`, it stays in the one
//! it was started in, e.g. under `ip netns exec`), brings `lo` up, writes the
//! sysctls inside the namespace, then builds on 127.0.0.1, against one listener:
//! - `--established N`: N connections kept open (2N ESTABLISHED sockets);
//! - `--time-wait N`: N connections closed by the client first, then by the
//!   server: N TIME_WAIT sockets on the client side (and nothing else);
//! - `--close-wait N`: N connections the client closes and the server never
//!   does: N CLOSE_WAIT (server) and N FIN_WAIT2 (client) sockets; the even
//!   ones are fully closed by the client (orphaned FIN_WAIT2, inode 0), the
//!   odd ones only shut down for writing (FIN_WAIT2 still held);
//! - `--unaccepted N`: N connections never accepted: N ESTABLISHED client
//!   sockets held, N ESTABLISHED server sockets waiting in the accept queue;
//! - `--orphans N`: N connections whose server never reads: the client fills
//!   the server's receive window, then closes with data unsent: N FIN_WAIT1
//!   orphans (full sockets, counted in sockstat's `orphan`) and N ESTABLISHED
//!   server sockets;
//! - `--overflow`: a second listener on port P+1 with backlog 1 and two
//!   connections never accepted (its accept queue is full: 2 ESTABLISHED
//!   clients held, 2 ESTABLISHED in the queue). On `resume` (stdin) a thread
//!   sends a SYN to it every 10 ms from a new non-blocking socket (keeping the
//!   last 16, SYN_SENT): each SYN is dropped and ListenOverflows moves. On
//!   `pause` the thread closes them and the table is the expected one again.
//!
//! It waits until its own /proc/self/net/tcp shows exactly that, prints one
//! JSON line (`pid`, `netns`, `port`, `expect` {STATE: count},
//! `orphan_fin_wait2`, `held_fin_wait2`, `accept_queue`, `backlog`,
//! `orphans`, `overflow_port`), and keeps everything until stdin reaches
//! EOF. Stdin lines `resume` and `pause` start and stop the SYN generator;
//! each is answered with one line (`resumed`; `paused` once the table shows
//! the expected counts again). It is one process (its threads aside) with no
//! children: killing it ends everything, and the namespace goes with it.
//!
//! Exit status: 0 after a clean run, 2 on a usage or setup error.

#[path = "common/netns.rs"]
mod netns;

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Opts {
    established: usize,
    time_wait: usize,
    close_wait: usize,
    unaccepted: usize,
    orphans: usize,
    overflow: bool,
    in_place: bool,
    backlog: i32,
    port: u16,
    sysctls: Vec<(String, String)>,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts {
        backlog: 128,
        port: 5555,
        ..Opts::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--established" => o.established = value()?.parse()?,
            "--time-wait" => o.time_wait = value()?.parse()?,
            "--close-wait" => o.close_wait = value()?.parse()?,
            "--unaccepted" => o.unaccepted = value()?.parse()?,
            "--orphans" => o.orphans = value()?.parse()?,
            "--overflow" => o.overflow = true,
            "--in-place" => o.in_place = true,
            "--backlog" => o.backlog = value()?.parse()?,
            "--port" => o.port = value()?.parse()?,
            "--sysctl" => {
                let v = value()?;
                let (name, val) = v.split_once('=').context("--sysctl NAME=VALUE")?;
                o.sysctls.push((name.to_string(), val.to_string()));
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp_population: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<()> {
    let o = parse_args()?;
    if !o.in_place {
        // Single-threaded here, so the whole process moves to the new namespace.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .context("unshare(CLONE_NEWNET)")?;
    }
    netns::loopback_up()?;
    for (name, value) in &o.sysctls {
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        std::fs::write(&path, value).with_context(|| format!("write {value} to {path}"))?;
    }
    let addr: SocketAddr = ([127, 0, 0, 1], o.port).into();
    let listener = netns::listen(addr, o.backlog)?;
    let mut keep: Vec<TcpStream> = Vec::new();

    for _ in 0..o.established {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        keep.extend([c, s]);
    }
    for _ in 0..o.time_wait {
        let c = TcpStream::connect(addr)?;
        let (mut s, _) = listener.accept()?;
        drop(c);
        // EOF: the client's FIN is in; closing now sends ours, and the
        // client, which closed first, enters TIME_WAIT.
        let mut buf = [0u8; 1];
        ensure!(s.read(&mut buf)? == 0, "expected EOF");
    }
    let mut orphans = 0;
    for i in 0..o.close_wait {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        if i % 2 == 0 {
            drop(c);
            orphans += 1;
        } else {
            c.shutdown(Shutdown::Write)?;
            keep.push(c);
        }
        keep.push(s);
    }
    for _ in 0..o.unaccepted {
        keep.push(TcpStream::connect(addr)?);
    }
    for _ in 0..o.orphans {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        orphan(c)?;
        keep.push(s);
    }
    let overflow_addr: SocketAddr = ([127, 0, 0, 1], o.port + 1).into();
    let mut overflow_listener = None;
    if o.overflow {
        let l = netns::listen(overflow_addr, 1)?;
        // Backlog 1: the queue is full with 2 (sk_acceptq_is_full: more than the backlog).
        for _ in 0..2 {
            keep.push(TcpStream::connect(overflow_addr)?);
        }
        overflow_listener = Some(l);
    }

    let mut expect: BTreeMap<&str, usize> = BTreeMap::new();
    expect.insert("LISTEN", 1 + usize::from(o.overflow));
    expect.insert(
        "ESTABLISHED",
        2 * o.established + 2 * o.unaccepted + o.orphans + 4 * usize::from(o.overflow),
    );
    expect.insert("TIME_WAIT", o.time_wait);
    expect.insert("CLOSE_WAIT", o.close_wait);
    expect.insert("FIN_WAIT2", o.close_wait);
    expect.insert("FIN_WAIT1", o.orphans);
    expect.retain(|_, n| *n > 0);
    wait_for(&expect)?;

    let netns = std::fs::metadata("/proc/self/ns/net")?.ino();
    let facts = serde_json::json!({
        "pid": std::process::id(),
        "netns": netns,
        "port": o.port,
        "expect": expect,
        "orphan_fin_wait2": orphans,
        "held_fin_wait2": o.close_wait - orphans,
        "accept_queue": o.unaccepted,
        "backlog": o.backlog,
        "orphans": o.orphans,
        "overflow_port": o.overflow.then_some(overflow_addr.port()),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{facts}")?;
    out.flush()?;
    drop(out);
    // Hold everything until the test is done (EOF, or killed); run the SYN
    // generator between `resume` and `pause`.
    let mut generator: Option<Generator> = None;
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "resume" if o.overflow => {
                if generator.is_none() {
                    generator = Some(Generator::start(overflow_addr));
                }
                answer("resumed")?;
            }
            "pause" => {
                if let Some(g) = generator.take() {
                    g.stop();
                }
                wait_for(&expect)?;
                answer("paused")?;
            }
            other => bail!("unknown command {other:?}"),
        }
    }
    if let Some(g) = generator.take() {
        g.stop();
    }
    drop(keep);
    drop(listener);
    drop(overflow_listener);
    Ok(())
}

fn answer(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Make `c` an orphan in FIN_WAIT1: fill the peer's receive window (the
/// server never reads) and the send buffer, then close with data unsent, so
/// the FIN waits behind it.
fn orphan(c: TcpStream) -> Result<()> {
    c.set_nonblocking(true)?;
    let chunk = [0u8; 65536];
    let mut c = c;
    let mut sent = 0usize;
    loop {
        match c.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e).context("filling the window"),
        }
        ensure!(sent < 512 << 20, "the peer never stopped taking data");
    }
    drop(c);
    Ok(())
}

/// SYNs to a listener whose accept queue is full, from new non-blocking
/// sockets, every 10 ms; the last 16 kept (SYN_SENT, retransmitting).
struct Generator {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Generator {
    fn start(addr: SocketAddr) -> Generator {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut open: std::collections::VecDeque<OwnedFd> = Default::default();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(fd) = syn_to(addr) {
                    open.push_back(fd);
                }
                while open.len() > 16 {
                    open.pop_front();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Generator { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// A non-blocking connect(): the SYN leaves, the socket stays in SYN_SENT.
fn syn_to(addr: SocketAddr) -> Result<OwnedFd> {
    let SocketAddr::V4(v4) = addr else {
        bail!("IPv4 only");
    };
    // SAFETY: plain syscalls on a fresh socket and a filled sockaddr_in.
    unsafe {
        let raw = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        ensure!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(raw);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = v4.port().to_be();
        sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
        let r = libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        ensure!(
            r == 0 || err.raw_os_error() == Some(libc::EINPROGRESS),
            "connect: {err}"
        );
        Ok(fd)
    }
}
/// Poll this namespace's table until it shows exactly `expect`.
fn wait_for(expect: &BTreeMap<&str, usize>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = counts()?;
        if now == expect.iter().map(|(k, v)| (k.to_string(), *v)).collect() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the table shows {now:?}, expected {expect:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// States of /proc/self/net/tcp{,6} (this namespace only), by kernel name.
fn counts() -> Result<BTreeMap<String, usize>> {
    const NAMES: [&str; 12] = [
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
        "NEW_SYN_RECV",
    ];
    let mut out = BTreeMap::new();
    for file in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let st = line.split_whitespace().nth(3).context("short line")?;
            let n = usize::from_str_radix(st, 16)?;
            let name = NAMES.get(n.wrapping_sub(1)).context("unknown state")?;
            *out.entry(name.to_string()).or_default() += 1;
        }
    }
    Ok(out)
}
