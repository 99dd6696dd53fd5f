//! Helpers for scenarios with real software (inetd, socat, socket
//! activation, HTTP client pools, shells, Node.js, Perl, Python): start the
//! programs, wait for the state they really reach, and read the truth from
//! outside cwleak: `ss -tanpe` for the sockets and their holders, `/proc` for
//! ancestry, programs and fd flags.
//!
//! Every process a scenario starts, and everything those processes start
//! (also a job re-parented after its parent exited), is killed and reaped
//! when its `Procs` is dropped, also when the test panics.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Seek};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub type Pid = i32;

/// How long a program may take to reach a state (start, accept, close):
/// a guard against a hang, not a measure of speed.
const STATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable put on every process a `Procs` starts: programs
/// pass their environment on to what they start, so it finds re-parented
/// descendants at cleanup time.
const TAG_VAR: &str = "CWLEAK_REAL_SW_TAG";

// ------------------------------------------------------------ finding software

/// `name` on PATH (or in /usr/sbin, /sbin, where daemons such as inetd
/// live and a user's PATH may not reach), or None.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The tools a test needs, found on PATH (or at an absolute path), or the
/// reason the test cannot run.
pub fn tools(names: &[&str]) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        let p = if n.starts_with('/') {
            Some(PathBuf::from(n)).filter(|p| p.is_file())
        } else {
            which(n)
        };
        match p {
            Some(p) => found.push(p),
            None => missing.push(*n),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(format!(
            "not installed: {} (.ci/run installs them)",
            missing.join(", ")
        ))
    }
}

/// The real Python interpreter behind `python3` (a version manager's shim
/// resolved: the scenarios decide themselves which wrapper runs the
/// server), if it can import every module of `modules`.
pub fn python_with(modules: &[&str]) -> Result<PathBuf, String> {
    let py = which("python3").ok_or("python3 is not installed")?;
    let mut code = String::from("import sys\n");
    for m in modules {
        code.push_str(&format!("import {m}\n"));
    }
    code.push_str("print(sys.executable)\n");
    let out = Command::new(&py)
        .args(["-c", &code])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", py.display()))?;
    if !out.status.success() {
        return Err(format!(
            "python3 cannot import {modules:?} (.ci/run installs them): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        ));
    }
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(PathBuf::from(exe))
}

/// A program of this test suite under tests/real/.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/real")
        .join(name)
}

/// A port on 127.0.0.1 that was free a moment ago (the OS chose it), for
/// programs that cannot be told to bind port 0 and report it.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Connects to 127.0.0.1:port, sends `send`, reads `read_line` lines, then
/// closes: the server side is left in CLOSE_WAIT unless it closes too.
pub fn connect_and_close(port: u16, send: &[u8], read_lines: usize) {
    connect_to_and_close(SocketAddr::from(([127, 0, 0, 1], port)), send, read_lines);
}

/// `connect_and_close` to any address (e.g. [::1]:port).
pub fn connect_to_and_close(addr: SocketAddr, send: &[u8], read_lines: usize) {
    use std::io::Write;
    let port = addr.port();
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    if !send.is_empty() {
        s.write_all(send).expect("send");
    }
    if read_lines > 0 {
        s.set_read_timeout(Some(STATE_TIMEOUT)).expect("timeout");
        let mut r = BufReader::new(&s);
        for _ in 0..read_lines {
            let mut line = String::new();
            r.read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading from {addr} (port {port}): {e}"));
        }
    }
}

// ------------------------------------------------------------ processes

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Makes this test process a child subreaper once: a job whose parent exits
/// (a `nohup cmd &` of a handler) is re-parented to us, as to a container's
/// init or a service manager, and we can reap it.
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: plain prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    });
}

/// The processes of one scenario; all killed and reaped on drop.
pub struct Procs {
    tag: String,
    children: Vec<(String, Child, std::fs::File)>,
    known: BTreeSet<Pid>,
}

impl Default for Procs {
    fn default() -> Self {
        Self::new()
    }
}

impl Procs {
    pub fn new() -> Procs {
        become_subreaper();
        Procs {
            tag: format!(
                "{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ),
            children: Vec::new(),
            known: BTreeSet::new(),
        }
    }

    /// Starts `cmd` (stdin /dev/null, stdout piped, stderr to a file) and
    /// waits for its first line of output, which it returns with the pid.
    pub fn start(&mut self, what: &str, cmd: &mut Command) -> (Pid, String) {
        self.start_with_stdin(what, cmd, Stdio::null())
    }

    /// Like `start`, with `stdin` for the program (a pipe keeps a client
    /// waiting until the scenario ends).
    pub fn start_with_stdin(
        &mut self,
        what: &str,
        cmd: &mut Command,
        stdin: Stdio,
    ) -> (Pid, String) {
        let stderr = tempfile::tempfile().expect("tempfile for stderr");
        let mut child = cmd
            .env(TAG_VAR, &self.tag)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone().expect("dup stderr"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what} ({cmd:?}): {e}"));
        let pid = Pid::try_from(child.id()).expect("pid fits i32");
        let stdout = child.stdout.take().expect("stdout");
        self.children.push((what.to_string(), child, stderr));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut r = BufReader::new(stdout);
            let res = r.read_line(&mut line).map(|_| line);
            let _ = tx.send(res);
            // Keep draining: a program (or what it started with the same
            // stdout) that prints more must not die of SIGPIPE.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        match rx.recv_timeout(STATE_TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => (pid, line.trim().to_string()),
            Ok(Ok(_)) => self.fail(what, "exited without printing its first line"),
            Ok(Err(e)) => self.fail(what, &format!("reading its stdout: {e}")),
            Err(_) => self.fail(what, &format!("printed nothing within {STATE_TIMEOUT:?}")),
        }
    }

    /// Starts `cmd` without waiting for output (programs that print nothing
    /// useful; wait for their sockets instead).
    pub fn spawn(&mut self, what: &str, cmd: &mut Command) -> Pid {
        let stderr = tempfile::tempfile().expect("tempfile for stderr");
        let child = cmd
            .env(TAG_VAR, &self.tag)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("dup stderr"))
            .stderr(stderr.try_clone().expect("dup stderr"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what} ({cmd:?}): {e}"));
        let pid = Pid::try_from(child.id()).expect("pid fits i32");
        self.children.push((what.to_string(), child, stderr));
        pid
    }

    /// Also kill and reap `pid` at the end (a process found in the truth).
    pub fn adopt(&mut self, pid: Pid) {
        self.known.insert(pid);
    }

    /// What the started programs wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        let mut all = String::new();
        for (what, _, f) in &self.children {
            let mut f = f.try_clone().expect("dup");
            let mut s = String::new();
            let _ = f.rewind();
            let _ = f.read_to_string(&mut s);
            all.push_str(&format!("--- {what}:\n{s}\n"));
        }
        all
    }

    fn fail(&mut self, what: &str, why: &str) -> ! {
        let err = self.stderr_text();
        self.kill_all();
        panic!("{what} {why}; stderr of the scenario's programs:\n{err}");
    }

    /// Every process of the scenario now: the started ones, what they
    /// started (by ancestry, or by the inherited tag), and adopted ones.
    fn members(&self) -> BTreeSet<Pid> {
        let mut set: BTreeSet<Pid> = self.known.clone();
        for (_, c, _) in &self.children {
            set.insert(Pid::try_from(c.id()).expect("pid"));
        }
        let all = all_pids();
        for &pid in &all {
            if environ_has(pid, TAG_VAR, &self.tag) {
                set.insert(pid);
            }
        }
        // descendants of members, to a fixed point
        loop {
            let before = set.len();
            for &pid in &all {
                if ppid(pid).is_some_and(|pp| set.contains(&pp)) {
                    set.insert(pid);
                }
            }
            if set.len() == before {
                break;
            }
        }
        set
    }

    fn kill_all(&mut self) {
        let me = std::process::id() as Pid;
        // A few rounds: a process may start another while we kill.
        let mut killed: BTreeSet<Pid> = BTreeSet::new();
        for _ in 0..5 {
            let now: BTreeSet<Pid> = self
                .members()
                .into_iter()
                .filter(|&p| p != me && !killed.contains(&p))
                .collect();
            if now.is_empty() {
                break;
            }
            for &p in &now {
                // SAFETY: plain syscall; these pids are ours or our
                // descendants' and are not reaped yet.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            killed.extend(now);
        }
        for (_, c, _) in &mut self.children {
            let _ = c.wait();
        }
        // Re-parented to us (we are a subreaper): reap them; others are
        // reaped by their own parents.
        for &p in &killed {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let mut st = 0;
                // SAFETY: plain syscall.
                let r = unsafe { libc::waitpid(p, &raw mut st, libc::WNOHANG) };
                if r == p || r < 0 {
                    break; // reaped, or not our child (ECHILD)
                }
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.kill_all();
    }
}

// ------------------------------------------------------------ /proc facts

pub fn all_pids() -> Vec<Pid> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn environ_has(pid: Pid, var: &str, value: &str) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("{var}={value}");
    env.split(|&b| b == 0).any(|kv| kv == want.as_bytes())
}

/// Fields of /proc/PID/stat after the command name.
fn stat_fields(pid: Pid) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(String::from).collect())
}

pub fn ppid(pid: Pid) -> Option<Pid> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// `cminflt` of /proc/PID/stat: page faults of children it waited for
/// (inherited across exec from whatever ran in the process before).
pub fn cminflt(pid: Pid) -> u64 {
    stat_fields(pid)
        .and_then(|f| f.get(8)?.parse().ok())
        .unwrap_or_else(|| panic!("cminflt of pid {pid}"))
}

/// True when SIGCHLD is in `SigIgn` of /proc/PID/status.
pub fn sigchld_ignored(pid: Pid) -> bool {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let mask = st
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or_else(|| panic!("SigIgn of pid {pid}"));
    mask & (1 << (libc::SIGCHLD - 1)) != 0
}

/// Process state letter (R, S, Z...).
pub fn state(pid: Pid) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

pub fn alive(pid: Pid) -> bool {
    matches!(state(pid), Some(c) if c != 'Z' && c != 'X')
}

pub fn comm(pid: Pid) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

pub fn exe(pid: Pid) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default()
}

/// Live children of `pid` (from every process's ppid).
pub fn children(pid: Pid) -> Vec<Pid> {
    let mut v: Vec<Pid> = all_pids()
        .into_iter()
        .filter(|&p| ppid(p) == Some(pid) && alive(p))
        .collect();
    v.sort_unstable();
    v
}

/// True when `anc` is `pid` or one of its ancestors now.
pub fn is_ancestor(anc: Pid, mut pid: Pid) -> bool {
    for _ in 0..64 {
        if pid == anc {
            return true;
        }
        match ppid(pid) {
            Some(p) if p > 0 => pid = p,
            _ => return false,
        }
    }
    false
}

/// FD_CLOEXEC of `pid`'s `fd`, from the `flags:` line of its fdinfo
/// (O_CLOEXEC = 02000000 octal).
pub fn cloexec(pid: Pid, fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fdinfo/{fd}: {e}"));
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap_or_else(|| panic!("no flags in /proc/{pid}/fdinfo/{fd}"));
    u32::from_str_radix(flags.trim(), 8).expect("octal flags") & 0o2_000_000 != 0
}

/// `pid`'s fds that refer to socket `inode`, from /proc/PID/fd.
pub fn fds_of(pid: Pid, inode: u64) -> Vec<i32> {
    let want = format!("socket:[{inode}]");
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| {
                let e = e.ok()?;
                let link = std::fs::read_link(e.path()).ok()?;
                (link.to_str() == Some(want.as_str()))
                    .then(|| e.file_name().to_str()?.parse().ok())?
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// The fds of thread `tid`'s own table (/proc/PID/task/TID/fd) that refer
/// to socket `inode`: differs from `fds_of` for a thread that called
/// unshare(CLONE_FILES).
pub fn task_fds_of(pid: Pid, tid: Pid, inode: u64) -> Vec<i32> {
    let want = format!("socket:[{inode}]");
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task/{tid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| {
                let e = e.ok()?;
                let link = std::fs::read_link(e.path()).ok()?;
                (link.to_str() == Some(want.as_str()))
                    .then(|| e.file_name().to_str()?.parse().ok())?
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// An environment variable of `pid`, from /proc/PID/environ.
pub fn env_of(pid: Pid, var: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{var}=");
    env.split(|&b| b == 0).find_map(|kv| {
        kv.strip_prefix(prefix.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

// ------------------------------------------------------------ ss facts

/// One TCP socket as `ss -tanpe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsSocket {
    pub state: String,
    pub recv_q: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub inode: u64,
    /// (pid, fd) from `users:(...)`, sorted.
    pub holders: Vec<(Pid, i32)>,
}

impl SsSocket {
    pub fn holder_pids(&self) -> BTreeSet<Pid> {
        self.holders.iter().map(|&(p, _)| p).collect()
    }

    pub fn fds_of(&self, pid: Pid) -> Vec<i32> {
        self.holders
            .iter()
            .filter(|&&(p, _)| p == pid)
            .map(|&(_, fd)| fd)
            .collect()
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    // ss prints IPv6 as [::1]:80 and IPv4 as 127.0.0.1:80; a v4-mapped
    // peer as [::ffff:127.0.0.1]:80. An interface suffix (%lo) is dropped.
    // A listener's peer is "0.0.0.0:*" (port 0 here).
    let s = s
        .strip_suffix(":*")
        .map_or(s.to_string(), |a| format!("{a}:0"));
    let s = match (s.find('%'), s.rfind(':')) {
        (Some(p), Some(c)) if p < c => format!("{}{}", &s[..p], &s[c..]),
        _ => s,
    };
    s.parse()
        .unwrap_or_else(|e| panic!("ss address {s:?}: {e}"))
}

/// Parses `ss -tanpeH` lines (with the State column).
pub fn parse_ss(out: &str) -> Vec<SsSocket> {
    let mut v = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() >= 5, "ss line: {line}");
        let mut holders: Vec<(Pid, i32)> = Vec::new();
        for part in line.split("pid=").skip(1) {
            let pid: Pid = part
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| panic!("pid in ss line: {line}"));
            let fd: i32 = part
                .split("fd=")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|d| d.parse().ok())
                .unwrap_or_else(|| panic!("fd in ss line: {line}"));
            holders.push((pid, fd));
        }
        holders.sort_unstable();
        holders.dedup();
        let inode = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ino:"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        v.push(SsSocket {
            state: f[0].to_string(),
            recv_q: f[1].parse().unwrap_or(0),
            local: parse_addr(f[3]),
            remote: parse_addr(f[4]),
            inode,
            holders,
        });
    }
    v
}

/// `ss -tanpeH` for TCP sockets in `state` ("close-wait", "listening")
/// with `port` as local or remote port.
pub fn ss(state: &str, port: u16) -> Vec<SsSocket> {
    let p = format!(":{port}");
    let out = Command::new("ss")
        .args(["-tanpeH", "state", state])
        .args(["(", "sport", "=", &p, "or", "dport", "=", &p, ")"])
        .stdin(Stdio::null())
        .output()
        .expect("run ss (iproute2)");
    assert!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With a single state, ss leaves the State column out: put it back.
    let text = String::from_utf8_lossy(&out.stdout);
    let with_state: String = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{state} {l}\n"))
        .collect();
    parse_ss(&with_state)
}

/// The CLOSE_WAIT sockets of `port`, each holder checked against
/// /proc/PID/fd (a holder ss saw must really hold that inode).
pub fn close_wait(port: u16) -> Vec<SsSocket> {
    let mut socks = ss("close-wait", port);
    for s in &mut socks {
        // A holder may close between ss and /proc: keep what /proc confirms.
        s.holders
            .retain(|&(pid, fd)| fds_of(pid, s.inode).contains(&fd));
    }
    socks.sort_by_key(|s| s.inode);
    socks
}

/// Pids that hold the LISTEN socket on `port`.
pub fn listeners(port: u16) -> BTreeSet<Pid> {
    ss("listening", port)
        .iter()
        .filter(|s| s.local.port() == port)
        .flat_map(|s| s.holder_pids())
        .collect()
}

/// Polls `probe` until it returns Some, or panics with `what` (and the
/// scenario's stderr) after a generous hang guard.
pub fn wait_for<T>(procs: &Procs, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "waited {STATE_TIMEOUT:?} for {what}; stderr of the scenario's programs:\n{}",
                procs.stderr_text()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `port` has `n` CLOSE_WAIT sockets, each with a holder
/// set that `ok` accepts (and that stayed the same over two looks), and
/// returns them.
pub fn wait_close_wait(
    procs: &Procs,
    port: u16,
    n: usize,
    ok: impl Fn(&SsSocket) -> bool,
) -> Vec<SsSocket> {
    let mut last: Option<Vec<SsSocket>> = None;
    wait_for(
        procs,
        &format!("{n} CLOSE_WAIT socket(s) on port {port}"),
        || {
            let now = close_wait(port);
            let good = now.len() == n && now.iter().all(|s| s.inode != 0 && ok(s));
            let stable = good && last.as_ref() == Some(&now);
            last = Some(now.clone());
            stable.then_some(now)
        },
    )
}

/// Waits until `port` has a listener, and returns its holders.
pub fn wait_listening(procs: &Procs, port: u16) -> BTreeSet<Pid> {
    wait_for(procs, &format!("a listener on port {port}"), || {
        let l = listeners(port);
        (!l.is_empty()).then_some(l)
    })
}

// ------------------------------------------------------------ cwleak

/// The ways cwleak reads a live host that the scenarios are checked with:
/// its defaults, fd tables through the task_file BPF iterator (as root,
/// where it can be loaded), and TCP tables from /proc/PID/net/tcp instead
/// of sock_diag. Each must give the same answer.
pub fn readers() -> Vec<Vec<String>> {
    let mut v = vec![Vec::new()];
    if super::skip::is_root() {
        v.push(vec!["--fds".into(), "bpf".into()]);
    }
    v.push(vec!["--tables".into(), "proc".into()]);
    v
}

/// One `cwleak scan --format json --port PORT --settle SETTLE` per reader
/// (see `readers`), with the reader's flags as its label.
pub fn scans(port: u16, settle: &str) -> Vec<(String, Value)> {
    scans_with(port, settle, readers())
}

/// One scan per reader of `readers`.
pub fn scans_with(port: u16, settle: &str, readers: Vec<Vec<String>>) -> Vec<(String, Value)> {
    readers
        .into_iter()
        .map(|extra| {
            // Our own network namespace only, as `ss` sees it: another
            // namespace on this host may leak on the same port number.
            let mut args = vec![
                "--port".to_string(),
                port.to_string(),
                "--netns".to_string(),
                std::process::id().to_string(),
                "--settle".to_string(),
                settle.to_string(),
            ];
            args.extend(extra.iter().cloned());
            let (code, r) = super::cwleak_json(&args);
            let n = super::findings(&r).len();
            let label = if extra.is_empty() {
                "default readers".to_string()
            } else {
                extra.join(" ")
            };
            assert_eq!(
                code,
                if n > 0 { 1 } else { 0 },
                "exit code ({label}); report: {r:#}"
            );
            (label, r)
        })
        .collect()
}

/// One scan per reader of `readers`, each stopped inside its settle
/// window (see `super::window`) while `between` runs: what `between` waits
/// for happens between the two looks by construction. Needs root.
pub fn scans_around(
    port: u16,
    readers: Vec<Vec<String>>,
    mut between: impl FnMut(),
) -> Vec<(String, Value)> {
    readers
        .into_iter()
        .map(|extra| {
            let mut args = vec![
                "scan".to_string(),
                "--format".to_string(),
                "json".to_string(),
                "--port".to_string(),
                port.to_string(),
                "--netns".to_string(),
                std::process::id().to_string(),
                "--settle".to_string(),
                "3s".to_string(),
            ];
            args.extend(extra.iter().cloned());
            let w = super::window::stop_in_settle(&args);
            between();
            let (status, out) = w.resume();
            let label = if extra.is_empty() {
                "default readers".to_string()
            } else {
                extra.join(" ")
            };
            let r: Value = serde_json::from_str(&out)
                .unwrap_or_else(|e| panic!("{label}: not a JSON report ({e}): {out}"));
            let n = super::findings(&r).len();
            assert_eq!(
                status.code(),
                Some(if n > 0 { 1 } else { 0 }),
                "exit code ({label}); report: {r:#}"
            );
            (label, r)
        })
        .collect()
}

/// `assert_report` on the answer of every reader (see `scans`).
pub fn check_port(
    port: u16,
    settle: &str,
    truth: &[SsSocket],
    blame: impl Fn(&SsSocket) -> Pid,
    expect: Expect,
) -> Vec<Value> {
    scans(port, settle)
        .into_iter()
        .map(|(label, r)| {
            // Shown with the failure message (libtest prints a failed
            // test's captured output).
            eprintln!("checking cwleak with {label}");
            assert_report(&r, truth, &blame, expect);
            r
        })
        .collect()
}

/// `bytes_acked` of the CLOSE_WAIT socket `inode` on `port`, from
/// `ss -tanie` (tcp_info), or None when ss does not show it.
pub fn bytes_acked(port: u16, inode: u64) -> Option<u64> {
    let p = format!(":{port}");
    let out = Command::new("ss")
        .args(["-tanieH", "state", "close-wait"])
        .args(["(", "sport", "=", &p, "or", "dport", "=", &p, ")"])
        .stdin(Stdio::null())
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    // -i prints tcp_info on a continuation line after each socket's line.
    let ino = format!("ino:{inode} ");
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.contains(&ino) {
            let info = lines.next()?;
            return info
                .split_whitespace()
                .find_map(|w| w.strip_prefix("bytes_acked:"))
                .and_then(|n| n.parse().ok());
        }
    }
    None
}

/// What the truth says the cause is.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// One look decides: `cause` must be this.
    Cause(&'static str),
    /// One look cannot decide: this must be `cause` or one of
    /// `alternatives[].cause`.
    CauseOrAlternative(&'static str),
}

/// `alternatives[].cause` of a finding (none when the field is absent).
pub fn alternatives(f: &Value) -> Vec<String> {
    f["alternatives"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["cause"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks cwleak's report against the truth: exactly the `truth` sockets
/// are found (no more on the port), each with exactly ss's holders; for
/// each, the pid `blame(socket)` is blamed first, with all its fds, only
/// holders are blamed, and the cause is as expected.
pub fn assert_report(
    r: &Value,
    truth: &[SsSocket],
    blame: impl Fn(&SsSocket) -> Pid,
    expect: Expect,
) {
    let want: Vec<u64> = truth.iter().map(|s| s.inode).collect();
    assert_eq!(
        super::finding_inodes(r),
        want,
        "findings vs the CLOSE_WAIT sockets ss shows: {truth:#?}\nreport: {r:#}"
    );
    for s in truth {
        let f = super::finding(r, s.inode);
        assert_eq!(f["socket"]["state"], "CLOSE_WAIT", "finding: {f:#}");
        let addr = |k: &str| -> SocketAddr {
            f["socket"][k]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("socket.{k} in {f}"))
        };
        assert_eq!(addr("local"), s.local, "socket.local; finding: {f:#}");
        assert_eq!(addr("remote"), s.remote, "socket.remote; finding: {f:#}");
        assert_eq!(
            super::holders(f),
            s.holders,
            "holders (pid, fd) vs ss: {s:?}; finding: {f:#}"
        );
        let b = super::blamed(f);
        let who = blame(s);
        assert_eq!(
            b.first().map(|&(p, _)| p),
            Some(who),
            "blamed first must be pid {who} ({}); truth: {s:?}; finding: {f:#}",
            comm(who)
        );
        for pair in &b {
            assert!(
                s.holders.contains(pair),
                "blamed {pair:?} is not a holder; finding: {f:#}"
            );
        }
        for fd in s.fds_of(who) {
            assert!(
                b.contains(&(who, fd)),
                "pid {who} fd {fd} holds the socket but is not blamed; finding: {f:#}"
            );
        }
        let cause = super::cause(f);
        match expect {
            Expect::Cause(c) => assert_eq!(cause, c, "cause; finding: {f:#}"),
            Expect::CauseOrAlternative(c) => assert!(
                cause == c || alternatives(f).iter().any(|a| a == c),
                "{c} must be the cause or one of the alternatives; finding: {f:#}"
            ),
        }
    }
}
