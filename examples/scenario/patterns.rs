//! Production patterns: leaks as real services make them. Same contract as
//! the other scenarios: build, wait until the kernel state is what the facts
//! say, return the facts (never the expected diagnosis).
//!
//! Roles and extra facts, by scenario:
//!
//! - `helper-orphaned[-cloexec-listener]`: `server` (closed its copy:
//!   `closed_fd`), `helper` (the daemon: `ppid`, `sid`, `fds`, `listener_fds`),
//!   `listener.cloexec`.
//! - `container`: `container` (the process that unshared), `init`, `server`,
//!   `client` with host `pid` and in-namespace `ns_pid`; `children` (exited,
//!   `ns_pid` only); `netns`, `host_netns`, `pidns`, `host_pidns`.
//! - `churn`: `server` (the correct one, `port`), `leaky` (`port`, `fds`),
//!   `load` (`rate_per_s`, `max_secs`, `done_before_line`,
//!   `failed_before_line`), `work_ms`.
//! - `many`: `server`, `children` (all exited), `count`.
//! - `fd-pool`: `master`, `workers[]` (`pid`, `fds`, `unix_fd`).
//! - `pidfd-getfd`: `server` (`closed_fd`), `taker`.
//! - `clone-files`: `server`, `sharer`, `fd_table_shared_by` (proven with
//!   kcmp(KCMP_FILES)); a socket's `holders` lists both processes.
//! - `reuseport`: `master`, `workers[]`, `listeners[]`.
//! - `pool-client`: `client`, `server` (the driver, `listener_fd`).
//! - `stopped`: as `never-closed`, plus `server.state` ("T").
//! - `still-sending`: `server`; `sending` (inode of the connection it keeps
//!   writing to, whose client half-closed and still reads) and `frozen` (the
//!   one whose send buffer it filled once, whose client never reads).

use super::{
    addr_of, base, conns_of, deadline, finish, fork_per_connection, holder, inode_of,
    listener_facts, never_closing, pid_of, role, send_listening, socket, state_deadline, target,
    wait_comm, Opts, LO4,
};
use crate::sys::{self, Ctx, Pid, CLOSE_WAIT};
use crate::Driver;
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{IntoRawFd, RawFd};
use std::time::{Duration, Instant};

const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The socket inode fd `fd` of process `pid` refers to, read from /proc.
fn fd_inode(pid: Pid, fd: &Value) -> Option<u64> {
    let target = std::fs::read_link(format!("/proc/{pid}/fd/{}", fd.as_i64()?)).ok()?;
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Checks in /proc that `pid` holds socket `inode` at `fd`.
fn ensure_holds(pid: Pid, fd: &Value, inode: &Value) -> Result<()> {
    let got = fd_inode(pid, fd);
    ensure!(
        got.is_some() && got == inode.as_u64(),
        "/proc/{pid}/fd/{fd} is socket {got:?}, not {inode}"
    );
    Ok(())
}

fn session_of(pid: Pid) -> Option<Pid> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid pgrp session
    text[text.rfind(')')? + 2..]
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn ppid_of(pid: Pid) -> Result<Pid> {
    Ok(sys::stat(pid)
        .with_context(|| format!("no /proc/{pid}/stat"))?
        .1)
}

// ------------------------------------------------------------ orphaned daemon

/// A C-style server (accepted fd without O_CLOEXEC) starts a daemonised
/// helper (double fork, setsid, exec): the helper is re-parented to the
/// driver, away from the server, and the server then closes its copy.
fn orphaned_helper(d: &mut Driver, listener_cloexec: bool) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], move |ctx| {
        let l = sys::tcp_listen(LO4, listener_cloexec, None)?;
        send_listening(&ctx, l)?;
        let c = sys::accept(l, false)?;
        let conn = sys::conn_facts(c)?;
        let helper = ctx.spawn_daemon_sleep(|| Ok(()))?;
        sys::close(c)?;
        ctx.send(json!({
            "ev": "helper", "pid": helper, "conn": conn, "listener_cloexec": sys::cloexec(l)?,
        }))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let client = TcpStream::connect(target(&l, LOCALHOST)?)?;
    let h = d.child(s).take("helper", dl)?;
    let hpid = pid_of(&h["pid"])?;
    wait_comm(hpid, "sleep", dl)?;
    drop(client);
    let conn = &h["conn"];
    sys::wait_inodes(None, &[inode_of(conn)?], CLOSE_WAIT, state_deadline())?;

    let spid = d.child(s).pid;
    let hppid = ppid_of(hpid)?;
    ensure!(
        hppid == d.pid,
        "the helper's parent is {hppid}, not the driver"
    );
    ensure!(
        fd_inode(spid, &conn["fd"]) != inode_of(conn).ok(),
        "the server still holds the connection"
    );
    ensure_holds(hpid, &conn["fd"], &conn["inode"])?;
    let helper_has_listener = fd_inode(hpid, &l["fd"]) == l["inode"].as_u64();
    ensure!(
        helper_has_listener != listener_cloexec,
        "the helper holds the listener: {helper_has_listener}, listener O_CLOEXEC: {listener_cloexec}"
    );

    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    let mut lf = listener_facts(spid, &l);
    lf["cloexec"] = h["listener_cloexec"].clone();
    m.insert("listener".into(), lf);
    m.insert(
        "server".into(),
        json!({"pid": spid, "fds": [], "closed_fd": conn["fd"]}),
    );
    m.insert(
        "helper".into(),
        json!({
            "pid": hpid, "ppid": hppid, "sid": session_of(hpid), "fds": [conn["fd"]],
            "listener_fds": if helper_has_listener { json!([l["fd"]]) } else { json!([]) },
        }),
    );
    let holders = vec![holder(hpid, &conn["fd"], &json!(false))];
    Ok(finish(m, vec![socket(conn, holders)]))
}

pub(super) fn helper_orphaned(d: &mut Driver, _: &Opts) -> Result<Value> {
    orphaned_helper(d, false)
}

pub(super) fn helper_orphaned_cloexec_listener(d: &mut Driver, _: &Opts) -> Result<Value> {
    orphaned_helper(d, true)
}

// ------------------------------------------------------------ container

const CONTAINER_PORT: u16 = 8080;

/// Fork per connection inside the container; children read to EOF, close and
/// exit; the parent reaps them and keeps every accepted fd.
fn container_server(ctx: Ctx) -> Result<()> {
    let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), CONTAINER_PORT);
    let l = sys::tcp_listen(any, true, None)?;
    send_listening(&ctx, l)?;
    fork_per_connection(ctx, l, false, "child_ns_pid")
}

fn container_client(ctx: Ctx) -> Result<()> {
    let addr = SocketAddr::new(LOCALHOST, CONTAINER_PORT);
    let first = sys::wait_until("the server in the container to listen", deadline(), || {
        sys::tcp_connect(addr).ok()
    })?;
    let mut fds = vec![first];
    for _ in 0..2 {
        fds.push(sys::tcp_connect(addr)?);
    }
    let conns: Vec<Value> = fds
        .iter()
        .map(|&k| sys::conn_facts(k))
        .collect::<Result<_>>()?;
    ctx.send(json!({"ev": "client", "ns_pid": sys::getpid(), "conns": conns}))?;
    ctx.wait_ctl()?;
    for k in fds {
        sys::close(k)?;
    }
    Ok(())
}

/// Reaps children forever, as a container's init does.
fn reap_forever() -> ! {
    loop {
        let mut status = 0;
        // SAFETY: status is valid for writing.
        let r = unsafe { libc::waitpid(-1, &raw mut status, 0) };
        if r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            sys::sleep_forever()
        }
    }
}

pub(super) fn container(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let u = d.spawn("container", &[], |ctx| {
        // SAFETY: plain syscall; this process is single-threaded.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWPID) };
        ensure!(
            r == 0,
            "unshare(CLONE_NEWNET|CLONE_NEWPID): {}",
            std::io::Error::last_os_error()
        );
        sys::loopback_up()?;
        let init = ctx.fork_ns_init(move || {
            let server = ctx.fork(move || container_server(ctx))?;
            let client = ctx.fork(move || container_client(ctx))?;
            ctx.send(json!({
                "ev": "init", "ns_pid": sys::getpid(), "server": server, "client": client,
            }))?;
            reap_forever()
        })?;
        ctx.send(json!({"ev": "unshared", "init": init}))?;
        sys::sleep_forever()
    })?;
    let upid = d.child(u).pid;
    let init = pid_of(&d.child(u).take("unshared", dl)?["init"])?;
    let ini = d.child(u).take("init", dl)?;
    let l = d.child(u).take("listening", dl)?;
    let cl = d.child(u).take("client", dl)?;
    let acc = d.child(u).take("accepted", dl)?;
    let pidns = sys::ns_inode(init, "pid")?;
    let (server_ns, client_ns) = (pid_of(&ini["server"])?, pid_of(&ini["client"])?);
    let host_of = |ns_pid: Pid| {
        sys::host_pid(pidns, ns_pid)
            .with_context(|| format!("no host pid for pid {ns_pid} of pid namespace {pidns}"))
    };
    let (spid, cpid) = (host_of(server_ns)?, host_of(client_ns)?);
    d.child(u).poke()?;
    d.child(u).take("reaped", dl)?;
    let conns = conns_of(&acc)?;
    let inodes: Vec<u64> = conns.iter().map(inode_of).collect::<Result<_>>()?;
    sys::wait_inodes(Some(spid), &inodes, CLOSE_WAIT, state_deadline())?;

    let netns = sys::netns_inode(Some(spid))?;
    let host_netns = sys::netns_inode(None)?;
    ensure!(
        netns != host_netns,
        "the server is in the host's network namespace"
    );
    let host_pidns = sys::ns_inode(sys::getpid(), "pid")?;
    ensure!(
        pidns != host_pidns,
        "the init is in the host's pid namespace"
    );
    ensure!(
        sys::nspid(init) == Some(vec![init, 1]),
        "init {init} is not pid 1 of its namespace: {:?}",
        sys::nspid(init)
    );
    ensure!(
        sys::nspid(spid) == Some(vec![spid, server_ns]),
        "server NSpid {:?}",
        sys::nspid(spid)
    );
    ensure!(
        ppid_of(spid)? == init,
        "the server is not a child of the init"
    );
    ensure!(ppid_of(init)? == upid, "the init is not a child of {upid}");
    for c in &conns {
        ensure_holds(spid, &c["fd"], &c["inode"])?;
    }

    let mut m = base(d, CONTAINER_PORT, "ipv4");
    m.insert("netns".into(), json!(netns));
    m.insert("host_netns".into(), json!(host_netns));
    m.insert("pidns".into(), json!(pidns));
    m.insert("host_pidns".into(), json!(host_pidns));
    m.insert("container".into(), role(upid, vec![]));
    m.insert("init".into(), json!({"pid": init, "ns_pid": 1, "fds": []}));
    let fds: Vec<Value> = conns.iter().map(|c| c["fd"].clone()).collect();
    m.insert(
        "server".into(),
        json!({"pid": spid, "ns_pid": server_ns, "fds": fds}),
    );
    m.insert(
        "client".into(),
        json!({"pid": cpid, "ns_pid": client_ns, "fds": [], "exited": true,
               "local": cl["conns"].as_array().map(|v| v.iter().map(|c| c["local"].clone()).collect::<Vec<_>>())}),
    );
    m.insert(
        "children".into(),
        conns
            .iter()
            .map(|c| json!({"ns_pid": c["child_ns_pid"], "fds": [], "exited": true}))
            .collect(),
    );
    let mut lf = listener_facts(spid, &l);
    lf["ns_pid"] = json!(server_ns);
    m.insert("listener".into(), lf);
    let sockets = conns
        .iter()
        .map(|c| socket(c, vec![holder(spid, &c["fd"], &c["cloexec"])]))
        .collect();
    Ok(finish(m, sockets))
}

// ------------------------------------------------------------ churn

const CHURN_RATE_PER_S: u64 = 50;
const CHURN_MAX_SECS: u64 = 60;
/// Time a request takes to answer once fully read: each connection of the
/// correct server spends about this long in CLOSE_WAIT.
const CHURN_WORK_MS: u64 = 50;
const CHURN_WARMUP: u64 = 25;

/// Thread per connection: read the request to EOF, answer after
/// CHURN_WORK_MS, close. Never reports per connection (nobody reads the
/// report pipe once the line is out).
fn correct_server(ctx: Ctx) -> Result<()> {
    let l = sys::tcp_listen(LO4, true, None)?;
    send_listening(&ctx, l)?;
    loop {
        let c = sys::accept(l, true)?;
        std::thread::Builder::new()
            .spawn(move || {
                let _ = sys::read_to_eof(c);
                std::thread::sleep(Duration::from_millis(CHURN_WORK_MS));
                // MSG_NOSIGNAL: a client that went away must not kill us.
                // SAFETY: the buffer is valid for its length.
                unsafe { libc::send(c, b"ok\n".as_ptr().cast(), 3, libc::MSG_NOSIGNAL) };
                let _ = sys::close(c);
            })
            .context("spawn a connection thread")?;
    }
}

/// One short connection: connect, send a request, half-close, read the
/// answer to EOF, close.
fn one_request(addr: SocketAddr) -> Result<()> {
    let k = sys::tcp_connect(addr)?;
    sys::write_all(k, b"GET / HTTP/1.0\r\n\r\n")?;
    sys::shutdown_write(k)?;
    sys::read_to_eof(k)?;
    sys::close(k)
}

/// CHURN_RATE_PER_S short connections a second (each in its own thread, so
/// the rate holds whatever the answer takes) for at most CHURN_MAX_SECS.
fn load(ctx: Ctx, addr: SocketAddr) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let start = Instant::now();
    let period = Duration::from_millis(1000 / CHURN_RATE_PER_S);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut warm = false;
    let mut n: u32 = 0;
    while start.elapsed() < Duration::from_secs(CHURN_MAX_SECS) {
        let (done2, failed2) = (Arc::clone(&done), Arc::clone(&failed));
        std::thread::Builder::new()
            .spawn(move || {
                let counter = if one_request(addr).is_ok() {
                    done2
                } else {
                    failed2
                };
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .context("spawn a request thread")?;
        n += 1;
        if !warm && done.load(Ordering::Relaxed) >= CHURN_WARMUP {
            warm = true;
            ctx.send(json!({
                "ev": "warm", "done": done.load(Ordering::Relaxed),
                "failed": failed.load(Ordering::Relaxed),
            }))?;
        }
        let next = start + period * n;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}

pub(super) fn churn(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], correct_server)?;
    let l = d.child(s).take("listening", dl)?;
    let leaky = never_closing(d, LO4, None, LOCALHOST, 3, "ipv4")?;
    let addr = target(&l, LOCALHOST)?;
    let ld = d.spawn("load", &[], move |ctx| load(ctx, addr))?;
    let warm = d.child(ld).take("warm", dl)?;
    // The leaky server's sockets are still in CLOSE_WAIT, held as before.
    let inodes: Vec<u64> = leaky["inodes"]
        .as_array()
        .context("leaky inodes")?
        .iter()
        .map(|i| i.as_u64().context("inode"))
        .collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, state_deadline())?;

    let spid = d.child(s).pid;
    let mut m = base(d, addr.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert(
        "server".into(),
        json!({"pid": spid, "fds": [], "port": addr.port(), "closes_every_connection": true}),
    );
    m.insert("work_ms".into(), json!(CHURN_WORK_MS));
    let mut lk = leaky["server"].clone();
    lk["port"] = leaky["port"].clone();
    m.insert("leaky".into(), lk);
    m.insert("leaky_listener".into(), leaky["listener"].clone());
    m.insert(
        "load".into(),
        json!({
            "pid": d.child(ld).pid, "fds": [], "rate_per_s": CHURN_RATE_PER_S,
            "max_secs": CHURN_MAX_SECS, "done_before_line": warm["done"],
            "failed_before_line": warm["failed"],
        }),
    );
    let sockets = leaky["sockets"]
        .as_array()
        .context("leaky sockets")?
        .clone();
    Ok(finish(m, sockets))
}

// ------------------------------------------------------------ many

const MANY: usize = 1000;
/// Below the listen backlog (64): a full accept queue drops SYNs (1 s retry).
const MANY_BATCH: usize = 50;

pub(super) fn many(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = Instant::now() + Duration::from_secs(60);
    let s = d.spawn("server", &[], |ctx| {
        let limit = sys::raise_nofile((MANY + 256) as u64)?;
        let l = sys::tcp_listen(LO4, true, None)?;
        ctx.send(json!({
            "ev": "listening", "fd": l, "inode": sys::inode(l)?,
            "addr": sys::local_addr(l)?.to_string(), "nofile": limit,
        }))?;
        let mut kids = Vec::new();
        for i in 0..MANY {
            let c = sys::accept(l, false)?;
            let facts = sys::conn_facts(c)?;
            let kid = ctx.fork(move || {
                sys::close(l)?;
                sys::read_to_eof(c)?;
                sys::close(c)
            })?;
            ctx.send(json!({"ev": "accepted", "conn": facts, "child": kid}))?;
            kids.push(kid);
            if kids.len() == MANY_BATCH {
                for k in kids.drain(..) {
                    sys::wait_exit(k)?;
                }
                ctx.send(json!({"ev": "reaped", "n": i + 1}))?;
            }
        }
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let addr = target(&l, LOCALHOST)?;
    let mut accepted = Vec::with_capacity(MANY);
    for _ in 0..MANY / MANY_BATCH {
        let clients = super::connect_n(addr, MANY_BATCH)?;
        for _ in 0..MANY_BATCH {
            accepted.push(d.child(s).take("accepted", dl)?);
        }
        drop(clients);
        d.child(s).take("reaped", dl)?;
    }
    let inodes: Vec<u64> = accepted
        .iter()
        .map(|a| inode_of(&a["conn"]))
        .collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, dl)?;

    let spid = d.child(s).pid;
    let mut m = base(d, addr.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert("count".into(), json!(MANY));
    m.insert(
        "server".into(),
        json!({
            "pid": spid, "nofile": l["nofile"],
            "fds": accepted.iter().map(|a| a["conn"]["fd"].clone()).collect::<Vec<_>>(),
        }),
    );
    m.insert(
        "children".into(),
        accepted
            .iter()
            .map(|a| json!({"pid": a["child"], "fds": [], "exited": true}))
            .collect(),
    );
    let sockets = accepted
        .iter()
        .map(|a| {
            let c = &a["conn"];
            socket(c, vec![holder(spid, &c["fd"], &c["cloexec"])])
        })
        .collect();
    Ok(finish(m, sockets))
}

// ------------------------------------------------------------ fd pool

const POOL_WORKERS: usize = 2;
const POOL_CONNS: usize = 4;

/// A worker of the pool: receives connections and never closes them (it does
/// not even read them).
fn pool_worker(ctx: Ctx, index: usize, unix: RawFd, others: Vec<RawFd>) -> Result<()> {
    for fd in others {
        sys::close(fd)?;
    }
    loop {
        let fd = sys::recv_fd(unix)?;
        ctx.send(json!({
            "ev": "received", "pid": sys::getpid(), "worker": index, "fd": fd,
            "inode": sys::inode(fd)?, "cloexec": sys::cloexec(fd)?, "unix_fd": unix,
        }))?;
    }
}

pub(super) fn fd_pool(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let m = d.spawn("master", &[], |ctx| {
        let pairs = [sys::socketpair()?, sys::socketpair()?];
        let all: Vec<RawFd> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        let mut workers = Vec::new();
        for (i, &(_, b)) in pairs.iter().enumerate() {
            let others: Vec<RawFd> = all.iter().copied().filter(|&f| f != b).collect();
            workers.push(ctx.fork(move || pool_worker(ctx, i, b, others))?);
        }
        for &(_, b) in &pairs {
            sys::close(b)?;
        }
        // Created after the workers: they never held the listener.
        let l = sys::tcp_listen(LO4, true, None)?;
        ctx.send(json!({
            "ev": "listening", "fd": l, "inode": sys::inode(l)?,
            "addr": sys::local_addr(l)?.to_string(), "workers": workers,
            "unix_fds": pairs.iter().map(|p| p.0).collect::<Vec<_>>(),
        }))?;
        for i in 0..POOL_CONNS {
            let c = sys::accept(l, false)?;
            let facts = sys::conn_facts(c)?;
            sys::send_fd(pairs[i % POOL_WORKERS].0, c)?;
            sys::close(c)?;
            ctx.send(json!({"ev": "passed", "conn": facts, "worker": i % POOL_WORKERS}))?;
        }
        sys::sleep_forever()
    })?;
    let l = d.child(m).take("listening", dl)?;
    let clients = super::connect_n(target(&l, LOCALHOST)?, POOL_CONNS)?;
    let mut passed = Vec::new();
    let mut received = Vec::new();
    for _ in 0..POOL_CONNS {
        passed.push(d.child(m).take("passed", dl)?);
        received.push(d.child(m).take("received", dl)?);
    }
    drop(clients);
    let mpid = d.child(m).pid;
    let inodes: Vec<u64> = passed
        .iter()
        .map(|p| inode_of(&p["conn"]))
        .collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, state_deadline())?;

    let worker_pids: Vec<Pid> = l["workers"]
        .as_array()
        .context("workers")?
        .iter()
        .map(pid_of)
        .collect::<Result<_>>()?;
    let mut sockets = Vec::new();
    for p in &passed {
        let c = &p["conn"];
        let r = received
            .iter()
            .find(|r| r["inode"] == c["inode"])
            .with_context(|| format!("no worker received socket {}", c["inode"]))?;
        let wpid = pid_of(&r["pid"])?;
        let index = usize::try_from(p["worker"].as_u64().context("worker index")?)?;
        ensure!(
            r["worker"] == p["worker"] && worker_pids.get(index) == Some(&wpid),
            "socket {} went to worker {wpid}, not to worker {index}",
            c["inode"]
        );
        ensure_holds(wpid, &r["fd"], &c["inode"])?;
        ensure!(
            fd_inode(mpid, &c["fd"]) != c["inode"].as_u64(),
            "the master still holds {}",
            c["inode"]
        );
        sockets.push(socket(c, vec![holder(wpid, &r["fd"], &r["cloexec"])]));
    }

    let mut f = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    f.insert("listener".into(), listener_facts(mpid, &l));
    f.insert(
        "master".into(),
        json!({"pid": mpid, "fds": [], "unix_fds": l["unix_fds"]}),
    );
    let workers: Vec<Value> = worker_pids
        .iter()
        .map(|&w| {
            let mine: Vec<&Value> = received
                .iter()
                .filter(|r| pid_of(&r["pid"]).ok() == Some(w))
                .collect();
            json!({
                "pid": w,
                "fds": mine.iter().map(|r| r["fd"].clone()).collect::<Vec<_>>(),
                "unix_fd": mine.first().map(|r| r["unix_fd"].clone()),
            })
        })
        .collect();
    f.insert("workers".into(), Value::Array(workers));
    Ok(finish(f, sockets))
}

// ------------------------------------------------------------ pidfd_getfd

pub(super) fn pidfd_getfd(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let c = sys::accept(l, true)?;
        ctx.send(json!({"ev": "accepted", "conn": sys::conn_facts(c)?}))?;
        ctx.wait_ctl()?;
        sys::close(c)?;
        ctx.send(json!({"ev": "closed"}))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let client = TcpStream::connect(target(&l, LOCALHOST)?)?;
    let acc = d.child(s).take("accepted", dl)?;
    let conn = acc["conn"].clone();
    let spid = d.child(s).pid;
    let sfd = RawFd::try_from(conn["fd"].as_i64().context("fd")?)?;
    let t = d.spawn("taker", &[], move |ctx| {
        let fd = sys::pidfd_getfd(spid, sfd)?;
        ctx.send(json!({
            "ev": "taken", "fd": fd, "inode": sys::inode(fd)?, "cloexec": sys::cloexec(fd)?,
        }))?;
        sys::sleep_forever()
    })?;
    let got = d.child(t).take("taken", dl)?;
    ensure!(
        got["inode"] == conn["inode"],
        "took socket {} instead of {}",
        got["inode"],
        conn["inode"]
    );
    d.child(s).poke()?;
    d.child(s).take("closed", dl)?;
    drop(client);
    sys::wait_inodes(None, &[inode_of(&conn)?], CLOSE_WAIT, state_deadline())?;
    let tpid = d.child(t).pid;
    ensure_holds(tpid, &got["fd"], &conn["inode"])?;

    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert(
        "server".into(),
        json!({"pid": spid, "fds": [], "closed_fd": conn["fd"]}),
    );
    m.insert(
        "taker".into(),
        json!({"pid": tpid, "ppid": ppid_of(tpid)?, "fds": [got["fd"]], "took_fd": conn["fd"]}),
    );
    let holders = vec![holder(tpid, &got["fd"], &got["cloexec"])];
    Ok(finish(m, vec![socket(&conn, holders)]))
}

// ------------------------------------------------------------ CLONE_FILES

/// kcmp(a, b, KCMP_FILES): whether two processes share one fd table.
fn same_fd_table(a: Pid, b: Pid) -> Result<bool> {
    // SAFETY: plain syscall; no pointers.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, 2 as libc::c_long, 0usize, 0usize) };
    ensure!(
        r >= 0,
        "kcmp({a}, {b}): {}",
        std::io::Error::last_os_error()
    );
    Ok(r == 0)
}

pub(super) fn clone_files(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let c = sys::accept(l, true)?;
        let conn = sys::conn_facts(c)?;
        let sharer = ctx.clone_files(move || {
            ctx.send(json!({"ev": "sharer", "pid": sys::getpid(), "inode": sys::inode(c)?}))?;
            sys::sleep_forever()
        })?;
        ctx.send(json!({"ev": "accepted", "conn": conn, "sharer": sharer}))?;
        sys::read_to_eof(c)?;
        ctx.send(json!({"ev": "eof"}))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let client = TcpStream::connect(target(&l, LOCALHOST)?)?;
    let acc = d.child(s).take("accepted", dl)?;
    let sh = d.child(s).take("sharer", dl)?;
    drop(client);
    d.child(s).take("eof", dl)?;
    let conn = &acc["conn"];
    sys::wait_inodes(None, &[inode_of(conn)?], CLOSE_WAIT, state_deadline())?;

    let spid = d.child(s).pid;
    let ppid = pid_of(&sh["pid"])?;
    ensure!(pid_of(&acc["sharer"])? == ppid, "sharer pid mismatch");
    ensure!(
        same_fd_table(spid, ppid)?,
        "{spid} and {ppid} do not share an fd table"
    );
    ensure_holds(spid, &conn["fd"], &conn["inode"])?;
    ensure_holds(ppid, &conn["fd"], &conn["inode"])?;
    let threads = |pid: Pid| std::fs::read_dir(format!("/proc/{pid}/task")).map(Iterator::count);
    ensure!(
        threads(spid)? == 1 && threads(ppid)? == 1,
        "not single-threaded processes"
    );

    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert("server".into(), role(spid, vec![conn["fd"].clone()]));
    m.insert(
        "sharer".into(),
        json!({"pid": ppid, "ppid": ppid_of(ppid)?, "fds": [conn["fd"]]}),
    );
    m.insert("fd_table_shared_by".into(), json!([spid, ppid]));
    let holders = vec![
        holder(spid, &conn["fd"], &conn["cloexec"]),
        holder(ppid, &conn["fd"], &conn["cloexec"]),
    ];
    Ok(finish(m, vec![socket(conn, holders)]))
}

// ------------------------------------------------------------ SO_REUSEPORT

const REUSEPORT_WORKERS: usize = 3;
const REUSEPORT_CONNS: usize = 6;

fn reuseport_worker(ctx: Ctx, index: usize, reserve: RawFd, addr: SocketAddr) -> Result<()> {
    sys::close(reserve)?;
    let l = sys::tcp_reuseport(addr, true)?;
    ctx.send(json!({
        "ev": "listening", "pid": sys::getpid(), "worker": index, "fd": l,
        "inode": sys::inode(l)?, "addr": sys::local_addr(l)?.to_string(),
    }))?;
    loop {
        let c = sys::accept(l, true)?;
        ctx.send(json!({"ev": "accepted", "pid": sys::getpid(), "conn": sys::conn_facts(c)?}))?;
    }
}

pub(super) fn reuseport(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let m = d.spawn("master", &[], |ctx| {
        // A bound, not listening, SO_REUSEPORT socket holds the port until
        // every worker has its own listener on it.
        let reserve = sys::tcp_reuseport(LO4, false)?;
        let addr = sys::local_addr(reserve)?;
        let mut workers = Vec::new();
        for i in 0..REUSEPORT_WORKERS {
            workers.push(ctx.fork(move || reuseport_worker(ctx, i, reserve, addr))?);
        }
        ctx.send(json!({"ev": "workers", "workers": workers, "addr": addr.to_string()}))?;
        ctx.wait_ctl()?;
        sys::close(reserve)?;
        ctx.send(json!({"ev": "released"}))?;
        sys::sleep_forever()
    })?;
    let w = d.child(m).take("workers", dl)?;
    let mut listeners = Vec::new();
    for _ in 0..REUSEPORT_WORKERS {
        listeners.push(d.child(m).take("listening", dl)?);
    }
    d.child(m).poke()?;
    d.child(m).take("released", dl)?;
    let addr = addr_of(&w["addr"])?;
    let clients = super::connect_n(addr, REUSEPORT_CONNS)?;
    let mut accepted = Vec::new();
    for _ in 0..REUSEPORT_CONNS {
        accepted.push(d.child(m).take("accepted", dl)?);
    }
    drop(clients);
    let inodes: Vec<u64> = accepted
        .iter()
        .map(|a| inode_of(&a["conn"]))
        .collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, state_deadline())?;
    let listen_rows = sys::tcp_rows(None, 0x0A)?;
    let on_port = listen_rows.iter().filter(|r| r.local == addr).count();
    ensure!(
        on_port == REUSEPORT_WORKERS,
        "{on_port} LISTEN sockets on {addr}, not {REUSEPORT_WORKERS}"
    );

    let mpid = d.child(m).pid;
    let mut f = base(d, addr.port(), "ipv4");
    f.insert("master".into(), role(mpid, vec![]));
    f.insert(
        "listeners".into(),
        listeners
            .iter()
            .map(|l| Ok(listener_facts(pid_of(&l["pid"])?, l)))
            .collect::<Result<Vec<_>>>()?
            .into(),
    );
    let mut workers = Vec::new();
    for l in &listeners {
        let wpid = pid_of(&l["pid"])?;
        let fds: Vec<Value> = accepted
            .iter()
            .filter(|a| a["pid"] == l["pid"])
            .map(|a| a["conn"]["fd"].clone())
            .collect();
        workers
            .push(json!({"pid": wpid, "fds": fds, "listener_fd": l["fd"], "worker": l["worker"]}));
    }
    f.insert("workers".into(), Value::Array(workers));
    let sockets = accepted
        .iter()
        .map(|a| {
            let c = &a["conn"];
            Ok(socket(
                c,
                vec![holder(pid_of(&a["pid"])?, &c["fd"], &c["cloexec"])],
            ))
        })
        .collect::<Result<_>>()?;
    Ok(finish(f, sockets))
}

// ------------------------------------------------------------ pool client

const POOL_SIZE: usize = 3;

pub(super) fn pool_client(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let listener = TcpListener::bind(LO4).context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let k = d.spawn("client", &[], move |ctx| {
        let mut conns = Vec::new();
        for _ in 0..POOL_SIZE {
            conns.push(sys::conn_facts(sys::tcp_connect(addr)?)?);
        }
        ctx.send(json!({"ev": "connected", "conns": conns}))?;
        // An idle pool: nothing reads these until a request needs one.
        sys::sleep_forever()
    })?;
    let conns = conns_of(&d.child(k).take("connected", dl)?)?;
    let mut want: Vec<SocketAddr> = conns
        .iter()
        .map(|c| addr_of(&c["local"]))
        .collect::<Result<_>>()?;
    listener.set_nonblocking(true)?;
    let mut served = Vec::new();
    while !want.is_empty() {
        let (stream, peer) =
            sys::wait_until("the pool's connections", dl, || listener.accept().ok())?;
        let Some(i) = want.iter().position(|w| *w == peer) else {
            bail!("accepted {peer}, not one of the pool's connections");
        };
        want.swap_remove(i);
        served.push(stream);
    }
    // The server's idle timeout: it closes connections nobody used.
    std::thread::sleep(Duration::from_millis(100));
    drop(served);
    let inodes: Vec<u64> = conns.iter().map(inode_of).collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, state_deadline())?;
    let kpid = d.child(k).pid;
    for c in &conns {
        ensure_holds(kpid, &c["fd"], &c["inode"])?;
    }
    let lfd = listener.into_raw_fd(); // the server stays up, until the driver exits

    let mut m = base(d, addr.port(), "ipv4");
    m.insert(
        "client".into(),
        role(kpid, conns.iter().map(|c| c["fd"].clone()).collect()),
    );
    m.insert(
        "server".into(),
        json!({"pid": d.pid, "fds": [], "closed_idle": true, "listener_fd": lfd}),
    );
    let sockets = conns
        .iter()
        .map(|c| socket(c, vec![holder(kpid, &c["fd"], &c["cloexec"])]))
        .collect();
    Ok(finish(m, sockets))
}

// ------------------------------------------------------------ stopped

pub(super) fn stopped(d: &mut Driver, _: &Opts) -> Result<Value> {
    let mut v = never_closing(d, LO4, None, LOCALHOST, 2, "ipv4")?;
    let spid = pid_of(&v["server"]["pid"])?;
    sys::signal(spid, libc::SIGSTOP)?;
    sys::wait_until("the server to stop", deadline(), || {
        (sys::stat(spid)?.0 == 'T').then_some(())
    })?;
    v["server"]["state"] = json!("T");
    Ok(v)
}

// ------------------------------------------------------------ still sending

/// A server accepts two connections; both clients half-close (shutdown
/// SHUT_WR), so the server's ends are in CLOSE_WAIT. The server keeps
/// sending 64 bytes every 50 ms on the first (`sending`), which the client
/// still reads: a stream being finished. On the second (`frozen`) it fills
/// the send buffer once, then stops; that client never reads: nothing moves.
pub(super) fn still_sending(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let a = sys::accept(l, true)?;
        let b = sys::accept(l, true)?;
        let facts = [sys::conn_facts(a)?, sys::conn_facts(b)?];
        // Fill b's send path until the kernel takes no more.
        // SAFETY: plain fcntl on an fd this process owns.
        unsafe {
            let fl = libc::fcntl(b, libc::F_GETFL);
            libc::fcntl(b, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        let chunk = [b'x'; 4096];
        // SAFETY: writes from a live buffer to an fd this process owns.
        while unsafe { libc::write(b, chunk.as_ptr().cast(), chunk.len()) } > 0 {}
        // The client's small fixed window is full: once the queue stops
        // moving, it stays (no read will open the window again).
        let mut last = -1;
        let mut same = 0;
        while same < 5 {
            let q = sys::outq(b)?;
            same = if q == last { same + 1 } else { 0 };
            last = q;
            std::thread::sleep(Duration::from_millis(20));
        }
        ctx.send(json!({"ev": "accepted", "conns": facts, "frozen_outq": last}))?;
        loop {
            sys::write_all(a, &[b'y'; 64])?;
            std::thread::sleep(Duration::from_millis(50));
        }
    })?;
    let l = d.child(s).take("listening", dl)?;
    let to = target(&l, LOCALHOST)?;
    let reading = TcpStream::connect(to)?;
    // SAFETY: the fd was just made by tcp_connect_rcvbuf and is owned here.
    let idle = unsafe {
        <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(sys::tcp_connect_rcvbuf(to, Some(4096))?)
    };
    let conns = conns_of(&d.child(s).take("accepted", dl)?)?;
    reading.shutdown(std::net::Shutdown::Write)?;
    idle.shutdown(std::net::Shutdown::Write)?;
    // The first client keeps reading what the server still sends.
    std::thread::spawn(move || {
        use std::io::Read;
        let mut r = reading;
        let mut buf = [0u8; 4096];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    });
    let _ = idle.into_raw_fd(); // never read, open until the driver exits
    let inodes: Vec<u64> = conns.iter().map(inode_of).collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, state_deadline())?;

    let spid = d.child(s).pid;
    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert(
        "server".into(),
        role(spid, conns.iter().map(|c| c["fd"].clone()).collect()),
    );
    m.insert("sending".into(), conns[0]["inode"].clone());
    m.insert("frozen".into(), conns[1]["inode"].clone());
    let sockets = conns
        .iter()
        .map(|c| socket(c, vec![holder(spid, &c["fd"], &c["cloexec"])]))
        .collect();
    Ok(finish(m, sockets))
}
