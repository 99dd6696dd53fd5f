//! `cwleak states` and `cwleak sysctl` against real sockets: each test builds
//! a known population in a fresh network namespace (the `tcp_population`
//! example, root needed) and asserts exact counts and findings for that
//! namespace, by its inode, so the rest of the machine does not matter.
//! Every process started is reaped on drop, also when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/population.rs"]
mod population;
mod support;

use population::Population;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{args, cwleak};

const STATES: [&str; 12] = [
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
];

/// `cwleak ARGS...` -> (exit code, JSON on stdout).
fn json(a: &[String]) -> (i32, Value) {
    let run = cwleak(a);
    let v = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "cwleak {a:?} (exit {}) printed no JSON: {e}\nstdout:\n{}\nstderr:\n{}",
            run.code, run.stdout, run.stderr
        )
    });
    (run.code, v)
}

/// The mixed population: 3 kept connections, 4 closed client-first, 3
/// half-closed by the client (2 fully: orphans), 2 never accepted.
fn mixed() -> Population {
    Population::start(&[
        "--established",
        "3",
        "--time-wait",
        "4",
        "--close-wait",
        "3",
        "--unaccepted",
        "2",
        "--backlog",
        "5",
    ])
}

fn namespace(report: &Value, netns: u64) -> &Value {
    report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["netns"].as_u64() == Some(netns))
        .unwrap_or_else(|| panic!("namespace {netns} not in {:#}", report["namespaces"]))
}

fn detail<'a>(report: &'a Value, state: &str) -> &'a Value {
    report["by_state"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["state"] == state)
        .unwrap_or_else(|| panic!("no {state} in by_state: {:#}", report["by_state"]))
}

/// Every one of the twelve states, exactly as the population built it.
fn assert_counts(counts: &Value, p: &Population, what: &str) {
    assert_eq!(counts.as_object().unwrap().len(), 12, "{what}: {counts}");
    for s in STATES {
        assert_eq!(
            counts[s].as_u64(),
            Some(p.expect(s)),
            "{what}: {s} in {counts}"
        );
    }
}

#[test]
fn counts_every_state_of_a_namespace_exactly() {
    let p = mixed();
    let ns = p.netns();
    let (code, r) = json(&args([
        "states",
        "--format",
        "json",
        "--netns",
        &ns.to_string(),
        "--by",
        "process,port,remote,netns",
    ]));
    assert_eq!(code, 0);
    assert_eq!(r["schema_version"], 1);
    assert_counts(&r["total"], &p, "total");
    let n = namespace(&r, ns);
    assert_counts(&n["states"], &p, "namespaces[].states");
    assert_eq!(r["namespaces"].as_array().unwrap().len(), 1);
    assert_eq!(n["method"], "sock_diag");
    assert_eq!(n["via_pid"].as_i64(), Some(p.pid()));
    // The client's fully closed FIN_WAIT2 sockets were handed to timewait
    // (tcp_fin_timeout is 60): timewait buckets, not orphans, as the
    // kernel's own sockstat counts them.
    assert_eq!(n["orphans"].as_u64(), Some(0));
    assert_eq!(
        n["tw_buckets"].as_u64(),
        Some(p.expect("TIME_WAIT") + p.fact("orphan_fin_wait2"))
    );
    assert_eq!(n["kernel"]["tw"], n["tw_buckets"]);
    let sum: u64 = STATES.iter().map(|s| p.expect(s)).sum();
    assert_eq!(r["sockets"].as_u64(), Some(sum));

    // Who owns what.
    let tw = detail(&r, "TIME_WAIT");
    assert_eq!(tw["owners"]["kernel"].as_u64(), Some(p.expect("TIME_WAIT")));
    assert_eq!(
        tw["ports"]["entries"],
        serde_json::json!([{"port": 5555, "side": "remote", "count": 4}]),
        "TIME_WAIT is on the client side, attributed to the server's port"
    );
    assert_eq!(tw["processes"]["entries"], serde_json::json!([]));
    let fw2 = detail(&r, "FIN_WAIT2");
    assert_eq!(
        fw2["owners"]["kernel"].as_u64(),
        Some(p.fact("orphan_fin_wait2"))
    );
    assert_eq!(
        fw2["owners"]["process"].as_u64(),
        Some(p.fact("held_fin_wait2"))
    );
    let est = detail(&r, "ESTABLISHED");
    assert_eq!(
        est["owners"]["accept_queue"].as_u64(),
        Some(p.fact("accept_queue"))
    );
    assert_eq!(
        est["owners"]["process"].as_u64(),
        Some(p.expect("ESTABLISHED") - p.fact("accept_queue"))
    );
    let holder = &est["processes"]["entries"][0];
    assert_eq!(holder["pid"].as_i64(), Some(p.pid()));
    assert_eq!(holder["comm"], "tcp_population");
    let cw = detail(&r, "CLOSE_WAIT");
    assert_eq!(
        cw["ports"]["entries"][0],
        serde_json::json!({"port": 5555, "side": "local", "count": 3})
    );
    assert_eq!(
        cw["remotes"]["entries"],
        serde_json::json!([{"address": "127.0.0.1", "count": 3}])
    );
    assert_eq!(cw["netns"]["entries"][0]["netns"].as_u64(), Some(ns));
}

#[test]
fn the_whole_host_view_holds_the_namespace_exactly_too() {
    let p = mixed();
    let (code, r) = json(&args(["states", "--format", "json"]));
    assert_eq!(code, 0);
    assert_counts(&namespace(&r, p.netns())["states"], &p, "whole host");
    // The host total is the sum of its namespaces.
    for s in STATES {
        let sum: u64 = r["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["states"][s].as_u64().unwrap())
            .sum();
        assert_eq!(r["total"][s].as_u64(), Some(sum), "{s}");
    }
}

#[test]
fn the_proc_table_fallback_counts_the_same() {
    let p = mixed();
    let (_, r) = json(&args([
        "states",
        "--format",
        "json",
        "--tables",
        "proc",
        "--netns",
        &p.netns().to_string(),
    ]));
    assert_eq!(namespace(&r, p.netns())["method"], "proc");
    assert_counts(&r["total"], &p, "from /proc/PID/net/tcp");
}

#[test]
fn scope_by_pid_leaves_out_what_no_process_holds() {
    let p = mixed();
    let (_, r) = json(&args([
        "states",
        "--format",
        "json",
        "--pid",
        &p.pid().to_string(),
    ]));
    assert_eq!(r["total"]["TIME_WAIT"], 0);
    assert_eq!(r["total"]["LISTEN"], 1);
    assert_eq!(
        r["total"]["CLOSE_WAIT"].as_u64(),
        Some(p.expect("CLOSE_WAIT"))
    );
    assert_eq!(
        r["total"]["FIN_WAIT2"].as_u64(),
        Some(p.fact("held_fin_wait2"))
    );
    assert_eq!(
        r["total"]["ESTABLISHED"].as_u64(),
        Some(p.expect("ESTABLISHED") - p.fact("accept_queue"))
    );
}

#[test]
fn text_shows_the_table_and_the_owners() {
    let p = mixed();
    let run = cwleak(&args([
        "states",
        "--netns",
        &p.netns().to_string(),
        "--color",
        "never",
    ]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let t = run.stdout;
    assert!(
        t.starts_with(&format!(
            "cwleak states: 21 TCP sockets in 1 network namespace (scope: --netns {})\n",
            p.netns()
        )),
        "{t}"
    );
    assert!(t.contains("\n  TIME_WAIT           4\n"), "{t}");
    assert!(t.contains("\n  NEW_SYN_RECV        0\n"), "{t}");
    assert!(
        t.contains("\nTIME_WAIT 4  no process: closed first on this side"),
        "{t}"
    );
    assert!(t.contains("port    remote 5555"), "{t}");
    assert!(
        t.contains(&format!("process {} tcp_population", p.pid())),
        "{t}"
    );
}

#[test]
fn watch_prints_one_line_per_look_into_a_pipe() {
    let p = mixed();
    let ns = p.netns().to_string();
    let run = cwleak(&args([
        "states", "--netns", &ns, "--watch", "200ms", "--count", "3",
    ]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    for l in &lines {
        assert!(l.contains(" UTC sockets 21 "), "{l}");
        assert!(l.contains(" TIME_WAIT 4"), "{l}");
        assert!(!l.contains('\x1b'), "no escapes into a pipe: {l:?}");
    }
    let run = cwleak(&args([
        "states", "--netns", &ns, "--watch", "200ms", "--count", "2", "--format", "json",
    ]));
    let docs: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    assert!(docs[0]["change"].is_null());
    assert_eq!(docs[1]["change"]["TIME_WAIT"], 0);
    assert_counts(&docs[1]["total"], &p, "watch json");
}

/// Kills and reaps a process on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn watch_stops_on_ctrl_c_with_status_0() {
    let p = mixed();
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_cwleak"))
            .args(["states", "--netns", &p.netns().to_string(), "--watch", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains(" TIME_WAIT 4"), "{first}");
    // SAFETY: plain syscall on our own child, not reaped yet.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "cwleak states --watch ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

// ------------------------------------------------------------------ sysctl

fn findings(r: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn finding<'a>(r: &'a Value, rule: &str) -> &'a Value {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == rule)
        .unwrap_or_else(|| panic!("no {rule} finding in {:#}", r["findings"]))
}

fn observed(f: &Value, name: &str) -> Value {
    f["observed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no {name} observed in {f:#}"))["value"]
        .clone()
}

fn pair(rule: &str, severity: &str) -> (String, String) {
    (rule.to_string(), severity.to_string())
}

#[test]
fn sysctl_judges_the_values_a_namespace_was_given() {
    let p = Population::start(&[
        "--time-wait",
        "10",
        "--unaccepted",
        "4",
        "--backlog",
        "5",
        "--sysctl",
        "net.ipv4.tcp_max_tw_buckets=12",
        "--sysctl",
        "net.ipv4.tcp_tw_reuse=0",
        "--sysctl",
        "net.ipv4.tcp_fin_timeout=30",
    ]);
    let ns = p.netns().to_string();
    let (code, r) = json(&args(["sysctl", "--format", "json", "--netns", &ns]));
    assert_eq!(code, 0, "findings alone never fail without --fail-on");
    assert_eq!(
        findings(&r),
        vec![
            pair("accept-queue", "warn"),
            pair("fin-timeout", "info"),
            pair("time-wait-buckets", "warn"),
            pair("tw-reuse", "info"),
        ],
        "{:#}",
        r["findings"]
    );
    let n = &r["namespaces"][0];
    assert_eq!(n["netns"].as_u64(), Some(p.netns()));
    assert_eq!(n["sysctls"]["net.ipv4.tcp_max_tw_buckets"], "12");
    assert_eq!(n["sysctls"]["net.ipv4.tcp_tw_reuse"], "0");
    assert_eq!(n["sysctls"]["net.ipv4.tcp_fin_timeout"], "30");
    assert_eq!(n["states"]["TIME_WAIT"], 10);
    assert_eq!(
        (
            n["time_wait_incoming"].clone(),
            n["time_wait_outgoing"].clone()
        ),
        (0.into(), 10.into())
    );

    let tw = finding(&r, "time-wait-buckets");
    assert_eq!(tw["netns"].as_u64(), Some(p.netns()));
    assert_eq!(tw["setting"], "net.ipv4.tcp_max_tw_buckets");
    assert_eq!(observed(tw, "TIME_WAIT"), 10);
    assert_eq!(observed(tw, "net.ipv4.tcp_max_tw_buckets"), 12);
    assert_eq!(observed(tw, "percent"), 83);
    let aq = finding(&r, "accept-queue");
    assert_eq!(observed(aq, "accept queue"), 4);
    assert_eq!(observed(aq, "backlog"), 5);
    assert_eq!(observed(aq, "listener"), "127.0.0.1:5555");
    assert!(aq["action"]
        .as_str()
        .unwrap()
        .contains(&format!("pid {}", p.pid())));
    let fin = finding(&r, "fin-timeout");
    assert!(fin["reason"]
        .as_str()
        .unwrap()
        .contains("TIME_WAIT lasts 60 s"));
    let reuse = finding(&r, "tw-reuse");
    assert_eq!(observed(reuse, "on connections opened here"), 10);

    let fail = |level: &str| cwleak(&args(["sysctl", "--netns", &ns, "--fail-on", level])).code;
    assert_eq!(fail("warn"), 1);
    assert_eq!(fail("critical"), 0);
}

#[test]
fn sysctl_sees_one_destination_filling_the_port_range() {
    let p = Population::start(&[
        "--established",
        "18",
        "--sysctl",
        "net.ipv4.ip_local_port_range=40000 40019",
    ]);
    let (_, r) = json(&args([
        "sysctl",
        "--format",
        "json",
        "--netns",
        &p.netns().to_string(),
    ]));
    assert_eq!(
        findings(&r),
        vec![pair("local-port-range", "warn")],
        "{:#}",
        r["findings"]
    );
    let f = finding(&r, "local-port-range");
    assert_eq!(observed(&f.clone(), "destination"), "127.0.0.1:5555");
    assert_eq!(observed(f, "sockets"), 18);
    assert_eq!(observed(f, "ports in range"), 20);
    assert_eq!(observed(f, "percent"), 90);
    let d = &r["namespaces"][0]["busiest_destination"];
    assert_eq!(d["sockets"], 18);
    assert_eq!(d["remote"], "127.0.0.1:5555");
}

#[test]
fn sysctl_compares_namespaces_and_points_close_wait_at_scan() {
    let a = Population::start(&["--close-wait", "2", "--sysctl", "net.ipv4.tcp_tw_reuse=0"]);
    let b = Population::start(&["--established", "1"]);
    let (_, r) = json(&args([
        "sysctl",
        "--format",
        "json",
        "--netns",
        &a.netns().to_string(),
        "--netns",
        &b.netns().to_string(),
    ]));
    let differ = finding(&r, "namespaces-differ");
    assert_eq!(differ["setting"], "net.ipv4.tcp_tw_reuse");
    assert!(differ["netns"].is_null());
    assert_eq!(
        observed(differ, "value 0"),
        format!("in netns {}", a.netns()).as_str()
    );
    let cw = finding(&r, "close-wait");
    assert!(cw["setting"].is_null());
    assert_eq!(cw["netns"].as_u64(), Some(a.netns()));
    assert_eq!(observed(cw, "CLOSE_WAIT"), 2);
    assert!(cw["action"]
        .as_str()
        .unwrap()
        .contains(&format!("cwleak scan --netns {}", a.netns())));
    // Text: findings first, every line within 80 columns when asked to.
    let run = cwleak(&args([
        "sysctl",
        "--netns",
        &a.netns().to_string(),
        "--color",
        "never",
    ]));
    assert!(run.stdout.starts_with("cwleak sysctl: "), "{}", run.stdout);
    assert!(run
        .stdout
        .contains("INFO     2 sockets in CLOSE_WAIT: no sysctl closes them"));
}

#[test]
fn a_capture_is_counted_and_judged_like_the_live_machine() {
    let p = Population::start(&[
        "--time-wait",
        "5",
        "--close-wait",
        "1",
        "--sysctl",
        "net.ipv4.tcp_max_tw_buckets=6",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("look.json.zst");
    let file = file.to_str().unwrap();
    let run = cwleak(&args(["capture", "-o", file, "--settle", "0"]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ns = p.netns().to_string();
    let (_, r) = json(&args([
        "states", "--format", "json", "--from", file, "--netns", &ns,
    ]));
    assert_counts(&r["total"], &p, "states --from");
    assert_eq!(r["scan"]["from"], file);
    // The capture kept what the kernel counted: 5 TIME_WAIT and the orphaned
    // FIN_WAIT2 handed to timewait.
    let n = namespace(&r, p.netns());
    assert_eq!(n["kernel"]["tw"].as_u64(), Some(6), "{n:#}");
    assert_eq!(n["tw_buckets"].as_u64(), Some(6));
    let (_, r) = json(&args([
        "sysctl", "--format", "json", "--from", file, "--netns", &ns,
    ]));
    assert_eq!(finding(&r, "time-wait-buckets")["severity"], "warn");
    assert_eq!(
        r["namespaces"][0]["sysctls"]["net.ipv4.tcp_max_tw_buckets"],
        "6"
    );
    assert_eq!(r["scan"]["from"], file);
}

/// `ss -tanH` inside the namespace of `pid`, per state in cwleak's spelling
/// (`ss` shows NEW_SYN_RECV request sockets as SYN-RECV).
fn ss_counts(pid: i64) -> std::collections::BTreeMap<String, u64> {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "ss", "-tanH"])
        .output()
        .expect("nsenter ss");
    assert!(out.status.success(), "ss: {:?}", out);
    let mut counts = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(state) = line.split_whitespace().next() else {
            continue;
        };
        let name = match state {
            "ESTAB" => "ESTABLISHED",
            "SYN-SENT" => "SYN_SENT",
            "SYN-RECV" => "SYN_RECV",
            "FIN-WAIT-1" => "FIN_WAIT1",
            "FIN-WAIT-2" => "FIN_WAIT2",
            "TIME-WAIT" => "TIME_WAIT",
            "UNCONN" => "CLOSE",
            "CLOSE-WAIT" => "CLOSE_WAIT",
            "LAST-ACK" => "LAST_ACK",
            "LISTEN" => "LISTEN",
            "CLOSING" => "CLOSING",
            other => panic!("ss printed an unknown state {other}"),
        };
        *counts.entry(name.to_string()).or_default() += 1;
    }
    counts
}

/// (tw, orphan) of the TCP line of /proc/PID/net/sockstat: the kernel's
/// own counts, read through a process in the namespace.
fn sockstat(pid: i64) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/sockstat")).unwrap();
    let line = text.lines().find(|l| l.starts_with("TCP:")).unwrap();
    let w: Vec<&str> = line.split_whitespace().collect();
    let get = |k: &str| -> u64 {
        let i = w.iter().position(|x| *x == k).unwrap();
        w[i + 1].parse().unwrap()
    };
    (get("tw"), get("orphan"))
}

/// Thousands of TIME_WAIT, orphans in FIN_WAIT1, FIN_WAIT2 held and handed
/// to timewait, a full accept queue: `states` agrees with `ss` state by
/// state and with the kernel's sockstat; with SYNs hitting the full queue,
/// the overflow findings fire, and they stop when the SYNs stop.
#[test]
fn under_real_load_states_agree_with_ss_and_the_kernel_and_overflows_fire() {
    let mut p = Population::start(&[
        "--time-wait",
        "3000",
        "--orphans",
        "20",
        "--close-wait",
        "40",
        "--established",
        "3",
        "--overflow",
    ]);
    let (pid, ns) = (p.pid(), p.netns().to_string());
    let states = || json(&args(["states", "--format", "json", "--netns", &ns]));

    // 1. The table, state by state, as ss sees it.
    let ss = ss_counts(pid);
    let (code, r) = states();
    assert_eq!(code, 0);
    for s in STATES {
        let ss_n = match s {
            "SYN_RECV" => ss.get("SYN_RECV").copied().unwrap_or(0),
            "NEW_SYN_RECV" => 0,
            _ => ss.get(s).copied().unwrap_or(0),
        };
        let ours = match s {
            "SYN_RECV" => {
                r["total"]["SYN_RECV"].as_u64().unwrap()
                    + r["total"]["NEW_SYN_RECV"].as_u64().unwrap()
            }
            "NEW_SYN_RECV" => 0,
            _ => r["total"][s].as_u64().unwrap(),
        };
        assert_eq!(ours, ss_n, "{s}: cwleak {} vs ss {ss:?}", r["total"]);
        assert_eq!(ours, p.expect(s), "{s}: as built");
    }

    // 2. The kernel's counts, read back to back around cwleak's look (the
    // orphan count is host-wide: retry while other processes move it).
    let orphans = p.fact("orphans");
    let tw = p.expect("TIME_WAIT") + p.fact("orphan_fin_wait2");
    let mut agreed = false;
    for _ in 0..20 {
        let before = sockstat(pid);
        let (_, r) = states();
        let after = sockstat(pid);
        if before != after {
            continue;
        }
        let n = namespace(&r, p.netns());
        assert_eq!(n["kernel"]["tw"].as_u64(), Some(before.0), "{n:#}");
        assert_eq!(n["kernel"]["orphans"].as_u64(), Some(before.1), "{n:#}");
        // The table's own accounting says the same for this namespace.
        assert_eq!(n["tw_buckets"].as_u64(), Some(tw));
        assert_eq!(
            before.0, tw,
            "the kernel's tw counts the FIN_WAIT2 handed to timewait"
        );
        assert_eq!(
            n["orphans"].as_u64(),
            Some(orphans),
            "FIN_WAIT1 orphans only"
        );
        assert!(
            before.1 >= orphans,
            "host-wide orphans {} < {orphans}",
            before.1
        );
        agreed = true;
        break;
    }
    assert!(agreed, "sockstat never held still around a look");

    // 3. Nothing is overflowing yet: no finding claims it.
    let (_, r) = json(&args([
        "sysctl", "--format", "json", "--netns", &ns, "--window", "300ms",
    ]));
    let rules: Vec<String> = findings(&r).into_iter().map(|(rule, _)| rule).collect();
    assert!(!rules.contains(&"listen-overflow".to_string()), "{rules:?}");
    let aq = finding(&r, "accept-queue");
    assert_eq!(aq["severity"], "critical");
    // Backlog 1 < somaxconn: the application's backlog is the limit.
    assert!(aq["setting"].is_null(), "{aq:#}");
    assert!(aq["reason"].as_str().unwrap().contains("drops new SYNs"));

    // 4. SYNs hit the full queue: ListenOverflows moves, the finding fires.
    assert_eq!(p.command("resume"), "resumed");
    let (_, r) = json(&args([
        "sysctl", "--format", "json", "--netns", &ns, "--window", "1s",
    ]));
    let f = finding(&r, "listen-overflow");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["netns"].as_u64(), Some(p.netns()));
    let n = namespace(&r, p.netns());
    assert!(
        n["counters_change"]["ListenOverflows"].as_i64().unwrap() > 0,
        "{n:#}"
    );
    // --watch shows the counters' change from the second look on.
    let run = cwleak(&args([
        "states", "--netns", &ns, "--watch", "300ms", "--count", "2", "--format", "json",
    ]));
    let looks: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(looks.len(), 2, "{}", run.stdout);
    assert!(looks[0]["namespaces"][0]["counters_change"].is_null());
    let moved = &looks[1]["namespaces"][0]["counters_change"]["ListenOverflows"];
    assert!(
        moved.as_i64().unwrap() > 0,
        "{:#}",
        looks[1]["namespaces"][0]
    );

    // 5. The SYNs stop: the level stays, the overflow finding goes.
    assert_eq!(p.command("pause"), "paused");
    let (_, r) = json(&args([
        "sysctl", "--format", "json", "--netns", &ns, "--window", "500ms",
    ]));
    let rules: Vec<String> = findings(&r).into_iter().map(|(rule, _)| rule).collect();
    assert!(!rules.contains(&"listen-overflow".to_string()), "{rules:?}");
    assert!(rules.contains(&"accept-queue".to_string()), "{rules:?}");
}

/// A namespace made by `ip netns add`, its sockets left behind by a process
/// that is gone: found through /run/netns, counted, and judged.
#[test]
fn a_namespace_nobody_sits_in_is_read_through_its_file() {
    let name = format!("cwleak-states-{}", std::process::id());
    let _ns = NamedNetns::add(&name);
    let path = format!("/run/netns/{name}");
    let p = Population::start_in(&name, &["--time-wait", "200"]);
    let inode = p.netns();
    drop(p);
    // The process is reaped; its TIME_WAIT sockets stay for 60 s.
    let ss = Command::new("ip")
        .args(["netns", "exec", &name, "ss", "-tanH", "state", "time-wait"])
        .output()
        .unwrap();
    let tw = String::from_utf8_lossy(&ss.stdout).lines().count() as u64;
    assert_eq!(tw, 200, "ss inside the namespace");

    let (code, r) = json(&args(["states", "--format", "json", "--netns", &path]));
    assert_eq!(code, 0);
    let n = namespace(&r, inode);
    assert_eq!(n["file"], path.as_str());
    assert!(n["via_pid"].is_null());
    assert_eq!(n["states"]["TIME_WAIT"].as_u64(), Some(tw));
    assert_eq!(n["kernel"]["tw"].as_u64(), Some(tw));
    assert_eq!(r["sockets"].as_u64(), Some(tw));
    // Without --netns too: named namespaces are looked for.
    let (_, all) = json(&args(["states", "--format", "json"]));
    assert_eq!(namespace(&all, inode)["file"], path.as_str());

    let (_, s) = json(&args([
        "sysctl", "--format", "json", "--netns", &path, "--window", "0",
    ]));
    let n = namespace(&s, inode);
    assert_eq!(n["sysctls"]["net.ipv4.tcp_tw_reuse"], "2");
    assert_eq!(n["recipe"].as_array().unwrap().len(), 8);
    let text = cwleak(&args(["sysctl", "--netns", &path, "--window", "0"])).stdout;
    assert!(!text.contains("0 network namespaces"), "{text}");
    assert!(
        text.contains(&format!("{path}, no process in it")),
        "{text}"
    );

    // scan reads it too (its sockets have no holder there to name).
    let (code, scan) = support::cwleak_json(&args(["--netns", &path]));
    assert_eq!(code, 0, "{scan:#}");
    let read: Vec<u64> = scan["scan"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["inode"].as_u64())
        .collect();
    assert!(read.contains(&inode), "{read:?}");
}

/// `sysctl` on a namespace with nothing in it still explains every setting
/// and walks the recipe line by line.
#[test]
fn sysctl_explains_every_setting_on_an_idle_namespace() {
    let p = Population::start(&[]);
    let ns = p.netns().to_string();
    let (code, r) = json(&args([
        "sysctl", "--format", "json", "--netns", &ns, "--window", "0",
    ]));
    assert_eq!(code, 0);
    let n = namespace(&r, p.netns());
    let explained = n["explained"].as_array().unwrap();
    for e in explained {
        assert!(!e["does"].as_str().unwrap().is_empty(), "{e:#}");
        assert!(!e["does_not"].as_str().unwrap().is_empty(), "{e:#}");
    }
    let recipe = n["recipe"].as_array().unwrap();
    let settings: Vec<&str> = recipe
        .iter()
        .map(|l| l["setting"].as_str().unwrap())
        .collect();
    assert_eq!(
        settings,
        [
            "net.ipv4.tcp_syncookies",
            "net.ipv4.tcp_tw_reuse",
            "net.ipv4.tcp_tw_recycle",
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.ip_local_port_range",
            "net.ipv4.tcp_max_syn_backlog",
            "net.ipv4.tcp_max_tw_buckets",
        ]
    );
    for s in settings {
        let e = explained
            .iter()
            .find(|e| e["setting"] == s)
            .unwrap_or_else(|| panic!("{s}"));
        // This kernel (6.x) has every one but tcp_tw_recycle.
        assert_eq!(
            e["value"].is_null(),
            s == "net.ipv4.tcp_tw_recycle",
            "{e:#}"
        );
    }
    let line = |s: &str| {
        recipe.iter().find(|l| l["setting"] == s).unwrap()["verdict"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(line("net.ipv4.tcp_tw_recycle").contains("4.12"));
    assert!(line("net.ipv4.tcp_tw_reuse").contains("nothing for connections accepted"));
    assert!(line("net.ipv4.tcp_fin_timeout").contains("not TIME_WAIT"));
    assert!(line("net.ipv4.tcp_keepalive_time").contains("SO_KEEPALIVE"));
    assert!(line("net.ipv4.ip_local_port_range").contains("parity"));
    assert!(line("net.ipv4.tcp_max_syn_backlog").contains("syncookies"));
    assert!(line("net.ipv4.tcp_max_tw_buckets").contains("never"));
    let text = cwleak(&args(["sysctl", "--netns", &ns, "--window", "0"])).stdout;
    assert!(
        text.contains("The popular TIME_WAIT recipe, line by line"),
        "{text}"
    );
    assert!(
        text.contains("net.ipv4.tcp_tw_recycle = 1   (absent here)"),
        "{text}"
    );
}

/// `ip netns add NAME`, deleted on drop (also when the test fails).
struct NamedNetns(String);

impl NamedNetns {
    fn add(name: &str) -> NamedNetns {
        let st = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        let ns = NamedNetns(name.to_string());
        let st = Command::new("ip")
            .args(["netns", "exec", name, "ip", "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(st.success());
        ns
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}
