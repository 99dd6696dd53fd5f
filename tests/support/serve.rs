//! A `cwleak serve` started for a test on a loopback port it chose (port 0:
//! it prints the address it bound on stderr), and an HTTP agent for it.
//! Included by the test files that also include `support/leakyd.rs` as
//! `leakyd`, whose process guard it uses.

#![allow(dead_code)] // each test binary uses a different subset

use super::leakyd::{lines_of, Guarded};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

pub struct Started {
    pub proc: Guarded,
    pub addr: SocketAddr,
    /// The server's stderr, line by line, after the address line.
    pub stderr: Receiver<String>,
    pub agent: ureq::Agent,
}

/// Spawns `cmd` (a `cwleak serve --listen 127.0.0.1:0 ...`) under a guard
/// and waits for the address it bound.
pub fn start(cmd: &mut Command) -> Started {
    let mut proc = Guarded::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stderr = lines_of(proc.child.stderr.take().expect("serve stderr"));
    let line = stderr
        .recv_timeout(Duration::from_secs(20))
        .expect("serve printed no address");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    // Only against a hang: the first /report of a scan diagnoses the kept
    // look, which on a host busy with a foreign load of 200k sockets took
    // longer than 10 s in a debug build.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    Started {
        proc,
        addr,
        stderr,
        agent,
    }
}
