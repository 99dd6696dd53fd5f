//! `cwleak check` against real processes: the `leakyd` example serves on
//! loopback in its leaky and correct modes, its client (or any command) is
//! wrapped, and the exit code, the JSON report, the JUnit file and the stderr
//! summary are checked against who really holds what (leakyd prints every
//! accepted fd and the pid that got it).
//!
//! Every process a test starts is in a process group that is killed and
//! reaped when its guard is dropped, also when the test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/leakyd.rs"]
mod leakyd_support;
#[path = "support/skip.rs"]
mod skip;
#[path = "support/window.rs"]
mod window;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Pid = i32;

const START_TIMEOUT: Duration = Duration::from_secs(20);
const CWLEAK_TIMEOUT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------- helpers

fn leakyd() -> String {
    leakyd_support::example("leakyd").display().to_string()
}

/// SIGKILL to a whole process group.
fn kill_group(pgid: u32) {
    if let Ok(pgid) = Pid::try_from(pgid) {
        // SAFETY: plain syscall; the leader is not reaped yet, so the group
        // id cannot have been reused.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// One accept the server reported: the fd and the process that got a copy.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Accepted {
    fd: i32,
    /// The forked child (fork, correct) or the helper (helper).
    other: Pid,
}

/// A running `leakyd` server, killed with its whole group on drop.
struct Service {
    child: Child,
    pid: Pid,
    port: u16,
    lines: mpsc::Receiver<String>,
    accepted: Vec<Accepted>,
}

impl Service {
    fn start(mode: &str, extra: &[&str]) -> Service {
        let mut child = Command::new(leakyd())
            .arg(mode)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn leakyd");
        let stdout = child.stdout.take().expect("leakyd stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Service {
            pid: Pid::try_from(child.id()).expect("pid"),
            child,
            port: 0,
            lines,
            accepted: Vec::new(),
        };
        let first = s.line();
        let addr = first
            .strip_prefix("listening ")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("leakyd said {first:?}"));
        s.port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        s
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(START_TIMEOUT)
            .expect("leakyd printed nothing in time")
    }

    /// Wait until the server has reported `n` accepts in all.
    fn accepted(&mut self, n: usize) -> Vec<Accepted> {
        while self.accepted.len() < n {
            let line = self.line();
            let field = |k: &str| -> i32 {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no {k} in {line:?}"))
            };
            let other = if line.contains("helper=") {
                field("helper=")
            } else {
                field("child=")
            };
            self.accepted.push(Accepted {
                fd: field("fd="),
                other,
            });
        }
        self.accepted.clone()
    }

    /// `leakyd client` against this server, as a command line.
    fn client(&self, n: usize) -> Vec<String> {
        vec![
            leakyd(),
            "client".into(),
            "--port".into(),
            self.port.to_string(),
            "-n".into(),
            n.to_string(),
        ]
    }

    /// Run the client to the end, outside cwleak, against a server that
    /// keeps every connection (fork, or correct with a long linger): returns once the kernel shows each
    /// one in CLOSE_WAIT (accepted is not yet that: the client's FIN may
    /// still be on its way).
    fn connect(&mut self, n: usize) -> Vec<Accepted> {
        let argv = self.client(n);
        let st = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .status()
            .expect("leakyd client");
        assert!(st.success(), "leakyd client: {st}");
        let acc = self.accepted(self.accepted.len() + n);
        wait_until("every accepted connection in CLOSE_WAIT", || {
            leakyd_support::close_wait_on(self.port) >= acc.len()
        });
        acc
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

struct Run {
    code: i32,
    stderr: String,
}

/// The real cwleak binary in its own process group (a wrapped command
/// inherits it), with a timeout that kills the group.
fn cwleak_in(dir: Option<&Path>, args: &[String]) -> Run {
    let mut err = tempfile::tempfile().expect("tempfile");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cwleak"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.try_clone().expect("dup"))
        .process_group(0);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd.spawn().expect("spawn cwleak");
    let deadline = Instant::now() + CWLEAK_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait cwleak") {
            break st;
        }
        if Instant::now() >= deadline {
            kill_group(child.id());
            let _ = child.wait();
            panic!("cwleak {args:?} did not finish within {CWLEAK_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    err.rewind().expect("rewind");
    err.read_to_string(&mut stderr).expect("read stderr");
    // Whatever the wrapped command left in the group.
    kill_group(child.id());
    let code = status
        .code()
        .unwrap_or_else(|| panic!("cwleak {args:?} killed: {status}; stderr:\n{stderr}"));
    Run { code, stderr }
}

fn cwleak(args: &[String]) -> Run {
    cwleak_in(None, args)
}

fn s<I: IntoIterator<Item = T>, T: ToString>(items: I) -> Vec<String> {
    items.into_iter().map(|x| x.to_string()).collect()
}

/// `check --pid PID --settle 300ms --report R --junit J EXTRA... [-- CMD...]`
/// (EXTRA's own --settle instead, if it has one).
fn check(pid: Pid, files: &Files, extra: &[String], cmd: Option<Vec<String>>) -> Run {
    let mut a = s(["check", "--pid", &pid.to_string(), "--no-config"]);
    if !extra.iter().any(|x| x == "--settle") {
        a.extend(s(["--settle", "300ms"]));
    }
    a.extend(s(["--report", &files.report(), "--junit", &files.junit()]));
    a.extend(extra.iter().cloned());
    if let Some(cmd) = cmd {
        a.push("--".into());
        a.extend(cmd);
    }
    cwleak(&a)
}

struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Files {
        Files(tempfile::tempdir().expect("tempdir"))
    }
    fn report(&self) -> String {
        self.0.path().join("out/report.json").display().to_string()
    }
    fn junit(&self) -> String {
        self.0.path().join("out/junit.xml").display().to_string()
    }
    fn json(&self) -> Value {
        let text = std::fs::read_to_string(self.report()).expect("the report was written");
        serde_json::from_str(&text).expect("the report is valid JSON")
    }
    fn xml(&self) -> String {
        std::fs::read_to_string(self.junit()).expect("the JUnit file was written")
    }
    /// Nothing but the two outputs: no temporary file left behind.
    fn assert_only_outputs(&self) {
        let mut names: Vec<String> = std::fs::read_dir(self.0.path().join("out"))
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        assert!(
            names.iter().all(|n| n == "report.json" || n == "junit.xml"),
            "{names:?}"
        );
    }
}

/// tests, failures and errors of a suite.
type Counts = (usize, usize, usize);
/// A test case's name and failure text.
type Case = (String, Option<String>);

/// The suite's counts, and each case's name and failure text.
fn junit(xml: &str) -> (Counts, Vec<Case>) {
    let doc = roxmltree::Document::parse(xml)
        .unwrap_or_else(|e| panic!("the JUnit file is not XML ({e}):\n{xml}"));
    let suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("a testsuite");
    let n = |a: &str| {
        suite
            .attribute(a)
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX)
    };
    let cases: Vec<Case> = suite
        .children()
        .filter(|c| c.has_tag_name("testcase"))
        .map(|c| {
            let failure = c
                .children()
                .find(|f| f.has_tag_name("failure"))
                .map(|f| f.text().unwrap_or("").to_string());
            (c.attribute("name").unwrap_or("").to_string(), failure)
        })
        .collect();
    assert_eq!(cases.len(), n("tests"), "tests= vs test cases:\n{xml}");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(
        root.attribute("tests").and_then(|v| v.parse().ok()),
        Some(n("tests"))
    );
    ((n("tests"), n("failures"), n("errors")), cases)
}

fn findings(r: &Value) -> &Vec<Value> {
    r["findings"].as_array().expect("findings[]")
}

/// (pid, fd) of each finding's first blamed copy, sorted.
fn blamed(r: &Value) -> Vec<(Pid, i32)> {
    let mut v: Vec<(Pid, i32)> = findings(r)
        .iter()
        .map(|f| {
            let b = &f["blamed"][0];
            (
                b["pid"].as_i64().expect("pid") as Pid,
                b["fd"].as_i64().expect("fd") as i32,
            )
        })
        .collect();
    v.sort_unstable();
    v
}

fn causes(r: &Value) -> Vec<String> {
    findings(r)
        .iter()
        .map(|f| f["cause"].as_str().unwrap_or("").to_string())
        .collect()
}

// --------------------------------------------------------------- modes

#[test]
fn fork_mode_fails_and_blames_the_parents_fds() {
    let mut svc = Service::start("fork", &[]);
    let files = Files::new();
    let run = check(svc.pid, &files, &[], Some(svc.client(3)));
    let acc = svc.accepted(3);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);

    let r = files.json();
    let want: Vec<(Pid, i32)> = acc.iter().map(|a| (svc.pid, a.fd)).collect();
    assert_eq!(blamed(&r), want, "report: {r:#}");
    assert_eq!(causes(&r), vec!["fork-parent-kept"; 3]);
    assert_eq!(r["schema_version"], 1);
    let c = &r["check"];
    assert_eq!(
        (c["passed"].clone(), c["exit_code"].clone()),
        (Value::Bool(false), 1.into())
    );
    assert_eq!(
        (c["counted"].as_u64(), c["allowed"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(c["command"]["exit_code"], 0);
    assert_eq!(c["blamed"][0]["pid"], svc.pid);
    assert!(findings(&r).iter().all(|f| f["allowed"].is_null()));

    let ((tests, failures, errors), cases) = junit(&files.xml());
    assert_eq!((tests, failures, errors), (1, 1, 0));
    assert_eq!(cases[0].0, "leakyd in --pid (leakyd) and descendants");
    let text = cases[0].1.as_deref().expect("a failure");
    assert!(text.contains("cause fork-parent-kept"), "{text}");
    assert!(
        text.contains("fix: close the accepted socket in the parent"),
        "{text}"
    );
    for a in &acc {
        assert!(
            text.contains(&format!("close: pid {} fd {}", svc.pid, a.fd)),
            "{text}"
        );
    }
    assert!(
        run.stderr
            .starts_with("cwleak check: FAIL: 3 persistent CLOSE_WAIT sockets"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "pid {} leakyd: 3 sockets, fork-parent-kept",
            svc.pid
        )),
        "{}",
        run.stderr
    );
    files.assert_only_outputs();
}

#[test]
fn helper_mode_blames_each_helper_that_inherited_a_socket() {
    let mut svc = Service::start("helper", &[]);
    let files = Files::new();
    let run = check(svc.pid, &files, &[], Some(svc.client(2)));
    let acc = svc.accepted(2);
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let r = files.json();
    let mut want: Vec<(Pid, i32)> = acc.iter().map(|a| (a.other, a.fd)).collect();
    want.sort_unstable();
    assert_eq!(blamed(&r), want, "report: {r:#}");
    assert_eq!(causes(&r), vec!["inherited-no-cloexec"; 2]);
    // One case per program: both helpers are `sleep`, and the service
    // itself, which leaked nothing, passes under its own name.
    let ((tests, failures, _), cases) = junit(&files.xml());
    assert_eq!((tests, failures), (2, 1), "{cases:?}");
    let sleep = cases
        .iter()
        .find(|(name, _)| name == "sleep in --pid (leakyd) and descendants")
        .unwrap_or_else(|| panic!("{cases:?}"));
    let text = sleep.1.as_deref().expect("a failure");
    for a in &acc {
        assert!(
            text.contains(&format!("pid {} fd {}", a.other, a.fd)),
            "{text}"
        );
    }
    assert!(
        cases
            .iter()
            .any(|(name, f)| name == "leakyd in --pid (leakyd) and descendants" && f.is_none()),
        "{cases:?}"
    );
}

#[test]
fn correct_mode_passes_with_a_passing_test_case() {
    let svc = Service::start("correct", &[]);
    let files = Files::new();
    let run = check(svc.pid, &files, &[], Some(svc.client(3)));
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let r = files.json();
    assert!(findings(&r).is_empty(), "{r:#}");
    assert_eq!(r["check"]["passed"], true);
    let ((tests, failures, errors), cases) = junit(&files.xml());
    assert_eq!((tests, failures, errors), (1, 0, 0));
    assert_eq!(cases[0].0, "leakyd in --pid (leakyd) and descendants");
    // The window the check applied, not 0: nothing was left in CLOSE_WAIT
    // to look at again, but a leak would have had to outlast it.
    assert_eq!(r["scan"]["settle_ms"], 300, "{r:#}");
    assert!(
        files
            .xml()
            .contains(r#"<property name="settle" value="300ms"/>"#),
        "{}",
        files.xml()
    );
    assert!(
        run.stderr.starts_with("cwleak check: PASS"),
        "{}",
        run.stderr
    );
}

/// The handlers hold their sockets in CLOSE_WAIT until killed; check is
/// stopped (SIGSTOP) inside its settle window, the handlers are killed,
/// the kernel shows the sockets leave CLOSE_WAIT, and only then does check
/// go on to its second look: the close lands inside the window by
/// construction, whatever the machine's speed.
#[test]
fn a_socket_closed_within_the_settle_window_passes() {
    if !skip::is_root() {
        skip::skip(
            "a_socket_closed_within_the_settle_window_passes",
            "needs root to read another process's /proc/PID/syscall",
        );
        return;
    }
    let mut svc = Service::start("correct", &["--linger-ms", "3600000"]);
    let acc = svc.connect(2);
    let files = Files::new();
    let a = s([
        "check",
        "--pid",
        &svc.pid.to_string(),
        "--no-config",
        "--settle",
        "3s",
        "--report",
        &files.report(),
        "--junit",
        &files.junit(),
    ]);
    // The first look is done and check sleeps in its window, stopped.
    let cw = window::stop_in_settle(&a);
    for a in &acc {
        // SAFETY: plain syscall; the handler is leakyd's child, alive
        // (it holds its socket until killed), reaped by leakyd.
        unsafe { libc::kill(a.other, libc::SIGKILL) };
    }
    wait_until("the handlers' sockets leave CLOSE_WAIT", || {
        leakyd_support::close_wait_on(svc.port) == 0
    });
    let (status, _) = cw.resume();
    let r = files.json();
    assert_eq!(status.code(), Some(0), "{r:#}");
    assert!(findings(&r).is_empty(), "{r:#}");
    assert_eq!(
        r["summary"]["transient"].as_u64(),
        Some(2),
        "both sockets were seen in CLOSE_WAIT, then closed: {:#}",
        r["summary"]
    );
    assert_eq!(r["scan"]["settle_ms"], 3000);
}

// ---------------------------------------------------------- wrap mode

#[test]
fn the_commands_failure_is_passed_through_and_the_reports_still_written() {
    let svc = Service::start("fork", &[]);
    let files = Files::new();
    let script = format!("{} ; exit 3", svc.client(1).join(" "));
    let run = check(svc.pid, &files, &[], Some(s(["sh", "-c", &script])));
    assert_eq!(run.code, 3, "stderr:\n{}", run.stderr);
    let r = files.json();
    assert_eq!(r["check"]["exit_code"], 3);
    assert_eq!(r["check"]["passed"], false, "the leak is still reported");
    assert_eq!(r["check"]["command"]["exit_code"], 3);
    assert!(
        run.stderr.contains("the command failed (exit status 3)"),
        "{}",
        run.stderr
    );

    let killed = check(svc.pid, &files, &[], Some(s(["sh", "-c", "kill -KILL $$"])));
    assert_eq!(killed.code, 128 + 9, "stderr:\n{}", killed.stderr);
    assert_eq!(files.json()["check"]["command"]["signal"], 9);
    let missing = check(
        svc.pid,
        &files,
        &[],
        Some(s(["/nonexistent/cwleak-test-command"])),
    );
    assert_eq!(missing.code, 127, "stderr:\n{}", missing.stderr);
    assert!(
        missing.stderr.contains("command not found"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_clean_command_and_a_clean_scope_exit_0() {
    let svc = Service::start("correct", &[]);
    let files = Files::new();
    let run = check(svc.pid, &files, &[], Some(s(["true"])));
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(
        files.json()["check"]["command"]["argv"],
        serde_json::json!(["true"])
    );
}

#[test]
fn sigterm_is_forwarded_to_the_command_and_no_check_is_taken() {
    let svc = Service::start("correct", &[]);
    let files = Files::new();
    let child = Command::new(env!("CARGO_BIN_EXE_cwleak"))
        .args(s([
            "check",
            "--pid",
            &svc.pid.to_string(),
            "--report",
            &files.report(),
        ]))
        .args(["--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn cwleak");
    struct Group(u32);
    impl Drop for Group {
        fn drop(&mut self) {
            kill_group(self.0);
        }
    }
    let _group = Group(child.id());
    // Wait until `sleep` runs under cwleak.
    let deadline = Instant::now() + START_TIMEOUT;
    let sleep_pid = loop {
        if let Some((pid, _)) = children_of(child.id())
            .into_iter()
            .find(|(_, c)| c == "sleep")
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "sleep never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: plain syscall to our own child, not reaped yet.
    unsafe { libc::kill(Pid::try_from(child.id()).expect("pid"), libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait cwleak");
    // cwleak has exited; an unstopped sleep would still run (re-parented)
    // for most of its 30 s. Its group is ours, so the pid is not reused
    // before the guard kills the group.
    assert!(
        !Path::new(&format!("/proc/{sleep_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{sleep_pid}/stat"))
                .is_ok_and(|st| st.contains(") Z ")),
        "sleep (pid {sleep_pid}) was not stopped"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 15), "stderr:\n{stderr}");
    assert!(stderr.contains("no check taken"), "{stderr}");
    assert!(
        !Path::new(&files.report()).exists(),
        "an interrupted run writes no report"
    );
}

/// A cancelled job never passes: CMD traps SIGTERM and exits 0, cwleak still
/// exits 128+15 (docs/ci.md), takes no check and writes no report.
#[test]
fn a_cancelled_run_exits_143_even_when_the_command_exits_0() {
    let svc = Service::start("correct", &[]);
    let files = Files::new();
    let ready = files.0.path().join("trap-set");
    let script = format!(
        "trap 'exit 0' TERM; touch '{}'; sleep 30 >/dev/null 2>&1 & wait",
        ready.display()
    );
    let child = Command::new(env!("CARGO_BIN_EXE_cwleak"))
        .args(s([
            "check",
            "--pid",
            &svc.pid.to_string(),
            "--report",
            &files.report(),
        ]))
        .args(["--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn cwleak");
    struct Group(u32);
    impl Drop for Group {
        fn drop(&mut self) {
            kill_group(self.0);
        }
    }
    let _group = Group(child.id());
    let deadline = Instant::now() + START_TIMEOUT;
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the command never set its trap");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: plain syscall to our own child, not reaped yet.
    unsafe { libc::kill(Pid::try_from(child.id()).expect("pid"), libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait cwleak");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "stderr:\n{stderr}");
    assert!(stderr.contains("no check taken"), "{stderr}");
    assert!(!Path::new(&files.report()).exists());
}

/// (pid, comm) of the children of `pid`.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let dir = std::fs::read_dir("/proc").expect("/proc");
    dir.filter_map(|e| {
        let e = e.ok()?;
        let child: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == pid).then(|| (child, comm.to_string()))
    })
    .collect()
}

/// The `--during` sampler thread of cwleak (`pid`) when it is between two
/// samples: then it is the only thread besides the main one (waiting for
/// the command) and the exit watcher, and it sleeps in clock_nanosleep until
/// its next turn. A sample reads /proc and joins its reader threads; it
/// never sleeps.
fn sampler_between_samples(pid: u32) -> Option<String> {
    let task = |t: &str, f: &str| std::fs::read_to_string(format!("/proc/{pid}/task/{t}/{f}"));
    let others: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|t| *t != pid.to_string())
        .filter(|t| task(t, "comm").is_ok_and(|c| c.trim() != "cwleak-exits"))
        .collect();
    let [sampler] = &others[..] else {
        return None;
    };
    let nanosleep = libc::SYS_clock_nanosleep.to_string();
    task(sampler, "syscall")
        .is_ok_and(|s| s.split_whitespace().next() == Some(nanosleep.as_str()))
        .then(|| sampler.clone())
}

/// The read() calls thread `tid` of `pid` has made.
fn reads_of(pid: u32, tid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("syscr:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + CWLEAK_TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn during_shows_how_the_leak_grew() {
    let mut svc = Service::start("fork", &[]);
    let files = Files::new();
    let dir = files.0.path();
    let (ppid, go) = (dir.join("cwleak.pid"), dir.join("go"));
    // The command: 5 connections 300 ms apart (the fork server keeps every
    // one), then it waits for the test's go.
    let script = format!(
        "echo $PPID > '{}'; {} --delay-ms 300 || exit 1; while [ ! -e '{}' ]; do sleep 0.02; done",
        ppid.display(),
        svc.client(5).join(" "),
        go.display()
    );
    // 2 s apart, so the sampler sleeps between samples (what the test waits
    // for): one look at a busy host can take most of a second.
    let extra = s(["--during", "--interval", "2s"]);
    let svc_pid = svc.pid;
    let run = std::thread::scope(|sc| {
        let cw = sc.spawn(|| {
            let cmd = s(["sh", "-c", &script]);
            check(svc_pid, &files, &extra, Some(cmd))
        });
        svc.accepted(5);
        // All five in CLOSE_WAIT, by the kernel's table.
        let port = format!(":{:04X}", svc.port);
        wait_until("5 sockets in CLOSE_WAIT", || {
            std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
                t.lines()
                    .filter(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.len() > 3 && f[1].ends_with(&port) && f[3] == "08"
                    })
                    .count()
                    == 5
            })
        });
        wait_until("the command's cwleak pid", || {
            std::fs::read_to_string(&ppid).is_ok_and(|p| p.ends_with('\n'))
        });
        let pid: u32 = std::fs::read_to_string(&ppid)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Two whole samples that started after all five were in CLOSE_WAIT:
        // the sampler between samples, then reading (a sample began), then
        // between samples again.
        for _ in 0..2 {
            let mut sampler = None;
            wait_until("cwleak between samples", || {
                sampler = sampler_between_samples(pid);
                sampler.is_some()
            });
            let tid = sampler.unwrap();
            let before = reads_of(pid, &tid);
            wait_until("a sample", || reads_of(pid, &tid) > before);
            wait_until("the sample's end", || {
                sampler_between_samples(pid).is_some()
            });
        }
        std::fs::write(&go, "").unwrap();
        cw.join().unwrap()
    });
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let d = &files.json()["check"]["during"];
    assert_eq!(d["interval_ms"], 2000);
    assert!(d["samples"].as_u64().unwrap_or(0) >= 2, "{d:#}");
    let p = &d["processes"][0];
    assert_eq!(p["pid"], svc.pid, "{d:#}");
    assert_eq!(p["causes"], serde_json::json!(["fork-parent-kept"]));
    // Two samples after the fifth close both saw all five (the parent keeps
    // every copy): the peak is the whole leak.
    assert_eq!(p["peak"].as_u64(), Some(5), "{d:#}");
    assert!(
        p["first_seen_ms"].as_u64() <= p["peak_at_ms"].as_u64(),
        "{d:#}"
    );
    let counts: Vec<u64> = p["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|pt| pt[1].as_u64().unwrap_or(0))
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "a fork leak only grows: {counts:?}"
    );
    assert_eq!(d["peak"].as_u64(), Some(5));
    assert!(run.stderr.contains("during the command:"), "{}", run.stderr);
}

// ------------------------------------------------------------- scopes

#[test]
fn help_lists_the_flags_and_the_exit_status() {
    let out = Command::new(env!("CARGO_BIN_EXE_cwleak"))
        .args(["check", "--help"])
        .output()
        .expect("cwleak check --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--pid",
        "--pidfile",
        "--port",
        "--cgroup",
        "--netns",
        "--max",
        "--max-per-process",
        "--allow",
        "--allow-port",
        "--config",
        "--settle",
        "--during",
        "--interval",
        "--report",
        "--junit",
        "fork-parent-kept",
        "Exit status:",
        "127",
    ] {
        assert!(text.contains(flag), "check --help lacks {flag}:\n{text}");
    }
}

#[test]
fn no_scope_is_refused() {
    let run = cwleak(&s(["check", "--no-config"]));
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("needs a scope"), "{}", run.stderr);
    let run = cwleak(&s(["check", "--no-config", "--", "true"]));
    assert_eq!(run.code, 2, "a command alone is no scope");
}

#[test]
fn a_pid_that_never_existed_is_an_error() {
    let run = cwleak(&s([
        "check",
        "--no-config",
        "--pid",
        "2147483647",
        "--",
        "true",
    ]));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--pid 2147483647: no such process"),
        "{}",
        run.stderr
    );
    let run = cwleak(&s([
        "check",
        "--no-config",
        "--pidfile",
        "/nonexistent/cwleak.pid",
    ]));
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("/nonexistent/cwleak.pid"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_process_that_exits_before_the_check_is_reported_with_when() {
    let svc = Service::start("correct", &[]);
    let other = Service::start("correct", &[]);
    let files = Files::new();
    let kill = s(["kill", "-TERM", &svc.pid.to_string()]);

    // The whole scope gone: nothing to check is an error, and it says so.
    let run = check(svc.pid, &files, &[], Some(kill.clone()));
    assert_eq!(run.code, 2, "stderr:\n{}", run.stderr);
    let c = &files.json()["check"];
    assert_eq!(c["roots"][0]["running"], false, "{c:#}");
    assert!(c["roots"][0]["exited_at_ms"].as_u64().is_some(), "{c:#}");
    assert!(
        c["error"]
            .as_str()
            .unwrap_or("")
            .contains("nothing left to check"),
        "{c:#}"
    );
    assert!(
        run.stderr
            .contains(&format!("pid {} leakyd (--pid) exited at ", svc.pid)),
        "{}",
        run.stderr
    );
    let ((_, failures, errors), _) = junit(&files.xml());
    assert_eq!((failures, errors), (0, 1));

    // One of two gone: said, and the other is checked.
    let dead = Service::start("correct", &[]);
    let kill = s(["kill", "-TERM", &dead.pid.to_string()]);
    let extra = s([
        "--pid",
        &other.pid.to_string(),
        "--pid",
        &dead.pid.to_string(),
    ]);
    let run = check(other.pid, &files, &extra, Some(kill));
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    let roots = files.json()["check"]["roots"].clone();
    let running: Vec<(i64, bool)> = roots
        .as_array()
        .expect("roots")
        .iter()
        .map(|r| {
            (
                r["pid"].as_i64().unwrap_or(0),
                r["running"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    assert!(running.contains(&(i64::from(dead.pid), false)), "{roots:#}");
    assert!(running.contains(&(i64::from(other.pid), true)), "{roots:#}");
}

#[test]
fn pidfile_and_port_scopes_find_the_leak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("leakyd.pid").display().to_string();
    let mut svc = Service::start("fork", &["--pidfile", &pidfile]);
    let acc = svc.connect(2);
    let want: Vec<(Pid, i32)> = acc.iter().map(|a| (svc.pid, a.fd)).collect();
    let files = Files::new();
    // By port, in our own network namespace: another namespace on this
    // host may hold a leak on the same port number.
    let me = std::process::id().to_string();
    for scope in [
        &["--pidfile", pidfile.as_str()][..],
        &["--port", &svc.port.to_string(), "--netns", &me][..],
    ] {
        let mut a = s([
            "check",
            "--no-config",
            "--settle",
            "0",
            "--report",
            &files.report(),
        ]);
        a.extend(s(scope));
        let run = cwleak(&a);
        assert_eq!(run.code, 1, "{scope:?}: {}", run.stderr);
        assert_eq!(blamed(&files.json()), want, "{scope:?}");
    }
    // A port nobody leaks on: one this test listens on and nobody connects
    // to (any port of the host could hold someone else's leak), in our own
    // network namespace (another one may use the same port number).
    let quiet = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = quiet.local_addr().expect("addr").port().to_string();
    let run = cwleak(&s([
        "check",
        "--no-config",
        "--settle",
        "0",
        "--port",
        &port,
        "--netns",
        &me,
    ]));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// CI dashboards keep a test case's history by its name: a leaky service
/// restarted (a new pid) fails under the same case names, and each case
/// has the time the check's look took.
#[test]
fn junit_case_names_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("leakyd.pid").display().to_string();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut svc = Service::start("fork", &["--pidfile", &pidfile]);
        svc.connect(2);
        let files = Files::new();
        let run = cwleak(&s([
            "check",
            "--no-config",
            "--settle",
            "200ms",
            "--pidfile",
            &pidfile,
            "--junit",
            &files.junit(),
        ]));
        assert_eq!(run.code, 1, "{}", run.stderr);
        let xml = files.xml();
        let ((_, failures, _), cases) = junit(&xml);
        assert!(failures >= 1, "{xml}");
        let names: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
        for n in &names {
            assert!(!n.contains(&svc.pid.to_string()), "a pid in {n:?}");
        }
        let doc = roxmltree::Document::parse(&xml).expect("XML");
        for c in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
            let t: f64 = c
                .attribute("time")
                .and_then(|t| t.parse().ok())
                .expect("time");
            // The look waited the 200 ms settle window.
            assert!(t >= 0.2, "time {t} in {xml}");
        }
        runs.push((svc.pid, names));
    }
    assert_ne!(runs[0].0, runs[1].0, "the service got the same pid twice");
    assert_eq!(runs[0].1, runs[1].1);
    assert!(
        runs[0]
            .1
            .iter()
            .any(|n| n.starts_with("leakyd in --pidfile ")),
        "{:?}",
        runs[0].1
    );
}

/// A cgroup of our own in the cgroup2 hierarchy, removed on drop.
struct Cgroup {
    dir: PathBuf,
    name: String,
}

impl Cgroup {
    fn create() -> Option<Cgroup> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mountinfo.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })?;
        let name = format!("/cwleak-check-test-{}", std::process::id());
        let dir = mount.join(&name[1..]);
        std::fs::create_dir(&dir).ok()?;
        Some(Cgroup { dir, name })
    }

    fn enter(&self, pid: Pid) -> bool {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).is_ok()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The kernel frees a cgroup shortly after its last process exits.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn cgroup_scope_finds_the_leak_and_refuses_a_missing_cgroup() {
    let Some(cg) = Cgroup::create() else {
        skip::skip(
            "cgroup_scope_finds_the_leak_and_refuses_a_missing_cgroup",
            "cannot create a cgroup2 group (needs root and cgroup2)",
        );
        return;
    };
    let mut svc = Service::start("fork", &[]);
    if !cg.enter(svc.pid) {
        skip::skip(
            "cgroup_scope_finds_the_leak_and_refuses_a_missing_cgroup",
            &format!("cannot move a process into {}", cg.dir.display()),
        );
        return;
    }
    let acc = svc.connect(2);
    let files = Files::new();
    for spec in [cg.name.clone(), cg.dir.display().to_string()] {
        let run = cwleak(&s([
            "check",
            "--no-config",
            "--settle",
            "0",
            "--report",
            &files.report(),
            "--cgroup",
            &spec,
        ]));
        assert_eq!(run.code, 1, "--cgroup {spec}: {}", run.stderr);
        let want: Vec<(Pid, i32)> = acc.iter().map(|a| (svc.pid, a.fd)).collect();
        assert_eq!(blamed(&files.json()), want, "--cgroup {spec}");
        assert_eq!(
            files.json()["scan"]["scope"]["cgroups"],
            serde_json::json!([cg.name])
        );
    }
    let missing = format!("{}-missing", cg.name);
    let run = cwleak(&s(["check", "--no-config", "--cgroup", &missing]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no such cgroup"), "{}", run.stderr);
    drop(svc);
}

// --------------------------------------------------------- thresholds

#[test]
fn thresholds_and_allow_rules_from_flags() {
    let mut svc = Service::start("fork", &[]);
    svc.connect(3);
    let files = Files::new();
    let pid = svc.pid.to_string();
    let port = svc.port.to_string();
    let run = |extra: &[&str]| {
        let mut a = s(["check", "--no-config", "--settle", "0", "--pid", &pid]);
        a.extend(s(["--report", &files.report()]));
        a.extend(s(extra));
        cwleak(&a)
    };
    assert_eq!(run(&[]).code, 1);
    assert_eq!(run(&["--max", "3"]).code, 0);
    assert_eq!(run(&["--max", "2"]).code, 1);
    let per = run(&["--max", "10", "--max-per-process", "2"]);
    assert_eq!(per.code, 1);
    assert!(
        per.stderr
            .contains("more than the 2 allowed per process (--max-per-process)"),
        "{}",
        per.stderr
    );
    assert_eq!(run(&["--max-per-process", "3", "--max", "3"]).code, 0);

    let allowed = run(&["--allow", "fork-parent-kept"]);
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    let r = files.json();
    assert_eq!(findings(&r).len(), 3, "allowed leaks are still listed");
    for f in findings(&r) {
        assert_eq!(f["allowed"], "cause fork-parent-kept (command line)");
    }
    assert_eq!(
        (
            r["check"]["counted"].as_u64(),
            r["check"]["allowed"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(r["check"]["allow"][0]["matched"], 3);
    assert!(
        allowed.stderr.contains("allowed: 3 sockets"),
        "{}",
        allowed.stderr
    );

    assert_eq!(run(&["--allow-port", &port]).code, 0);
    assert_eq!(
        run(&["--allow", "never-closed"]).code,
        1,
        "another cause allows nothing"
    );
    assert_eq!(
        run(&["--allow", "fork-parent"]).code,
        2,
        "an unknown cause is a usage error"
    );
}

#[test]
fn thresholds_from_cwleak_toml_found_up_to_the_repository_root() {
    let mut svc = Service::start("fork", &[]);
    svc.connect(2);
    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(repo.path().join(".git")).expect(".git");
    let sub = repo.path().join("services/api");
    std::fs::create_dir_all(&sub).expect("subdir");
    let toml = repo.path().join("cwleak.toml");
    std::fs::write(
        &toml,
        "[check]\nallow = [{ cause = \"fork-parent-kept\", reason = \"demo server\" }]\n",
    )
    .expect("write cwleak.toml");
    let files = Files::new();
    let pid = svc.pid.to_string();
    let base = s([
        "check",
        "--settle",
        "0",
        "--pid",
        &pid,
        "--report",
        &files.report(),
    ]);
    let with = |extra: &[&str]| {
        let mut a = base.clone();
        a.extend(s(extra));
        a
    };

    let run = cwleak_in(Some(&sub), &base);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = files.json();
    assert_eq!(r["check"]["config_file"], toml.display().to_string());
    assert_eq!(
        findings(&r)[0]["allowed"],
        format!("cause fork-parent-kept ({}: demo server)", toml.display())
    );
    assert_eq!(cwleak_in(Some(&sub), &with(&["--no-config"])).code, 1);
    // Flags win over the file; the file's max applies when no flag is given.
    std::fs::write(&toml, "[check]\nmax = 2\nmax-per-process = 1\n").expect("rewrite");
    let run = cwleak_in(Some(&sub), &base);
    assert_eq!(
        run.code, 1,
        "max-per-process 1 from the file: {}",
        run.stderr
    );
    assert_eq!(
        cwleak_in(Some(&sub), &with(&["--max-per-process", "2"])).code,
        0
    );
    // --config names another file; a broken file is an error, with its line.
    let other = repo.path().join("strict.toml");
    std::fs::write(&other, "[check]\nmax = 0\n").expect("write");
    let cfg = other.display().to_string();
    assert_eq!(
        cwleak_in(
            Some(&sub),
            &with(&["--config", &cfg, "--max-per-process", "5"])
        )
        .code,
        1
    );
    std::fs::write(&toml, "[check]\nmax-per-proces = 1\n").expect("rewrite");
    let run = cwleak_in(Some(&sub), &base);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("cwleak.toml") && run.stderr.contains("line 2, column 1"),
        "{}",
        run.stderr
    );
    // Above the repository root the file is not looked for.
    let outside = tempfile::tempdir().expect("tempdir");
    assert_eq!(cwleak_in(Some(outside.path()), &base).code, 1);
}
