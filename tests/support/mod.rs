//! Test helpers for live scans: start a real leak with the `scenario`
//! example, run the real `cwleak` binary, and pick the findings that belong
//! to the scenario out of its JSON report.
//!
//! Everything a scenario starts is killed and reaped when its `Scenario` is
//! dropped, also when the test panics.

#![allow(dead_code)]
// each test binary uses a different subset
// A panic is how a helper fails the test that called it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod real;
pub mod skip;
pub mod window;

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a scenario may take to print its facts.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a scenario may take to clean up after its stdin closed.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one cwleak run may take.
const CWLEAK_TIMEOUT: Duration = Duration::from_secs(60);

pub type Pid = i32;

/// The `scenario` example binary, built next to the test binaries.
pub fn scenario_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CWLEAK_SCENARIO_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary is not in <target>/<profile>/deps");
    let bin = profile_dir.join("examples").join("scenario");
    assert!(
        bin.is_file(),
        "scenario driver not found at {}: it is built by a plain `cargo test` (or \
         `cargo nextest run`); with a target filter such as `cargo test --test scan_live`, \
         run `cargo build --examples` first (or set CWLEAK_SCENARIO_BIN)",
        bin.display()
    );
    bin
}

/// One running scenario: its facts, and the process tree behind them.
pub struct Scenario {
    pub name: String,
    /// The JSON line the driver printed.
    pub facts: Value,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: std::fs::File,
}

impl Scenario {
    pub fn start(name: &str) -> Scenario {
        Scenario::start_with(name, &[])
    }

    /// Starts `scenario NAME ARGS...` and waits for its line of facts.
    pub fn start_with(name: &str, args: &[&str]) -> Scenario {
        use std::os::unix::process::CommandExt;
        let stderr = tempfile::tempfile().expect("tempfile for the scenario's stderr");
        let mut child = Command::new(scenario_bin())
            .arg(name)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // A file, not a pipe: exec'd helpers inherit fd 2 and may
            // outlive a reader.
            .stderr(stderr.try_clone().expect("dup stderr file"))
            // Its own process group from the start: kill(-pgid) reaches
            // every process it forks.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn scenario {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("scenario stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let res = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(res);
        });
        let mut s = Scenario {
            name: name.to_string(),
            facts: Value::Null,
            child,
            stdin,
            stderr,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => line,
            Ok(Ok(_)) => s.fail("exited without printing its facts"),
            Ok(Err(e)) => s.fail(&format!("reading its stdout failed: {e}")),
            Err(_) => s.fail(&format!("printed nothing within {START_TIMEOUT:?}")),
        };
        s.facts = serde_json::from_str(&line)
            .unwrap_or_else(|e| s.fail(&format!("printed invalid JSON ({e}): {line}")));
        s
    }

    /// Kills everything and panics with the driver's stderr.
    fn fail(&mut self, what: &str) -> ! {
        self.kill_all();
        let mut err = String::new();
        let _ = self.stderr.rewind();
        let _ = self.stderr.read_to_string(&mut err);
        panic!("scenario {} {what}; its stderr:\n{err}", self.name);
    }

    fn pgid(&self) -> Pid {
        Pid::try_from(self.child.id()).expect("pid fits i32")
    }

    /// SIGKILL to the whole process group, then reap the driver.
    fn kill_all(&mut self) {
        self.stdin = None;
        // SAFETY: plain syscall. The driver is not reaped yet, so the group
        // id cannot have been reused.
        unsafe { libc::kill(-self.pgid(), libc::SIGKILL) };
        let _ = self.child.wait();
    }

    pub fn driver(&self) -> Pid {
        self.facts["driver"].as_i64().expect("facts.driver") as Pid
    }

    pub fn port(&self) -> u16 {
        self.facts["port"].as_u64().expect("facts.port") as u16
    }

    /// `facts[role].pid`.
    pub fn pid(&self, role: &str) -> Pid {
        self.facts[role]["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("no {role}.pid in {}", self.facts)) as Pid
    }

    /// `facts[role].fds`.
    pub fn fds(&self, role: &str) -> Vec<i32> {
        self.facts[role]["fds"]
            .as_array()
            .unwrap_or_else(|| panic!("no {role}.fds in {}", self.facts))
            .iter()
            .map(|v| v.as_i64().expect("fd") as i32)
            .collect()
    }

    /// The scenario's sockets, as the facts list them.
    pub fn sockets(&self) -> Vec<FactSocket> {
        self.facts["sockets"]
            .as_array()
            .expect("facts.sockets")
            .iter()
            .map(|s| FactSocket {
                inode: s["inode"].as_u64().expect("socket inode"),
                local: s["local"].as_str().expect("local").parse().expect("local"),
                remote: s["remote"]
                    .as_str()
                    .expect("remote")
                    .parse()
                    .expect("remote"),
                holders: pairs(&s["holders"]),
            })
            .collect()
    }

    /// Socket inodes of the scenario (no 0s).
    pub fn inodes(&self) -> Vec<u64> {
        self.sockets()
            .iter()
            .map(|s| s.inode)
            .filter(|&i| i != 0)
            .collect()
    }

    /// `["--pid", driver]`: the scenario's whole process tree.
    pub fn scope(&self) -> Vec<String> {
        vec!["--pid".into(), self.driver().to_string()]
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        // EOF on its stdin asks the driver to kill, reap and exit.
        self.stdin = None;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            // Poll for exit without reaping (WNOWAIT), so the group id stays
            // reserved for the kill below.
            // SAFETY: siginfo_t is plain data; waitid writes into it.
            let exited = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(
                    libc::P_PID,
                    self.child.id(),
                    &raw mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                ) == 0
                    && info.si_pid() != 0
            };
            if exited {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left in the group (nothing after a clean exit).
        self.kill_all();
    }
}

/// One socket from the facts; `holders` sorted (pid, fd).
#[derive(Debug, Clone)]
pub struct FactSocket {
    pub inode: u64,
    pub local: std::net::SocketAddr,
    pub remote: std::net::SocketAddr,
    pub holders: Vec<(Pid, i32)>,
}

/// Output of one cwleak run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real cwleak binary with `args` (with a timeout).
pub fn cwleak(args: &[String]) -> Run {
    cwleak_within(args, CWLEAK_TIMEOUT)
}

/// Runs the real cwleak binary with `args`; fails the test (after killing
/// it) if it has not finished within `timeout`.
pub fn cwleak_within(args: &[String], timeout: Duration) -> Run {
    let mut cmd = Command::new(cwleak_bin());
    cmd.args(args);
    run_within(cmd, timeout)
}

/// The cwleak binary under test.
pub fn cwleak_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cwleak"))
}

/// Runs `cmd` (cwleak, or cwleak behind a wrapper such as `unshare`, or as
/// another user) with stdin closed; fails the test (after killing it) if it
/// has not finished within `timeout`, or if a signal killed it.
pub fn run_within(mut cmd: Command, timeout: Duration) -> Run {
    let mut out = tempfile::tempfile().expect("tempfile");
    let mut err = tempfile::tempfile().expect("tempfile");
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait cwleak") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    out.rewind().expect("rewind");
    out.read_to_string(&mut stdout).expect("read stdout");
    err.rewind().expect("rewind");
    err.read_to_string(&mut stderr).expect("read stderr");
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{what} killed by a signal: {status}; stderr:\n{stderr}"));
    Run {
        code,
        stdout,
        stderr,
    }
}

/// `CWLEAK_TIMEOUT` for callers of `run_within`.
pub const CWLEAK_RUN_TIMEOUT: Duration = CWLEAK_TIMEOUT;

/// `cwleak scan --format FORMAT --settle 0 ARGS...` (no `--settle 0` when
/// ARGS has its own `--settle`, or reads a snapshot with `--from`).
pub fn cwleak_scan(format: &str, args: &[String]) -> Run {
    let mut full: Vec<String> = vec!["scan".into(), "--format".into(), format.into()];
    if !args
        .iter()
        .any(|a| a == "--settle" || a.starts_with("--settle=") || a == "--from")
    {
        full.extend(["--settle".into(), "0".into()]);
    }
    full.extend(args.iter().cloned());
    cwleak(&full)
}

/// `cwleak scan --format json --settle 0 ARGS...` -> (exit code, report).
pub fn cwleak_json(args: &[String]) -> (i32, Value) {
    let run = cwleak_scan("json", args);
    let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "cwleak {args:?} (exit {}) did not print a JSON report: {e}\nstdout:\n{}\nstderr:\n{}",
            run.code, run.stdout, run.stderr
        )
    });
    assert!(
        run.code == 0 || run.code == 1,
        "cwleak {args:?} failed with exit {}; stderr:\n{}",
        run.code,
        run.stderr
    );
    (run.code, report)
}

/// `--netns <this test's pid>`: the network namespace the scenarios run in.
/// A `--port` scope alone reads every namespace of the host, and another
/// one may hold a leak on the same port number.
pub fn own_netns() -> Vec<String> {
    vec!["--netns".into(), std::process::id().to_string()]
}

/// Convenience: `&["--pid", "123"]` style arguments from anything printable.
pub fn args<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: ToString,
{
    items.into_iter().map(|s| s.to_string()).collect()
}

// ------------------------------------------------------------ report access

pub fn findings(report: &Value) -> &[Value] {
    report["findings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("report has no findings[]: {report}"))
}

/// The finding for socket `inode`; panics with the report's inodes if absent.
pub fn finding(report: &Value, inode: u64) -> &Value {
    let all = findings(report);
    let found: Vec<&Value> = all
        .iter()
        .filter(|f| f["socket"]["inode"].as_u64() == Some(inode))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one finding for socket inode {inode}; findings are for inodes {:?}\nreport: {report:#}",
        finding_inodes(report)
    );
    found[0]
}

/// `cwleak scan --format json --settle 0 --pid <driver>`, with `--fds bpf`
/// where the task_file iterator can run (root and the kernel's BTF): the
/// iterator is then checked against the scenario's facts whatever this
/// host's open-file count would have `auto` choose. `tests/fd_tables.rs`
/// checks both readers against the facts of every scenario.
pub fn scan(s: &Scenario) -> (i32, Value) {
    let mut a = s.scope();
    if iterator_can_run() {
        a.extend(["--fds".into(), "bpf".into()]);
    }
    cwleak_json(&a)
}

/// Whether `--fds bpf` can run here: root, and the kernel's BTF.
pub fn iterator_can_run() -> bool {
    skip::is_root() && std::path::Path::new("/sys/kernel/btf/vmlinux").is_file()
}

pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v
}

/// Every finding in scope is one of the scenario's sockets, and all are there.
pub fn assert_exactly_scenario_sockets(r: &Value, s: &Scenario) {
    assert_eq!(
        finding_inodes(r),
        sorted(s.inodes()),
        "findings in scope vs the scenario's sockets\nreport: {r:#}"
    );
}

/// Inodes of every finding, sorted.
pub fn finding_inodes(report: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = findings(report)
        .iter()
        .filter_map(|f| f["socket"]["inode"].as_u64())
        .collect();
    v.sort_unstable();
    v
}

fn port_of(addr: &Value) -> Option<u16> {
    addr.as_str()?
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.port())
}

/// Findings whose socket has `port` as its local or remote port.
pub fn findings_for_port(report: &Value, port: u16) -> Vec<&Value> {
    findings(report)
        .iter()
        .filter(|f| {
            port_of(&f["socket"]["local"]) == Some(port)
                || port_of(&f["socket"]["remote"]) == Some(port)
        })
        .collect()
}

/// [{pid, fd}, ...] -> sorted (pid, fd) pairs.
pub fn pairs(v: &Value) -> Vec<(Pid, i32)> {
    let mut p: Vec<(Pid, i32)> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|h| {
            (
                h["pid"].as_i64().unwrap_or_else(|| panic!("no pid in {h}")) as Pid,
                h["fd"].as_i64().unwrap_or_else(|| panic!("no fd in {h}")) as i32,
            )
        })
        .collect();
    p.sort_unstable();
    p
}

/// The finding's holders, sorted (pid, fd).
pub fn holders(f: &Value) -> Vec<(Pid, i32)> {
    pairs(&f["holders"])
}

/// The finding's blamed list, in its order (root cause first).
pub fn blamed(f: &Value) -> Vec<(Pid, i32)> {
    f["blamed"]
        .as_array()
        .unwrap_or_else(|| panic!("no blamed[] in {f}"))
        .iter()
        .map(|b| {
            (
                b["pid"].as_i64().expect("blamed pid") as Pid,
                b["fd"].as_i64().expect("blamed fd") as i32,
            )
        })
        .collect()
}

pub fn cause(f: &Value) -> &str {
    f["cause"]
        .as_str()
        .unwrap_or_else(|| panic!("no cause in {f}"))
}

/// Distinct pids of a (pid, fd) list.
pub fn pids(p: &[(Pid, i32)]) -> BTreeSet<Pid> {
    p.iter().map(|&(pid, _)| pid).collect()
}

/// Checks the common shape of a CLOSE_WAIT finding for a scenario socket:
/// state, inode, addresses and exact holders from the facts.
pub fn assert_socket(f: &Value, s: &FactSocket) {
    assert_eq!(f["socket"]["state"], "CLOSE_WAIT", "finding: {f:#}");
    assert_eq!(
        f["socket"]["inode"].as_u64(),
        Some(s.inode),
        "finding: {f:#}"
    );
    let addr = |k: &str| -> std::net::SocketAddr {
        f["socket"][k]
            .as_str()
            .unwrap_or_else(|| panic!("socket.{k} in {f}"))
            .parse()
            .unwrap_or_else(|e| panic!("socket.{k} in {f}: {e}"))
    };
    assert_eq!(addr("local"), s.local, "socket.local; finding: {f:#}");
    assert_eq!(addr("remote"), s.remote, "socket.remote; finding: {f:#}");
    assert_eq!(holders(f), s.holders, "holders (pid, fd); finding: {f:#}");
}
