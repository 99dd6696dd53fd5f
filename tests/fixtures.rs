//! Diagnosis of recorded /proc trees (fixtures/*, recorded from real runs of
//! examples/scenario.rs): the same code path as a live scan, no kernel needed.
//! Holders are compared with the facts each scenario recorded about itself;
//! the expected cause and blamed process are stated here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn facts(name: &str) -> Value {
    let text =
        std::fs::read_to_string(Path::new("fixtures").join(name).join("facts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn scan(name: &str, extra: &[&str]) -> (i32, Value) {
    let root = Path::new("fixtures").join(name).join("proc");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwleak"))
        .args(["scan", "--settle", "0", "--format", "json", "--proc-root"])
        .arg(&root)
        .args(extra)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (code, report)
}

fn pid(v: &Value) -> i64 {
    v["pid"].as_i64().unwrap()
}

fn pairs(list: &Value) -> BTreeSet<(i64, i64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|h| (pid(h), h["fd"].as_i64().unwrap()))
        .collect()
}

/// Every socket the scenario built is a finding with exactly its holders.
fn check_holders(name: &str, report: &Value, facts: &Value) {
    let findings = report["findings"].as_array().unwrap();
    let sockets = facts["sockets"].as_array().unwrap();
    assert_eq!(findings.len(), sockets.len(), "{name}: {findings:#?}");
    for s in sockets {
        let f = findings
            .iter()
            .find(|f| {
                f["socket"]["inode"] == s["inode"]
                    && f["socket"]["local"] == s["local"]
                    && f["socket"]["remote"] == s["remote"]
            })
            .unwrap_or_else(|| panic!("{name}: no finding for {s}"));
        assert_eq!(
            pairs(&f["holders"]),
            pairs(&s["holders"]),
            "{name}: holders of {s}"
        );
        assert_eq!(f["socket"]["state"], "CLOSE_WAIT");
    }
}

/// Scan a fixture, check holders, and return its findings for cause checks.
fn findings_of(name: &str) -> (Value, Vec<Value>) {
    let f = facts(name);
    let (code, report) = scan(name, &[]);
    assert_eq!(code, 1, "{name}: leaks mean exit 1");
    check_holders(name, &report, &f);
    assert!(
        report["scan"]["unreadable"].as_array().unwrap().is_empty(),
        "{name}: {}",
        report["scan"]
    );
    let findings = report["findings"].as_array().unwrap().clone();
    (f, findings)
}

fn assert_cause_and_first_blamed(name: &str, cause: &str, role: &str) {
    let (f, findings) = findings_of(name);
    for finding in &findings {
        assert_eq!(finding["cause"], cause, "{name}: {finding:#}");
        let first = &finding["blamed"][0];
        assert_eq!(pid(first), pid(&f[role]), "{name}: blamed {finding:#}");
        let holder_fds: BTreeSet<_> = pairs(&finding["holders"]);
        assert!(
            holder_fds.contains(&(pid(first), first["fd"].as_i64().unwrap())),
            "{name}"
        );
    }
}

#[test]
fn fork_parent_kept_children_exited() {
    let (f, findings) = findings_of("fork-exited");
    for finding in &findings {
        assert_eq!(finding["cause"], "fork-parent-kept");
        assert_eq!(pairs(&finding["blamed"]), pairs(&finding["holders"]));
        assert_eq!(pid(&finding["blamed"][0]), pid(&f["server"]));
    }
}

#[test]
fn fork_parent_kept_children_alive() {
    assert_cause_and_first_blamed("fork-alive", "fork-parent-kept", "server");
}

#[test]
fn inherited_no_cloexec_server_closed() {
    let (f, findings) = findings_of("helper-inherits");
    assert_eq!(findings[0]["cause"], "inherited-no-cloexec");
    assert_eq!(
        pairs(&findings[0]["blamed"]),
        pairs(&findings[0]["holders"])
    );
    assert_eq!(pid(&findings[0]["blamed"][0]), pid(&f["helper"]));
    assert_eq!(findings[0]["holders"][0]["cloexec"], false);
}

#[test]
fn inherited_no_cloexec_server_kept() {
    assert_cause_and_first_blamed("helper-inherits-kept", "inherited-no-cloexec", "helper");
}

#[test]
fn never_closed() {
    assert_cause_and_first_blamed("never-closed", "never-closed", "server");
}

#[test]
fn dup_copy_kept() {
    let (f, findings) = findings_of("dup");
    assert_eq!(findings[0]["cause"], "dup-copy-kept");
    let blamed = pairs(&findings[0]["blamed"]);
    assert_eq!(blamed.len(), 2);
    assert!(blamed.iter().all(|(p, _)| *p == pid(&f["server"])));
}

#[test]
fn passed_fd_kept() {
    assert_cause_and_first_blamed("scm-rights", "passed-fd-kept", "receiver");
}

#[test]
fn threads_are_one_holder() {
    for name in ["threaded", "threaded-leader-exit"] {
        let (f, findings) = findings_of(name);
        for finding in &findings {
            assert_eq!(finding["cause"], "never-closed", "{name}");
            for h in finding["holders"].as_array().unwrap() {
                assert_eq!(
                    pid(h),
                    pid(&f["server"]),
                    "{name}: a thread id leaked into holders"
                );
            }
        }
    }
}

#[test]
fn private_network_namespace() {
    let (f, findings) = findings_of("netns");
    assert_eq!(findings[0]["socket"]["netns"], f["netns"]);
    assert_ne!(findings[0]["socket"]["netns"], f["host_netns"]);
    assert_eq!(findings[0]["cause"], "never-closed");
}

#[test]
fn ipv6_and_v4_mapped() {
    assert_cause_and_first_blamed("ipv6", "never-closed", "server");
    let (_, findings) = findings_of("mapped");
    assert_eq!(findings[0]["socket"]["family"], "ipv6");
    assert!(findings[0]["socket"]["local"]
        .as_str()
        .unwrap()
        .starts_with("[::ffff:127.0.0.1]:"));
}

#[test]
fn prefork_worker_never_closed() {
    let (f, findings) = findings_of("prefork");
    let workers: Vec<i64> = f["workers"].as_array().unwrap().iter().map(pid).collect();
    for finding in &findings {
        assert_eq!(finding["cause"], "never-closed");
        assert!(workers.contains(&pid(&finding["blamed"][0])));
        assert_ne!(pid(&finding["blamed"][0]), pid(&f["master"]));
    }
}

#[test]
fn cgi_parent_kept() {
    assert_cause_and_first_blamed("cgi", "fork-parent-kept", "server");
}

#[test]
fn accept_queue_has_no_visible_holder() {
    let (f, findings) = findings_of("accept-queue");
    assert_eq!(findings[0]["cause"], "no-visible-holder");
    assert_eq!(findings[0]["socket"]["inode"], 0);
    assert!(findings[0]["blamed"].as_array().unwrap().is_empty());
    let evidence = findings[0]["evidence"].to_string();
    assert!(evidence.contains("accept"), "{evidence}");
    assert!(
        evidence.contains(&f["server"]["pid"].to_string()),
        "names the listener's holder: {evidence}"
    );
}

#[test]
fn client_side_never_closed() {
    let (_, findings) = findings_of("client-side");
    assert_eq!(findings[0]["cause"], "never-closed");
    assert!(findings[0]["evidence"]
        .to_string()
        .contains("no socket listens"));
}

#[test]
fn healthy_population_is_clean() {
    let (code, report) = scan("healthy", &[]);
    assert_eq!(code, 0);
    assert!(report["findings"].as_array().unwrap().is_empty());
    // scan reads only what a leak needs; the whole picture is `cwleak states`.
    assert_eq!(
        report["scan"]["states_read"],
        serde_json::json!(["CLOSE_WAIT", "LISTEN"])
    );
    assert!(report["summary"]["by_state"]["LISTEN"].as_u64().unwrap() >= 1);
    assert!(report["summary"]["by_state"]["ESTABLISHED"].is_null());
    let root = Path::new("fixtures").join("healthy").join("proc");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cwleak"))
        .args(["states", "--format", "json", "--proc-root"])
        .arg(&root)
        .output()
        .unwrap();
    let states: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(states["total"]["ESTABLISHED"].as_u64().unwrap() >= 3);
}

#[test]
fn scopes_apply_to_fixtures() {
    let f = facts("fork-alive");
    let child = pid(&f["children"][0]).to_string();
    // The child alone holds one of the sockets: scoping to it keeps that one.
    let (code, report) = scan("fork-alive", &["--pid", &child, "--no-children"]);
    assert_eq!(code, 1);
    assert_eq!(report["findings"].as_array().unwrap().len(), 1);
    let (code, report) = scan("fork-alive", &["--port", "1"]);
    assert_eq!(code, 0);
    assert!(report["findings"].as_array().unwrap().is_empty());
    let port = f["port"].to_string();
    let (_, report) = scan("fork-alive", &["--port", &port]);
    assert_eq!(report["findings"].as_array().unwrap().len(), 3);
}
