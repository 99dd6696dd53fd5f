#![allow(dead_code)] // each test binary uses a different subset

//! Visible skips. A test that cannot run here (not root, a tool missing, no
//! IPv6) says so on the real stderr, which libtest does not capture, so the
//! line shows in the run's output next to the results; under `CI=true` the
//! skip fails the test, because CI installs and provides everything the
//! suite needs.

use std::io::Write;

/// Reports that the calling test did not run, and why. Returns normally
/// (the caller then returns) outside CI; panics under `CI=true`.
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED {test}: {why}\n");
    // Straight to fd 2: `eprintln!` inside a test is captured and hidden.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} did not run under CI=true: {why}");
    }
}

/// True when the tests run as root (namespaces, other users, BPF).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
