//! cwleak in a hostile world, built for real: secret-bearing files handed to
//! it as config and pidfile, a symlinked cwleak.toml owned by someone else,
//! a `hidepid=2` /proc in a private mount namespace read by an unprivileged
//! user, names that are not UTF-8 or that carry terminal controls.
//!
//! Every process a test starts is killed and reaped by a guard.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use support::{args, cwleak, skip};

/// A file that looks like /etc/shadow: no byte of it may reach the output.
const SECRET: &str = "root:$6$SALTSALT$HASHHASHSECRET:19700:0:99999:7:::\n";

fn assert_no_secret(what: &str, run: &support::Run) {
    for part in ["SALTSALT", "HASHHASHSECRET", "root:"] {
        assert!(
            !run.stderr.contains(part) && !run.stdout.contains(part),
            "{what} printed the file's content:\n{}{}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn a_secret_file_as_config_or_pidfile_is_never_quoted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("shadow");
    std::fs::write(&secret, SECRET).expect("write");
    let path = secret.display().to_string();
    let me = std::process::id().to_string();

    let run = cwleak(&args(["check", "--pid", &me, "--config", &path]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_secret("--config", &run);
    assert!(
        run.stderr.contains(&path) && run.stderr.contains("line 1, column"),
        "the error names the file and the place: {}",
        run.stderr
    );

    let run = cwleak(&args(["check", "--no-config", "--pidfile", &path]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_secret("--pidfile", &run);
    assert!(
        run.stderr.contains(&path) && run.stderr.contains("expected a positive decimal pid"),
        "{}",
        run.stderr
    );

    // Valid TOML whose values are the secret: the type error names the key's
    // place and what was expected, not the value.
    std::fs::write(&secret, "[check]\nmax = \"HASHHASHSECRET\"\n").expect("write");
    let run = cwleak(&args(["check", "--pid", &me, "--config", &path]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_no_secret("a typed value", &run);
    assert!(run.stderr.contains("line 2, column 7"), "{}", run.stderr);
}

#[test]
fn a_discovered_symlink_to_someone_elses_file_is_refused() {
    if !skip::is_root() {
        skip::skip(
            "a_discovered_symlink_to_someone_elses_file_is_refused",
            "chown needs root",
        );
        return;
    }
    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(repo.path().join(".git")).expect(".git");
    let target = repo.path().join("elsewhere.toml");
    std::fs::write(&target, SECRET).expect("write");
    // nobody's file; the symlink, like a checkout, is ours (root's).
    std::os::unix::fs::chown(&target, Some(65534), Some(65534)).expect("chown");
    std::os::unix::fs::symlink(&target, repo.path().join("cwleak.toml")).expect("symlink");
    let me = std::process::id().to_string();
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cwleak"))
            .args(["check", "--settle", "0", "--pid", &me])
            .args(extra)
            .current_dir(repo.path())
            .stdin(Stdio::null())
            .output()
            .expect("run cwleak");
        support::Run {
            code: out.status.code().expect("exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    };
    let refused = run(&[]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_no_secret("a discovered symlink", &refused);
    assert!(
        refused.stderr.contains("refused") && refused.stderr.contains("uid 65534"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        refused.stderr.trim().lines().count(),
        1,
        "{}",
        refused.stderr
    );
    // Owned by us, the same link is read (and its bad content not quoted).
    std::os::unix::fs::chown(&target, Some(0), Some(0)).expect("chown");
    let read = run(&[]);
    assert_eq!(read.code, 2, "{}", read.stderr);
    assert!(!read.stderr.contains("refused"), "{}", read.stderr);
    assert_no_secret("a symlink we own", &read);
    assert!(Path::new(&target).exists());
}
