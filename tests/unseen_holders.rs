//! `no-visible-holder` beyond the accept queue: a CLOSE_WAIT socket with an
//! inode that no fd cwleak can see refers to. Each way it happens for real:
//! the fd is in flight in an SCM_RIGHTS message nobody received, its holder
//! runs as another user and cwleak does not, or its holder lives in a pid
//! namespace the /proc cwleak reads does not show. In each, the socket is
//! found (the kernel's tables show it), held by nobody visible, never
//! dropped, and the evidence names the way that applies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::Command;
use support::*;

/// The finding for the scenario's one socket, from a run scoped to its port.
fn the_finding(r: &Value, s: &Scenario) -> Value {
    let sock = &s.sockets()[0];
    let ours: Vec<&Value> = findings_for_port(r, s.port())
        .into_iter()
        .filter(|f| f["socket"]["inode"].as_u64() == Some(sock.inode))
        .collect();
    assert_eq!(ours.len(), 1, "socket {} in {r:#}", sock.inode);
    let f = ours[0].clone();
    assert_eq!(f["socket"]["state"], "CLOSE_WAIT", "{f:#}");
    assert_eq!(f["socket"]["local"], sock.local.to_string(), "{f:#}");
    assert_eq!(f["socket"]["remote"], sock.remote.to_string(), "{f:#}");
    f
}

fn evidence(f: &Value) -> Vec<String> {
    f["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| e.as_str().expect("line").to_string())
        .collect()
}

fn report_of(run: &Run) -> Value {
    assert_eq!(run.code, 1, "a leak is exit 1; stderr:\n{}", run.stderr);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", run.stdout))
}

#[test]
fn an_fd_in_flight_over_scm_rights_has_no_visible_holder() {
    let s = Scenario::start("scm-rights-in-flight");
    let sock = &s.sockets()[0];
    assert!(sock.inode != 0 && sock.holders.is_empty(), "{}", s.facts);
    // The kernel's own view: the socket exists in CLOSE_WAIT, and no
    // process lists it (ss -p finds users through /proc/PID/fd).
    let ss = Command::new("ss")
        .args(["-tanpe", "state", "close-wait"])
        .output()
        .expect("ss");
    let ss = String::from_utf8_lossy(&ss.stdout).into_owned();
    let line = ss
        .lines()
        .find(|l| l.contains(&format!("ino:{} ", sock.inode)))
        .unwrap_or_else(|| panic!("ss does not show inode {}:\n{ss}", sock.inode));
    assert!(!line.contains("users:"), "ss sees a holder: {line}");

    let (code, r) = cwleak_json(&args(["--port".to_string(), s.port().to_string()]));
    assert_eq!(code, 1);
    let f = the_finding(&r, &s);
    assert_eq!(holders(&f), vec![], "{f:#}");
    assert_eq!(cause(&f), "no-visible-holder", "{f:#}");
    let ev = evidence(&f);
    assert!(
        ev.iter()
            .any(|l| l.contains("in flight") && l.contains("SCM_RIGHTS")),
        "{ev:#?}"
    );
    // Accepted (it has an inode): no accept loop is at fault, and the fix
    // says to find the holder, the receiver that must recvmsg() it
    // (docs/causes.md, rule 1).
    let fix = f["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("find the holder") && fix.contains("recvmsg"),
        "{f:#}"
    );
    assert!(!fix.contains("accept"), "{f:#}");
}

#[test]
fn a_holder_cwleak_cannot_read_is_not_invented() {
    if !skip::is_root() {
        skip::skip(
            "a_holder_cwleak_cannot_read_is_not_invented",
            "needs root to run the holder as root and cwleak as another user",
        );
        return;
    }
    // The scenario runs as root; cwleak as nobody, which may not read
    // root's fd tables.
    let s = Scenario::start("never-closed");
    let server = s.pid("server");
    let mut cmd = Command::new(cwleak_bin());
    cmd.args(["scan", "--settle", "0", "--format", "json", "--port"])
        .arg(s.port().to_string())
        .uid(65534)
        .gid(65534);
    let r = report_of(&run_within(cmd, CWLEAK_RUN_TIMEOUT));
    assert_eq!(
        finding_inodes(&r)
            .into_iter()
            .filter(|i| s.inodes().contains(i))
            .count(),
        2,
        "both sockets found: {r:#}"
    );
    let f = the_finding(&r, &s);
    assert_eq!(holders(&f), vec![], "{f:#}");
    assert_eq!(cause(&f), "no-visible-holder", "{f:#}");
    let ev = evidence(&f);
    assert!(
        ev.iter().any(|l| l.contains("permission denied")),
        "{ev:#?}"
    );
    // The server is listed among what could not be read.
    let unreadable = r["scan"]["unreadable"].as_array().expect("unreadable");
    assert!(
        unreadable
            .iter()
            .any(|u| u["pid"] == server && u["kind"] == "permission-denied"),
        "server {server} not listed: {unreadable:#?}"
    );
}

#[test]
fn a_holder_in_another_pid_namespace_is_not_invented() {
    if !skip::is_root() {
        skip::skip(
            "a_holder_in_another_pid_namespace_is_not_invented",
            "needs root for a new pid namespace",
        );
        return;
    }
    // cwleak in a new pid namespace with its own /proc: the scenario's
    // processes are not in it, their sockets are in the same network
    // namespace.
    let s = Scenario::start("never-closed");
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(cwleak_bin())
        .args(["scan", "--settle", "0", "--format", "json", "--port"])
        .arg(s.port().to_string());
    let run = run_within(cmd, CWLEAK_RUN_TIMEOUT);
    let r = report_of(&run);
    let f = the_finding(&r, &s);
    assert_eq!(holders(&f), vec![], "{f:#}");
    assert_eq!(cause(&f), "no-visible-holder", "{f:#}");
    let ev = evidence(&f);
    assert!(
        ev.iter().any(|l| l.contains("another pid namespace")),
        "{ev:#?}"
    );
    // What it saw is its own namespace: no pid of the scenario.
    let seen: Vec<i64> = r["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["pid"].as_i64())
        .collect();
    assert!(
        !seen.contains(&(s.pid("server") as i64)),
        "the server's pid is visible: {seen:?}"
    );
}
