//! Scenario driver for cwleak's live tests: builds one real CLOSE_WAIT leak
//! (real processes, fork/exec/dup/SCM_RIGHTS, TCP on loopback, network
//! namespaces), prints one JSON line of facts, and keeps everything alive
//! until stdin reaches EOF or SIGTERM/SIGINT arrives. Then it kills and reaps
//! every process it started.
//!
//! ```text
//! scenario <name> [--close-after-ms N | --close-on-sigusr1]
//! scenario --list
//! ```
//!
//! The line says who is who, never what cwleak should conclude:
//!
//! ```text
//! {"scenario", "driver", "pgid", "port", "family",
//!  <role>: {"pid", "fds": [...], ...},
//!  "listener": {"pid", "fd", "inode", "addr"},
//!  "sockets": [{"inode", "local", "remote", "holders": [{"pid", "fd", "cloexec"}]}],
//!  "inodes": [...]}
//! ```
//!
//! `sockets` are the scenario's CLOSE_WAIT sockets (ESTABLISHED for
//! `healthy`), `local`/`remote` as seen by their holder, `holders` every
//! (process, fd) that refers to each, `inodes` theirs (empty for
//! `accept-queue`, whose socket has inode 0). `port` is the server's port.
//! Roles, by scenario: `server` everywhere except `prefork` (`master`,
//! `workers[]`); `children[]` (fork-*), `helper` (helper-inherits*), `cgi`,
//! `receiver` (scm-rights*: its `fds` are empty while the fd is in flight), `client` (netns, client-side), `clients`
//! (healthy: the driver's own fds), `netns_owner`; plus `netns` and
//! `host_netns` (netns), `server.tids` (threaded*), `closes_after_ms`
//! or `closes_on` (transient).
//!
//! The driver is the TCP client (except in `netns` and `client-side`), and
//! stays single-threaded: it forks. Every child has PR_SET_PDEATHSIG=SIGKILL,
//! and the driver is a child subreaper, so nothing outlives it.
//!
//! Exit status: 0 after a clean run, 2 on a usage or setup error.

#[path = "common/netns.rs"]
mod netns;
#[path = "scenario/scenarios.rs"]
mod scenarios;
#[path = "scenario/sys.rs"]
mod sys;

use anyhow::{bail, Context, Result};
use scenarios::{ChildId, Opts, SCENARIOS};
use std::io::Write;
use std::net::TcpStream;
use std::os::fd::RawFd;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use sys::{Child, Ctx, Pid};

/// State of the running driver.
pub struct Driver {
    pub name: String,
    pub pid: Pid,
    pub pgid: Pid,
    children: Vec<Child>,
    /// Client sockets that must stay open while the scenario runs.
    streams: Vec<TcpStream>,
    /// Children to poke once the line is out.
    poke_after_print: Vec<ChildId>,
}

impl Driver {
    pub fn spawn(
        &mut self,
        role: &str,
        keep: &[RawFd],
        body: impl FnOnce(Ctx) -> Result<()>,
    ) -> Result<ChildId> {
        let child = sys::spawn(role, keep, body)?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    pub fn keep_streams(&mut self, streams: Vec<TcpStream>) {
        self.streams.extend(streams);
    }

    pub fn poke_after_print(&mut self, id: ChildId) {
        self.poke_after_print.push(id);
    }

    /// Kills every process this driver started and reaps them all.
    fn cleanup(&mut self) {
        let me = self.pid;
        let own_group = self.pgid == me;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for c in &self.children {
                kill(c.pid);
            }
            // Grandchildren: children of ours once their parent died (we are
            // a subreaper), and anything left in our own process group.
            for pid in sys::all_pids() {
                if pid == me {
                    continue;
                }
                if let Some((_, ppid, pgrp)) = sys::stat(pid) {
                    if ppid == me || (own_group && pgrp == me) {
                        kill(pid);
                    }
                }
            }
            // Reap whatever has exited.
            loop {
                let mut status = 0;
                // SAFETY: status is valid for writing.
                let r = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
                if r > 0 {
                    continue;
                }
                if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                    return;
                }
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("scenario: some children could not be reaped");
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn kill(pid: Pid) {
    // SAFETY: plain syscall; ESRCH is fine.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

extern "C" fn on_stop(_: libc::c_int) {
    sys::STOP.store(true, Ordering::Relaxed);
}

fn install_handlers() -> Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: sigaction is plain data; the handler only stores an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as *const () as libc::sighandler_t;
            // No SA_RESTART: blocking calls return EINTR and see STOP.
            sa.sa_flags = 0;
            libc::sigemptyset(&raw mut sa.sa_mask);
            if libc::sigaction(sig, &raw const sa, std::ptr::null_mut()) == -1 {
                return Err(std::io::Error::last_os_error()).context("sigaction");
            }
        }
    }
    Ok(())
}

/// Own process group (so a test can kill the whole tree with one kill), and
/// subreaper (so orphans come back to us to be reaped).
fn become_group_leader() -> Result<Pid> {
    // SAFETY: plain syscalls.
    unsafe {
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == -1 {
            return Err(std::io::Error::last_os_error()).context("PR_SET_CHILD_SUBREAPER");
        }
        // Leaving the terminal's foreground group would stop us at the first
        // read of a terminal stdin (SIGTTIN); shells with job control already
        // gave us our own group anyway.
        if libc::getpgrp() != libc::getpid() && libc::isatty(0) == 0 && libc::setpgid(0, 0) == -1 {
            return Err(std::io::Error::last_os_error()).context("setpgid");
        }
        Ok(libc::getpgrp())
    }
}

/// Blocks until stdin reaches EOF (or is unusable) or a stop signal came.
fn wait_for_eof() {
    let mut buf = [0u8; 256];
    while !sys::STOP.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&raw mut pfd, 1, 250) };
        if r == 0
            || (r == -1
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted)
        {
            continue;
        }
        if r == -1 || pfd.revents & libc::POLLNVAL != 0 {
            return;
        }
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            return;
        }
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

fn usage() -> String {
    let mut s = String::from("usage: scenario <name> [--close-after-ms N] | --list\nscenarios:\n");
    for (name, _, what) in SCENARIOS {
        s.push_str(&format!("  {name:<22} {what}\n"));
    }
    s
}

fn parse_args() -> Result<Option<(String, Opts)>> {
    let mut args = std::env::args().skip(1);
    let mut name = None;
    let mut opts = Opts {
        close_after_ms: 300,
        close_on_sigusr1: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--list" | "-l" => return Ok(None),
            "--close-after-ms" => {
                let v = args.next().context("--close-after-ms needs a value")?;
                opts.close_after_ms = v.parse().with_context(|| format!("bad number {v}"))?;
            }
            "--close-on-sigusr1" => opts.close_on_sigusr1 = true,
            _ if name.is_none() && !a.starts_with('-') => name = Some(a),
            _ => bail!("unexpected argument {a:?}"),
        }
    }
    match name {
        Some(n) => Ok(Some((n, opts))),
        None => bail!("no scenario named"),
    }
}

fn main() -> ExitCode {
    let (name, opts) = match parse_args() {
        Ok(Some(x)) => x,
        Ok(None) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("scenario: {e:#}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let Some(&(_, build, _)) = SCENARIOS.iter().find(|(n, _, _)| *n == name) else {
        eprintln!("scenario: unknown scenario {name:?}\n{}", usage());
        return ExitCode::from(2);
    };
    let setup = install_handlers().and_then(|()| become_group_leader());
    let pgid = match setup {
        Ok(p) => p,
        Err(e) => {
            eprintln!("scenario {name}: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut d = Driver {
        name: name.clone(),
        pid: sys::getpid(),
        pgid,
        children: Vec::new(),
        streams: Vec::new(),
        poke_after_print: Vec::new(),
    };
    let code = match run(&mut d, build, &opts) {
        Ok(()) => {
            wait_for_eof();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scenario {name}: {e:#}");
            ExitCode::from(2)
        }
    };
    d.streams.clear();
    d.cleanup();
    code
}

fn run(d: &mut Driver, build: scenarios::Build, opts: &Opts) -> Result<()> {
    let facts = build(d, opts)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{facts}").context("write the facts")?;
    out.flush().context("flush the facts")?;
    drop(out);
    for id in std::mem::take(&mut d.poke_after_print) {
        d.child(id).poke()?;
    }
    Ok(())
}
