//! leakyd: a small TCP service that leaks CLOSE_WAIT sockets on purpose, to
//! try `cwleak check` on (docs/ci.md) and to test it (tests/check.rs).
//!
//! ```text
//! leakyd fork    [--port N] [--pidfile FILE]   fork per connection; the parent never closes its copy
//! leakyd helper  [--port N] [--pidfile FILE]   spawn a helper (sleep) per connection; it inherits the socket
//! leakyd dup     [--port N] [--pidfile FILE]   dup() each accepted fd, close the original, keep the copy
//! leakyd never   [--port N] [--pidfile FILE]   read to end of stream, never close
//! leakyd correct [--port N] [--pidfile FILE] [--linger-ms N]
//!                                              fork per connection done right (optionally closing
//!                                              N ms after the peer did)
//! leakyd client  --port N [-n COUNT] [--delay-ms N] [--addr IP]
//!                                              open COUNT connections, say hello, close each
//! ```
//!
//! The servers listen on 127.0.0.1 (port 0: any free port) and print one line
//! per event on stdout, so a script or a test knows who holds what:
//!
//! ```text
//! listening 127.0.0.1:40123 pid=4242
//! accepted fd=4 peer=127.0.0.1:51000 child=4250
//! accepted fd=4 peer=127.0.0.1:51002 helper=4251
//! ```
//!
//! Protocol: the client sends a line, the server answers "ok", then the
//! client closes. The server's socket is then in CLOSE_WAIT until its last
//! copy is closed: in `fork` mode the parent's copy never is, in `helper`
//! mode the helper's never is. Only std, nix and libc.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fork,
    Helper,
    Correct,
    Dup,
    Never,
}

#[derive(Debug)]
struct Opts {
    port: u16,
    addr: Ipv4Addr,
    count: usize,
    delay: Duration,
    linger: Duration,
    pidfile: Option<String>,
}

const USAGE: &str =
    "usage: leakyd fork|helper|correct|dup|never [--port N] [--pidfile FILE] [--linger-ms N]
       leakyd client --port N [-n COUNT] [--delay-ms N] [--addr IP]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((mode, rest)) => parse(rest).and_then(|o| match mode.as_str() {
            "fork" => serve(Mode::Fork, &o),
            "helper" => serve(Mode::Helper, &o),
            "correct" => serve(Mode::Correct, &o),
            "dup" => serve(Mode::Dup, &o),
            "never" => serve(Mode::Never, &o),
            "client" => client(&o),
            other => Err(format!("unknown mode {other:?}")),
        }),
        None => Err("no mode given".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leakyd: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        port: 0,
        addr: Ipv4Addr::LOCALHOST,
        count: 1,
        delay: Duration::ZERO,
        linger: Duration::ZERO,
        pidfile: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--port" => {
                o.port = value()?
                    .parse()
                    .map_err(|_| "--port: not a port".to_string())?
            }
            "--addr" => {
                o.addr = value()?
                    .parse()
                    .map_err(|_| "--addr: not an IPv4 address".to_string())?
            }
            "-n" => o.count = usize::try_from(number(value()?)?).map_err(|e| e.to_string())?,
            "--delay-ms" => o.delay = Duration::from_millis(number(value()?)?),
            "--linger-ms" => o.linger = Duration::from_millis(number(value()?)?),
            "--pidfile" => o.pidfile = Some(value()?.clone()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

/// One line on stdout, flushed at once: a reader waits for it.
fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// SIGCHLD handler: reap every child that has exited.
extern "C" fn reap(_: libc::c_int) {
    // SAFETY: errno and waitpid are async-signal-safe; errno is restored so
    // the interrupted code sees its own.
    unsafe {
        let saved = *libc::__errno_location();
        while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        *libc::__errno_location() = saved;
    }
}

fn serve(mode: Mode, o: &Opts) -> Result<(), String> {
    let listener = TcpListener::bind((o.addr, o.port)).map_err(|e| format!("bind: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    if let Some(path) = &o.pidfile {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("--pidfile {path}: {e}"))?;
    }
    // Children are reaped by a SIGCHLD handler, as forking servers do: no
    // zombies, and (for fork mode) signs of forking that are this program's
    // own (a handler installed after exec, and children it reaped).
    let reaper = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(reap),
        nix::sys::signal::SaFlags::SA_RESTART | nix::sys::signal::SaFlags::SA_NOCLDSTOP,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: `reap` only calls waitpid, which is async-signal-safe, and
    // keeps errno.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::SIGCHLD, &reaper) }
        .map_err(|e| format!("SIGCHLD: {e}"))?;
    say(&format!("listening {local} pid={}", std::process::id()))?;
    loop {
        let (fd, peer) = accept(&listener, mode == Mode::Correct)?;
        match mode {
            Mode::Fork | Mode::Correct => {
                let child = fork_handler(&listener, fd, o.linger)?;
                if mode == Mode::Correct {
                    // The fix: the child has its own copy now.
                    close(fd);
                }
                // The bug (fork mode): the parent's copy of `fd` stays open.
                say(&format!("accepted fd={fd} peer={peer} child={child}"))?;
            }
            Mode::Helper => {
                // The bug: the accepted socket has no O_CLOEXEC, so the helper
                // inherits it across exec and keeps it as long as it runs.
                let helper = spawn_helper()?;
                say(&format!("accepted fd={fd} peer={peer} helper={helper}"))?;
                // SAFETY: `fd` is ours; the stream closes it when dropped.
                let stream = unsafe { TcpStream::from_raw_fd(fd) };
                handle(stream, Duration::ZERO, false);
            }
            Mode::Dup => {
                // The bug: a duplicate made for later use, never closed; the
                // original is closed at the end of stream.
                let copy = duplicate(fd)?;
                say(&format!("accepted fd={fd} peer={peer} dup={copy}"))?;
                // SAFETY: `fd` is ours; the stream closes it when dropped.
                let stream = unsafe { TcpStream::from_raw_fd(fd) };
                handle(stream, Duration::ZERO, true);
            }
            Mode::Never => {
                say(&format!("accepted fd={fd} peer={peer}"))?;
                // The bug: the end of stream is read, the fd is never closed.
                // SAFETY: `fd` is ours; ManuallyDrop keeps it open.
                let stream = unsafe { TcpStream::from_raw_fd(fd) };
                keep_open(stream);
            }
        }
    }
}

/// accept(2) without SOCK_CLOEXEC (the leaky modes), or accept4 with it.
fn accept(listener: &TcpListener, cloexec: bool) -> Result<(RawFd, String), String> {
    loop {
        let flags = if cloexec { libc::SOCK_CLOEXEC } else { 0 };
        // SAFETY: null address arguments are allowed; the listener is open.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                flags,
            )
        };
        if fd >= 0 {
            let peer = peer_of(fd);
            return Ok((fd, peer));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("accept: {e}"));
        }
    }
}

fn peer_of(fd: RawFd) -> String {
    // SAFETY: borrowing `fd` for getpeername only; ManuallyDrop keeps it open.
    let s = std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    s.peer_addr().map_or_else(|_| "?".into(), |a| a.to_string())
}

fn fork_handler(listener: &TcpListener, fd: RawFd, linger: Duration) -> Result<i32, String> {
    // SAFETY: leakyd is single-threaded; the child only does plain I/O and _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            close(listener.as_raw_fd());
            // SAFETY: `fd` is this process's own copy.
            let stream = unsafe { TcpStream::from_raw_fd(fd) };
            handle(stream, linger, true);
            // SAFETY: _exit skips the parent's atexit handlers and buffers.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

/// Read a line, answer "ok"; with `to_eof`, also wait for the peer to close
/// and then `linger` before closing (dropping the stream).
fn handle(stream: TcpStream, linger: Duration, to_eof: bool) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let _ = reader.get_mut().write_all(b"ok\n");
    if to_eof {
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        std::thread::sleep(linger);
    }
}

fn spawn_helper() -> Result<u32, String> {
    let mut cmd = Command::new("sleep");
    cmd.arg("3600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe; the helper dies with leakyd.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .map(|c| c.id())
        .map_err(|e| format!("spawn helper: {e}"))
}

fn duplicate(fd: RawFd) -> Result<RawFd, String> {
    // SAFETY: dup of an fd we own; the copy is deliberately never closed.
    let copy = unsafe { libc::dup(fd) };
    if copy < 0 {
        return Err(format!("dup: {}", std::io::Error::last_os_error()));
    }
    Ok(copy)
}

/// Serve the connection to its end and forget to close it.
fn keep_open(stream: TcpStream) {
    let mut stream = std::mem::ManuallyDrop::new(stream);
    let mut reader = BufReader::new(&*stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_ok() {
        let _ = (&*stream).write_all(b"ok\n");
        let mut rest = Vec::new();
        let _ = (*stream).read_to_end(&mut rest);
    }
}

fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and does not use it again.
    unsafe { libc::close(fd) };
}

fn client(o: &Opts) -> Result<(), String> {
    if o.port == 0 {
        return Err("client: --port is required".into());
    }
    for i in 0..o.count {
        if i > 0 {
            std::thread::sleep(o.delay);
        }
        let mut s = TcpStream::connect((o.addr, o.port)).map_err(|e| format!("connect: {e}"))?;
        s.write_all(b"hello\n").map_err(|e| format!("send: {e}"))?;
        let mut answer = [0u8; 3];
        s.read_exact(&mut answer)
            .map_err(|e| format!("receive: {e}"))?;
        // Dropping `s` closes it: the server's side goes to CLOSE_WAIT.
    }
    say(&format!(
        "client: {} connections opened and closed",
        o.count
    ))
}
