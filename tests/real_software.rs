//! Scenarios with real software: programs from Debian (openbsd-inetd, socat,
//! systemd's systemd-socket-activate, dash, coreutils' nohup), PyPI
//! (requests/urllib3), Node.js and Perl make real CLOSE_WAIT leaks on
//! loopback, the way they behave in production. The truth (which sockets,
//! which (pid, fd) hold each, who is to blame and why) is read from outside
//! cwleak: `ss -tanpe`, /proc/PID/fd, /proc/PID/fdinfo and the ppid chain;
//! each test's comment says what the program does and so which cause is
//! right. cwleak's JSON, scoped to the scenario's port, must match it, with
//! each way of reading the host (defaults, `--fds bpf`, `--tables proc`).
//! A test whose truth cwleak does not reach yet keeps its full assertion
//! and is `#[ignore = "... pending: what is wrong"]`.
//!
//! A test whose software is not installed says so (`SKIPPED ...` on
//! stderr) and passes, except under CI=true, where `.ci/run` installs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::real::*;
use support::skip;

/// The tools, or None after a visible skip.
fn need(test: &str, names: &[&str]) -> Option<Vec<PathBuf>> {
    match tools(names) {
        Ok(found) => Some(found),
        Err(why) => {
            skip::skip(test, &why);
            None
        }
    }
}

/// Python with `modules`, or None after a visible skip.
fn need_python(test: &str, modules: &[&str]) -> Option<PathBuf> {
    match python_with(modules) {
        Ok(py) => Some(py),
        Err(why) => {
            skip::skip(test, &why);
            None
        }
    }
}

fn need_root(test: &str) -> bool {
    if skip::is_root() {
        true
    } else {
        skip::skip(test, "needs root (inetd runs its handlers as a named user)");
        false
    }
}

fn the_only_holder(s: &SsSocket) -> Pid {
    let pids = s.holder_pids();
    assert_eq!(pids.len(), 1, "one process must hold {s:?}");
    *pids.iter().next().expect("a holder")
}

fn canonical(p: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ------------------------------------------------------------ inetd

/// Starts `inetd -d` (foreground, our own config file) with one service on
/// 127.0.0.1:PORT: `nowait` (inetd accepts, forks, the child dup2()s the
/// connection onto fds 0, 1 and 2, calls setsid() and exec's the handler;
/// inetd closes its copy). Returns (inetd pid, port).
fn start_inetd(
    procs: &mut Procs,
    dir: &std::path::Path,
    inetd: &PathBuf,
    handler: &str,
) -> (Pid, u16) {
    let port = free_port();
    let conf = dir.join("inetd.conf");
    std::fs::write(
        &conf,
        format!("127.0.0.1:{port} stream tcp nowait root {handler}\n"),
    )
    .expect("write inetd.conf");
    let pid = procs.spawn("inetd", Command::new(inetd).arg("-d").arg(&conf));
    let l = wait_listening(procs, port);
    assert_eq!(l, [pid].into(), "inetd must hold the listener");
    (pid, port)
}

/// openbsd-inetd runs `sleep` as the handler of each connection: the
/// handler never reads and never exits, so when the client closes, the
/// connection stays in CLOSE_WAIT held by the handler on fds 0, 1 and 2
/// (inetd closed its copy after fork). The handler was given the connection
/// as its stdio on purpose; it is the handler's own copy and it never closed
/// it: `never-closed`, blamed: the handler. The three fds are not a dup
/// mistake (dup2 onto stdio is how inetd hands connections over).
#[test]
fn inetd_handler_that_never_finishes() {
    const T: &str = "inetd_handler_that_never_finishes";
    if !need_root(T) {
        return;
    }
    let Some(t) = need(T, &["inetd", "sleep"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut procs = Procs::new();
    let sleep = canonical(&t[1]);
    let (inetd, port) = start_inetd(
        &mut procs,
        dir.path(),
        &t[0],
        &format!("{} sleep 100000", sleep.display()),
    );
    connect_and_close(port, b"", 0);
    connect_and_close(port, b"hello\n", 0);
    let truth = wait_close_wait(&procs, port, 2, |s| {
        s.holder_pids().len() == 1 && exe(s.holders[0].0) == sleep && s.holders.len() == 3
    });
    for s in &truth {
        let h = the_only_holder(s);
        procs.adopt(h);
        assert_eq!(s.fds_of(h), vec![0, 1, 2], "the handler's stdio: {s:?}");
        assert_eq!(ppid(h), Some(inetd), "inetd forked the handler");
        assert!(fds_of(inetd, s.inode).is_empty(), "inetd closed its copy");
    }
    check_port(
        port,
        "0",
        &truth,
        the_only_holder,
        Expect::Cause("never-closed"),
    );
}

/// openbsd-inetd runs a shell script handler that starts `nohup sleep &`
/// and returns at once. The job inherits the connection on stdout and
/// stderr (nohup redirects only terminals), the handler exits, and the job
/// is re-parented away from inetd (to this test process, a subreaper, as to
/// a container's init). The job is the only holder; it got its copy across
/// exec without knowing it: `inherited-no-cloexec`, blamed: the job (fix:
/// redirect the job's stdio, `nohup cmd >/dev/null 2>&1 &`). It is not the
/// handler, and not a dup mistake.
#[test]
fn inetd_handler_nohup_job_inherits_stdout() {
    const T: &str = "inetd_handler_nohup_job_inherits_stdout";
    if !need_root(T) {
        return;
    }
    let Some(t) = need(T, &["inetd", "nohup", "sleep", "sh"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut procs = Procs::new();
    let job = script("spawn_job.sh");
    let sleep = canonical(&t[2]);
    let (inetd, port) = start_inetd(
        &mut procs,
        dir.path(),
        &t[0],
        &format!("{} spawn_job.sh", job.display()),
    );
    // Read the handler's "job N started" line, so the job runs, then close.
    connect_and_close(port, b"", 1);
    let truth = wait_close_wait(&procs, port, 1, |s| {
        s.holder_pids().len() == 1 && exe(s.holders[0].0) == sleep
    });
    let s = &truth[0];
    let j = the_only_holder(s);
    procs.adopt(j);
    assert_eq!(s.fds_of(j), vec![1, 2], "stdout and stderr: {s:?}");
    let me = std::process::id() as Pid;
    assert_eq!(
        ppid(j),
        Some(me),
        "the job was re-parented to the subreaper"
    );
    assert!(!is_ancestor(inetd, j));
    assert!(fds_of(inetd, s.inode).is_empty(), "inetd closed its copy");
    assert!(!cloexec(j, 1));
    check_port(
        port,
        "0",
        &truth,
        the_only_holder,
        Expect::Cause("inherited-no-cloexec"),
    );
}

// ------------------------------------------------------------ socat

/// `socat -t 100000 TCP-LISTEN:PORT,fork,reuseaddr EXEC:sleep`: socat
/// accepts, forks a child per connection and closes its own copy; the child
/// relays between the connection and `sleep` (over a socketpair). When the
/// client closes, the child half-closes towards `sleep` and waits up to -t
/// seconds for the other direction: it keeps the connection, which stays
/// in CLOSE_WAIT held by the forked socat child alone. The child was handed
/// the connection by fork and does not close it: `never-closed`, blamed:
/// the child.
#[test]
fn socat_fork_exec_child_keeps_the_connection() {
    const T: &str = "socat_fork_exec_child_keeps_the_connection";
    let Some(t) = need(T, &["socat", "sleep"]) else {
        return;
    };
    let mut procs = Procs::new();
    let port = free_port();
    let socat = procs.spawn(
        "socat",
        Command::new(&t[0]).args([
            "-t",
            "100000",
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
            "EXEC:sleep 100000",
        ]),
    );
    wait_listening(&procs, port);
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 1, |s| {
        s.holder_pids().len() == 1 && s.holders[0].0 != socat
    });
    let s = &truth[0];
    let child = the_only_holder(s);
    assert_eq!(ppid(child), Some(socat), "a child of the listening socat");
    assert_eq!(exe(child), exe(socat), "forked, not exec'd");
    assert!(
        fds_of(socat, s.inode).is_empty(),
        "the parent closed its copy"
    );
    check_port(
        port,
        "0",
        &truth,
        the_only_holder,
        Expect::Cause("never-closed"),
    );
}

/// `socat TCP-LISTEN:PORT,fork EXEC:sleep,nofork`: the forked socat child
/// dup2()s the connection onto stdin and stdout and exec's `sleep` (no relay
/// process), like inetd. `sleep` never reads nor exits: the connection is
/// held by the handler on fds 0 and 1 only. The handler's own copy, never
/// closed: `never-closed`, blamed: the handler.
#[test]
fn socat_exec_nofork_handler_on_stdio() {
    const T: &str = "socat_exec_nofork_handler_on_stdio";
    let Some(t) = need(T, &["socat", "sleep"]) else {
        return;
    };
    let mut procs = Procs::new();
    let port = free_port();
    let sleep = canonical(&t[1]);
    let socat = procs.spawn(
        "socat",
        Command::new(&t[0]).args([
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
            "EXEC:sleep 100000,nofork",
        ]),
    );
    wait_listening(&procs, port);
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 1, |s| {
        s.holder_pids().len() == 1 && exe(s.holders[0].0) == sleep
    });
    let s = &truth[0];
    let h = the_only_holder(s);
    assert_eq!(s.fds_of(h), vec![0, 1]);
    assert_eq!(ppid(h), Some(socat));
    check_port(
        port,
        "0",
        &truth,
        the_only_holder,
        Expect::Cause("never-closed"),
    );
}

/// `socat TCP-LISTEN:PORT,fork SYSTEM:'nohup sleep 100000 & echo started',nofork`:
/// the forked socat child puts the connection on stdin and stdout and
/// exec's `sh -c`; the shell starts a nohup job and exits. The job inherited
/// stdout (stdin of an asynchronous job is /dev/null, stderr is socat's)
/// and is re-parented away from socat. The job alone holds the connection,
/// at fd 1, across exec, without knowing: `inherited-no-cloexec`, blamed:
/// the job (fix: redirect its stdout).
#[test]
fn socat_system_nohup_job_inherits_stdout() {
    const T: &str = "socat_system_nohup_job_inherits_stdout";
    let Some(t) = need(T, &["socat", "sh", "nohup", "sleep"]) else {
        return;
    };
    let mut procs = Procs::new();
    let port = free_port();
    let sleep = canonical(&t[3]);
    let socat = procs.spawn(
        "socat",
        Command::new(&t[0]).args([
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
            "SYSTEM:nohup sleep 100000 & echo started,nofork",
        ]),
    );
    wait_listening(&procs, port);
    connect_and_close(port, b"", 1);
    let truth = wait_close_wait(&procs, port, 1, |s| {
        s.holder_pids().len() == 1 && exe(s.holders[0].0) == sleep
    });
    let s = &truth[0];
    let job = the_only_holder(s);
    procs.adopt(job);
    assert_eq!(s.fds_of(job), vec![1], "stdout only: {s:?}");
    assert!(!is_ancestor(socat, job), "re-parented away from socat");
    assert!(fds_of(socat, s.inode).is_empty());
    check_port(
        port,
        "0",
        &truth,
        the_only_holder,
        Expect::Cause("inherited-no-cloexec"),
    );
}

// ------------------------------------------------------------ socket activation

/// `systemd-socket-activate -l 127.0.0.1:PORT python3 never_close_server.py`:
/// the tool binds, waits for the first connection, then puts the listener
/// at fd 3, sets LISTEN_FDS=1 and LISTEN_PID and exec's the server in the
/// same process. The server accepts itself (accept4 with SOCK_CLOEXEC) and
/// keeps every connection: the one process that accepted holds it:
/// `never-closed`.
#[test]
fn socket_activate_server_accepts_itself() {
    const T: &str = "socket_activate_server_accepts_itself";
    let Some(t) = need(T, &["systemd-socket-activate"]) else {
        return;
    };
    let Some(py) = need_python(T, &[]) else {
        return;
    };
    let mut procs = Procs::new();
    let port = free_port();
    let server = procs.spawn(
        "systemd-socket-activate",
        Command::new(&t[0])
            .args(["-l", &format!("127.0.0.1:{port}")])
            .arg(&py)
            .arg(script("never_close_server.py")),
    );
    assert_eq!(wait_listening(&procs, port), [server].into());
    connect_and_close(port, b"", 0);
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 2, |s| s.holders.len() == 1);
    assert_eq!(exe(server), canonical(&py), "exec'd in place");
    assert_eq!(env_of(server, "LISTEN_FDS").as_deref(), Some("1"));
    assert_eq!(env_of(server, "LISTEN_PID"), Some(server.to_string()));
    assert_eq!(listeners(port), [server].into());
    for s in &truth {
        assert_eq!(s.holders[0].0, server);
        assert!(cloexec(server, s.holders[0].1), "accepted with CLOEXEC");
    }
    check_port(port, "0", &truth, |_| server, Expect::Cause("never-closed"));
}

/// A socket-activation supervisor as systemd runs Accept=no services: it
/// binds the listener, keeps its own copy, and starts the service with the
/// listener at fd 3 and LISTEN_FDS=1 / LISTEN_PID. The service accepts
/// itself with SOCK_CLOEXEC and never closes. Both hold the listener; only
/// the service holds the connection, with FD_CLOEXEC set: a copy with
/// FD_CLOEXEC cannot have crossed the exec that started the service, and
/// the service accepted it: `never-closed`, blamed: the service.
#[test]
fn socket_activation_supervisor_keeps_the_listener() {
    const T: &str = "socket_activation_supervisor_keeps_the_listener";
    let Some(py) = need_python(T, &[]) else {
        return;
    };
    let mut procs = Procs::new();
    let (sup, line) = procs.start(
        "supervisor",
        Command::new(&py)
            .arg(script("socket_supervisor.py"))
            .arg(&py)
            .arg(script("never_close_server.py")),
    );
    let port: u16 = line.parse().expect("port");
    let service = wait_for(&procs, "the service holding the listener", || {
        let l = listeners(port);
        (l.len() == 2).then(|| l.into_iter().find(|&p| p != sup))?
    });
    assert_eq!(ppid(service), Some(sup));
    assert_eq!(env_of(service, "LISTEN_PID"), Some(service.to_string()));
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 1, |s| s.holders.len() == 1);
    let s = &truth[0];
    assert_eq!(s.holders[0].0, service);
    assert!(cloexec(service, s.holders[0].1), "accepted with CLOEXEC");
    check_port(
        port,
        "0",
        &truth,
        |_| service,
        Expect::Cause("never-closed"),
    );
}

/// `systemd-socket-activate --accept` (inetd-style, Accept=yes): the tool
/// accepts, forks, hands the connection to a new `sleep` as fd 3 with
/// LISTEN_FDS=1 and LISTEN_PID=<its pid>, and closes its own copy. The
/// instance was handed its connection on purpose and never closes it: the
/// instance's own copy, `never-closed` (its environment says it was handed
/// fd 3; without reading that, an fd 3 without FD_CLOEXEC in an exec'd
/// child looks inherited, so cwleak may name `never-closed` as an
/// alternative). Blamed: the instance either way.
#[test]
fn socket_activate_accept_instance_never_closes() {
    const T: &str = "socket_activate_accept_instance_never_closes";
    let Some(t) = need(T, &["systemd-socket-activate", "sleep"]) else {
        return;
    };
    let mut procs = Procs::new();
    let port = free_port();
    let sleep = canonical(&t[1]);
    let tool = procs.spawn(
        "systemd-socket-activate --accept",
        Command::new(&t[0])
            .args(["--accept", "-l", &format!("127.0.0.1:{port}")])
            .args([&sleep.display().to_string(), "100000"]),
    );
    wait_listening(&procs, port);
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 1, |s| {
        s.holders.len() == 1 && exe(s.holders[0].0) == sleep
    });
    let s = &truth[0];
    let inst = the_only_holder(s);
    assert_eq!(s.holders[0].1, 3);
    assert_eq!(ppid(inst), Some(tool));
    assert_eq!(env_of(inst, "LISTEN_PID"), Some(inst.to_string()));
    assert!(!cloexec(inst, 3));
    check_port(
        port,
        "0",
        &truth,
        the_only_holder,
        Expect::CauseOrAlternative("never-closed"),
    );
}

// ------------------------------------------------------------ HTTP client pool

/// A `requests.Session` (urllib3's connection pool) makes one GET to an
/// HTTP/1.1 keep-alive server (Python's http.server) that closes idle
/// connections after 0.2 s. The pool keeps the connection for reuse and
/// only checks it on the next request: while the client idles, its pooled
/// socket sits in CLOSE_WAIT, held by the client alone. The client made the
/// connection and never closed it after the peer's FIN: `never-closed`,
/// blamed: the client (not the server, which closed its side).
#[test]
fn requests_session_pooled_connection_closed_by_server() {
    const T: &str = "requests_session_pooled_connection_closed_by_server";
    let Some(py) = need_python(T, &["requests"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (server, line) = procs.start(
        "http.server",
        Command::new(&py).arg(script("idle_close_http.py")),
    );
    let port: u16 = line.parse().expect("port");
    let (client, done) = procs.start_with_stdin(
        "requests client",
        Command::new(&py)
            .arg(script("pooled_client.py"))
            .arg(format!("http://127.0.0.1:{port}/")),
        Stdio::piped(),
    );
    assert_eq!(done, "done");
    let truth = wait_close_wait(&procs, port, 1, |s| s.holders.len() == 1);
    let s = &truth[0];
    assert_eq!(s.holders[0].0, client);
    assert_eq!(s.remote.port(), port, "the client's end of the connection");
    assert!(fds_of(server, s.inode).is_empty());
    check_port(port, "0", &truth, |_| client, Expect::Cause("never-closed"));
}

// ------------------------------------------------------------ wrappers

/// Starts the never-closing single-process Python server through `cmd`
/// (a wrapper that runs other programs, waits for them, then exec's the
/// server in its own process), makes two leaks and checks the truth: one
/// process, which never forked, holds each connection.
fn wrapped_server(
    test: &str,
    wrapper: impl FnOnce(&PathBuf, &PathBuf, u16) -> Command,
    check: impl FnOnce(Pid),
) {
    let Some(py) = need_python(test, &[]) else {
        return;
    };
    if tools(&["sh"]).is_err() {
        skip::skip(test, "no sh");
        return;
    }
    let mut procs = Procs::new();
    let port = free_port();
    let mut cmd = wrapper(&py, &script("never_close_server.py"), port);
    let (server, ready) = procs.start("wrapped server", &mut cmd);
    assert_eq!(ready, "ready");
    assert_eq!(exe(server), canonical(&py), "the wrapper exec'd the server");
    assert!(children(server).is_empty(), "the server has no child");
    check(server);
    connect_and_close(port, b"", 0);
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 2, |s| s.holders.len() == 1);
    for s in &truth {
        assert_eq!(s.holders[0].0, server);
    }
    check_port(port, "0", &truth, |_| server, Expect::Cause("never-closed"));
}

/// `sh -c '/bin/true; exec python3 server.py'`: the shell forks and waits
/// for `true`, then exec's the server. The server never forks (no child,
/// ever), accepts itself and keeps its connections: `never-closed`. Its
/// reaped-children counters in /proc/PID/stat came from the shell across
/// exec and say nothing about the server.
#[test]
fn shell_wrapper_exec_server_never_closes() {
    wrapped_server(
        "shell_wrapper_exec_server_never_closes",
        |py, server, port| {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!(
                "/bin/true; exec '{}' '{}' {port}",
                py.display(),
                server.display()
            ));
            c
        },
        |server| assert!(cminflt(server) > 0, "the shell's reaped children show"),
    );
}

/// A container-style entrypoint script runs helpers (`mkdir`, `/bin/true`,
/// `date`), then `exec "$@"` the server. Same truth as the shell wrapper:
/// the server never forks: `never-closed`, not `fork-parent-kept`.
#[test]
fn entrypoint_script_exec_server_never_closes() {
    wrapped_server(
        "entrypoint_script_exec_server_never_closes",
        |py, server, port| {
            let mut c = Command::new(script("entrypoint.sh"));
            c.arg(py).arg(server).arg(port.to_string());
            c
        },
        |server| assert!(cminflt(server) > 0, "the script's reaped children show"),
    );
}

/// A Perl launcher sets SIGCHLD to SIG_IGN (auto-reap, as some
/// supervisors do) and exec's the server; an ignored signal stays ignored
/// across exec, so the server's /proc/PID/status shows SIGCHLD in SigIgn
/// without the server ever forking. Same truth: `never-closed`.
#[test]
fn launcher_ignoring_sigchld_exec_server_never_closes() {
    const T: &str = "launcher_ignoring_sigchld_exec_server_never_closes";
    if tools(&["perl"]).is_err() {
        skip::skip(T, "not installed: perl (.ci/run installs it)");
        return;
    }
    wrapped_server(
        T,
        |py, server, port| {
            let mut c = Command::new("perl");
            c.arg("-e")
                .arg(r#"$SIG{CHLD} = "IGNORE"; exec { $ARGV[0] } @ARGV or die "exec: $!""#)
                .arg(py)
                .arg(server)
                .arg(port.to_string());
            c
        },
        |server| assert!(sigchld_ignored(server), "SIG_IGN survived exec"),
    );
}

/// `unshare --fork --pid --mount-proc python3 server.py`: unshare forks
/// the server into a new pid namespace (where it is pid 1) and waits for
/// it. The server never forks, accepts itself and never closes: holder the
/// server (host pid; `ns_pid` 1 in `processes[]`), `never-closed`.
#[test]
fn unshare_pid_namespace_server_never_closes() {
    const T: &str = "unshare_pid_namespace_server_never_closes";
    if !skip::is_root() {
        skip::skip(T, "needs root (unshare --pid)");
        return;
    }
    let Some(t) = need(T, &["unshare"]) else {
        return;
    };
    let Some(py) = need_python(T, &[]) else {
        return;
    };
    let mut procs = Procs::new();
    let port = free_port();
    let (unshare, ready) = procs.start(
        "unshare",
        Command::new(&t[0])
            .args(["--fork", "--pid", "--mount-proc"])
            .arg(&py)
            .arg(script("never_close_server.py"))
            .arg(port.to_string()),
    );
    assert_eq!(ready, "ready");
    let kids = children(unshare);
    assert_eq!(kids.len(), 1, "unshare forked the server");
    let server = kids[0];
    assert_eq!(exe(server), canonical(&py));
    let nspid = std::fs::read_to_string(format!("/proc/{server}/status"))
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix("NSpid:")
                .map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
        })
        .expect("NSpid");
    assert_eq!(
        nspid.last().map(String::as_str),
        Some("1"),
        "pid 1 in its namespace"
    );
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 1, |s| s.holders.len() == 1);
    assert_eq!(truth[0].holders[0].0, server);
    for r in check_port(port, "0", &truth, |_| server, Expect::Cause("never-closed")) {
        let p = r["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .find(|p| p["pid"] == server)
            .unwrap_or_else(|| panic!("pid {server} in processes[]: {r:#}"));
        assert_eq!(p["ns_pid"], 1, "process: {p:#}");
    }
}

// ------------------------------------------------------------ Node.js

/// A Node.js net.Server with allowHalfOpen that never calls socket.end()
/// after the peer's 'end': every closed client leaves a CLOSE_WAIT socket
/// in the node process, which accepted it (SOCK_CLOEXEC) and never forks:
/// `never-closed`, blamed: node.
#[test]
fn node_half_open_server_never_ends() {
    const T: &str = "node_half_open_server_never_ends";
    let Some(t) = need(T, &["node"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (node, line) = procs.start("node", Command::new(&t[0]).arg(script("node_half_open.js")));
    let port: u16 = line.parse().expect("port");
    for _ in 0..3 {
        connect_and_close(port, b"GET / HTTP/1.0\r\n\r\n", 0);
    }
    let truth = wait_close_wait(&procs, port, 3, |s| s.holders.len() == 1);
    for s in &truth {
        assert_eq!(s.holders[0].0, node);
        assert!(cloexec(node, s.holders[0].1));
    }
    check_port(port, "0", &truth, |_| node, Expect::Cause("never-closed"));
}

/// The same Node.js server on IPv6 loopback ([::1]): the leak is found with
/// the same holders, blame and cause, addresses as IPv6.
#[test]
fn node_half_open_server_on_ipv6_loopback() {
    const T: &str = "node_half_open_server_on_ipv6_loopback";
    let Some(t) = need(T, &["node"]) else {
        return;
    };
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip::skip(T, "no IPv6 loopback (::1) here");
        return;
    }
    let mut procs = Procs::new();
    let (node, line) = procs.start(
        "node",
        Command::new(&t[0])
            .arg(script("node_half_open.js"))
            .arg("::1"),
    );
    let port: u16 = line.parse().expect("port");
    let addr = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    connect_to_and_close(addr, b"", 0);
    let truth = wait_close_wait(&procs, port, 1, |s| s.holders.len() == 1);
    let s = &truth[0];
    assert_eq!(s.holders[0].0, node);
    assert_eq!(s.local, addr, "the server's end, on ::1");
    check_port(port, "0", &truth, |_| node, Expect::Cause("never-closed"));
}

// ------------------------------------------------------------ Perl

/// Starts perl_fork_server.pl; returns (parent pid, port).
fn perl_fork_server(procs: &mut Procs, perl: &PathBuf) -> (Pid, u16) {
    let (pid, line) = procs.start(
        "perl forking server",
        Command::new(perl).arg(script("perl_fork_server.pl")),
    );
    (pid, line.parse().expect("port"))
}

/// A forking Perl IO::Socket::INET server whose parent keeps every
/// accepted socket; the child handling the connection is alive ("hold")
/// and holds the child's copy. Both the parent (listener holder, the
/// child's parent, same program) and the child hold it:
/// `fork-parent-kept`, blamed first: the parent.
#[test]
fn perl_forking_server_parent_keeps_its_copy() {
    const T: &str = "perl_forking_server_parent_keeps_its_copy";
    let Some(t) = need(T, &["perl"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (parent, port) = perl_fork_server(&mut procs, &t[0]);
    connect_and_close(port, b"hold\n", 0);
    let truth = wait_close_wait(&procs, port, 1, |s| s.holder_pids().len() == 2);
    let s = &truth[0];
    assert!(s.holder_pids().contains(&parent));
    let child = *s
        .holder_pids()
        .iter()
        .find(|&&p| p != parent)
        .expect("child");
    assert_eq!(ppid(child), Some(parent));
    assert_eq!(exe(child), exe(parent), "forked, not exec'd");
    check_port(
        port,
        "0",
        &truth,
        |_| parent,
        Expect::Cause("fork-parent-kept"),
    );
}

/// The same forking server; one child is alive (its client said "hold")
/// and holds its connection, another child closed its copy and exited (its
/// client sent nothing). The parent holds both connections. For the second
/// one, the parent's copy is the only one left, but a live forked child
/// of the same program holds another connection of the same listener: the
/// server forks per connection now: `fork-parent-kept` for both, blamed
/// first: the parent.
#[test]
fn perl_forking_server_child_exited_while_a_sibling_lives() {
    const T: &str = "perl_forking_server_child_exited_while_a_sibling_lives";
    let Some(t) = need(T, &["perl"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (parent, port) = perl_fork_server(&mut procs, &t[0]);
    connect_and_close(port, b"hold\n", 0);
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 2, |s| {
        s.holder_pids().contains(&parent) && (s.holder_pids().len() == 2 || s.holders.len() == 1)
    });
    let lone = truth.iter().filter(|s| s.holders.len() == 1).count();
    assert_eq!(
        lone, 1,
        "one connection held by the parent alone: {truth:#?}"
    );
    check_port(
        port,
        "0",
        &truth,
        |_| parent,
        Expect::Cause("fork-parent-kept"),
    );
}

/// The same forking server; every child closed its copy and exited. The
/// parent holds each connection alone. That it forked per connection is
/// the truth, but from one look now it is a lone copy in the process that
/// accepted it, the state a server that never handed it off would also
/// show: `fork-parent-kept` must be the cause or an alternative; blamed:
/// the parent.
#[test]
fn perl_forking_server_children_all_exited() {
    const T: &str = "perl_forking_server_children_all_exited";
    let Some(t) = need(T, &["perl"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (parent, port) = perl_fork_server(&mut procs, &t[0]);
    connect_and_close(port, b"", 0);
    connect_and_close(port, b"bye\n", 0);
    let truth = wait_close_wait(&procs, port, 2, |s| s.holders.len() == 1);
    for s in &truth {
        assert_eq!(s.holders[0].0, parent);
    }
    wait_for(&procs, "the children to exit", || {
        children(parent).is_empty().then_some(())
    });
    check_port(
        port,
        "0",
        &truth,
        |_| parent,
        Expect::CauseOrAlternative("fork-parent-kept"),
    );
}

/// A preforking Perl server: the master binds and forks two workers, each
/// accepts on the shared listener and keeps what it accepted. The master
/// never holds a connection; each leak is held by the worker that accepted
/// it alone: `never-closed`, blamed: that worker.
#[test]
fn perl_prefork_worker_never_closes() {
    const T: &str = "perl_prefork_worker_never_closes";
    let Some(t) = need(T, &["perl"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (master, line) = procs.start(
        "perl prefork",
        Command::new(&t[0]).arg(script("perl_prefork.pl")).arg("2"),
    );
    let port: u16 = line.parse().expect("port");
    let workers = children(master);
    assert_eq!(workers.len(), 2, "two workers");
    for _ in 0..4 {
        connect_and_close(port, b"", 0);
    }
    let truth = wait_close_wait(&procs, port, 4, |s| s.holders.len() == 1);
    for s in &truth {
        assert!(workers.contains(&s.holders[0].0), "a worker holds {s:?}");
    }
    check_port(
        port,
        "0",
        &truth,
        the_only_holder,
        Expect::Cause("never-closed"),
    );
}

// ------------------------------------------------------------ Python socketserver

/// Python's socketserver.ForkingTCPServer with a handler that never
/// returns: the parent closes its copy after fork (the framework does it),
/// each forked child keeps its connection. Held by the child alone, which
/// was handed it by fork and never closes it: `never-closed`, blamed: the
/// child, not the parent (which has forked and reaped children, but holds
/// no copy).
#[test]
fn python_forking_socketserver_handler_never_returns() {
    const T: &str = "python_forking_socketserver_handler_never_returns";
    let Some(py) = need_python(T, &["socketserver"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (parent, line) = procs.start(
        "ForkingTCPServer",
        Command::new(&py).arg(script("forking_socketserver.py")),
    );
    let port: u16 = line.parse().expect("port");
    connect_and_close(port, b"", 0);
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 2, |s| {
        s.holder_pids().len() == 1 && s.holders[0].0 != parent
    });
    for s in &truth {
        let child = the_only_holder(s);
        assert_eq!(ppid(child), Some(parent));
        assert_eq!(exe(child), exe(parent), "forked, not exec'd");
        assert!(
            fds_of(parent, s.inode).is_empty(),
            "the parent closed its copy"
        );
    }
    check_port(
        port,
        "0",
        &truth,
        the_only_holder,
        Expect::Cause("never-closed"),
    );
}

// ------------------------------------------------------------ fd passing

/// A Python front end accepts and sends each connection to a separate
/// worker process over a unix socket (SCM_RIGHTS, socket.send_fds), then
/// closes its copy; the worker keeps what it received. No ancestry links
/// them (both are children of this test): `passed-fd-kept`, blamed: the
/// worker.
#[test]
fn scm_rights_worker_keeps_received_connection() {
    const T: &str = "scm_rights_worker_keeps_received_connection";
    let Some(py) = need_python(T, &[]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("worker.sock");
    let mut procs = Procs::new();
    let (worker, _) = procs.start(
        "fd_pass worker",
        Command::new(&py)
            .arg(script("fd_pass.py"))
            .arg("worker")
            .arg(&path),
    );
    let (front, line) = procs.start(
        "fd_pass front",
        Command::new(&py)
            .arg(script("fd_pass.py"))
            .arg("front")
            .arg(&path),
    );
    let port: u16 = line.parse().expect("port");
    connect_and_close(port, b"", 0);
    connect_and_close(port, b"", 0);
    let truth = wait_close_wait(&procs, port, 2, |s| {
        s.holders.len() == 1 && s.holders[0].0 == worker
    });
    for s in &truth {
        assert!(fds_of(front, s.inode).is_empty());
        assert!(!is_ancestor(front, worker) && !is_ancestor(worker, front));
    }
    check_port(
        port,
        "0",
        &truth,
        |_| worker,
        Expect::Cause("passed-fd-kept"),
    );
}

// ------------------------------------------------------------ thread-private fd table

/// A Python server whose accepting thread called unshare(CLONE_FILES): its
/// connections live only in that thread's private fd table. ss -p and
/// /proc/PID/fd show no holder; /proc/PID/task/TID/fd does. The process
/// accepted them itself and never closes them: holder (pid, fd) with the
/// thread's `tid`, blamed: the process, `never-closed`; not
/// `no-visible-holder`.
#[test]
fn thread_private_fd_table_holder_found_with_its_tid() {
    const T: &str = "thread_private_fd_table_holder_found_with_its_tid";
    let Some(py) = need_python(T, &["ctypes"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (server, line) = procs.start(
        "thread_private_fds.py",
        Command::new(&py).arg(script("thread_private_fds.py")),
    );
    let (port, tid) = line.split_once(' ').expect("PORT TID");
    let (port, tid): (u16, Pid) = (port.parse().expect("port"), tid.parse().expect("tid"));
    assert_ne!(tid, server);
    connect_and_close(port, b"", 0);
    connect_and_close(port, b"", 0);
    // ss sees no holder (it reads /proc/PID/fd only): the truth is the
    // thread's own table.
    let truth: Vec<SsSocket> = wait_close_wait(&procs, port, 2, |s| {
        s.holders.is_empty() && task_fds_of(server, tid, s.inode).len() == 1
    })
    .into_iter()
    .map(|mut s| {
        assert!(
            fds_of(server, s.inode).is_empty(),
            "not in the leader's table"
        );
        s.holders = vec![(server, task_fds_of(server, tid, s.inode)[0])];
        s
    })
    .collect();
    let reports = check_port(port, "0", &truth, |_| server, Expect::Cause("never-closed"));
    for (s, r) in truth
        .iter()
        .flat_map(|s| reports.iter().map(move |r| (s, r)))
    {
        let f = support::finding(r, s.inode);
        for h in f["holders"].as_array().expect("holders") {
            assert_eq!(h["tid"], tid, "the holder's thread; finding: {f:#}");
        }
    }
}

// ------------------------------------------------------------ still sending

/// A client that half-closed (shutdown(SHUT_WR)) and keeps reading slowly
/// (4 KiB every 5 ms, a light load), or not at all; stopped on drop.
struct HalfClosedReader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HalfClosedReader {
    fn start(port: u16, reading: bool) -> HalfClosedReader {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"go\n").expect("send");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            s.set_read_timeout(Some(std::time::Duration::from_millis(50)))
                .expect("timeout");
            while !flag.load(Ordering::Relaxed) {
                if reading {
                    // A timeout or an error: try again until stopped.
                    if let Ok(0) = s.read(&mut buf) {
                        break;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        HalfClosedReader {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HalfClosedReader {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts `socat -t 100000 TCP-LISTEN:PORT,fork EXEC:'cat /dev/zero'`: each
/// forked socat child streams an endless file to its client and, after the
/// client's FIN, goes on sending (waiting up to -t for the other
/// direction). Returns (socat pid, port).
fn socat_streamer(procs: &mut Procs, socat: &PathBuf) -> (Pid, u16) {
    let port = free_port();
    let pid = procs.spawn(
        "socat streamer",
        Command::new(socat).args([
            "-t",
            "100000",
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
            "EXEC:cat /dev/zero",
        ]),
    );
    wait_listening(procs, port);
    (pid, port)
}

/// The client half-closed but keeps reading: the socat child's socket is
/// in CLOSE_WAIT while it is still delivering the stream (bytes_acked
/// grows from one look to the next, read from ss). That is a stream being
/// finished, not a forgotten copy: no finding, no leak exit status, and
/// `summary.still_sending` counts it.
#[test]
fn socat_still_sending_to_a_half_closed_reader_is_not_a_leak() {
    const T: &str = "socat_still_sending_to_a_half_closed_reader_is_not_a_leak";
    let Some(t) = need(T, &["socat", "cat"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (_socat, port) = socat_streamer(&mut procs, &t[0]);
    let _reader = HalfClosedReader::start(port, true);
    let truth = wait_close_wait(&procs, port, 1, |s| s.holders.len() == 1);
    let s = &truth[0];
    let first = bytes_acked(port, s.inode).expect("bytes_acked");
    wait_for(&procs, "bytes_acked to grow", || {
        (bytes_acked(port, s.inode)? > first).then_some(())
    });
    // Progress is read from tcp_info (bytes_acked), which sock_diag gives
    // and /proc/PID/net/tcp does not: `--tables proc` is not checked here.
    let sock_diag_readers = readers()
        .into_iter()
        .filter(|r| !r.contains(&"--tables".to_string()))
        .collect();
    if !support::skip::is_root() {
        support::skip::skip(
            T,
            "needs root to stop cwleak inside its settle window (/proc/PID/syscall)",
        );
        return;
    }
    // Each scan is stopped inside its settle window until ss shows the
    // stream move past where it was at the first look or later: the
    // progress lands between the two looks however long a busy host
    // starves the sender.
    let between = || {
        let at = bytes_acked(port, s.inode).expect("bytes_acked");
        wait_for(&procs, "bytes_acked to grow inside the window", || {
            (bytes_acked(port, s.inode)? > at).then_some(())
        });
    };
    for (label, r) in scans_around(port, sock_diag_readers, between) {
        assert!(
            support::findings(&r).is_empty(),
            "a socket still sending is not a leak ({label}); report: {r:#}"
        );
        assert_eq!(
            r["summary"]["still_sending"], 1,
            "summary: {:#}",
            r["summary"]
        );
    }
}

/// The same stream, but the client stopped reading: the socat child is
/// stuck with a full send queue and bytes_acked frozen. A frozen sender
/// stays a leak: held by the forked child alone, which never closes it:
/// `never-closed`, blamed: the child.
#[test]
fn socat_frozen_sender_stays_a_leak() {
    const T: &str = "socat_frozen_sender_stays_a_leak";
    let Some(t) = need(T, &["socat", "cat"]) else {
        return;
    };
    let mut procs = Procs::new();
    let (socat, port) = socat_streamer(&mut procs, &t[0]);
    let _reader = HalfClosedReader::start(port, false);
    // Frozen: the client never reads, so once its receive buffer is full
    // the window is zero and bytes_acked stops for good. Take it as frozen
    // when it has not moved for 2 s of looks, well over cwleak's 500 ms
    // settle window (a busy machine may starve the sender for a moment
    // before the buffers fill).
    let mut since: Option<(u64, std::time::Instant)> = None;
    let truth = wait_for(&procs, "a frozen CLOSE_WAIT sender", || {
        let now = close_wait(port);
        let s = now.first()?;
        let acked = bytes_acked(port, s.inode)?;
        if now.len() != 1 || s.holders.len() != 1 {
            return None;
        }
        match since {
            Some((a, t)) if a == acked => {
                (t.elapsed() >= std::time::Duration::from_secs(2)).then_some(now)
            }
            _ => {
                since = Some((acked, std::time::Instant::now()));
                None
            }
        }
    });
    let s = &truth[0];
    let child = the_only_holder(s);
    assert_eq!(ppid(child), Some(socat));
    check_port(
        port,
        "500ms",
        &truth,
        the_only_holder,
        Expect::Cause("never-closed"),
    );
}
