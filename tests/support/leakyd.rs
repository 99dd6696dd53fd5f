//! A leak that grows, for the live tests of `watch` and `serve`: the
//! `leakyd` example in fork mode (the parent keeps every accepted fd, so
//! each connection leaves one more CLOSE_WAIT socket) and its client, run
//! when the test wants the count to go up. Plus a guard for long-running
//! cwleak commands.
//!
//! Every process is started in its own process group, and the whole group
//! is killed and reaped when its guard is dropped, also when the test panics.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// An example binary, built next to the test binaries, or in
/// `CWLEAK_EXAMPLES_DIR` (the mutation script builds the tests in another
/// target directory than the examples).
pub fn example(name: &str) -> PathBuf {
    let dir = match std::env::var_os("CWLEAK_EXAMPLES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()
            .expect("current_exe")
            .parent()
            .and_then(Path::parent)
            .expect("test binary is not in <target>/<profile>/deps")
            .join("examples"),
    };
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} not found: a plain `cargo test` builds it; with a filter such as \
         `cargo test --test check`, run `cargo build --examples` first",
        bin.display()
    );
    bin
}

/// A child in its own process group; the group is killed and the child
/// reaped on drop.
pub struct Guarded {
    pub child: Child,
}

impl Guarded {
    /// Spawn `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> Guarded {
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Guarded { child }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Send `sig` to the child alone.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain syscall; the child is not reaped yet, so the pid is its own.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Its exit status, waiting at most `timeout`.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: plain syscall; the leader is not reaped yet, so the group
        // id cannot have been reused.
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Lines of a child's output, read on a thread so a test can wait with a timeout.
pub fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `leakyd fork` on a loopback port.
pub struct Leakyd {
    proc: Guarded,
    pub pid: i32,
    pub port: u16,
    lines: mpsc::Receiver<String>,
    accepted: usize,
}

impl Leakyd {
    pub fn start() -> Leakyd {
        let mut proc = Guarded::spawn(
            Command::new(example("leakyd"))
                .arg("fork")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let lines = lines_of(proc.child.stdout.take().expect("leakyd stdout"));
        let first = lines
            .recv_timeout(LINE_TIMEOUT)
            .expect("leakyd said nothing");
        let port = first
            .strip_prefix("listening ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("leakyd said {first:?}"));
        Leakyd {
            pid: proc.pid(),
            proc,
            port,
            lines,
            accepted: 0,
        }
    }

    /// Open `n` connections and close them from the client side; returns
    /// once the server has accepted all of them, so each is in CLOSE_WAIT.
    pub fn connect(&mut self, n: usize) {
        let st = Command::new(example("leakyd"))
            .args([
                "client",
                "--port",
                &self.port.to_string(),
                "-n",
                &n.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("leakyd client");
        assert!(st.success(), "leakyd client: {st}");
        let want = self.accepted + n;
        while self.accepted < want {
            let line = self
                .lines
                .recv_timeout(LINE_TIMEOUT)
                .expect("leakyd reported no accept in time");
            if line.starts_with("accepted ") {
                self.accepted += 1;
            }
        }
        // Accepted is not yet CLOSE_WAIT: the client's FIN may still be on
        // its way (a busy host defers loopback delivery). The kernel's table
        // tells when it has arrived.
        let deadline = Instant::now() + LINE_TIMEOUT;
        while close_wait_on(self.port) < want {
            assert!(
                Instant::now() < deadline,
                "{want} accepted connections on port {} never all reached CLOSE_WAIT",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted
    }

    pub fn guard(&self) -> &Guarded {
        &self.proc
    }
}

/// CLOSE_WAIT sockets whose local port is `port`, in this process's
/// network namespace (/proc/net/tcp: state 08).
pub fn close_wait_on(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[1].ends_with(&local) && f[3] == "08"
                })
                .count()
        })
        .sum()
}
