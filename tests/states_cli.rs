//! `cwleak states` and `cwleak sysctl` on recorded /proc trees (no root, no
//! live sockets): the counts are the rows of the tree's recorded TCP
//! tables, settings recorded under ROOT/sys are read through the proc root,
//! and usage errors are one-line exit-2 errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;

const FIXTURES: [&str; 4] = ["fork-exited", "healthy", "dup", "accept-queue"];

fn cwleak() -> Command {
    Command::cargo_bin("cwleak").unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = cwleak().args(args).assert().success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn root(name: &str) -> String {
    format!("fixtures/{name}/proc")
}

/// Rows per state of every TCP table recorded in the tree: the kernel's own
/// account, as `/proc/PID/net/tcp{,6}` printed it when the tree was recorded.
fn recorded_rows(name: &str) -> std::collections::BTreeMap<&'static str, u64> {
    const HEX: [(&str, &str); 12] = [
        ("01", "ESTABLISHED"),
        ("02", "SYN_SENT"),
        ("03", "SYN_RECV"),
        ("04", "FIN_WAIT1"),
        ("05", "FIN_WAIT2"),
        ("06", "TIME_WAIT"),
        ("07", "CLOSE"),
        ("08", "CLOSE_WAIT"),
        ("09", "LAST_ACK"),
        ("0A", "LISTEN"),
        ("0B", "CLOSING"),
        ("0C", "NEW_SYN_RECV"),
    ];
    let mut rows = std::collections::BTreeMap::new();
    let mut tables = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(root(name))];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else if path.ends_with("net/tcp") || path.ends_with("net/tcp6") {
                tables.push(path);
            }
        }
    }
    assert!(!tables.is_empty(), "{name}: no recorded table");
    for t in tables {
        for line in std::fs::read_to_string(&t).unwrap().lines().skip(1) {
            let st = line.split_whitespace().nth(3).unwrap();
            let (_, state) = HEX.iter().find(|(h, _)| *h == st).unwrap();
            *rows.entry(*state).or_insert(0) += 1;
        }
    }
    rows
}

#[test]
fn states_counts_the_recorded_tables_exactly() {
    for name in FIXTURES {
        let rows = recorded_rows(name);
        let r = json(&["states", "--format", "json", "--proc-root", &root(name)]);
        for (state, n) in r["total"].as_object().unwrap() {
            let want = rows.get(state.as_str()).copied().unwrap_or(0);
            assert_eq!(n.as_u64(), Some(want), "{name}: {state}");
        }
        assert_eq!(
            r["sockets"].as_u64(),
            Some(rows.values().sum::<u64>()),
            "{name}"
        );
        // scan reads only the states a leak needs; on those, the same truth.
        let out = cwleak()
            .args(["scan", "--format", "json", "--settle", "0", "--proc-root"])
            .arg(root(name))
            .output()
            .unwrap();
        let scan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let by_state = scan["summary"]["by_state"].as_object().unwrap();
        let read = scan["scan"]["states_read"].as_array().unwrap();
        assert_eq!(read.len(), 2, "{name}");
        for state in read {
            let state = state.as_str().unwrap();
            let got = by_state.get(state).and_then(Value::as_u64).unwrap_or(0);
            let want = rows.get(state).copied().unwrap_or(0);
            assert_eq!(got, want, "{name}: scan's {state}");
        }
        assert_eq!(r["scan"]["live"], false);
        assert!(r["scan"]["from"].is_null());
    }
}

#[test]
fn the_fork_exited_tree_counts_exactly() {
    let r = json(&[
        "states",
        "--format",
        "json",
        "--proc-root",
        &root("fork-exited"),
        "--by",
        "port",
    ]);
    let t = &r["total"];
    assert_eq!(
        (
            t["CLOSE_WAIT"].clone(),
            t["FIN_WAIT2"].clone(),
            t["LISTEN"].clone()
        ),
        (3.into(), 3.into(), 1.into())
    );
    assert_eq!(r["sockets"], 7);
    // The clients' FIN_WAIT2 sockets carry the timewait timer (tr 03 in the
    // recorded table): the kernel handed them to timewait (tcp_fin_timeout
    // <= 60), so they are timewait buckets, not orphans.
    assert_eq!(r["namespaces"][0]["orphans"], 0);
    assert_eq!(r["namespaces"][0]["tw_buckets"], 3);
    let fw2 = r["by_state"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["state"] == "FIN_WAIT2")
        .unwrap();
    // The clients' orphans, attributed to the port they connected to.
    assert_eq!(fw2["ports"]["entries"].as_array().unwrap().len(), 1);
    assert_eq!(fw2["ports"]["entries"][0]["side"], "remote");
    assert_eq!(fw2["ports"]["entries"][0]["count"], 3);
    assert!(fw2["processes"].is_null(), "--by port only");
}

/// Copy a tree keeping symlinks as symlinks (fd/N point nowhere on purpose).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().unwrap();
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ty.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn sysctl_reads_recorded_settings_through_the_proc_root() {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    copy_tree(Path::new(&root("fork-exited")), &proc);
    let ipv4 = proc.join("sys/net/ipv4");
    std::fs::create_dir_all(&ipv4).unwrap();
    std::fs::create_dir_all(proc.join("sys/net/core")).unwrap();
    for (name, value) in [
        ("tcp_fin_timeout", "20\n"),
        ("tcp_tw_reuse", "2\n"),
        ("tcp_max_orphans", "4\n"),
        ("tcp_tw_recycle", "1\n"),
        ("ip_local_port_range", "32768\t60999\n"),
    ] {
        std::fs::write(ipv4.join(name), value).unwrap();
    }
    std::fs::write(proc.join("sys/net/core/somaxconn"), "4096\n").unwrap();
    let proc = proc.to_str().unwrap();
    let r = json(&["sysctl", "--format", "json", "--proc-root", proc]);
    let s = &r["namespaces"][0]["sysctls"];
    assert_eq!(s["net.ipv4.ip_local_port_range"], "32768 60999");
    assert_eq!(s["net.ipv4.tcp_max_orphans"], "4");
    let rules: Vec<(&str, &str)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap(), f["severity"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("tw-recycle", "critical"),
            ("fin-timeout", "info"),
            ("close-wait", "info"),
        ]
    );
    assert_eq!(r["summary"]["critical"], 1);
    cwleak()
        .args(["sysctl", "--proc-root", proc, "--fail-on", "critical"])
        .assert()
        .code(1);
    cwleak()
        .args(["sysctl", "--proc-root", proc])
        .assert()
        .code(0);
}

#[test]
fn sysctl_flags_configuration_lines_the_kernel_lacks_or_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    copy_tree(Path::new(&root("fork-exited")), &proc);
    std::fs::create_dir_all(proc.join("sys/net/ipv4")).unwrap();
    std::fs::write(proc.join("sys/net/ipv4/tcp_fin_timeout"), "20\n").unwrap();
    std::fs::write(proc.join("sys/net/ipv4/tcp_tw_reuse"), "2\n").unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(etc.join("sysctl.d")).unwrap();
    std::fs::write(
        etc.join("sysctl.d/60-tcp.conf"),
        "# the popular recipe\nnet.ipv4.tcp_tw_recycle = 1\nnet.ipv4.tcp_fin_timeout = 30\n",
    )
    .unwrap();
    // sysctl.conf comes last and wins.
    std::fs::write(etc.join("sysctl.conf"), "net.ipv4.tcp_tw_reuse=2\n").unwrap();
    let (proc, etc) = (proc.to_str().unwrap(), etc.to_str().unwrap());
    let r = json(&[
        "sysctl",
        "--format",
        "json",
        "--proc-root",
        proc,
        "--etc",
        etc,
    ]);
    let files = r["config_files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{files:#?}");
    let by_key = |k: &str| files.iter().find(|c| c["key"] == k).unwrap();
    assert!(by_key("net.ipv4.tcp_tw_recycle")["running"].is_null());
    assert_eq!(by_key("net.ipv4.tcp_fin_timeout")["running"], "20");
    assert_eq!(by_key("net.ipv4.tcp_fin_timeout")["line"], 3);
    let conf: Vec<&Value> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "sysctl-conf")
        .collect();
    assert_eq!(conf.len(), 2, "{conf:#?}");
    assert_eq!(conf[0]["severity"], "warn");
    assert_eq!(conf[0]["setting"], "net.ipv4.tcp_tw_recycle");
    assert_eq!(conf[1]["severity"], "info");
    assert_eq!(conf[1]["setting"], "net.ipv4.tcp_fin_timeout");
    // The recipe is walked even here, tcp_tw_recycle reported absent.
    let recipe = r["namespaces"][0]["recipe"].as_array().unwrap();
    let recycle = recipe
        .iter()
        .find(|l| l["setting"] == "net.ipv4.tcp_tw_recycle")
        .unwrap();
    assert!(recycle["value_here"].is_null());
    assert!(recycle["verdict"].as_str().unwrap().starts_with("Fails"));
}

#[test]
fn help_names_every_flag() {
    let out = cwleak().args(["states", "--help"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    for flag in [
        "--format",
        "--by",
        "--top",
        "--watch",
        "--count",
        "--pid",
        "--port",
        "--netns",
        "--proc-root",
        "--from",
        "--sample",
    ] {
        assert!(text.contains(flag), "states --help lacks {flag}");
    }
    let out = cwleak().args(["sysctl", "--help"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    for flag in ["--format", "--fail-on", "--netns", "--proc-root", "--from"] {
        assert!(text.contains(flag), "sysctl --help lacks {flag}");
    }
    assert!(text.contains("No sysctl fixes CLOSE_WAIT"), "{text}");
}

fn one_line_error(args: &[&str], needle: &str) {
    let out = cwleak().args(args).assert().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn usage_errors_exit_2() {
    one_line_error(&["states", "--watch", "10ms"], "too short");
    one_line_error(&["states", "--count", "3"], "--watch");
    one_line_error(&["states", "--by", "color"], "color");
    one_line_error(
        &["states", "--proc-root", "/nonexistent/cwleak"],
        "/nonexistent/cwleak",
    );
    one_line_error(
        &[
            "states",
            "--proc-root",
            &root("healthy"),
            "--pid",
            "4000000",
        ],
        "--pid 4000000: no such process",
    );
    one_line_error(&["sysctl", "--fail-on", "never"], "never");
    one_line_error(
        &["states", "--from", "/nonexistent/look.json"],
        "/nonexistent/look.json",
    );
}
