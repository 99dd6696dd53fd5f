//! The scenarios. Each one builds its processes and sockets, waits until the
//! kernel state is exactly what it describes, and returns the facts: who is
//! who (pids), which fds, which sockets and who holds them. Never the
//! expected diagnosis.

use crate::sys::{self, Child, Ctx, Pid, CLOSE_WAIT, ESTABLISHED};
use crate::Driver;
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Map, Value};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[path = "patterns.rs"]
mod patterns;

pub type Build = fn(&mut Driver, &Opts) -> Result<Value>;

/// Options from the command line.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `transient`: how long after the line the server closes its copy.
    pub close_after_ms: u64,
    /// `transient`: close on SIGUSR1 instead, whenever the test says so.
    pub close_on_sigusr1: bool,
}

pub const SCENARIOS: &[(&str, Build, &str)] = &[
    ("fork-exited", fork_exited, "fork per connection; children closed and exited, parent kept every fd"),
    ("fork-alive", fork_alive, "fork per connection; children alive keeping their copies, parent kept too"),
    ("helper-inherits", helper_inherits, "fd without CLOEXEC inherited by an exec'd /bin/sleep; server closed its copy"),
    ("helper-inherits-kept", helper_inherits_kept, "as helper-inherits, but the server kept its copy too"),
    ("never-closed", never_closed, "one process read two connections to EOF and never closed them"),
    ("dup", dup, "one process holds an accepted socket and its dup() copy"),
    ("scm-rights", scm_rights, "server passed the fd over SCM_RIGHTS to a sibling and closed its copy; the receiver kept it"),
    ("scm-rights-kept", scm_rights_kept, "as scm-rights, but the server kept its copy after sending it"),
    ("scm-rights-in-flight", scm_rights_in_flight, "server sent the fd over SCM_RIGHTS and closed it; the sibling never receives: only the message holds it"),
    ("threaded", threaded, "4-thread process; a non-main thread accepted and kept 2 connections"),
    ("threaded-leader-exit", threaded_leader_exit, "as threaded, but the main thread exited: the leader is a zombie"),
    ("thread-table", thread_table, "as threaded, but the accepting thread called unshare(CLONE_FILES): the connections are only in its own fd table"),
    ("netns", netns, "never-closing server and its client, siblings inside a new network namespace"),
    ("ipv6", ipv6, "never-closing server on [::1]"),
    ("mapped", mapped, "never-closing dual-stack server on [::], client on 127.0.0.1 (::ffff:127.0.0.1)"),
    ("transient", transient, "server closes its copy shortly after the line is printed"),
    ("healthy", healthy, "3 ESTABLISHED connections open on both sides and a LISTEN socket; no CLOSE_WAIT"),
    ("prefork", prefork, "master forks 3 workers accepting on a shared listener; workers keep what they accept"),
    ("cgi", cgi, "child dup2()s the socket onto 0 and 1 and execs /bin/sleep; the parent kept its copy"),
    ("accept-queue", accept_queue, "listener never accepts; a CLOSE_WAIT connection waits in its accept queue"),
    ("client-side", client_side, "a client process whose server closed; the client never closes its end"),
    ("helper-orphaned", patterns::helper_orphaned, "no-CLOEXEC listener and fd inherited by a double-forked daemon re-parented to the driver; server closed its copy"),
    ("helper-orphaned-cloexec-listener", patterns::helper_orphaned_cloexec_listener, "as helper-orphaned, but the listener has O_CLOEXEC: only the connection is inherited"),
    ("container", patterns::container, "fork-per-connection server and client in new net+pid namespaces; the parent kept every fd"),
    ("churn", patterns::churn, "correct server under 50 short connections/s (60 s max) plus a server that never closes 3"),
    ("many", patterns::many, "fork per connection, 1000 connections; the parent kept every fd"),
    ("fd-pool", patterns::fd_pool, "master passes each connection to one of 2 forked workers (SCM_RIGHTS) and closes; workers never close"),
    ("pidfd-getfd", patterns::pidfd_getfd, "a sibling took the server's fd with pidfd_getfd; the server closed its copy"),
    ("clone-files", patterns::clone_files, "server and a clone(CLONE_FILES) process share one fd table holding the socket"),
    ("reuseport", patterns::reuseport, "3 workers with their own SO_REUSEPORT listener on one port; accepted fds never closed"),
    ("pool-client", patterns::pool_client, "a client pool of 3 connections the server closed as idle; the client never notices"),
    ("stopped", patterns::stopped, "never-closing server stopped with SIGSTOP"),
    ("still-sending", patterns::still_sending, "two half-closed clients: the server keeps sending to one that still reads, and filled the buffer of one that never reads"),
];

const LO4: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const LO6: SocketAddr = SocketAddr::new(std::net::IpAddr::V6(Ipv6Addr::LOCALHOST), 0);
const ANY6: SocketAddr = SocketAddr::new(std::net::IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Time allowed for sockets to reach their state once the client closed.
fn state_deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

// ------------------------------------------------------------ fact helpers

fn pid_of(v: &Value) -> Result<Pid> {
    let p = v.as_i64().with_context(|| format!("not a pid: {v}"))?;
    Ok(Pid::try_from(p)?)
}

fn inode_of(conn: &Value) -> Result<u64> {
    conn["inode"]
        .as_u64()
        .with_context(|| format!("no inode in {conn}"))
}

fn addr_of(v: &Value) -> Result<SocketAddr> {
    v.as_str()
        .with_context(|| format!("not an address: {v}"))?
        .parse()
        .with_context(|| format!("bad address {v}"))
}

fn conns_of(v: &Value) -> Result<Vec<Value>> {
    v["conns"]
        .as_array()
        .cloned()
        .with_context(|| format!("no conns in {v}"))
}

fn holder(pid: Pid, fd: &Value, cloexec: &Value) -> Value {
    json!({"pid": pid, "fd": fd, "cloexec": cloexec})
}

/// One socket: its identity from the server-side report, and its holders.
fn socket(conn: &Value, holders: Vec<Value>) -> Value {
    json!({
        "inode": conn["inode"],
        "local": conn["local"],
        "remote": conn["remote"],
        "holders": holders,
    })
}

fn role(pid: Pid, fds: Vec<Value>) -> Value {
    json!({"pid": pid, "fds": fds})
}

fn listener_facts(pid: Pid, l: &Value) -> Value {
    json!({"pid": pid, "fd": l["fd"], "inode": l["inode"], "addr": l["addr"]})
}

/// The facts every scenario starts with.
fn base(d: &Driver, port: u16, family: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("scenario".into(), json!(d.name));
    m.insert("driver".into(), json!(d.pid));
    m.insert("pgid".into(), json!(d.pgid));
    m.insert("port".into(), json!(port));
    m.insert("family".into(), json!(family));
    m
}

fn finish(mut m: Map<String, Value>, sockets: Vec<Value>) -> Value {
    let inodes: Vec<Value> = sockets.iter().map(|s| s["inode"].clone()).collect();
    m.insert("inodes".into(), Value::Array(inodes));
    m.insert("sockets".into(), Value::Array(sockets));
    Value::Object(m)
}

/// Reports a listening socket from a child.
fn send_listening(ctx: &Ctx, l: i32) -> Result<()> {
    ctx.send(json!({
        "ev": "listening",
        "fd": l,
        "inode": sys::inode(l)?,
        "addr": sys::local_addr(l)?.to_string(),
    }))
}

fn connect_n(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    (0..n)
        .map(|_| TcpStream::connect(addr).with_context(|| format!("connect {addr}")))
        .collect()
}

/// Where to connect to reach a server listening on `l` (the address a
/// wildcard listener is bound to is not one to connect to).
fn target(l: &Value, ip: std::net::IpAddr) -> Result<SocketAddr> {
    Ok(SocketAddr::new(ip, addr_of(&l["addr"])?.port()))
}

fn wait_comm(pid: Pid, want: &str, dl: Instant) -> Result<()> {
    sys::wait_until(&format!("process {pid} to exec {want}"), dl, || {
        (sys::comm(pid).as_deref() == Some(want)).then_some(())
    })
}

// ------------------------------------------------------------ fork servers

/// The leak of a forking server, on listener `l` (3 connections): fork per
/// connection and keep every accepted fd. Each child closes the listener and
/// the parent's earlier copies, then keeps its copy (`alive`, it says so) or
/// reads to EOF, closes and exits; dead children are reaped. Each child's pid
/// goes into its connection's facts under `child_key`.
pub fn fork_per_connection(ctx: Ctx, l: i32, alive: bool, child_key: &str) -> Result<()> {
    let mut conns = Vec::new();
    let mut kids = Vec::new();
    let mut earlier: Vec<i32> = Vec::new();
    for _ in 0..3 {
        let c = sys::accept(l, false)?;
        let mut facts = sys::conn_facts(c)?;
        let inherited = earlier.clone();
        let kid = ctx.fork(move || {
            // Only this connection: not the listener, nor the copies of
            // earlier connections the parent (wrongly) still holds.
            sys::close(l)?;
            for fd in inherited {
                sys::close(fd)?;
            }
            if alive {
                ctx.send(json!({
                    "ev": "child", "pid": sys::getpid(), "fd": c, "cloexec": sys::cloexec(c)?,
                }))?;
                sys::sleep_forever()
            }
            sys::read_to_eof(c)?;
            sys::close(c)
        })?;
        facts[child_key] = json!(kid);
        conns.push(facts);
        kids.push(kid);
        earlier.push(c);
    }
    ctx.send(json!({"ev": "accepted", "conns": conns}))?;
    if !alive {
        for k in kids {
            sys::wait_exit(k)?;
        }
        ctx.send(json!({"ev": "reaped"}))?;
    }
    sys::sleep_forever()
}

/// fork per connection; the parent never closes the accepted fd. Children
/// either read to EOF, close and exit (`alive` false), or keep their copy.
fn fork_server(d: &mut Driver, alive: bool) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], move |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        fork_per_connection(ctx, l, alive, "child")
    })?;
    let l = d.child(s).take("listening", dl)?;
    let clients = connect_n(target(&l, Ipv4Addr::LOCALHOST.into())?, 3)?;
    let acc = d.child(s).take("accepted", dl)?;
    let conns = conns_of(&acc)?;
    let mut kids = Vec::new();
    if alive {
        for _ in 0..3 {
            kids.push(d.child(s).take("child", dl)?);
        }
    }
    drop(clients);
    if !alive {
        d.child(s).take("reaped", dl)?;
    }
    let spid = d.child(s).pid;
    let inodes: Vec<u64> = conns.iter().map(inode_of).collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, state_deadline())?;

    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert(
        "server".into(),
        role(spid, conns.iter().map(|c| c["fd"].clone()).collect()),
    );
    let mut children = Vec::new();
    let mut sockets = Vec::new();
    for c in &conns {
        let kid = pid_of(&c["child"])?;
        let mut holders = vec![holder(spid, &c["fd"], &c["cloexec"])];
        if alive {
            let k = kids
                .iter()
                .find(|k| k["pid"] == c["child"])
                .with_context(|| format!("no report from child {kid}"))?;
            holders.push(holder(kid, &k["fd"], &k["cloexec"]));
            children.push(role(kid, vec![k["fd"].clone()]));
        } else {
            children.push(json!({"pid": kid, "fds": [], "exited": true}));
        }
        sockets.push(socket(c, holders));
    }
    m.insert("children".into(), Value::Array(children));
    Ok(finish(m, sockets))
}

fn fork_exited(d: &mut Driver, _: &Opts) -> Result<Value> {
    fork_server(d, false)
}

fn fork_alive(d: &mut Driver, _: &Opts) -> Result<Value> {
    fork_server(d, true)
}

// ------------------------------------------------------------ exec'd helper

/// Accepts without O_CLOEXEC, fork+execs /bin/sleep which inherits the fd,
/// then closes its own copy unless `kept`.
fn helper_server(d: &mut Driver, kept: bool) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], move |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let c = sys::accept(l, false)?;
        let conn = sys::conn_facts(c)?;
        let helper = ctx.spawn_sleep(|| Ok(()))?;
        if !kept {
            sys::close(c)?;
        }
        ctx.send(json!({"ev": "helper", "pid": helper, "conn": conn}))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let client = TcpStream::connect(target(&l, Ipv4Addr::LOCALHOST.into())?)?;
    let h = d.child(s).take("helper", dl)?;
    let hpid = pid_of(&h["pid"])?;
    wait_comm(hpid, "sleep", dl)?;
    drop(client);
    let conn = &h["conn"];
    sys::wait_inodes(None, &[inode_of(conn)?], CLOSE_WAIT, state_deadline())?;

    let spid = d.child(s).pid;
    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    let server_fds = if kept {
        vec![conn["fd"].clone()]
    } else {
        vec![]
    };
    m.insert("server".into(), role(spid, server_fds));
    m.insert("helper".into(), role(hpid, vec![conn["fd"].clone()]));
    m.insert("server_closed_fd".into(), json!(!kept));
    // What survives exec has FD_CLOEXEC clear, by definition.
    let mut holders = vec![holder(hpid, &conn["fd"], &json!(false))];
    if kept {
        holders.insert(0, holder(spid, &conn["fd"], &conn["cloexec"]));
    }
    Ok(finish(m, vec![socket(conn, holders)]))
}

fn helper_inherits(d: &mut Driver, _: &Opts) -> Result<Value> {
    helper_server(d, false)
}

fn helper_inherits_kept(d: &mut Driver, _: &Opts) -> Result<Value> {
    helper_server(d, true)
}

// ------------------------------------------------------------ single process

/// One process accepts `n` connections (O_CLOEXEC, as std does), reads each
/// to EOF and never closes them.
fn never_closing(
    d: &mut Driver,
    bind: SocketAddr,
    v6only: Option<bool>,
    connect_ip: std::net::IpAddr,
    n: usize,
    family: &str,
) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], move |ctx| {
        let l = sys::tcp_listen(bind, true, v6only)?;
        send_listening(&ctx, l)?;
        let mut conns = Vec::new();
        let mut fds = Vec::new();
        for _ in 0..n {
            let c = sys::accept(l, true)?;
            conns.push(sys::conn_facts(c)?);
            fds.push(c);
        }
        ctx.send(json!({"ev": "accepted", "conns": conns}))?;
        for c in fds {
            sys::read_to_eof(c)?;
        }
        ctx.send(json!({"ev": "eof"}))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let clients = connect_n(target(&l, connect_ip)?, n)?;
    let conns = conns_of(&d.child(s).take("accepted", dl)?)?;
    drop(clients);
    d.child(s).take("eof", dl)?;
    let inodes: Vec<u64> = conns.iter().map(inode_of).collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, state_deadline())?;

    let spid = d.child(s).pid;
    let mut m = base(d, addr_of(&l["addr"])?.port(), family);
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert(
        "server".into(),
        role(spid, conns.iter().map(|c| c["fd"].clone()).collect()),
    );
    let sockets = conns
        .iter()
        .map(|c| socket(c, vec![holder(spid, &c["fd"], &c["cloexec"])]))
        .collect();
    Ok(finish(m, sockets))
}

fn never_closed(d: &mut Driver, _: &Opts) -> Result<Value> {
    never_closing(d, LO4, None, Ipv4Addr::LOCALHOST.into(), 2, "ipv4")
}

fn ipv6(d: &mut Driver, _: &Opts) -> Result<Value> {
    never_closing(d, LO6, Some(true), Ipv6Addr::LOCALHOST.into(), 1, "ipv6")
}

fn mapped(d: &mut Driver, _: &Opts) -> Result<Value> {
    never_closing(d, ANY6, Some(false), Ipv4Addr::LOCALHOST.into(), 1, "ipv6")
}

fn dup(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let c = sys::accept(l, true)?;
        let copy = sys::dup(c)?;
        ctx.send(json!({
            "ev": "accepted",
            "conn": sys::conn_facts(c)?,
            "dup_fd": copy,
            "dup_cloexec": sys::cloexec(copy)?,
        }))?;
        sys::read_to_eof(c)?;
        ctx.send(json!({"ev": "eof"}))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let client = TcpStream::connect(target(&l, Ipv4Addr::LOCALHOST.into())?)?;
    let acc = d.child(s).take("accepted", dl)?;
    drop(client);
    d.child(s).take("eof", dl)?;
    let conn = &acc["conn"];
    sys::wait_inodes(None, &[inode_of(conn)?], CLOSE_WAIT, state_deadline())?;

    let spid = d.child(s).pid;
    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert(
        "server".into(),
        json!({"pid": spid, "fds": [conn["fd"], acc["dup_fd"]], "orig_fd": conn["fd"], "dup_fd": acc["dup_fd"]}),
    );
    let holders = vec![
        holder(spid, &conn["fd"], &conn["cloexec"]),
        holder(spid, &acc["dup_fd"], &acc["dup_cloexec"]),
    ];
    Ok(finish(m, vec![socket(conn, holders)]))
}

// ------------------------------------------------------------ SCM_RIGHTS

fn scm_rights(d: &mut Driver, _: &Opts) -> Result<Value> {
    scm_passed(d, Pass::Closed)
}

fn scm_rights_kept(d: &mut Driver, _: &Opts) -> Result<Value> {
    scm_passed(d, Pass::Kept)
}

fn scm_rights_in_flight(d: &mut Driver, _: &Opts) -> Result<Value> {
    scm_passed(d, Pass::InFlight)
}

/// What the sender and the receiver of an SCM_RIGHTS message do.
#[derive(Clone, Copy, PartialEq)]
enum Pass {
    /// The sender closes its copy; the receiver takes the fd and keeps it.
    Closed,
    /// The sender keeps its copy too; the receiver keeps its own.
    Kept,
    /// The sender closes its copy; the receiver never calls recvmsg, so the
    /// only reference is the message queued on its unix socket.
    InFlight,
}

fn scm_passed(d: &mut Driver, pass: Pass) -> Result<Value> {
    let dl = deadline();
    let (a, b) = sys::socketpair()?;
    let s = d.spawn("server", &[a], move |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let c = sys::accept(l, false)?;
        let conn = sys::conn_facts(c)?;
        sys::send_fd(a, c)?;
        if pass != Pass::Kept {
            sys::close(c)?;
        }
        ctx.send(json!({"ev": "sent", "conn": conn, "unix_fd": a}))?;
        sys::sleep_forever()
    })?;
    let r = d.spawn("receiver", &[b], move |ctx| {
        if pass == Pass::InFlight {
            ctx.send(json!({"ev": "received", "unix_fd": b}))?;
            sys::sleep_forever()
        }
        let fd = sys::recv_fd(b)?;
        ctx.send(json!({
            "ev": "received", "fd": fd, "inode": sys::inode(fd)?, "cloexec": sys::cloexec(fd)?,
            "unix_fd": b,
        }))?;
        sys::sleep_forever()
    })?;
    sys::close(a)?;
    sys::close(b)?;
    let l = d.child(s).take("listening", dl)?;
    let client = TcpStream::connect(target(&l, Ipv4Addr::LOCALHOST.into())?)?;
    let sent = d.child(s).take("sent", dl)?;
    let got = d.child(r).take("received", dl)?;
    let conn = &sent["conn"];
    if pass != Pass::InFlight {
        ensure!(
            got["inode"] == conn["inode"],
            "received inode {} is not the sent {}",
            got["inode"],
            conn["inode"]
        );
    }
    drop(client);
    sys::wait_inodes(None, &[inode_of(conn)?], CLOSE_WAIT, state_deadline())?;

    let (spid, rpid) = (d.child(s).pid, d.child(r).pid);
    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    let kept: Vec<Value> = match pass {
        Pass::Kept => vec![conn["fd"].clone()],
        Pass::Closed | Pass::InFlight => vec![],
    };
    m.insert(
        "server".into(),
        json!({"pid": spid, "fds": kept, "sent_fd": conn["fd"], "unix_fd": sent["unix_fd"]}),
    );
    let received: Vec<Value> = match pass {
        Pass::InFlight => vec![],
        Pass::Closed | Pass::Kept => vec![got["fd"].clone()],
    };
    m.insert(
        "receiver".into(),
        json!({"pid": rpid, "fds": received, "unix_fd": got["unix_fd"]}),
    );
    let mut holders = Vec::new();
    if pass == Pass::Kept {
        holders.push(holder(spid, &conn["fd"], &conn["cloexec"]));
    }
    if pass != Pass::InFlight {
        holders.push(holder(rpid, &got["fd"], &got["cloexec"]));
    }
    Ok(finish(m, vec![socket(conn, holders)]))
}

// ------------------------------------------------------------ threads

fn threaded_server(d: &mut Driver, leader_exit: bool, private_table: bool) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], move |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..3 {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let _ = tx.send(sys::gettid());
                    drop(tx);
                    if i == 0 {
                        let res = if private_table {
                            sys::unshare_files().and_then(|()| accept_and_keep(ctx, l))
                        } else {
                            accept_and_keep(ctx, l)
                        };
                        if res.is_err() {
                            ctx.finish("acceptor thread", res);
                        }
                    }
                    sys::sleep_forever()
                })
                .context("spawn thread")?;
        }
        drop(tx);
        let tids: Vec<Pid> = rx.iter().take(3).collect();
        ensure!(tids.len() == 3, "threads did not start");
        ctx.send(json!({"ev": "threads", "leader": sys::getpid(), "tids": tids}))?;
        if leader_exit {
            // What pthread_exit() in main() ends with. glibc's pthread_exit
            // itself cannot be used here: its forced unwind would run into
            // the Rust runtime's catch_unwind around main and abort.
            sys::exit_thread()
        }
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let clients = connect_n(target(&l, Ipv4Addr::LOCALHOST.into())?, 2)?;
    let threads = d.child(s).take("threads", dl)?;
    let acc = d.child(s).take("accepted", dl)?;
    drop(clients);
    d.child(s).take("eof", dl)?;
    let spid = d.child(s).pid;
    if leader_exit {
        sys::wait_until("the thread-group leader to become a zombie", dl, || {
            (sys::stat(spid)?.0 == 'Z').then_some(())
        })?;
    }
    let conns = conns_of(&acc)?;
    let inodes: Vec<u64> = conns.iter().map(inode_of).collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, state_deadline())?;

    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert(
        "server".into(),
        json!({
            "pid": spid,
            "fds": conns.iter().map(|c| c["fd"].clone()).collect::<Vec<_>>(),
            "threads": 4,
            "tids": threads["tids"],
            "acceptor_tid": acc["tid"],
            "leader_exited": leader_exit,
            // The accepted fds are in acceptor_tid's own table only.
            "private_table": private_table,
        }),
    );
    let sockets = conns
        .iter()
        .map(|c| socket(c, vec![holder(spid, &c["fd"], &c["cloexec"])]))
        .collect();
    Ok(finish(m, sockets))
}

fn accept_and_keep(ctx: Ctx, l: i32) -> Result<()> {
    let mut conns = Vec::new();
    let mut fds = Vec::new();
    for _ in 0..2 {
        let c = sys::accept(l, true)?;
        conns.push(sys::conn_facts(c)?);
        fds.push(c);
    }
    ctx.send(json!({"ev": "accepted", "tid": sys::gettid(), "conns": conns}))?;
    for c in fds {
        sys::read_to_eof(c)?;
    }
    ctx.send(json!({"ev": "eof"}))
}

fn threaded(d: &mut Driver, _: &Opts) -> Result<Value> {
    threaded_server(d, false, false)
}

fn threaded_leader_exit(d: &mut Driver, _: &Opts) -> Result<Value> {
    threaded_server(d, true, false)
}

fn thread_table(d: &mut Driver, _: &Opts) -> Result<Value> {
    threaded_server(d, false, true)
}

// ------------------------------------------------------------ namespaces

/// A process unshares a network namespace, brings `lo` up and forks two
/// siblings there: a never-closing server (which itself never forks) and
/// its client, which connects, closes when poked, and exits.
fn netns(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let n = d.spawn("netns-owner", &[], |ctx| {
        sys::unshare_net()?;
        sys::loopback_up()?;
        let l = sys::tcp_listen(LO4, true, None)?;
        let addr = sys::local_addr(l)?;
        let server = ctx.fork(move || {
            send_listening(&ctx, l)?;
            let c = sys::accept(l, true)?;
            ctx.send(json!({"ev": "accepted", "pid": sys::getpid(), "conn": sys::conn_facts(c)?}))?;
            sys::read_to_eof(c)?;
            ctx.send(json!({"ev": "eof"}))?;
            sys::sleep_forever()
        })?;
        sys::close(l)?;
        let client = ctx.fork(move || {
            let k = sys::tcp_connect(addr)?;
            ctx.send(json!({"ev": "client", "pid": sys::getpid(), "conn": sys::conn_facts(k)?}))?;
            ctx.wait_ctl()?;
            sys::close(k)
        })?;
        ctx.send(json!({"ev": "forked", "server": server, "client": client}))?;
        sys::wait_exit(client)?;
        ctx.send(json!({"ev": "client-exited"}))?;
        sys::sleep_forever()
    })?;
    let forked = d.child(n).take("forked", dl)?;
    let l = d.child(n).take("listening", dl)?;
    let cl = d.child(n).take("client", dl)?;
    let acc = d.child(n).take("accepted", dl)?;
    d.child(n).poke()?;
    d.child(n).take("client-exited", dl)?;
    d.child(n).take("eof", dl)?;
    let spid = pid_of(&forked["server"])?;
    let conn = &acc["conn"];
    sys::wait_inodes(Some(spid), &[inode_of(conn)?], CLOSE_WAIT, state_deadline())?;
    let ns = sys::netns_inode(Some(spid))?;
    let host = sys::netns_inode(None)?;
    if ns == host {
        bail!("the server is still in the driver's network namespace");
    }

    let npid = d.child(n).pid;
    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("netns".into(), json!(ns));
    m.insert("host_netns".into(), json!(host));
    m.insert("netns_owner".into(), role(npid, vec![]));
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert("server".into(), role(spid, vec![conn["fd"].clone()]));
    m.insert(
        "client".into(),
        json!({"pid": cl["pid"], "fds": [], "exited": true, "local": cl["conn"]["local"]}),
    );
    let holders = vec![holder(spid, &conn["fd"], &conn["cloexec"])];
    Ok(finish(m, vec![socket(conn, holders)]))
}

// ------------------------------------------------------------ settle

fn transient(d: &mut Driver, o: &Opts) -> Result<Value> {
    let dl = deadline();
    let delay = Duration::from_millis(o.close_after_ms);
    let on_signal = o.close_on_sigusr1;
    let s = d.spawn("server", &[], move |ctx| {
        // Blocked before the line is printed, so a SIGUSR1 sent any time
        // after it waits for sigwait below instead of killing the server.
        let usr1 = nix::sys::signal::SigSet::from(nix::sys::signal::Signal::SIGUSR1);
        if on_signal {
            usr1.thread_block()?;
        }
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let c = sys::accept(l, true)?;
        ctx.send(json!({"ev": "accepted", "conn": sys::conn_facts(c)?}))?;
        sys::read_to_eof(c)?;
        ctx.send(json!({"ev": "eof"}))?;
        ctx.wait_ctl()?;
        if on_signal {
            usr1.wait()?;
        } else {
            std::thread::sleep(delay);
        }
        sys::close(c)?;
        ctx.send(json!({"ev": "closed"}))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let client = TcpStream::connect(target(&l, Ipv4Addr::LOCALHOST.into())?)?;
    let acc = d.child(s).take("accepted", dl)?;
    drop(client);
    d.child(s).take("eof", dl)?;
    let conn = &acc["conn"];
    sys::wait_inodes(None, &[inode_of(conn)?], CLOSE_WAIT, state_deadline())?;
    d.poke_after_print(s);

    let spid = d.child(s).pid;
    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert("server".into(), role(spid, vec![conn["fd"].clone()]));
    if on_signal {
        m.insert("closes_on".into(), json!("SIGUSR1"));
    } else {
        m.insert("closes_after_ms".into(), json!(o.close_after_ms));
    }
    let holders = vec![holder(spid, &conn["fd"], &conn["cloexec"])];
    Ok(finish(m, vec![socket(conn, holders)]))
}

fn healthy(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let mut conns = Vec::new();
        for _ in 0..3 {
            let c = sys::accept(l, true)?;
            conns.push(sys::conn_facts(c)?);
        }
        ctx.send(json!({"ev": "accepted", "conns": conns}))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let clients = connect_n(target(&l, Ipv4Addr::LOCALHOST.into())?, 3)?;
    let conns = conns_of(&d.child(s).take("accepted", dl)?)?;
    let inodes: Vec<u64> = conns.iter().map(inode_of).collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, ESTABLISHED, state_deadline())?;
    let client_fds: Vec<i32> = clients
        .iter()
        .map(std::os::fd::AsRawFd::as_raw_fd)
        .collect();
    d.keep_streams(clients);

    let spid = d.child(s).pid;
    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert(
        "server".into(),
        role(spid, conns.iter().map(|c| c["fd"].clone()).collect()),
    );
    m.insert("clients".into(), json!({"pid": d.pid, "fds": client_fds}));
    let sockets = conns
        .iter()
        .map(|c| socket(c, vec![holder(spid, &c["fd"], &c["cloexec"])]))
        .collect();
    Ok(finish(m, sockets))
}

// ------------------------------------------------------------ production

fn prefork(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("master", &[], |ctx| {
        let l = sys::tcp_listen(LO4, false, None)?;
        let mut workers = Vec::new();
        for _ in 0..3 {
            workers.push(ctx.fork(move || loop {
                let c = sys::accept(l, false)?;
                ctx.send(
                    json!({"ev": "accepted", "pid": sys::getpid(), "conn": sys::conn_facts(c)?}),
                )?;
            })?);
        }
        ctx.send(json!({
            "ev": "listening", "fd": l, "inode": sys::inode(l)?,
            "addr": sys::local_addr(l)?.to_string(), "workers": workers,
        }))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let clients = connect_n(target(&l, Ipv4Addr::LOCALHOST.into())?, 2)?;
    let accepted = [
        d.child(s).take("accepted", dl)?,
        d.child(s).take("accepted", dl)?,
    ];
    drop(clients);
    let inodes: Vec<u64> = accepted
        .iter()
        .map(|a| inode_of(&a["conn"]))
        .collect::<Result<_>>()?;
    sys::wait_inodes(None, &inodes, CLOSE_WAIT, state_deadline())?;

    let mpid = d.child(s).pid;
    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(mpid, &l));
    m.insert("master".into(), role(mpid, vec![l["fd"].clone()]));
    let workers = l["workers"]
        .as_array()
        .context("no workers")?
        .iter()
        .map(|w| {
            let mut fds = vec![l["fd"].clone()];
            fds.extend(
                accepted
                    .iter()
                    .filter(|a| a["pid"] == *w)
                    .map(|a| a["conn"]["fd"].clone()),
            );
            json!({"pid": w, "fds": fds})
        })
        .collect();
    m.insert("workers".into(), Value::Array(workers));
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
    Ok(finish(m, sockets))
}

fn cgi(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        let c = sys::accept(l, false)?;
        let conn = sys::conn_facts(c)?;
        let child = ctx.spawn_sleep(|| {
            sys::dup2(c, 0)?;
            sys::dup2(c, 1)?;
            sys::close(c)?;
            sys::close(l)
        })?;
        ctx.send(json!({"ev": "cgi", "pid": child, "conn": conn}))?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let client = TcpStream::connect(target(&l, Ipv4Addr::LOCALHOST.into())?)?;
    let cg = d.child(s).take("cgi", dl)?;
    let cpid = pid_of(&cg["pid"])?;
    wait_comm(cpid, "sleep", dl)?;
    drop(client);
    let conn = &cg["conn"];
    sys::wait_inodes(None, &[inode_of(conn)?], CLOSE_WAIT, state_deadline())?;

    let spid = d.child(s).pid;
    let mut m = base(d, addr_of(&l["addr"])?.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert("server".into(), role(spid, vec![conn["fd"].clone()]));
    m.insert("cgi".into(), json!({"pid": cpid, "fds": [0, 1]}));
    let holders = vec![
        holder(spid, &conn["fd"], &conn["cloexec"]),
        holder(cpid, &json!(0), &json!(false)),
        holder(cpid, &json!(1), &json!(false)),
    ];
    Ok(finish(m, vec![socket(conn, holders)]))
}

fn accept_queue(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let s = d.spawn("server", &[], |ctx| {
        let l = sys::tcp_listen(LO4, true, None)?;
        send_listening(&ctx, l)?;
        sys::sleep_forever()
    })?;
    let l = d.child(s).take("listening", dl)?;
    let laddr = addr_of(&l["addr"])?;
    let client = TcpStream::connect(laddr)?;
    let caddr = client.local_addr()?;
    drop(client);
    sys::wait_tcp(
        None,
        CLOSE_WAIT,
        "the queued connection to reach CLOSE_WAIT",
        state_deadline(),
        |rows| {
            rows.iter()
                .any(|r| r.local == laddr && r.remote == caddr && r.inode == 0)
        },
    )?;

    let spid = d.child(s).pid;
    let mut m = base(d, laddr.port(), "ipv4");
    m.insert("listener".into(), listener_facts(spid, &l));
    m.insert("server".into(), role(spid, vec![l["fd"].clone()]));
    let sock = json!({
        "inode": 0, "local": laddr.to_string(), "remote": caddr.to_string(), "holders": [],
    });
    let mut v = finish(m, vec![sock]);
    v["inodes"] = json!([]);
    Ok(v)
}

fn client_side(d: &mut Driver, _: &Opts) -> Result<Value> {
    let dl = deadline();
    let listener = TcpListener::bind(LO4).context("bind 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let k = d.spawn("client", &[], move |ctx| {
        let k = sys::tcp_connect(addr)?;
        ctx.send(json!({"ev": "connected", "conn": sys::conn_facts(k)?}))?;
        sys::read_to_eof(k)?;
        ctx.send(json!({"ev": "eof"}))?;
        sys::sleep_forever()
    })?;
    let cn = d.child(k).take("connected", dl)?;
    let conn = &cn["conn"];
    let expect_peer = addr_of(&conn["local"])?;
    listener.set_nonblocking(true)?;
    let accepted = sys::wait_until("the client's connection in the accept queue", dl, || {
        listener.accept().ok()
    })?;
    if accepted.1 != expect_peer {
        bail!("accepted {} instead of {}", accepted.1, expect_peer);
    }
    drop(accepted);
    drop(listener);
    d.child(k).take("eof", dl)?;
    sys::wait_inodes(None, &[inode_of(conn)?], CLOSE_WAIT, state_deadline())?;

    let kpid = d.child(k).pid;
    let mut m = base(d, addr.port(), "ipv4");
    m.insert("client".into(), role(kpid, vec![conn["fd"].clone()]));
    m.insert(
        "server".into(),
        json!({"pid": d.pid, "fds": [], "closed": true}),
    );
    let holders = vec![holder(kpid, &conn["fd"], &conn["cloexec"])];
    Ok(finish(m, vec![socket(conn, holders)]))
}

/// Index type for `Driver::child`.
pub type ChildId = usize;

impl Driver {
    pub fn child(&mut self, id: ChildId) -> &mut Child {
        &mut self.children[id]
    }
}
