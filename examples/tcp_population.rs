//! A known population of TCP sockets in a fresh network namespace, for the
//! live tests of `cwleak states` and `cwleak sysctl` (needs root).
//!
//! ```text
//! tcp_population [--established N] [--time-wait N] [--close-wait N]
//!                [--unaccepted N] [--backlog N] [--port P]
//!                [--sysctl NAME=VALUE]...
//! ```
//!
//! It unshares its network namespace, brings `lo` up, writes the sysctls
//! inside the new namespace, then builds on 127.0.0.1, against one listener:
//! - `--established N`: N connections kept open (2N ESTABLISHED sockets);
//! - `--time-wait N`: N connections closed by the client first, then by the
//!   server: N TIME_WAIT sockets on the client side (and nothing else);
//! - `--close-wait N`: N connections the client closes and the server never
//!   does: N CLOSE_WAIT (server) and N FIN_WAIT2 (client) sockets; the even
//!   ones are fully closed by the client (orphaned FIN_WAIT2, inode 0), the
//!   odd ones only shut down for writing (FIN_WAIT2 still held);
//! - `--unaccepted N`: N connections never accepted: N ESTABLISHED client
//!   sockets held, N ESTABLISHED server sockets waiting in the accept queue.
//!
//! It waits until its own /proc/self/net/tcp shows exactly that, prints one
//! JSON line (`pid`, `netns`, `port`, `expect` {STATE: count},
//! `orphan_fin_wait2`, `held_fin_wait2`, `accept_queue`, `backlog`), and
//! keeps everything until stdin reaches EOF. It is one process with no
//! children: killing it ends everything, and the namespace goes with it.
//!
//! Exit status: 0 after a clean run, 2 on a usage or setup error.

#[path = "common/netns.rs"]
mod netns;

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Opts {
    established: usize,
    time_wait: usize,
    close_wait: usize,
    unaccepted: usize,
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
    // Single-threaded here, so the whole process moves to the new namespace.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
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

    let mut expect: BTreeMap<&str, usize> = BTreeMap::new();
    expect.insert("LISTEN", 1);
    expect.insert("ESTABLISHED", 2 * o.established + 2 * o.unaccepted);
    expect.insert("TIME_WAIT", o.time_wait);
    expect.insert("CLOSE_WAIT", o.close_wait);
    expect.insert("FIN_WAIT2", o.close_wait);
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
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{facts}")?;
    out.flush()?;
    drop(out);
    // Hold everything until the test is done (EOF, or killed).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(keep);
    drop(listener);
    Ok(())
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
