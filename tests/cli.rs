#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The command line as users meet it: help, man page, completions, exit codes,
//! bad input, closed pipes and running without privileges.

#[path = "support/skip.rs"]
mod skip;

use assert_cmd::Command;
use std::fs;
use std::os::unix::fs::symlink;

fn cwleak() -> Command {
    Command::cargo_bin("cwleak").unwrap()
}

#[test]
fn help_reads_like_a_synopsis() {
    let out = cwleak().arg("--help").assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("CLOSE_WAIT"));
    assert!(text.contains("scan"));
    let out = cwleak().args(["scan", "--help"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    for flag in [
        "--format",
        "--pid",
        "--no-children",
        "--port",
        "--netns",
        "--settle",
        "--proc-root",
    ] {
        assert!(text.contains(flag), "scan --help lacks {flag}");
    }
}

#[test]
fn man_page_and_completions_are_generated() {
    let out = cwleak().arg("man").assert().success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains(".TH cwleak"));
    for shell in ["bash", "zsh", "fish"] {
        let out = cwleak().args(["completions", shell]).assert().success();
        assert!(!out.get_output().stdout.is_empty(), "{shell}");
    }
}

/// `cwleak man --dir DIR` into a directory that does not exist yet: every
/// page the top-level page points to (`cwleak-scan(1)`...) is there, with its
/// subcommand's own flags.
#[test]
fn man_dir_writes_one_page_per_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("share/man/man1");
    let out = cwleak().args(["man", "--dir"]).arg(&dir).assert().success();
    let listed = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    let top = std::fs::read_to_string(dir.join("cwleak.1")).unwrap();
    for sub in [
        "scan", "check", "capture", "states", "sysctl", "watch", "serve",
    ] {
        let name = format!("cwleak-{sub}.1");
        assert!(listed.contains(&name), "{name} not listed: {listed}");
        assert!(
            top.contains(&format!("cwleak\\-{sub}(1)")),
            "cwleak.1 does not name {sub}"
        );
        let page = std::fs::read_to_string(dir.join(&name)).unwrap();
        assert!(
            page.contains(&format!(".TH cwleak-{sub} 1")),
            "{name}: {page}"
        );
    }
    let scan = std::fs::read_to_string(dir.join("cwleak-scan.1")).unwrap();
    assert!(
        scan.contains("\\-\\-settle"),
        "cwleak-scan.1 lacks --settle"
    );
    let check = std::fs::read_to_string(dir.join("cwleak-check.1")).unwrap();
    assert!(
        check.contains("\\-\\-junit"),
        "cwleak-check.1 lacks --junit"
    );
}

/// A snapshot is read as recorded: the flags that say how to read the
/// machine are refused, not silently ignored; a missing file is one error.
#[test]
fn scan_from_refuses_live_only_flags_and_names_a_missing_file_once() {
    for flag in [
        ["--settle", "0"],
        ["--fds", "proc"],
        ["--tables", "proc"],
        ["--proc-root", "/proc"],
    ] {
        let out = cwleak()
            .args(["scan", "--from", "/nonexistent/x.json"])
            .args(flag)
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(
            err.contains("cannot be used with") && err.contains(flag[0]),
            "{flag:?}: {err}"
        );
    }
    let out = cwleak()
        .args(["scan", "--from", "/nonexistent/x.json"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    assert!(err.contains("/nonexistent/x.json"), "{err}");
}

#[test]
fn missing_proc_root_is_a_one_line_error() {
    let out = cwleak()
        .args([
            "scan",
            "--proc-root",
            "/nonexistent/cwleak",
            "--settle",
            "0",
        ])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/cwleak"), "{err}");
}

#[test]
fn a_directory_without_processes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = cwleak()
        .args(["scan", "--settle", "0", "--proc-root"])
        .arg(dir.path())
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("not a proc filesystem"), "{err}");
}

#[test]
fn bad_arguments_exit_2() {
    cwleak().args(["scan", "--settle", "soon"]).assert().code(2);
    cwleak().args(["scan", "--format", "yaml"]).assert().code(2);
    cwleak()
        .args(["scan", "--netns", "/nonexistent/ns"])
        .assert()
        .code(2);
}

/// Garbage where /proc files should be: listed as warnings, never a panic.
#[test]
fn malformed_entries_are_listed_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("100/fd")).unwrap();
    fs::write(root.join("100/stat"), "this is not a stat line").unwrap();
    fs::create_dir_all(root.join("200/fd")).unwrap();
    fs::create_dir_all(root.join("200/ns")).unwrap();
    fs::write(
        root.join("200/stat"),
        "200 (srv) S 1 200 200 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
    )
    .unwrap();
    symlink("socket:[777]", root.join("200/fd/3")).unwrap();
    symlink("net:[4026531840]", root.join("200/ns/net")).unwrap();
    fs::create_dir_all(root.join("200/net")).unwrap();
    fs::write(root.join("200/net/tcp"), "header\n   0: nonsense line\n").unwrap();
    let out = cwleak()
        .args(["scan", "--settle", "0", "--format", "json", "--proc-root"])
        .arg(root)
        .assert()
        .code(0);
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let unreadable = report["scan"]["unreadable"].as_array().unwrap();
    let kinds: Vec<&str> = unreadable
        .iter()
        .filter_map(|u| u["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"malformed"), "{unreadable:?}");
    assert!(
        unreadable.iter().any(|u| u["pid"] == 100),
        "the unparsable pid is named: {unreadable:?}"
    );
    assert_eq!(report["scan"]["processes"], 1);
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    use std::io::Read;
    use std::process::{Command as Std, Stdio};
    let mut child = Std::new(env!("CARGO_BIN_EXE_cwleak"))
        .args(["scan", "--settle", "0", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "status {:?}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// As an unprivileged user most fd tables are closed: the scan still answers
/// and lists what it could not read, and without a leak seen it is no
/// all-clear (exit 2, `scan.incomplete` says why).
#[test]
fn unprivileged_scan_lists_what_it_could_not_read() {
    use std::os::unix::process::CommandExt;
    if !skip::is_root() {
        skip::skip(
            "unprivileged_scan_lists_what_it_could_not_read",
            "needs root to drop to another user",
        );
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwleak"))
        .args(["scan", "--settle", "0", "--format", "json"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let leaked = report["summary"]["leaked"].as_u64().unwrap();
    let incomplete = report["scan"]["incomplete"].as_array().unwrap();
    let expected = match (leaked, incomplete.is_empty()) {
        (0, true) => 0,
        (0, false) => 2,
        _ => 1,
    };
    assert_eq!(
        out.status.code(),
        Some(expected),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unreadable = report["scan"]["unreadable"].as_array().unwrap();
    assert!(
        unreadable.iter().any(|u| u["kind"] == "permission-denied"),
        "{unreadable:?}"
    );
}

#[test]
fn a_pid_that_does_not_exist_is_an_error() {
    let out = cwleak()
        .args(["scan", "--settle", "0", "--pid", "2147483647"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("no such process"), "{err}");
}

#[test]
fn json_is_compact_into_a_pipe_and_indented_with_pretty() {
    let scan = |extra: &[&str]| {
        let out = cwleak()
            .args(["scan", "--settle", "0", "--format", "json", "--proc-root"])
            .arg("fixtures/fork-exited/proc")
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "the fixture leaks");
        String::from_utf8(out.stdout).unwrap()
    };
    let compact = scan(&[]);
    let pretty = scan(&["--pretty"]);
    assert_eq!(compact.matches('\n').count(), 1, "one line: {compact}");
    assert!(pretty.matches('\n').count() > 20, "indented: {pretty}");
    let mut a: serde_json::Value = serde_json::from_str(&compact).unwrap();
    let mut b: serde_json::Value = serde_json::from_str(&pretty).unwrap();
    // The same document apart from the timing of each run.
    for v in [&mut a, &mut b] {
        v["scan"]["duration_ms"] = 0.into();
        v["host"]["taken_at_ms"] = 0.into();
    }
    assert_eq!(a, b);
}
