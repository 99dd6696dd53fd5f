//! Both ways of reading fd tables, `--fds bpf` (the kernel's task_file
//! iterator) and `--fds proc` (readlink of every /proc/PID/fd entry), are
//! checked against the scenario's own facts: every scenario whose state holds
//! still is scanned each way, scoped to its own process tree, and must give
//! exactly the sockets the scenario built, each with the (pid, fd) holders it
//! recorded. Neither reader is the reference for the other.
//!
//! `--fds bpf` exits 2 when the iterator cannot run, so a pass here also
//! proves the iterator ran. Where it cannot (not root, no BTF), the tests
//! say SKIPPED, and fail under CI=true.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::*;

/// Whether the task_file iterator can run here: root and the kernel's BTF.
fn iterator_can_run(test: &str) -> bool {
    if !skip::is_root() {
        skip::skip(test, "the task_file iterator needs root");
        return false;
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").is_file() {
        skip::skip(test, "no /sys/kernel/btf/vmlinux: the kernel has no BTF");
        return false;
    }
    true
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

/// The holders cwleak reports for `sock`: one per fd table, so processes
/// sharing one table through CLONE_FILES are one holder, the lowest pid.
fn expected_holders(s: &Scenario, sock: &FactSocket) -> Vec<(Pid, i32)> {
    let shared: Vec<Pid> = s.facts["fd_table_shared_by"]
        .as_array()
        .map(|a| a.iter().map(|p| p.as_i64().expect("pid") as Pid).collect())
        .unwrap_or_default();
    let Some(&table) = shared.iter().min() else {
        return sock.holders.clone();
    };
    let mut h: Vec<(Pid, i32)> = sock
        .holders
        .iter()
        .map(|&(p, fd)| (if shared.contains(&p) { table } else { p }, fd))
        .collect();
    h.sort_unstable();
    h.dedup();
    h
}

fn matches_the_facts(s: &Scenario, fds: &str, code: i32, r: &Value) {
    let name = &s.name;
    let socks = s.sockets();
    if name == "healthy" {
        assert_eq!(findings(r).len(), 0, "--fds {fds}: {r:#}");
        assert_eq!(code, 0, "--fds {fds}");
        return;
    }
    assert_eq!(code, 1, "--fds {fds}: scenario {name} leaks");
    assert_eq!(
        finding_inodes(r)
            .into_iter()
            .filter(|&i| i != 0)
            .collect::<Vec<_>>(),
        sorted(s.inodes()),
        "--fds {fds}, scenario {name}: findings vs the facts' sockets\n{r:#}"
    );
    for sock in &socks {
        let f = if sock.inode == 0 {
            let ours: Vec<&Value> = findings(r)
                .iter()
                .filter(|f| f["socket"]["remote"] == sock.remote.to_string())
                .collect();
            assert_eq!(ours.len(), 1, "--fds {fds}: {} in {r:#}", sock.remote);
            ours[0]
        } else {
            finding(r, sock.inode)
        };
        assert_eq!(f["socket"]["state"], "CLOSE_WAIT", "--fds {fds}: {f:#}");
        assert_eq!(
            f["socket"]["local"],
            sock.local.to_string(),
            "--fds {fds}: {f:#}"
        );
        assert_eq!(
            f["socket"]["remote"],
            sock.remote.to_string(),
            "--fds {fds}: {f:#}"
        );
        assert_eq!(
            holders(f),
            expected_holders(s, sock),
            "--fds {fds}, scenario {name}: holders (pid, fd) vs the facts; finding: {f:#}"
        );
        // A holder in a thread's own fd table names the thread; any other
        // names none.
        let tid = if s.facts["server"]["private_table"] == true {
            s.facts["server"]["acceptor_tid"].clone()
        } else {
            Value::Null
        };
        for h in f["holders"].as_array().unwrap() {
            assert_eq!(h["tid"], tid, "--fds {fds}, scenario {name}: {f:#}");
        }
        // Every holder is listed among the processes.
        for (pid, _) in holders(f) {
            assert!(
                r["processes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["pid"] == pid),
                "--fds {fds}: holder {pid} not in processes"
            );
        }
    }
}

fn against_the_facts(test: &str, name: &str) {
    if !iterator_can_run(test) {
        return;
    }
    let s = Scenario::start(name);
    for fds in ["bpf", "proc"] {
        let (code, r) = scan_with(&s, fds);
        matches_the_facts(&s, fds, code, &r);
    }
}

macro_rules! both_ways {
    ($($test:ident => $name:literal,)*) => {
        $(#[test] fn $test() { against_the_facts(stringify!($test), $name); })*
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
    scm_rights_kept => "scm-rights-kept",
    scm_rights_in_flight => "scm-rights-in-flight",
    threaded => "threaded",
    threaded_leader_exit => "threaded-leader-exit",
    thread_table => "thread-table",
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

/// Unscoped, a scan reads every namespace's table while the iterator reads
/// the fd tables, through whichever process it finds first in each; only
/// the namespaces of socket holders are kept. The scenario's findings, picked
/// out of the whole host's, must be what the facts say: in the host's
/// namespace, in one of their own, and with a zombie leader (its namespace
/// is read through its thread).
fn whole_host(test: &str, name: &str) {
    if !iterator_can_run(test) {
        return;
    }
    let s = Scenario::start(name);
    let ours: Vec<u64> = s.inodes();
    let remotes: Vec<String> = s.sockets().iter().map(|k| k.remote.to_string()).collect();
    let run = cwleak_scan("json", &args(["--fds", "bpf"]));
    assert_ne!(run.code, 2, "whole host, scenario {name}: {}", run.stderr);
    let mut r: Value = serde_json::from_str(&run.stdout).expect("JSON report");
    r["findings"]
        .as_array_mut()
        .expect("findings[]")
        .retain(|f| match f["socket"]["inode"].as_u64() {
            Some(0) | None => {
                remotes.contains(&f["socket"]["remote"].as_str().unwrap_or("").into())
            }
            Some(i) => ours.contains(&i),
        });
    let namespaces = r["scan"]["namespaces"].as_array().expect("namespaces[]");
    for f in findings(&r) {
        let netns = &f["socket"]["netns"];
        assert!(
            namespaces.iter().any(|n| &n["inode"] == netns),
            "scenario {name}: {netns} not among the namespaces read"
        );
    }
    matches_the_facts(&s, "bpf (whole host)", 1, &r);
}

macro_rules! whole_host {
    ($($test:ident => $name:literal,)*) => {
        $(#[test] fn $test() { whole_host(stringify!($test), $name); })*
    };
}

whole_host! {
    whole_host_never_closed => "never-closed",
    whole_host_netns => "netns",
    whole_host_container => "container",
    whole_host_threaded_leader_exit => "threaded-leader-exit",
    whole_host_accept_queue => "accept-queue",
}
