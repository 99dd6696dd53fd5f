#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The commands docs/json-schema.md gives, run as a user would copy them:
//! every `jq` query against a real report (a recorded fixture's scan and a
//! `check --report` of it), and the `cwleak states`/`cwleak sysctl | jq`
//! lines against this machine. A query that jq rejects, or that reads a
//! field that is not there, fails here.

#[path = "support/skip.rs"]
mod skip;

use std::path::Path;
use std::process::Command;

const DOC: &str = include_str!("../docs/json-schema.md");

/// Shell commands of the fenced `sh` blocks, continuation lines joined:
/// a line that starts with a space continues the one before.
fn commands() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_sh = false;
    for line in DOC.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh || line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') {
            if let Some(last) = out.last_mut() {
                last.push('\n');
                last.push_str(line);
            }
        } else {
            out.push(line.to_string());
        }
    }
    out
}

fn have_jq() -> bool {
    let ok = Command::new("jq")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip::skip("docs_commands", "jq is not installed (apt-get install jq)");
    }
    ok
}

/// `bash -c cmd` in `dir` with this build's cwleak first on PATH: (status,
/// stdout, stderr). Pipelines fail when any part fails (pipefail).
fn sh(cmd: &str, dir: &Path) -> (Option<i32>, String, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_cwleak")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", cmd])
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fork-alive/proc")
        .display()
        .to_string()
}

#[test]
fn every_jq_query_on_the_report_runs() {
    if !have_jq() {
        return;
    }
    let cmds = commands();
    let first = cmds
        .iter()
        .position(|c| c.starts_with("cwleak scan --format json > report.json"))
        .expect("the jq section starts by writing report.json");
    let queries: Vec<&String> = cmds[first + 1..]
        .iter()
        .take_while(|c| c.starts_with("jq "))
        .collect();
    assert!(queries.len() >= 12, "{queries:?}");
    let scan = tempfile::tempdir().unwrap();
    let checked = tempfile::tempdir().unwrap();
    // The documented command on a recorded leak (live would depend on this host).
    let (code, _, err) = sh(
        &format!(
            "cwleak scan --settle 0 --proc-root {} --format json > report.json",
            fixture()
        ),
        scan.path(),
    );
    assert_eq!(code, Some(1), "{err}");
    // A check report with every part the queries read (check, during),
    // scoped to the recorded server (its pid from the tree's facts).
    let facts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fork-alive/facts.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let server = facts["server"]["pid"].as_i64().unwrap();
    let (code, _, err) = sh(
        &format!(
            "cwleak check --no-config --proc-root {} --pid {server} --settle 0 --during --report report.json -- true",
            fixture()
        ),
        checked.path(),
    );
    assert_eq!(code, Some(1), "{err}");
    for q in queries {
        let dirs: &[&Path] = if q.contains(".check.") {
            &[checked.path()]
        } else {
            &[scan.path(), checked.path()]
        };
        for dir in dirs {
            let (code, out, err) = sh(q, dir);
            // `jq -e` exits 1 for a false or null answer, as the doc says.
            let ok = code == Some(0) || (q.starts_with("jq -e") && code == Some(1));
            assert!(ok && err.is_empty(), "{q}\nexit {code:?}\n{err}");
            if !q.starts_with("jq -e")
                && !q.contains(".check.during")
                && !q.contains("select(.allowed)")
                && !q.contains("fd_limit")
                && !q.contains(".scan.unreadable")
            {
                assert!(!out.trim().is_empty(), "{q}: no output");
            }
        }
    }
}

/// `cwleak states` and `cwleak sysctl` piped into jq, on this machine.
#[test]
fn the_states_and_sysctl_pipelines_run() {
    if !have_jq() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = commands()
        .into_iter()
        .filter(|c| {
            (c.starts_with("cwleak states ") || c.starts_with("cwleak sysctl "))
                && c.contains("| jq")
                && !c.contains("--watch")
        })
        .collect();
    assert!(lines.len() >= 5, "{lines:?}");
    for cmd in lines {
        let (code, _, err) = sh(&cmd, dir.path());
        let ok = code == Some(0) || (cmd.contains("jq -e") && code == Some(1));
        assert!(
            ok && !err.contains("jq: error"),
            "{cmd}\nexit {code:?}\n{err}"
        );
    }
}
