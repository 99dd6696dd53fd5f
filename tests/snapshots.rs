//! CLI snapshots of the text and JSON reports, on recorded fixture trees.
//! Volatile fields (scan duration, clock time) are redacted; pids, fds and
//! inodes are those of the recording, so they are stable.
//! Update with `cargo insta review` (or INSTA_UPDATE=always) after a deliberate change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

fn run(fixture: &str, format: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwleak"))
        .args([
            "scan",
            "--settle",
            "0",
            "--color",
            "never",
            "--format",
            format,
            "--proc-root",
        ])
        .arg(format!("fixtures/{fixture}/proc"))
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn text_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"scanned in \d+ ms", "scanned in [N] ms");
    s.add_filter(r"in\s+\d+ ms", "in [N] ms");
    s.add_filter(r"taken \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "taken [time]");
    s
}

fn json_snapshot(fixture: &str) {
    let report: serde_json::Value = serde_json::from_str(&run(fixture, "json")).unwrap();
    insta::assert_json_snapshot!(format!("json-{fixture}"), report, {
        ".scan.duration_ms" => "[duration]",
        ".host.taken_at_ms" => "[time]",
    });
}

#[test]
fn text_fork_parent_kept() {
    text_settings()
        .bind(|| insta::assert_snapshot!("text-fork-exited", run("fork-exited", "text")));
}

#[test]
fn text_inherited_no_cloexec() {
    text_settings()
        .bind(|| insta::assert_snapshot!("text-helper-inherits", run("helper-inherits", "text")));
}

#[test]
fn text_clean() {
    text_settings().bind(|| insta::assert_snapshot!("text-healthy", run("healthy", "text")));
}

#[test]
fn json_fork_parent_kept() {
    json_snapshot("fork-exited");
}

#[test]
fn json_accept_queue() {
    json_snapshot("accept-queue");
}

#[test]
fn markdown_dup() {
    text_settings().bind(|| insta::assert_snapshot!("markdown-dup", run("dup", "markdown")));
}

#[test]
fn dot_scm_rights() {
    insta::assert_snapshot!("dot-scm-rights", run("scm-rights", "dot"));
}

/// A cause one look cannot decide: the alternative on an **Or:** line and
/// the hedged fix.
#[test]
fn markdown_fork_with_alternative() {
    text_settings()
        .bind(|| insta::assert_snapshot!("markdown-fork-exited", run("fork-exited", "markdown")));
}
