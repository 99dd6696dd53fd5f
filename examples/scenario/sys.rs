//! Thin, checked wrappers over the system calls the scenarios make, and the
//! parent/child plumbing (fork, report pipes, /proc/net/tcp polling).
//!
//! Everything deals in raw fds on purpose: the scenarios are about fds that
//! stay open, so nothing here closes an fd behind the caller's back.

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::ffi::CString;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub type Pid = i32;

/// Where a child's report pipe and control pipe live after fork: high
/// numbers, so the sockets a scenario opens get the low ones (3, 4, ...) as
/// they would in a real server.
const REPORT_FD: RawFd = 200;
const CTL_FD: RawFd = 201;

/// Set by SIGTERM / SIGINT in the driver.
pub static STOP: AtomicBool = AtomicBool::new(false);

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Runs a call again while it fails with EINTR.
fn retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn retry_ssize(mut f: impl FnMut() -> libc::ssize_t) -> io::Result<usize> {
    loop {
        let r = f();
        if r >= 0 {
            return Ok(r.unsigned_abs());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub fn getpid() -> Pid {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

pub fn gettid() -> Pid {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() }
}

/// Give the calling thread an fd table of its own (a copy of the process's).
pub fn unshare_files() -> Result<()> {
    // SAFETY: unshare(CLONE_FILES) touches no memory of ours.
    if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
        return Err(std::io::Error::last_os_error()).context("unshare(CLONE_FILES)");
    }
    Ok(())
}

// ---------------------------------------------------------------- sockets

fn to_raw(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in>(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut ss).cast::<libc::sockaddr_in6>(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn from_raw(ss: &libc::sockaddr_storage) -> Result<SocketAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(std::ptr::from_ref(ss).cast::<libc::sockaddr_in>()) };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(std::ptr::from_ref(ss).cast::<libc::sockaddr_in6>()) };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        f => bail!("unexpected address family {f}"),
    }
}

fn sockname(
    fd: RawFd,
    f: unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int,
) -> Result<SocketAddr> {
    // SAFETY: plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss and len are valid for the call.
    cvt(unsafe { f(fd, (&raw mut ss).cast(), &raw mut len) })?;
    from_raw(&ss)
}

pub fn local_addr(fd: RawFd) -> Result<SocketAddr> {
    sockname(fd, libc::getsockname).with_context(|| format!("getsockname({fd})"))
}

pub fn peer_addr(fd: RawFd) -> Result<SocketAddr> {
    sockname(fd, libc::getpeername).with_context(|| format!("getpeername({fd})"))
}

/// A listening TCP socket. `v6only` sets IPV6_V6ONLY on IPv6 sockets.
pub fn tcp_listen(addr: SocketAddr, cloexec: bool, v6only: Option<bool>) -> Result<RawFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let ty = libc::SOCK_STREAM | if cloexec { libc::SOCK_CLOEXEC } else { 0 };
    // SAFETY: plain syscall.
    let fd = cvt(unsafe { libc::socket(domain, ty, 0) }).context("socket")?;
    if let Some(v6only) = v6only {
        let on: libc::c_int = v6only.into();
        // SAFETY: the option value is a valid c_int.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .context("setsockopt(IPV6_V6ONLY)")?;
    }
    let (ss, len) = to_raw(&addr);
    // SAFETY: ss holds a valid address of length len.
    cvt(unsafe { libc::bind(fd, (&raw const ss).cast(), len) })
        .with_context(|| format!("bind({addr})"))?;
    // SAFETY: plain syscall.
    cvt(unsafe { libc::listen(fd, 64) }).context("listen")?;
    Ok(fd)
}

/// accept4(2): `cloexec` false gives what plain accept(2) gives.
pub fn accept(listener: RawFd, cloexec: bool) -> Result<RawFd> {
    let flags = if cloexec { libc::SOCK_CLOEXEC } else { 0 };
    // SAFETY: null address pointers are allowed.
    retry(|| unsafe { libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), flags) })
        .with_context(|| format!("accept({listener})"))
}

/// A connected TCP client socket (O_CLOEXEC).
pub fn tcp_connect(addr: SocketAddr) -> Result<RawFd> {
    tcp_connect_rcvbuf(addr, None)
}

/// `tcp_connect`, with SO_RCVBUF set (and so fixed: no autotuning) before
/// the connection is made: the peer can fill its window at once.
pub fn tcp_connect_rcvbuf(addr: SocketAddr, rcvbuf: Option<i32>) -> Result<RawFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })
        .context("socket")?;
    if let Some(size) = rcvbuf {
        // SAFETY: a valid int option value for the socket just made.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const size).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        })
        .context("SO_RCVBUF")?;
    }
    let (ss, len) = to_raw(&addr);
    // SAFETY: ss holds a valid address of length len. Not retried on EINTR
    // (the connect goes on in the background); children catch no signals.
    cvt(unsafe { libc::connect(fd, (&raw const ss).cast(), len) })
        .with_context(|| format!("connect({addr})"))?;
    Ok(fd)
}

/// Inode of what the fd refers to (for a socket: the socket inode the TCP
/// tables show).
pub fn inode(fd: RawFd) -> Result<u64> {
    // SAFETY: plain old data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is valid for writing.
    cvt(unsafe { libc::fstat(fd, &raw mut st) }).with_context(|| format!("fstat({fd})"))?;
    Ok(st.st_ino)
}

pub fn cloexec(fd: RawFd) -> Result<bool> {
    // SAFETY: plain syscall.
    let flags =
        cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }).with_context(|| format!("F_GETFD({fd})"))?;
    Ok(flags & libc::FD_CLOEXEC != 0)
}

pub fn close(fd: RawFd) -> Result<()> {
    // SAFETY: the caller owns fd. EINTR on close must not be retried on Linux.
    cvt(unsafe { libc::close(fd) }).with_context(|| format!("close({fd})"))?;
    Ok(())
}

/// dup(2): the new fd has FD_CLOEXEC clear.
pub fn dup(fd: RawFd) -> Result<RawFd> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::dup(fd) }).with_context(|| format!("dup({fd})"))
}

/// dup2(2): `new` has FD_CLOEXEC clear afterwards.
pub fn dup2(old: RawFd, new: RawFd) -> Result<()> {
    // SAFETY: plain syscall.
    retry(|| unsafe { libc::dup2(old, new) }).with_context(|| format!("dup2({old}, {new})"))?;
    Ok(())
}

fn dup3_cloexec(old: RawFd, new: RawFd) -> Result<()> {
    // SAFETY: plain syscall.
    retry(|| unsafe { libc::dup3(old, new, libc::O_CLOEXEC) })
        .with_context(|| format!("dup3({old}, {new})"))?;
    Ok(())
}

/// (read end, write end), both O_CLOEXEC.
pub fn pipe() -> Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two fds.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }).context("pipe2")?;
    Ok((fds[0], fds[1]))
}

/// (a, b) of an AF_UNIX stream socketpair, both O_CLOEXEC.
pub fn socketpair() -> Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two fds.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })
    .context("socketpair")?;
    Ok((fds[0], fds[1]))
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    retry_ssize(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
        .with_context(|| format!("read({fd})"))
}

/// Reads and discards until EOF; returns the byte count.
pub fn read_to_eof(fd: RawFd) -> Result<u64> {
    let mut buf = [0u8; 4096];
    let mut total = 0u64;
    loop {
        match read(fd, &mut buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

pub fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = retry_ssize(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
            .with_context(|| format!("write({fd})"))?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Sends `fd` over the unix socket `sock` with SCM_RIGHTS.
pub fn send_fd(sock: RawFd, fd: RawFd) -> Result<()> {
    let fds = [fd];
    let iov = [IoSlice::new(b"F")];
    sendmsg::<UnixAddr>(
        sock,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .with_context(|| format!("sendmsg(SCM_RIGHTS {fd} over {sock})"))?;
    Ok(())
}

/// Receives one fd sent with SCM_RIGHTS (no MSG_CMSG_CLOEXEC: it arrives
/// without FD_CLOEXEC, as in most code).
pub fn recv_fd(sock: RawFd) -> Result<RawFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<UnixAddr>(sock, &mut iov, Some(&mut space), MsgFlags::empty()) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.with_context(|| format!("recvmsg({sock})"))?,
        }
    };
    for cmsg in msg.cmsgs().context("control messages truncated")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                return Ok(fd);
            }
        }
    }
    bail!("recvmsg({sock}): no fd received")
}

pub use crate::netns::loopback_up;

pub fn unshare_net() -> Result<()> {
    // SAFETY: plain syscall; the caller is single-threaded.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }).context("unshare(CLONE_NEWNET)")?;
    Ok(())
}

/// Inode of /proc/PID/ns/net (or /proc/self/ns/net).
pub fn netns_inode(pid: Option<Pid>) -> Result<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/ns/net"),
        None => "/proc/self/ns/net".to_string(),
    };
    Ok(std::fs::metadata(&path)
        .with_context(|| format!("stat {path}"))?
        .ino())
}

pub fn sleep_forever() -> ! {
    loop {
        // SAFETY: pause only returns when a handled signal arrives.
        unsafe { libc::pause() };
    }
}

pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and runs no atexit handlers or destructors,
    // which is what a forked child wants.
    unsafe { libc::_exit(code) }
}

/// Terminates only the calling thread (the raw exit syscall, not exit_group).
pub fn exit_thread() -> ! {
    // SAFETY: SYS_exit ends the calling thread only; nothing runs afterwards.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    exit_now(3)
}

/// Facts about one connected socket as seen by the process holding `fd`.
pub fn conn_facts(fd: RawFd) -> Result<Value> {
    Ok(json!({
        "fd": fd,
        "inode": inode(fd)?,
        "local": local_addr(fd)?.to_string(),
        "remote": peer_addr(fd)?.to_string(),
        "cloexec": cloexec(fd)?,
    }))
}

// ---------------------------------------------------------------- processes

fn set_default(sig: libc::c_int) {
    // SAFETY: installing SIG_DFL is always valid.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// First thing in every forked child: die with the parent, default signals.
fn child_init(parent: Pid) {
    // SAFETY: plain prctl; PR_SET_PDEATHSIG survives exec (not setuid ones).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: plain syscall.
    if unsafe { libc::getppid() } != parent {
        // The parent died before the prctl: the signal will never come.
        exit_now(1);
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGPIPE, libc::SIGCHLD] {
        set_default(sig);
    }
}

/// fork(2). Ok(None) in the child, which has already called `child_init`.
fn fork() -> Result<Option<Pid>> {
    let parent = getpid();
    // SAFETY: the driver is single-threaded when it forks; children that fork
    // again do so before starting any thread.
    let pid = cvt(unsafe { libc::fork() }).context("fork")?;
    if pid == 0 {
        child_init(parent);
        Ok(None)
    } else {
        Ok(Some(pid))
    }
}

/// Closes every fd >= 3 except those in `keep`.
fn close_all_except(keep: &[RawFd]) -> Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&k| u32::try_from(k).ok())
        .filter(|&k| k >= 3)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut lo = 3u32;
    for k in keep.into_iter().chain([u32::MAX]) {
        if k > lo {
            // SAFETY: plain syscall; closes a range of fds of this process.
            cvt(unsafe { libc::close_range(lo, k - 1, 0) }).context("close_range")?;
        }
        lo = k.saturating_add(1);
    }
    Ok(())
}

fn devnull_stdio() -> Result<()> {
    let path = CString::new("/dev/null")?;
    // SAFETY: path is a valid C string.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR) }).context("open /dev/null")?;
    dup2(fd, 0)?;
    dup2(fd, 1)?;
    if fd > 2 {
        close(fd)?;
    }
    Ok(())
}

/// Waits for `pid` to exit; errors unless it exited with status 0.
pub fn wait_exit(pid: Pid) -> Result<()> {
    let mut status = 0;
    // SAFETY: status is valid for writing.
    retry(|| unsafe { libc::waitpid(pid, &raw mut status, 0) })
        .with_context(|| format!("waitpid({pid})"))?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        bail!("process {pid} ended with wait status {status:#x}")
    }
}

/// Runs `f`, turning a panic into an error: in a forked child, an unwind
/// would climb the copy of the driver's stack back into `main`, and the
/// child would carry on as a second driver.
fn no_unwind(f: impl FnOnce() -> Result<()>) -> Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(anyhow!("panicked")))
}

/// The child side: where a role writes its reports and reads driver pokes.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    report: RawFd,
    ctl: RawFd,
}

impl Ctx {
    /// One JSON line to the driver (atomic: well under PIPE_BUF).
    pub fn send(&self, v: Value) -> Result<()> {
        let mut line = v.to_string();
        line.push('\n');
        write_all(self.report, line.as_bytes())
    }

    /// Blocks until the driver pokes this role; errors if the driver is gone.
    pub fn wait_ctl(&self) -> Result<()> {
        let mut b = [0u8; 1];
        if read(self.ctl, &mut b)? == 0 {
            bail!("driver closed the control pipe");
        }
        Ok(())
    }

    /// Forks a sub-process that keeps every fd of this one (the point of the
    /// fork scenarios) and runs `body`, then exits. Returns its pid.
    pub fn fork(&self, body: impl FnOnce() -> Result<()>) -> Result<Pid> {
        match fork()? {
            Some(pid) => Ok(pid),
            None => self.finish("child", no_unwind(body)),
        }
    }

    /// Forks and execs `/bin/sleep 1000`, after `prepare` ran in the child.
    /// Returns once the exec happened (a close-on-exec pipe reached EOF).
    /// The new program inherits every fd without FD_CLOEXEC.
    pub fn spawn_sleep(&self, prepare: impl FnOnce() -> Result<()>) -> Result<Pid> {
        let (r, w) = pipe()?;
        match fork()? {
            None => {
                let err = no_unwind(|| -> Result<()> {
                    close(r)?;
                    prepare()?;
                    let path = CString::new("/bin/sleep")?;
                    let argv = [CString::new("sleep")?, CString::new("1000")?];
                    let mut ptrs: Vec<*const libc::c_char> =
                        argv.iter().map(|a| a.as_ptr()).collect();
                    ptrs.push(std::ptr::null());
                    // SAFETY: path and argv are valid NUL-terminated strings,
                    // argv is NULL-terminated.
                    unsafe { libc::execv(path.as_ptr(), ptrs.as_ptr()) };
                    Err(io::Error::last_os_error()).context("execv /bin/sleep")
                });
                let msg = match err {
                    Ok(()) => "exec returned".to_string(),
                    Err(e) => format!("{e:#}"),
                };
                // Best effort: the parent turns this into its error.
                let _ = write_all(w, msg.as_bytes());
                exit_now(127)
            }
            Some(pid) => {
                close(w)?;
                let mut msg = Vec::new();
                let mut buf = [0u8; 512];
                loop {
                    match read(r, &mut buf)? {
                        0 => break,
                        n => msg.extend_from_slice(&buf[..n]),
                    }
                }
                close(r)?;
                if !msg.is_empty() {
                    let _ = wait_exit(pid);
                    bail!("helper {pid}: {}", String::from_utf8_lossy(&msg));
                }
                Ok(pid)
            }
        }
    }

    /// Ends the calling process: exit 0, or report the error and exit 2.
    pub fn finish(&self, role: &str, res: Result<()>) -> ! {
        match res {
            Ok(()) => exit_now(0),
            Err(e) => {
                let msg = format!("{e:#}");
                eprintln!("scenario: {role} (pid {}): {msg}", getpid());
                let _ =
                    self.send(json!({"ev": "error", "role": role, "pid": getpid(), "msg": msg}));
                exit_now(2)
            }
        }
    }
}

/// The driver side of one direct child.
#[derive(Debug)]
pub struct Child {
    pub role: String,
    pub pid: Pid,
    events: Events,
    ctl: RawFd,
}

impl Child {
    /// The next report named `ev` (others are kept for later).
    pub fn take(&mut self, ev: &str, deadline: Instant) -> Result<Value> {
        self.events
            .take(ev, deadline)
            .with_context(|| format!("{} (pid {})", self.role, self.pid))
    }

    /// Wakes the child blocked in `Ctx::wait_ctl`.
    pub fn poke(&self) -> Result<()> {
        write_all(self.ctl, b"!")
    }
}

/// Forks a direct child of the driver running `body`. The child keeps only
/// fds 0-2 (0 and 1 on /dev/null), `keep`, and its two pipes.
pub fn spawn(role: &str, keep: &[RawFd], body: impl FnOnce(Ctx) -> Result<()>) -> Result<Child> {
    let (rep_r, rep_w) = pipe()?;
    let (ctl_r, ctl_w) = pipe()?;
    match fork()? {
        None => {
            let ctx = Ctx {
                report: REPORT_FD,
                ctl: CTL_FD,
            };
            let setup = (|| -> Result<()> {
                dup3_cloexec(rep_w, REPORT_FD)?;
                dup3_cloexec(ctl_r, CTL_FD)?;
                devnull_stdio()?;
                let mut kept = keep.to_vec();
                kept.extend([REPORT_FD, CTL_FD]);
                close_all_except(&kept)
            })();
            if let Err(e) = setup {
                // The report pipe may not be in place: stderr only.
                eprintln!("scenario: {role}: setup: {e:#}");
                exit_now(2);
            }
            ctx.finish(role, no_unwind(|| body(ctx)))
        }
        Some(pid) => {
            close(rep_w)?;
            close(ctl_r)?;
            Ok(Child {
                role: role.to_string(),
                pid,
                events: Events {
                    pid,
                    fd: rep_r,
                    buf: Vec::new(),
                    stash: VecDeque::new(),
                    eof: false,
                },
                ctl: ctl_w,
            })
        }
    }
}

/// JSON lines read from a child's report pipe.
#[derive(Debug)]
struct Events {
    pid: Pid,
    fd: RawFd,
    buf: Vec<u8>,
    stash: VecDeque<Value>,
    eof: bool,
}

impl Events {
    fn take(&mut self, ev: &str, deadline: Instant) -> Result<Value> {
        if let Some(i) = self.stash.iter().position(|v| v["ev"] == ev) {
            return self.stash.remove(i).ok_or_else(|| anyhow!("stash"));
        }
        loop {
            let v = self
                .next(deadline)?
                .ok_or_else(|| anyhow!("exited before reporting {ev:?}"))?;
            if v["ev"] == "error" {
                let msg = v["msg"].as_str().unwrap_or("?");
                if v["pid"] == self.pid {
                    bail!("{msg}");
                }
                bail!(
                    "its {} (pid {}): {msg}",
                    v["role"].as_str().unwrap_or("?"),
                    v["pid"]
                );
            }
            if v["ev"] == ev {
                return Ok(v);
            }
            self.stash.push_back(v);
        }
    }

    /// The next line, None at EOF (every writer gone).
    fn next(&mut self, deadline: Instant) -> Result<Option<Value>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let v = serde_json::from_slice(&line)
                    .with_context(|| format!("bad report {:?}", String::from_utf8_lossy(&line)))?;
                return Ok(Some(v));
            }
            if self.eof {
                return Ok(None);
            }
            if STOP.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for a report");
            }
            let ms = libc::c_int::try_from(left.as_millis().min(200)).unwrap_or(200);
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            match cvt(unsafe { libc::poll(&raw mut pfd, 1, ms) }) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("poll"),
            }
            let mut chunk = [0u8; 4096];
            match read(self.fd, &mut chunk)? {
                0 => self.eof = true,
                n => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

// ---------------------------------------------------------------- /proc

/// One row of /proc/PID/net/tcp{,6}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

pub const ESTABLISHED: u8 = 0x01;
pub const CLOSE_WAIT: u8 = 0x08;

fn parse_addr(s: &str) -> Result<SocketAddr> {
    let (ip, port) = s.split_once(':').ok_or_else(|| anyhow!("no port in {s}"))?;
    let port = u16::from_str_radix(port, 16)?;
    // The kernel prints each 32-bit word of the address in host byte order.
    let word = |i: usize| -> Result<[u8; 4]> {
        let hex = ip
            .get(i * 8..i * 8 + 8)
            .ok_or_else(|| anyhow!("short {ip}"))?;
        Ok(u32::from_str_radix(hex, 16)?.to_ne_bytes())
    };
    match ip.len() {
        8 => Ok(SocketAddr::new(Ipv4Addr::from(word(0)?).into(), port)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Ok(SocketAddr::new(Ipv6Addr::from(b).into(), port))
        }
        _ => bail!("bad address {s}"),
    }
}

/// The rows in `state` of both TCP tables: of this process's network
/// namespace through sock_diag (the kernel filters by state, which matters
/// on hosts with tens of thousands of TIME_WAIT rows), or of the namespace
/// of `pid` through /proc/PID/net/tcp{,6}.
pub fn tcp_rows(pid: Option<Pid>, state: u8) -> Result<Vec<TcpRow>> {
    match pid {
        None => {
            let mut rows = diag_dump(libc::AF_INET as u8, state)?;
            rows.extend(diag_dump(libc::AF_INET6 as u8, state)?);
            Ok(rows)
        }
        Some(p) => proc_rows(p, state),
    }
}

fn proc_rows(pid: Pid, state: u8) -> Result<Vec<TcpRow>> {
    let want = format!("{state:02X}");
    let mut rows = Vec::new();
    for file in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{file}");
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().take(10).collect();
            if f.len() < 10 || f[3] != want {
                continue;
            }
            rows.push(TcpRow {
                local: parse_addr(f[1])?,
                remote: parse_addr(f[2])?,
                state,
                inode: f[9].parse()?,
            });
        }
    }
    Ok(rows)
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// sizeof(struct inet_diag_sockid).
const SOCKID_LEN: usize = 48;
/// sizeof(struct inet_diag_msg).
const DIAG_MSG_LEN: usize = 4 + SOCKID_LEN + 20;
const NLMSG_HDR_LEN: usize = 16;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(w)
}

/// One NETLINK_SOCK_DIAG dump of the TCP sockets of `family` in `state`.
fn diag_dump(family: u8, state: u8) -> Result<Vec<TcpRow>> {
    // SAFETY: plain syscall.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    })
    .context("socket(NETLINK_SOCK_DIAG)")?;
    let res = diag_dump_on(fd, family, state);
    let _ = close(fd);
    res
}

fn diag_dump_on(fd: RawFd, family: u8, state: u8) -> Result<Vec<TcpRow>> {
    // nlmsghdr + inet_diag_req_v2 (family, protocol, ext, pad, states, sockid).
    let len = NLMSG_HDR_LEN + 8 + SOCKID_LEN;
    let mut req = Vec::with_capacity(len);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend_from_slice(&(1u32 << state).to_ne_bytes());
    req.resize(len, 0);
    // SAFETY: plain old data.
    let mut nl: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    nl.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: req and nl are valid for the given lengths.
    let sent = retry_ssize(|| unsafe {
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    })
    .context("sock_diag request")?;
    ensure!(sent == req.len(), "short sock_diag request");

    let mut rows = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = read(fd, &mut buf).context("sock_diag reply")?;
        ensure!(n > 0, "sock_diag: no reply");
        let mut at = 0;
        while at + NLMSG_HDR_LEN <= n {
            let msg_len = u32_at(&buf, at) as usize;
            let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            ensure!(
                msg_len >= NLMSG_HDR_LEN && at + msg_len <= n,
                "bad netlink message"
            );
            let body = &buf[at + NLMSG_HDR_LEN..at + msg_len];
            match ty {
                t if t == libc::NLMSG_DONE as u16 => return Ok(rows),
                t if t == libc::NLMSG_ERROR as u16 => {
                    let errno = i32::from_ne_bytes(body[..4].try_into()?);
                    if errno == 0 {
                        return Ok(rows);
                    }
                    return Err(io::Error::from_raw_os_error(-errno)).context("sock_diag");
                }
                SOCK_DIAG_BY_FAMILY if body.len() >= DIAG_MSG_LEN => {
                    rows.push(diag_row(body)?);
                }
                _ => {}
            }
            at += (msg_len + 3) & !3;
        }
    }
}

/// struct inet_diag_msg -> TcpRow.
fn diag_row(b: &[u8]) -> Result<TcpRow> {
    let family = i32::from(b[0]);
    let id = &b[4..4 + SOCKID_LEN];
    let sport = u16::from_be_bytes([id[0], id[1]]);
    let dport = u16::from_be_bytes([id[2], id[3]]);
    let ip = |raw: &[u8]| -> Result<std::net::IpAddr> {
        Ok(if family == libc::AF_INET {
            Ipv4Addr::from(<[u8; 4]>::try_from(&raw[..4])?).into()
        } else {
            Ipv6Addr::from(<[u8; 16]>::try_from(raw)?).into()
        })
    };
    Ok(TcpRow {
        local: SocketAddr::new(ip(&id[4..20])?, sport),
        remote: SocketAddr::new(ip(&id[20..36])?, dport),
        state: b[1],
        // idiag_expires, rqueue, wqueue, uid, then inode.
        inode: u64::from(u32_at(b, 4 + SOCKID_LEN + 16)),
    })
}

/// Polls the rows in `state` until `done` holds, or fails at the deadline.
pub fn wait_tcp(
    pid: Option<Pid>,
    state: u8,
    what: &str,
    deadline: Instant,
    done: impl Fn(&[TcpRow]) -> bool,
) -> Result<()> {
    loop {
        if done(&tcp_rows(pid, state)?) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        if STOP.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until every inode is in the TCP table with `state`.
pub fn wait_inodes(pid: Option<Pid>, inodes: &[u64], state: u8, deadline: Instant) -> Result<()> {
    wait_tcp(
        pid,
        state,
        &format!("sockets {inodes:?} to reach state {state:02X}"),
        deadline,
        |rows| inodes.iter().all(|i| rows.iter().any(|r| r.inode == *i)),
    )
}

/// Polls `f` until it returns Some, or fails at the deadline.
pub fn wait_until<T>(what: &str, deadline: Instant, f: impl Fn() -> Option<T>) -> Result<T> {
    loop {
        if let Some(t) = f() {
            return Ok(t);
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        if STOP.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn comm(pid: Pid) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// (state letter, ppid, pgrp) from /proc/PID/stat.
pub fn stat(pid: Pid) -> Option<(char, Pid, Pid)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Every pid under /proc.
pub fn all_pids() -> Vec<Pid> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- patterns
//
// Helpers of the production-pattern scenarios (patterns.rs).

/// A TCP socket with SO_REUSEPORT set before bind (O_CLOEXEC); listening
/// when `listen`, else only bound (which reserves the port for the others).
pub fn tcp_reuseport(addr: SocketAddr, listen: bool) -> Result<RawFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })
        .context("socket")?;
    let on: libc::c_int = 1;
    // SAFETY: the option value is a valid c_int.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .context("setsockopt(SO_REUSEPORT)")?;
    let (ss, len) = to_raw(&addr);
    // SAFETY: ss holds a valid address of length len.
    cvt(unsafe { libc::bind(fd, (&raw const ss).cast(), len) })
        .with_context(|| format!("bind({addr})"))?;
    if listen {
        // SAFETY: plain syscall.
        cvt(unsafe { libc::listen(fd, 64) }).context("listen")?;
    }
    Ok(fd)
}

/// Bytes in the socket's send queue, not yet acknowledged (SIOCOUTQ).
pub fn outq(fd: RawFd) -> Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &raw mut n) }).context("SIOCOUTQ")?;
    Ok(n)
}

/// shutdown(fd, SHUT_WR): the request is complete, the peer reads EOF.
pub fn shutdown_write(fd: RawFd) -> Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).with_context(|| format!("shutdown({fd})"))?;
    Ok(())
}

/// Raises the soft RLIMIT_NOFILE to at least `want` (up to the hard limit).
pub fn raise_nofile(want: u64) -> Result<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is valid for writing.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut rl) }).context("getrlimit")?;
    if rl.rlim_cur < want {
        ensure!(
            rl.rlim_max >= want,
            "RLIMIT_NOFILE hard limit {} is below {want}",
            rl.rlim_max
        );
        rl.rlim_cur = want;
        // SAFETY: rl is a valid rlimit.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const rl) }).context("setrlimit")?;
    }
    Ok(rl.rlim_cur)
}

pub fn signal(pid: Pid, sig: libc::c_int) -> Result<()> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::kill(pid, sig) }).with_context(|| format!("kill({pid}, {sig})"))?;
    Ok(())
}

/// A copy of fd `fd` of process `pid`, taken with pidfd_open + pidfd_getfd
/// (the new fd always has FD_CLOEXEC). The pidfd is closed again.
pub fn pidfd_getfd(pid: Pid, fd: RawFd) -> Result<RawFd> {
    // SAFETY: plain syscall; no pointers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    ensure!(
        pidfd >= 0,
        "pidfd_open({pid}): {}",
        io::Error::last_os_error()
    );
    let pidfd = RawFd::try_from(pidfd)?;
    // SAFETY: plain syscall; no pointers.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) };
    let err = io::Error::last_os_error();
    close(pidfd)?;
    ensure!(got >= 0, "pidfd_getfd({pid}, {fd}): {err}");
    Ok(RawFd::try_from(got)?)
}

/// The NSpid line of /proc/PID/status: the pid in each pid namespace,
/// outermost first.
pub fn nspid(pid: Pid) -> Option<Vec<Pid>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|p| p.parse().ok()).collect()
}

/// Inode of /proc/PID/ns/KIND (net, pid, ...).
pub fn ns_inode(pid: Pid, kind: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/ns/{kind}");
    Ok(std::fs::metadata(&path)
        .with_context(|| format!("stat {path}"))?
        .ino())
}

/// The host pid of the process whose pid is `ns_pid` in the pid namespace
/// `pidns` (as /proc/PID/ns/pid names it).
pub fn host_pid(pidns: u64, ns_pid: Pid) -> Option<Pid> {
    all_pids().into_iter().find(|&p| {
        nspid(p).is_some_and(|v| v.len() > 1 && v.last() == Some(&ns_pid))
            && ns_inode(p, "pid").is_ok_and(|i| i == pidns)
    })
}

/// execv("/bin/sleep", ["sleep", "1000"]); returns only on failure.
fn exec_sleep() -> Result<()> {
    let path = CString::new("/bin/sleep")?;
    let argv = [CString::new("sleep")?, CString::new("1000")?];
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: path and argv are valid NUL-terminated strings, argv is
    // NULL-terminated.
    unsafe { libc::execv(path.as_ptr(), ptrs.as_ptr()) };
    Err(io::Error::last_os_error()).context("execv /bin/sleep")
}

impl Ctx {
    /// Forks the first process of the pid namespace the caller unshared (its
    /// init). Its parent is outside its namespace, so getppid() there is 0
    /// and `fork`'s parent check cannot be used.
    pub fn fork_ns_init(&self, body: impl FnOnce() -> Result<()>) -> Result<Pid> {
        // SAFETY: the caller is single-threaded.
        let pid = cvt(unsafe { libc::fork() }).context("fork")?;
        if pid == 0 {
            // SAFETY: plain prctl. Should the parent die first, the child is
            // re-parented to the driver (a subreaper), which kills it.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGPIPE, libc::SIGCHLD] {
                set_default(sig);
            }
            self.finish("pid-namespace init", no_unwind(body))
        }
        Ok(pid)
    }

    /// Creates a second *process* (no CLONE_THREAD, no CLONE_VM) that shares
    /// this one's fd table: clone(CLONE_FILES | SIGCHLD). It runs `body`,
    /// which must close nothing (its closes would be the parent's too).
    pub fn clone_files(&self, body: impl FnOnce() -> Result<()>) -> Result<Pid> {
        let parent = getpid();
        // SAFETY: without CLONE_VM the child gets a copy of the address space
        // and continues on (its copy of) this stack, as after fork(). The
        // caller is single-threaded, so no lock is held by another thread.
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone,
                libc::CLONE_FILES | libc::SIGCHLD,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        ensure!(r >= 0, "clone(CLONE_FILES): {}", io::Error::last_os_error());
        if r == 0 {
            child_init(parent);
            self.finish("fd-table sharer", no_unwind(body))
        }
        Ok(Pid::try_from(r)?)
    }

    /// Starts `/bin/sleep 1000` as a daemon, the classic way: fork, setsid,
    /// fork again, the intermediate exits at once and is reaped here, so the
    /// daemon is re-parented to the nearest subreaper (the driver). `prepare`
    /// runs in the daemon before exec. Returns the daemon's pid once it
    /// exec'd. The daemon dies with the driver (PR_SET_PDEATHSIG set once it
    /// was re-parented).
    pub fn spawn_daemon_sleep(&self, prepare: impl FnOnce() -> Result<()>) -> Result<Pid> {
        let driver = std::os::unix::process::parent_id();
        let (r, w) = pipe()?;
        let middle = match fork()? {
            Some(pid) => pid,
            None => {
                let res = no_unwind(|| -> Result<()> {
                    close(r)?;
                    // SAFETY: plain syscall.
                    cvt(unsafe { libc::setsid() }).context("setsid")?;
                    let me = getpid();
                    // Not `fork()`: no death signal tied to this process,
                    // which is about to exit.
                    // SAFETY: single-threaded.
                    let pid = cvt(unsafe { libc::fork() }).context("fork")?;
                    if pid == 0 {
                        let err = no_unwind(|| -> Result<()> {
                            // SAFETY: plain syscall.
                            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
                            wait_until(
                                "re-parenting",
                                Instant::now() + Duration::from_secs(5),
                                || {
                                    // SAFETY: plain syscall.
                                    (unsafe { libc::getppid() } != me).then_some(())
                                },
                            )?;
                            // SAFETY: plain syscall.
                            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                            // SAFETY: plain syscall.
                            let ppid = unsafe { libc::getppid() };
                            ensure!(
                                u32::try_from(ppid).ok() == Some(driver),
                                "re-parented to {ppid}, not to the driver {driver}"
                            );
                            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGPIPE, libc::SIGCHLD] {
                                set_default(sig);
                            }
                            prepare()?;
                            exec_sleep()
                        });
                        let msg = match err {
                            Ok(()) => "exec returned".to_string(),
                            Err(e) => format!("{e:#}"),
                        };
                        let _ = write_all(w, format!("err {msg}\n").as_bytes());
                        exit_now(127)
                    }
                    write_all(w, format!("pid {pid}\n").as_bytes())
                });
                if let Err(e) = res {
                    let _ = write_all(w, format!("err {e:#}\n").as_bytes());
                    exit_now(2)
                }
                exit_now(0)
            }
        };
        close(w)?;
        let mut msg = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            match read(r, &mut buf)? {
                0 => break,
                n => msg.extend_from_slice(&buf[..n]),
            }
        }
        close(r)?;
        wait_exit(middle)?;
        let text = String::from_utf8_lossy(&msg);
        let mut daemon = None;
        for line in text.lines() {
            if let Some(e) = line.strip_prefix("err ") {
                bail!("daemon: {e}");
            }
            if let Some(p) = line.strip_prefix("pid ") {
                daemon = Some(p.parse::<Pid>()?);
            }
        }
        daemon.ok_or_else(|| anyhow!("daemon: no pid reported ({text:?})"))
    }
}
