//! A known population of TCP sockets in a fresh network namespace, built by
//! the `tcp_population` example (see its docs) and torn down on drop: the
//! process is told to exit (stdin EOF), then killed and reaped whatever
//! happened, also when the test panics.
//!
//! Used with `#[path = "support/population.rs"] mod population;`.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The example, next to the test binaries, or in `CWLEAK_EXAMPLES_DIR` (the
/// mutation script builds the tests in another target directory than the
/// examples).
fn example_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("CWLEAK_EXAMPLES_DIR") {
        return PathBuf::from(dir).join("tcp_population");
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary is not in <target>/<profile>/deps");
    let bin = profile_dir.join("examples").join("tcp_population");
    assert!(
        bin.is_file(),
        "{} not found: a plain `cargo test` builds it; with a target filter run \
         `cargo build --examples` first",
        bin.display()
    );
    bin
}

pub struct Population {
    pub facts: Value,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: std::fs::File,
    lines: mpsc::Receiver<std::io::Result<String>>,
}

impl Population {
    /// `tcp_population ARGS...`, once its table shows what it built.
    pub fn start(args: &[&str]) -> Population {
        Self::spawn(Command::new(example_bin()).args(args))
    }

    /// `ip netns exec NAME tcp_population --in-place ARGS...`: built inside
    /// a named namespace, which outlives the process.
    pub fn start_in(name: &str, args: &[&str]) -> Population {
        let bin = example_bin();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", name])
            .arg(bin)
            .arg("--in-place")
            .args(args);
        Self::spawn(&mut cmd)
    }

    fn spawn(cmd: &mut Command) -> Population {
        let stderr = tempfile::tempfile().expect("tempfile");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone().expect("dup"))
            .spawn()
            .expect("spawn tcp_population");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Every line it prints: the facts, then one answer per command.
        std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                let r = out.read_line(&mut line).map(|_| line);
                let end = !matches!(&r, Ok(l) if !l.is_empty());
                if tx.send(r).is_err() || end {
                    return;
                }
            }
        });
        let mut p = Population {
            facts: Value::Null,
            child,
            stdin,
            stderr,
            lines: rx,
        };
        let line = match p.lines.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => line,
            other => p.fail(&format!("printed no facts: {other:?}")),
        };
        p.facts = serde_json::from_str(&line)
            .unwrap_or_else(|e| p.fail(&format!("printed invalid JSON ({e}): {line}")));
        p
    }

    fn fail(&mut self, what: &str) -> ! {
        self.kill();
        let mut err = String::new();
        let _ = self.stderr.rewind();
        let _ = self.stderr.read_to_string(&mut err);
        panic!("tcp_population {what}; its stderr:\n{err}");
    }

    fn kill(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send one command line (`resume`, `pause`) and wait for its answer.
    pub fn command(&mut self, cmd: &str) -> String {
        use std::io::Write;
        let sent = self
            .stdin
            .as_mut()
            .map(|s| writeln!(s, "{cmd}").and_then(|()| s.flush()));
        if !matches!(sent, Some(Ok(()))) {
            self.fail(&format!("did not take the command {cmd:?}: {sent:?}"));
        }
        match self.lines.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => line.trim().to_string(),
            other => self.fail(&format!("did not answer {cmd:?}: {other:?}")),
        }
    }

    pub fn netns(&self) -> u64 {
        self.facts["netns"].as_u64().expect("facts.netns")
    }

    pub fn pid(&self) -> i64 {
        self.facts["pid"].as_i64().expect("facts.pid")
    }

    /// What the namespace's table holds, by state (states not listed: 0).
    pub fn expect(&self, state: &str) -> u64 {
        self.facts["expect"][state].as_u64().unwrap_or(0)
    }

    pub fn fact(&self, key: &str) -> u64 {
        self.facts[key]
            .as_u64()
            .unwrap_or_else(|| panic!("facts.{key}"))
    }
}

impl Drop for Population {
    fn drop(&mut self) {
        // EOF asks it to exit; a kill after the grace period makes sure.
        self.stdin = None;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}
