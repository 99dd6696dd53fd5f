//! The two ways of reading fd tables must give the same report: `--fds bpf`
//! (the kernel's task_file iterator) and `--fds proc` (readlink of every
//! /proc/PID/fd entry). Every scenario whose state holds still is scanned
//! both ways, scoped to its own process tree: same findings (holders, fds,
//! blame, cause, evidence), same groups, same processes.
//!
//! `--fds bpf` exits 2 when the iterator cannot run, so a pass here also
//! proves the iterator ran (these tests run as root on a kernel with BTF).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::*;

/// A report without what depends on the clock (the ages of sockets and the
/// evidence lines that quote them) or on processes outside the scenario: its
/// ancestors (this test binary, cargo, the shell, init) are listed too, and
/// their fds and threads come and go as other work runs beside it.
fn comparable(r: &Value, driver: Pid) -> Value {
    let mut r = r.clone();
    let parent: std::collections::HashMap<u64, u64> = r["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["pid"].as_u64()?, p["ppid"].as_u64()?)))
        .collect();
    let in_scenario = |mut pid: u64| {
        for _ in 0..parent.len() + 1 {
            if pid == driver as u64 {
                return true;
            }
            match parent.get(&pid) {
                Some(&pp) => pid = pp,
                None => return false,
            }
        }
        false
    };
    if let Some(ps) = r["processes"].as_array_mut() {
        ps.retain(|p| p["pid"].as_u64().is_some_and(in_scenario));
    }
    let timed = |v: &mut Value| {
        if let Some(lines) = v["evidence"].as_array_mut() {
            lines.retain(|l| {
                let l = l.as_str().unwrap_or("");
                !l.contains("no ACK") && !l.contains("CLOSE_WAIT for")
            });
        }
    };
    for f in r["findings"].as_array_mut().into_iter().flatten() {
        f["socket"]
            .as_object_mut()
            .map(|s| s.remove("close_wait_ms"));
        timed(f);
    }
    for g in r["groups"].as_array_mut().into_iter().flatten() {
        g.as_object_mut().map(|g| g.remove("oldest_close_wait_ms"));
        timed(g);
    }
    serde_json::json!({
        "summary": r["summary"],
        "findings": r["findings"],
        "groups": r["groups"],
        "processes": r["processes"],
    })
}

fn scan_with(s: &Scenario, fds: &str) -> (i32, Value) {
    let mut a = s.scope();
    a.extend(["--fds".into(), fds.into()]);
    let run = cwleak_scan("json", &a);
    assert_ne!(
        run.code, 2,
        "cwleak --fds {fds} failed for scenario {}: {}",
        s.name, run.stderr
    );
    (
        run.code,
        serde_json::from_str(&run.stdout).expect("JSON report"),
    )
}

fn same_both_ways(name: &str) {
    let s = Scenario::start(name);
    let (code_bpf, bpf) = scan_with(&s, "bpf");
    let (code_proc, proc) = scan_with(&s, "proc");
    assert_eq!(code_bpf, code_proc, "exit codes differ for {name}");
    let (bpf, proc) = (comparable(&bpf, s.driver()), comparable(&proc, s.driver()));
    assert_eq!(
        bpf, proc,
        "scenario {name}: --fds bpf report\n{bpf:#}\n--fds proc report\n{proc:#}"
    );
    // Both ways found the leaks (an empty report on both sides proves nothing).
    if name != "healthy" {
        assert!(
            !bpf["findings"].as_array().unwrap().is_empty(),
            "scenario {name}: no findings\n{bpf:#}"
        );
        let held = bpf["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| !holders(f).is_empty());
        assert!(
            !held || !bpf["processes"].as_array().unwrap().is_empty(),
            "scenario {name}: none of its holders listed\n{bpf:#}"
        );
    }
}

macro_rules! both_ways {
    ($($test:ident => $name:literal,)*) => {
        $(#[test] fn $test() { same_both_ways($name); })*
    };
}

both_ways! {
    fork_exited => "fork-exited",
    fork_alive => "fork-alive",
    helper_inherits => "helper-inherits",
    helper_inherits_kept => "helper-inherits-kept",
    never_closed => "never-closed",
    dup => "dup",
    scm_rights => "scm-rights",
    threaded => "threaded",
    threaded_leader_exit => "threaded-leader-exit",
    netns => "netns",
    ipv6 => "ipv6",
    mapped => "mapped",
    healthy => "healthy",
    prefork => "prefork",
    cgi => "cgi",
    accept_queue => "accept-queue",
    client_side => "client-side",
    helper_orphaned => "helper-orphaned",
    container => "container",
    many => "many",
    fd_pool => "fd-pool",
    pidfd_getfd => "pidfd-getfd",
    clone_files => "clone-files",
    reuseport => "reuseport",
    pool_client => "pool-client",
    stopped => "stopped",
}

#[test]
fn the_iterator_is_refused_on_a_recorded_tree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let tree = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path().join("proc")))
        .find(|p| p.is_dir())
        .expect("a recorded proc tree under fixtures/");
    let run = cwleak_scan(
        "json",
        &args(["--proc-root", tree.to_str().unwrap(), "--fds", "bpf"]),
    );
    assert_eq!(
        run.code, 2,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains("--fds bpf") && run.stderr.trim().lines().count() == 1,
        "one clear line: {}",
        run.stderr
    );
    // The default walks the same tree without it.
    let run = cwleak_scan("json", &args(["--proc-root", tree.to_str().unwrap()]));
    assert_ne!(run.code, 2, "stderr: {}", run.stderr);
}
