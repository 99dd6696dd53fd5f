//! Set-up shared by the examples that build their load in a network
//! namespace of their own (loadgen, tcp_population, scenario).

use anyhow::{ensure, Context, Result};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// SIOCSIFFLAGS |= IFF_UP on "lo": a new namespace starts with it down.
pub fn loopback_up() -> Result<()> {
    // SAFETY: plain syscalls on a fresh socket and a zeroed ifreq.
    unsafe {
        let raw = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        ensure!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(raw);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
            *dst = *src as libc::c_char;
        }
        let fd = fd.as_raw_fd();
        ensure!(
            libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0,
            "SIOCGIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        ensure!(
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) == 0,
            "SIOCSIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// A listener with a chosen backlog (std's is fixed at 128): listen() again
/// on a listening socket only changes its backlog.
#[allow(dead_code)] // scenario listens through its own sys::tcp_listen
pub fn listen(addr: SocketAddr, backlog: i32) -> Result<TcpListener> {
    let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    // SAFETY: plain syscall on a socket we own.
    let r = unsafe { libc::listen(l.as_raw_fd(), backlog) };
    ensure!(r == 0, "listen: {}", std::io::Error::last_os_error());
    Ok(l)
}
