//! `cwleak check --trace` against real leaky programs: a C server built with
//! `-g -O0 -fomit-frame-pointer` (tests/trace/leaky_server.c), started by
//! the wrapped command, leaks by fork, by a missing CLOEXEC before exec, by
//! dup, by never closing, by never closing while it runs commands (which
//! fork, like a forking server, but hand nothing over), and by passing
//! connections to a worker with SCM_RIGHTS (kept by the worker, or by the
//! server after sending); a client socket (socket + connect), a
//! close-on-exec flag cleared by fcntl(F_SETFD), and pidfd_getfd(). For each, the
//! report must carry basis "traced", the right cause, and an origin naming
//! the syscall and the source line that made the forgotten copy. The lines
//! come from the C source (marked `@name`), the holders from /proc (who
//! really holds each socket inode), never from cwleak itself.
//!
//! Every process is in the process group of the cwleak it runs under, which
//! is killed and reaped on drop, also when the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/skip.rs"]
mod skip;
#[path = "support/leakyd.rs"]
mod support;

use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

type Pid = i32;

const SOURCE: &str = include_str!("trace/leaky_server.c");

/// The line of the C source marked `/* @name */`.
fn line_of(name: &str) -> u64 {
    let mark = format!("/* @{name} */");
    SOURCE
        .lines()
        .position(|l| l.contains(&mark))
        .unwrap_or_else(|| panic!("no {mark} in leaky_server.c")) as u64
        + 1
}

/// Why tracing cannot be tested here, if it cannot.
fn cannot_trace() -> Option<String> {
    if !skip::is_root() {
        return Some("needs root (BPF)".into());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("no kernel BTF".into());
    }
    if !cfg!(target_arch = "x86_64") {
        return Some("tracing is x86_64 only".into());
    }
    if Command::new("gcc").arg("--version").output().is_err() {
        return Some("no gcc to build the C server".into());
    }
    None
}

fn build_server(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/trace/leaky_server.c");
    let bin = dir.join("leaky_server");
    let out = Command::new("gcc")
        .args(["-g", "-O0", "-fomit-frame-pointer", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Kills the whole process group of a cwleak run (the server it leaves
/// behind, its helpers) when dropped.
struct Group(Pid);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: plain syscalls on a process group we created.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
        // Reap what is ours (the group's other members were re-parented).
        while unsafe { libc::waitpid(-self.0, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    }
}

struct Run {
    out: Output,
    report: Value,
    junit: String,
    /// The server's pid, from the pidfile the C program wrote.
    server: Pid,
    _group: Group,
}

fn check_traced(server: &Path, mode: &str, dir: &Path, trace: bool) -> Run {
    let pidfile = dir.join(format!("{mode}.pid"));
    let cmd = vec![
        server.display().to_string(),
        mode.to_string(),
        pidfile.display().to_string(),
    ];
    check_command(mode, dir, trace, &cmd)
}

/// `cwleak check [--trace] --pidfile DIR/NAME.pid ... -- CMD`.
fn check_command(name: &str, dir: &Path, trace: bool, argv: &[String]) -> Run {
    let mode = name;
    let pidfile = dir.join(format!("{mode}.pid"));
    let report = dir.join(format!("{mode}.json"));
    let junit = dir.join(format!("{mode}.xml"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cwleak"));
    cmd.arg("check");
    if trace {
        cmd.arg("--trace");
    }
    cmd.arg("--pidfile")
        .arg(&pidfile)
        .args(["--settle", "300ms", "--no-config", "--report"])
        .arg(&report)
        .arg("--junit")
        .arg(&junit)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().unwrap();
    let group = Group(child.id() as Pid);
    let out = child.wait_with_output().unwrap();
    let server_pid = std::fs::read_to_string(&pidfile)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    let run = Run {
        report: serde_json::from_slice(&std::fs::read(&report).unwrap_or_default())
            .unwrap_or(Value::Null),
        junit: std::fs::read_to_string(&junit).unwrap_or_default(),
        out,
        server: server_pid,
        _group: group,
    };
    assert!(
        run.report.is_object(),
        "no report; stderr: {}",
        String::from_utf8_lossy(&run.out.stderr)
    );
    run
}

/// The socket inode /proc shows at (pid, fd).
fn inode_at(pid: Pid, fd: i64) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

fn ppid_comm(pid: i64) -> (i64, String) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let close = stat.rfind(')').unwrap();
    let comm = stat[stat.find('(').unwrap() + 1..close].to_string();
    let ppid = stat[close + 2..]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (ppid, comm)
}

/// The program's frame of a step: the first with a source line in the
/// program's own code (not Rust's std, not a crate from the registry).
fn source_line(step: &Value) -> (String, u64) {
    let own = |f: &&Value| {
        f["file"]
            .as_str()
            .is_some_and(|p| !p.starts_with("/rustc/") && !p.contains("/.cargo/registry/"))
    };
    let f = step["stack"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["line"].is_u64() && own(f))
        .unwrap_or_else(|| panic!("no frame with a line in {step}"));
    (
        f["file"].as_str().unwrap().to_string(),
        f["line"].as_u64().unwrap(),
    )
}

/// Every finding: traced, of `cause`, its blamed copy really holding the
/// socket (per /proc), its origin's last step `event` at line `line`.
fn assert_traced(run: &Run, cause: &str, event: &str, line: u64) -> Vec<Value> {
    assert_traced_in(run, "leaky_server.c", cause, event, line)
}

fn assert_traced_in(run: &Run, src: &str, cause: &str, event: &str, line: u64) -> Vec<Value> {
    let findings = run.report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{}", run.report);
    assert_eq!(run.report["trace"]["active"], true);
    assert_eq!(run.report["trace"]["dropped_events"], 0);
    let mut origins = Vec::new();
    for f in findings {
        assert_eq!(f["basis"], "traced", "{f}");
        assert_eq!(f["cause"], cause, "{f}");
        let b = &f["blamed"][0];
        let (pid, fd) = (b["pid"].as_i64().unwrap(), b["fd"].as_i64().unwrap());
        assert_eq!(
            inode_at(pid as Pid, fd),
            f["socket"]["inode"].as_u64(),
            "/proc/{pid}/fd/{fd} is not the finding's socket"
        );
        let h = f["holders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["pid"] == b["pid"] && h["fd"] == b["fd"])
            .unwrap();
        let o = &h["origin"];
        assert_eq!(o["event"], event, "{o}");
        let (file, l) = source_line(o);
        assert!(file.ends_with(src), "{file}");
        assert_eq!(l, line, "{event} at the wrong line: {o}");
        assert!(f["evidence"][0].as_str().unwrap().starts_with("traced: "));
        origins.push(o.clone());
    }
    let stderr = String::from_utf8_lossy(&run.out.stderr);
    let at = format!("{src}:{line}");
    assert!(
        stderr.contains("made: ") && stderr.contains(&at),
        "{stderr}"
    );
    assert!(run.junit.contains(&at), "{}", run.junit);
    origins
}

#[test]
fn traced_origins_name_the_call_and_line_that_made_each_leaked_copy() {
    if let Some(why) = cannot_trace() {
        return skip::skip("traced_origins", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let server = build_server(dir.path());

    // fork: the parent's accepted fd; the evidence names the fork and the
    // child's close.
    let run = check_traced(&server, "fork", dir.path(), true);
    assert_eq!(run.out.status.code(), Some(1));
    assert_traced(&run, "fork-parent-kept", "accept", line_of("accept"));
    for f in run.report["findings"].as_array().unwrap() {
        assert_eq!(f["blamed"][0]["pid"].as_i64(), Some(i64::from(run.server)));
        let fact = f["evidence"][0].as_str().unwrap();
        let fork = format!("fork() at leaky_server.c:{}", line_of("fork"));
        assert!(
            fact.contains(&fork) && fact.contains("which it closed"),
            "{fact}"
        );
    }
    drop(run);

    // exec: the helper (sleep, the server's child) holds the copy that
    // crossed execl(); its history starts at the accept.
    let run = check_traced(&server, "exec", dir.path(), true);
    let origins = assert_traced(&run, "inherited-no-cloexec", "execve", line_of("execl"));
    for (f, o) in run.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&origins)
    {
        let pid = f["blamed"][0]["pid"].as_i64().unwrap();
        assert_eq!(ppid_comm(pid), (i64::from(run.server), "sleep".into()));
        let steps: Vec<&str> = o["earlier"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["event"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["accept", "fork"], "{o}");
        assert_eq!(source_line(&o["earlier"][0]).1, line_of("accept"));
        assert_eq!(source_line(&o["earlier"][1]).1, line_of("exec-fork"));
    }
    drop(run);

    // dup: the duplicate, made from the accepted fd.
    let run = check_traced(&server, "dup", dir.path(), true);
    let origins = assert_traced(&run, "dup-copy-kept", "dup", line_of("dup"));
    for o in &origins {
        assert!(o["from_fd"].is_i64(), "{o}");
        assert_eq!(o["earlier"][0]["event"], "accept");
    }
    drop(run);

    // never: the accepted fd itself.
    let run = check_traced(&server, "never", dir.path(), true);
    assert_traced(&run, "never-closed", "accept", line_of("accept"));
}

#[test]
fn a_server_that_runs_commands_is_told_apart_from_a_forking_server() {
    if let Some(why) = cannot_trace() {
        return skip::skip("runs_commands", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let server = build_server(dir.path());
    // It forks (and reaps) a child per connection, like a forking server,
    // but the child's copy of the socket vanished at exec (SOCK_CLOEXEC):
    // nothing was handed over, the server itself never closed.
    let run = check_traced(&server, "spawn", dir.path(), true);
    assert_traced(&run, "never-closed", "accept4", line_of("accept4"));
}

/// Every socket inode `pid` holds, per /proc.
fn socket_inodes(pid: i64) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| {
            let fd: i64 = e.ok()?.file_name().to_str()?.parse().ok()?;
            inode_at(pid as Pid, fd)
        })
        .collect()
}

#[test]
fn fds_passed_with_scm_rights_are_traced_to_the_send_and_the_receipt() {
    if let Some(why) = cannot_trace() {
        return skip::skip("scm_rights", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let server = build_server(dir.path());

    // The worker never closes what it received; the server closed its own
    // copy after sendmsg(): the receiver is blamed, and its history goes
    // through the server's accept and sendmsg to its recvmsg.
    let run = check_traced(&server, "pass-recv", dir.path(), true);
    assert_eq!(run.out.status.code(), Some(1));
    let origins = assert_traced(&run, "passed-fd-kept", "recvmsg", line_of("recvmsg"));
    for (f, o) in run.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&origins)
    {
        let worker = f["blamed"][0]["pid"].as_i64().unwrap();
        assert_eq!(ppid_comm(worker).0, i64::from(run.server));
        let inode = f["socket"]["inode"].as_u64().unwrap();
        assert!(!socket_inodes(run.server.into()).contains(&inode));
        let steps: Vec<&str> = o["earlier"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["event"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["accept4", "sendmsg"], "{o}");
        assert_eq!(source_line(&o["earlier"][0]).1, line_of("accept4"));
        assert_eq!(source_line(&o["earlier"][1]).1, line_of("sendmsg"));
        assert_eq!(o["earlier"][1]["pid"].as_i64(), Some(i64::from(run.server)));
        assert_eq!(o["from_pid"].as_i64(), Some(i64::from(run.server)));
        let fact = f["evidence"][0].as_str().unwrap();
        let sent = format!(
            "passed by sendmsg() at leaky_server.c:{}",
            line_of("sendmsg")
        );
        assert!(
            fact.contains(&sent) && fact.contains("closed its copy"),
            "{fact}"
        );
    }
    drop(run);

    // The worker closed what it received; the server kept its copy after
    // passing it: the sender is blamed, and the fact names both calls.
    let run = check_traced(&server, "pass-send", dir.path(), true);
    assert_traced(&run, "passed-fd-kept", "accept4", line_of("accept4"));
    for f in run.report["findings"].as_array().unwrap() {
        assert_eq!(f["blamed"][0]["pid"].as_i64(), Some(i64::from(run.server)));
        assert_eq!(f["holders"].as_array().unwrap().len(), 1, "{f}");
        let fact = f["evidence"][0].as_str().unwrap();
        let sent = format!("sendmsg() at leaky_server.c:{}", line_of("sendmsg"));
        let got = format!("recvmsg() at leaky_server.c:{}", line_of("recvmsg"));
        assert!(
            fact.contains(&sent) && fact.contains(&got) && fact.contains("which closed its copy"),
            "{fact}"
        );
    }
    drop(run);

    // The worker never calls recvmsg() and the server closed its copy: no
    // process holds the connection (per /proc), the message in the unix
    // socket's queue does; the recorded send says so.
    let run = check_traced(&server, "pass-lost", dir.path(), true);
    assert_eq!(run.out.status.code(), Some(1));
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", run.server)).unwrap();
    let mut group: Vec<i64> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(group.len(), 1, "the worker: {children}");
    group.push(run.server.into());
    let findings = run.report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{}", run.report);
    for f in findings {
        assert_eq!(f["cause"], "no-visible-holder", "{f}");
        assert_eq!(f["basis"], "traced", "{f}");
        assert!(f["holders"].as_array().unwrap().is_empty(), "{f}");
        let inode = f["socket"]["inode"].as_u64().unwrap();
        for pid in &group {
            assert!(
                !socket_inodes(*pid).contains(&inode),
                "pid {pid} holds {inode}"
            );
        }
        let fact = f["evidence"][0].as_str().unwrap();
        let sent = format!("sendmsg() at leaky_server.c:{}", line_of("sendmsg"));
        assert!(
            fact.starts_with("traced: in flight: ")
                && fact.contains(&sent)
                && fact.contains("nobody received it")
                && fact.contains("closed its own copy"),
            "{fact}"
        );
    }
}

fn events(step_list: &Value) -> Vec<&str> {
    step_list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["event"].as_str().unwrap())
        .collect()
}

#[test]
fn connect_a_cleared_cloexec_flag_and_pidfd_getfd_are_followed() {
    if let Some(why) = cannot_trace() {
        return skip::skip("connect_setfd_getfd", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let server = build_server(dir.path());

    // A client socket the server never closes: made by socket(), connected
    // by connect(), both at their lines.
    let run = check_traced(&server, "connect", dir.path(), true);
    let origins = assert_traced(&run, "never-closed", "connect", line_of("connect"));
    for (f, o) in run.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&origins)
    {
        assert_eq!(f["blamed"][0]["pid"].as_i64(), Some(i64::from(run.server)));
        assert_eq!(events(&o["earlier"]), ["socket"], "{o}");
        assert_eq!(source_line(&o["earlier"][0]).1, line_of("client-socket"));
    }
    drop(run);

    // Accepted with SOCK_CLOEXEC, the flag cleared by fcntl(F_SETFD): the
    // copy crossed the exec after all (without following F_SETFD the
    // history would say it was dropped there).
    let run = check_traced(&server, "setfd", dir.path(), true);
    let origins = assert_traced(&run, "inherited-no-cloexec", "execve", line_of("execl"));
    for (f, o) in run.report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&origins)
    {
        let pid = f["blamed"][0]["pid"].as_i64().unwrap();
        assert_eq!(ppid_comm(pid), (i64::from(run.server), "sleep".into()));
        assert_eq!(
            events(&o["earlier"]),
            ["accept4", "fcntl_setfd", "fork"],
            "{o}"
        );
        assert_eq!(source_line(&o["earlier"][1]).1, line_of("setfd"));
        let fact = f["evidence"][0].as_str().unwrap();
        let cleared = format!(
            "cleared by fcntl(F_SETFD) at leaky_server.c:{}",
            line_of("setfd")
        );
        assert!(fact.contains(&cleared), "{fact}");
    }
    drop(run);

    // A helper takes each accepted fd with pidfd_getfd() and keeps it; the
    // server closed its own.
    let run = check_traced(&server, "getfd", dir.path(), true);
    assert_traced(&run, "passed-fd-kept", "pidfd_getfd", line_of("getfd"));
    for f in run.report["findings"].as_array().unwrap() {
        let helper = f["blamed"][0]["pid"].as_i64().unwrap();
        assert_eq!(ppid_comm(helper).0, i64::from(run.server));
        let inode = f["socket"]["inode"].as_u64().unwrap();
        assert!(!socket_inodes(run.server.into()).contains(&inode));
    }
}

#[test]
fn a_copy_in_a_threads_own_fd_table_is_blamed_with_that_thread() {
    if let Some(why) = cannot_trace() {
        return skip::skip("thread_table", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let server = build_server(dir.path());
    // A thread that unshared its fd table accepts and never closes: the
    // copies are in /proc/PID/task/TID/fd only, and the blame must say so.
    let run = check_traced(&server, "thread", dir.path(), true);
    let findings = run.report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{}", run.report);
    let threads: Vec<i64> = std::fs::read_dir(format!("/proc/{}/task", run.server))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|t| *t != i64::from(run.server))
        .collect();
    assert_eq!(threads.len(), 1, "{threads:?}");
    let tid = threads[0];
    for f in findings {
        assert_eq!(f["basis"], "traced", "{f}");
        assert_eq!(f["cause"], "never-closed", "{f}");
        let b = &f["blamed"][0];
        assert_eq!(b["pid"].as_i64(), Some(i64::from(run.server)), "{f}");
        assert_eq!(b["tid"].as_i64(), Some(tid), "{f}");
        let fd = b["fd"].as_i64().unwrap();
        let link = std::fs::read_link(format!("/proc/{}/task/{tid}/fd/{fd}", run.server)).unwrap();
        assert_eq!(
            link.to_str().unwrap(),
            format!("socket:[{}]", f["socket"]["inode"]),
            "{f}"
        );
        let h = &f["holders"][0];
        assert_eq!(h["origin"]["event"], "accept4", "{f}");
        assert_eq!(h["origin"]["tid"].as_i64(), Some(tid), "{f}");
        assert_eq!(source_line(&h["origin"]).1, line_of("accept4"));
    }
}

#[test]
fn without_bpf_it_says_why_and_checks_as_usual() {
    if !skip::is_root() {
        return skip::skip("without_bpf", "needs root to drop to another user");
    }
    let Ok(setpriv) = which("setpriv") else {
        return skip::skip("without_bpf", "no setpriv");
    };
    // An unprivileged user cannot load BPF: one line says so, and the check
    // runs as without --trace (here on a process of that user that holds
    // no socket: it passes).
    let (code, _, stderr) = as_nobody(
        &setpriv,
        "check",
        &["--trace", "--settle", "0", "--no-config", "--", "true"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let why: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("--trace is not available here"))
        .collect();
    assert_eq!(why.len(), 1, "{stderr}");
    assert!(why[0].contains("Operation not permitted"), "{stderr}");
    assert!(stderr.contains("cwleak check: PASS"), "{stderr}");
}

/// Run `cwleak SUB --pid PID ARGS...` as nobody (uid 65534, who cannot
/// load BPF), PID a process of that user that holds no socket (started
/// here, killed and reaped before this returns); (exit code, stdout, stderr).
fn as_nobody(setpriv: &Path, sub: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let mut service = Command::new(setpriv)
        .args(nobody)
        .args(["sleep", "600"])
        .spawn()
        .unwrap();
    let out = Command::new(setpriv)
        .args(nobody)
        .arg(env!("CARGO_BIN_EXE_cwleak"))
        .args([sub, "--pid", &service.id().to_string()])
        .args(args)
        .current_dir("/")
        .output();
    let _ = service.kill();
    let _ = service.wait();
    let out = out.unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

const LEAKYD_SOURCE: &str = include_str!("../examples/leakyd.rs");

/// The line of examples/leakyd.rs that holds `text`.
fn leakyd_line(text: &str) -> u64 {
    LEAKYD_SOURCE
        .lines()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} in leakyd.rs")) as u64
        + 1
}

/// The example leaky service (Rust), started in the background by a shell
/// script that then runs its client: the traced history goes through the
/// shell's fork and exec to the service's own calls.
fn check_leakyd(mode: &str, dir: &Path) -> Run {
    let leakyd = support::example("leakyd");
    let pidfile = dir.join(format!("leakyd-{mode}.pid"));
    let out = dir.join(format!("leakyd-{mode}.out"));
    let script = format!(
        "{l} {mode} --pidfile {p} >{o} 2>/dev/null </dev/null &\n\
         until grep -q '^listening' {o}; do sleep 0.05; done\n\
         port=$(sed -n 's/^listening 127.0.0.1:\\([0-9]*\\) .*/\\1/p' {o})\n\
         {l} client --port \"$port\" -n 2",
        l = leakyd.display(),
        p = pidfile.display(),
        o = out.display(),
    );
    check_command(
        &format!("leakyd-{mode}"),
        dir,
        true,
        &["sh".to_string(), "-c".to_string(), script],
    )
}

#[test]
fn the_rust_service_started_by_a_shell_script_is_traced_to_its_lines() {
    if let Some(why) = cannot_trace() {
        return skip::skip("rust_service", &why);
    }
    let dir = tempfile::tempdir().unwrap();
    let accept = leakyd_line("libc::accept4(");

    let run = check_leakyd("fork", dir.path());
    assert_traced_in(&run, "leakyd.rs", "fork-parent-kept", "accept4", accept);
    for f in run.report["findings"].as_array().unwrap() {
        let fact = f["evidence"][0].as_str().unwrap();
        let fork = format!("fork() at leakyd.rs:{}", leakyd_line("unistd::fork()"));
        assert!(fact.contains(&fork), "{fact}");
    }
    drop(run);

    let run = check_leakyd("helper", dir.path());
    let origins = assert_traced_in(
        &run,
        "leakyd.rs",
        "inherited-no-cloexec",
        "execve",
        leakyd_line("cmd.spawn()"),
    );
    for o in &origins {
        assert_eq!(o["earlier"][0]["event"], "accept4", "{o}");
        assert_eq!(source_line(&o["earlier"][0]).1, accept);
    }
    drop(run);

    let run = check_leakyd("dup", dir.path());
    assert_traced_in(
        &run,
        "leakyd.rs",
        "dup-copy-kept",
        "dup",
        leakyd_line("libc::dup(fd)"),
    );
    drop(run);

    let run = check_leakyd("never", dir.path());
    assert_traced_in(&run, "leakyd.rs", "never-closed", "accept4", accept);
}

/// `cwleak watch --trace ARGS` into a pipe, with its output lines.
fn watch_traced(args: &[String]) -> (support::Guarded, std::sync::mpsc::Receiver<String>) {
    let mut g = support::Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_cwleak"))
            .args(["watch", "--trace", "--interval", "200ms"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let out = support::lines_of(g.child.stdout.take().unwrap());
    (g, out)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(q) => q.split('"').next(),
        None => rest.split_whitespace().next(),
    }
}

/// The next line for `pid` of kind `kind` ("appeared", "grew", ...).
fn wait_line(out: &std::sync::mpsc::Receiver<String>, pid: i32, kind: &str) -> String {
    let pid = pid.to_string();
    loop {
        let l = out
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no {kind} line for pid {pid}"));
        if l.split_whitespace().nth(1) == Some(kind) && field(&l, "pid") == Some(&pid) {
            return l;
        }
    }
}

/// A leak made before tracing began shows without `made=`; the copies
/// leaked after it name the call and line that made them.
fn watch_sees_new_leaks_made_at_their_line(scope: &str) {
    let mut svc = support::Leakyd::start();
    svc.connect(1);
    let scope_args = match scope {
        "pid" => vec!["--pid".to_string(), svc.pid.to_string()],
        _ => vec!["--port".to_string(), svc.port.to_string()],
    };
    let (w, out) = watch_traced(&scope_args);
    // The first look is done (and, by port, the service followed from it).
    let appeared = wait_line(&out, svc.pid, "appeared");
    assert_eq!(field(&appeared, "count"), Some("1"), "{appeared}");
    assert_eq!(field(&appeared, "made"), None, "{appeared}");
    svc.connect(2);
    let grew = loop {
        let l = wait_line(&out, svc.pid, "grew");
        if field(&l, "count") == Some("3") {
            break l;
        }
    };
    let made = format!(
        "accept4() at leakyd.rs:{} (leakyd::accept) in pid {}",
        leakyd_line("libc::accept4("),
        svc.pid
    );
    assert_eq!(field(&grew, "made"), Some(made.as_str()), "{grew}");
    assert_eq!(field(&grew, "cause"), Some("fork-parent-kept"), "{grew}");
    // Ctrl-C: the summary says what the trace recorded, and lost nothing.
    w.signal(libc::SIGINT);
    let summary = loop {
        let l = out
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("no trace summary line");
        if l.split_whitespace().nth(1) == Some("trace") {
            break l;
        }
    };
    assert_eq!(field(&summary, "dropped_events"), Some("0"), "{summary}");
    assert_ne!(field(&summary, "events"), Some("0"), "{summary}");
    drop(w);
}

#[test]
fn watch_trace_names_the_line_of_leaks_made_while_watching() {
    if let Some(why) = cannot_trace() {
        return skip::skip("watch_trace", &why);
    }
    // --pid: the root and its descendants are followed from the start.
    watch_sees_new_leaks_made_at_their_line("pid");
    // --port: the holder of the listener is followed from the first look.
    watch_sees_new_leaks_made_at_their_line("port");
}

#[test]
fn watch_without_bpf_says_why_and_watches_as_usual() {
    if !skip::is_root() {
        return skip::skip("watch_without_bpf", "needs root to drop to another user");
    }
    let Ok(setpriv) = which("setpriv") else {
        return skip::skip("watch_without_bpf", "no setpriv");
    };
    let (code, stdout, stderr) = as_nobody(
        &setpriv,
        "watch",
        &["--trace", "--count", "1", "--interval", "100ms"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let why: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("--trace is not available here"))
        .collect();
    assert_eq!(why.len(), 1, "{stderr}");
    assert!(why[0].contains("Operation not permitted"), "{stderr}");
    // As usual: the summary, and no trace line.
    assert!(stdout.contains(" summary looks=1 "), "{stdout}");
    assert!(!stdout.contains(" trace "), "{stdout}");

    // scan --trace-for: the same line, no wait, the report says why.
    let (code, stdout, stderr) = as_nobody(
        &setpriv,
        "scan",
        &["--trace-for", "10m", "--format", "json", "--settle", "0"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("--trace-for is not available here"))
            .count(),
        1,
        "{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["trace"]["active"], false, "{report}");
    assert!(report["trace"]["unavailable"]
        .as_str()
        .unwrap()
        .contains("Operation not permitted"));
}

#[test]
fn scan_trace_for_explains_the_leaks_made_while_recording() {
    if let Some(why) = cannot_trace() {
        return skip::skip("scan_trace_for", &why);
    }
    let mut svc = support::Leakyd::start();
    // Made before the recording: no history, the inferred cause stands.
    svc.connect(1);
    let mut scan = support::Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_cwleak"))
            .args(["scan", "--trace-for", "10m", "--format", "json"])
            .args(["--settle", "300ms", "--pid", &svc.pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdout = scan.child.stdout.take().unwrap();
    let json = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { stdout }, &mut s).unwrap();
        s
    });
    let err = support::lines_of(scan.child.stderr.take().unwrap());
    loop {
        let l = err
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("scan never said it records");
        if l.contains("--trace-for: recording for 10m") {
            break;
        }
    }
    svc.connect(2);
    // Ctrl-C ends the recording early; the scan follows.
    scan.signal(libc::SIGINT);
    let st = scan
        .wait_for(std::time::Duration::from_secs(300))
        .expect("scan did not end");
    assert_eq!(st.code(), Some(1), "leaks found");
    let report: Value = serde_json::from_str(&json.join().unwrap()).unwrap();
    assert_eq!(report["trace"]["active"], true, "{report}");
    assert_eq!(report["trace"]["dropped_events"], 0);
    let mine: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["blamed"][0]["pid"].as_i64() == Some(i64::from(svc.pid)))
        .collect();
    assert_eq!(mine.len(), 3, "{report}");
    let accept = leakyd_line("libc::accept4(");
    let fork = format!("fork() at leakyd.rs:{}", leakyd_line("unistd::fork()"));
    let mut traced = 0;
    for f in mine {
        let fd = f["blamed"][0]["fd"].as_i64().unwrap();
        assert_eq!(inode_at(svc.pid, fd), f["socket"]["inode"].as_u64(), "{f}");
        let origin = &f["holders"][0]["origin"];
        if f["basis"] == "traced" {
            traced += 1;
            assert_eq!(f["cause"], "fork-parent-kept", "{f}");
            assert_eq!(origin["event"], "accept4", "{f}");
            assert_eq!(source_line(origin).1, accept, "{f}");
            let fact = f["evidence"][0].as_str().unwrap();
            assert!(fact.contains(&fork), "{fact}");
        } else {
            assert_eq!(f["basis"], "inferred", "{f}");
            assert!(origin.is_null(), "{f}");
        }
    }
    assert_eq!(traced, 2, "the two leaks made while recording");
}
