//! Many TIME_WAIT sockets, fast, in a fresh network namespace: the load for
//! measuring `cwleak states` on a host with a million of them (needs root).
//!
//! ```text
//! time_wait_load [--count N] [--keep]
//! ```
//!
//! Unshares its network namespace, brings `lo` up, raises
//! tcp_max_tw_buckets above N and turns tcp_tw_reuse off there (so no
//! TIME_WAIT is taken over), then opens and closes N connections to one
//! listener on 127.0.0.1, each from its own explicitly bound source address
//! and port (127.0.0.2.. x 1024-65535), so no port search slows it down. The
//! client closes first: one TIME_WAIT per connection. Prints progress on
//! stderr, then one JSON line {"pid", "netns", "created", "seconds"} on
//! stdout, and waits for stdin EOF. TIME_WAIT lasts 60 s: measure within
//! that minute. With --keep it goes on creating connections at full speed
//! until EOF, which keeps the count at (60 s x its rate).

use anyhow::{ensure, Context, Result};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

const PORTS: u32 = 65535 - 1024 + 1;

fn main() -> Result<()> {
    let mut count: u64 = 1_000_000;
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => count = args.next().context("--count N")?.parse()?,
            "--keep" => keep = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare")?;
    std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("ip link set lo up")?;
    std::fs::write(
        "/proc/sys/net/ipv4/tcp_max_tw_buckets",
        (count * 2 + 1000).to_string(),
    )?;
    std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "0")?;
    let listener = TcpListener::bind("127.0.0.1:80")?;
    // SAFETY: plain syscall on a socket we own.
    unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok((s, _)) = listener.accept() {
                    drop(s);
                }
            }
        })
    };
    let started = Instant::now();
    let mut n: u64 = 0;
    let mut next_source: u32 = 0;
    while n < count {
        connect_and_close(next_source)?;
        next_source = next_source.wrapping_add(1);
        n += 1;
        if n % 100_000 == 0 {
            eprintln!(
                "time_wait_load: {n} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let netns =
        std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m))?;
    println!(
        "{}",
        serde_json::json!({"pid": std::process::id(), "netns": netns, "created": n, "seconds": seconds})
    );
    if keep {
        let eof = Arc::new(AtomicBool::new(false));
        let e = eof.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            e.store(true, Ordering::Relaxed);
        });
        while !eof.load(Ordering::Relaxed) {
            connect_and_close(next_source)?;
            next_source = next_source.wrapping_add(1);
        }
    } else {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    }
    // The acceptor may sit in accept() for good: ending the process ends it.
    stop.store(true, Ordering::Relaxed);
    drop(acceptor);
    Ok(())
}

/// One connection from source number `i` (address 127.0.0.2+, port
/// 1024-65535), closed by this side first.
fn connect_and_close(i: u32) -> Result<()> {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + (i / PORTS) % 250_000);
    let port = u16::try_from(1024 + i % PORTS)?;
    // SAFETY: plain syscalls on a fresh socket and stack-allocated addresses.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            4,
        );
        let src = sockaddr(SocketAddrV4::new(ip, port));
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd.as_raw_fd(), (&raw const src).cast(), len) != 0 {
            // Still in TIME_WAIT from a previous round (--keep): skip it.
            return Ok(());
        }
        let dst = sockaddr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80));
        if libc::connect(fd.as_raw_fd(), (&raw const dst).cast(), len) != 0 {
            return Ok(());
        }
    }
    Ok(())
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}
