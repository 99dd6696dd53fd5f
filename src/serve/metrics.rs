//! The Prometheus metrics of one scan, as metric families that
//! `exposition` writes in either format. Pure: built from plain numbers and
//! the diagnosis's tally (`diagnose::Tally`), so a scrape only copies a string rendered once per scan.
//!
//! Label cardinality is bounded: per-process series exist for the `top` blamed
//! processes with the most sockets, the others summed into one series with
//! `pid="other"`; the same for network namespaces (`netns="other"`).
//! Namespaces are labelled by inode (as `scan` names them). A family that
//! has been written once keeps its series at 0: a zero and a missing series
//! look alike to an alert. docs/fleet.md lists every metric.

use super::exposition::{self, Family, Format, Kind, Value};
use crate::diagnose::tally::BlamedProcess;
use crate::diagnose::{Cause, Report, Tally};
use crate::model::{Inode, Pid, Snapshot, TcpState, WarningKind};
use std::collections::{BTreeMap, HashMap};

/// What the scanner has counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    pub scans: u64,
    pub errors: u64,
    /// Seconds spent scanning, all scans.
    pub duration_s: f64,
    pub last_duration_s: f64,
    /// End of the last successful scan, seconds since the epoch.
    pub last_success_s: Option<f64>,
}

/// Sockets per (network namespace, TCP state), host-wide.
pub type StateCounts = BTreeMap<(Inode, TcpState), usize>;

/// Records and the sockets the look only counted (`NetNs::unkept`) alike.
pub fn state_counts(snap: &Snapshot) -> StateCounts {
    let mut counts = StateCounts::new();
    for s in &snap.sockets {
        *counts.entry((s.netns, s.state)).or_default() += 1;
    }
    for n in &snap.namespaces {
        for (state, count) in &n.unkept {
            *counts.entry((n.inode, *state)).or_default() += count;
        }
    }
    counts
}

/// One scan's worth of input.
pub struct Input<'a> {
    /// The last successful scan (None before the first one).
    pub report: Option<&'a Report>,
    pub states: &'a StateCounts,
    pub counters: &'a Counters,
    /// Processes, and network namespaces, with series of their own.
    pub top: usize,
}

const OTHER: &str = "other";

/// Every warning kind, so that each has a series (0 included); `kind_name`
/// below fails to build when a kind is added, a reminder to list it here.
const KINDS: [WarningKind; 7] = [
    WarningKind::PermissionDenied,
    WarningKind::Vanished,
    WarningKind::Malformed,
    WarningKind::NetTable,
    WarningKind::Io,
    WarningKind::TimedOut,
    WarningKind::Incomplete,
];

/// The whole exposition in one format (`# EOF` included for OpenMetrics).
pub fn render(input: &Input, format: Format) -> String {
    exposition::encode(&families(input), format)
}

/// Every family, in the order they are written.
pub fn families(input: &Input) -> Vec<Family> {
    let scan = input
        .report
        .map(|report| scan_families(&Tally::of(report), input.states, input.top));
    families_of(input.counters, scan.as_deref())
}

/// The families of one successful scan: what its report and its state
/// counts say. `serve` keeps these (a few KB) until the next success, not
/// the report they come from (tens of MB on a big host).
pub fn scan_families(tally: &Tally, states: &StateCounts, top: usize) -> Vec<Family> {
    let mut out = Vec::new();
    leak_metrics(&mut out, tally, top);
    out.push(tcp_sockets(states, &tally.states_read, top));
    out.push(
        Family::new(
            "cwleak_tcp_other_namespaces",
            Kind::Gauge,
            "Network namespaces summed into the netns=other series of cwleak_tcp_sockets",
        )
        .with(int(folded_namespaces(states, top))),
    );
    out
}

/// Every family: the scanner's own, then the last successful scan's (None
/// before the first one).
pub fn families_of(counters: &Counters, scan: Option<&[Family]>) -> Vec<Family> {
    let mut out = vec![Family::new(
        "cwleak_build",
        Kind::Info,
        "The cwleak that exports these metrics",
    )];
    out[0].push(
        vec![("version", env!("CARGO_PKG_VERSION").to_string())],
        Value::Int(1),
    );
    scanner_metrics(&mut out, counters);
    out.extend(scan.unwrap_or_default().iter().cloned());
    out
}

fn scanner_metrics(out: &mut Vec<Family>, c: &Counters) {
    out.push(
        Family::new(
            "cwleak_scans",
            Kind::Counter,
            "Scans run since cwleak serve started",
        )
        .with(Value::Int(i64::try_from(c.scans).unwrap_or(i64::MAX))),
    );
    out.push(
        Family::new(
            "cwleak_scan_errors",
            Kind::Counter,
            "Scans that failed (the previous results stay exported)",
        )
        .with(Value::Int(i64::try_from(c.errors).unwrap_or(i64::MAX))),
    );
    out.push(
        Family::new(
            "cwleak_scan_duration_seconds",
            Kind::Counter,
            "Time spent scanning, settle windows included",
        )
        .seconds()
        .with(Value::Float(c.duration_s)),
    );
    out.push(
        Family::new(
            "cwleak_last_scan_duration_seconds",
            Kind::Gauge,
            "How long the last scan took",
        )
        .seconds()
        .with(Value::Float(c.last_duration_s)),
    );
    // Absent before the first success: there is no time to give.
    if let Some(t) = c.last_success_s {
        out.push(
            Family::new(
                "cwleak_last_scan_timestamp_seconds",
                Kind::Gauge,
                "When the last successful scan ended (Unix time)",
            )
            .seconds()
            .with(Value::Float(t)),
        );
    }
}

/// Per blamed process: sockets (by cause), open fds, the fd limit, and one
/// info series with its comm and cgroup (joined on pid in queries).
fn leak_metrics(out: &mut Vec<Family>, tally: &Tally, top: usize) {
    let (kept, folded) = split_top(tally, top);
    let info: HashMap<Pid, &BlamedProcess> = tally.processes.iter().map(|p| (p.pid, p)).collect();
    let mut per: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
    let mut other = 0;
    for g in &tally.groups {
        let pid = match g.pid {
            Some(pid) if !kept.contains(&pid) => {
                other += g.sockets;
                continue;
            }
            Some(pid) => pid.to_string(),
            // Sockets nobody visibly holds: one series whatever their number.
            None => "none".to_string(),
        };
        *per.entry((pid, g.cause.name())).or_default() += int_of(g.sockets);
    }
    let mut sockets = Family::new(
        "cwleak_close_wait_sockets",
        Kind::Gauge,
        "Persistent CLOSE_WAIT sockets per blamed process and cause (top processes; the rest summed under pid=other)",
    );
    // Ordered by socket count, as people read them.
    let mut rows: Vec<((String, &'static str), i64)> = per.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for ((pid, cause), n) in rows {
        sockets.push(
            vec![("pid", pid), ("cause", cause.to_string())],
            Value::Int(n),
        );
    }
    // Always there, 0 when nothing is folded: queries and alerts never see it vanish.
    sockets.push(
        vec![("pid", OTHER.into()), ("cause", OTHER.into())],
        int(other),
    );
    out.push(sockets);
    out.push(
        Family::new(
            "cwleak_close_wait_other_processes",
            Kind::Gauge,
            "Blamed processes summed into the pid=other series",
        )
        .with(int(folded)),
    );
    let mut procs = Family::new(
        "cwleak_process",
        Kind::Info,
        "Command name and cgroup of each blamed process with its own series",
    );
    let mut fds = Family::new(
        "cwleak_process_open_fds",
        Kind::Gauge,
        "Open fds of each blamed process with its own series",
    );
    let mut limits = Family::new(
        "cwleak_process_max_fds",
        Kind::Gauge,
        "Soft RLIMIT_NOFILE of each blamed process with its own series (accept() fails with EMFILE at it)",
    );
    for pid in &kept {
        let Some(p) = info.get(pid) else { continue };
        let label = || vec![("pid", pid.to_string())];
        procs.push(
            vec![
                ("pid", pid.to_string()),
                ("comm", p.comm.clone()),
                ("cgroup", p.cgroup.clone().unwrap_or_default()),
            ],
            Value::Int(1),
        );
        fds.push(label(), Value::Int(i64::from(p.fd_count)));
        if let Some(limit) = p.fd_limit {
            limits.push(
                label(),
                Value::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
            );
        }
    }
    out.extend([procs, fds, limits]);
    let mut by_cause = Family::new(
        "cwleak_findings",
        Kind::Gauge,
        "Persistent CLOSE_WAIT sockets (findings) per cause, all processes",
    );
    for c in Cause::ALL {
        let n = tally.by_cause.get(&c).copied().unwrap_or(0);
        by_cause.push(vec![("cause", c.name().into())], int(n));
    }
    out.push(by_cause);
    out.push(
        Family::new(
            "cwleak_transient_close_wait_sockets",
            Kind::Gauge,
            "CLOSE_WAIT sockets closed within the settle window at the last scan: normal traffic",
        )
        .with(int(tally.transient)),
    );
    let mut unreadable = Family::new(
        "cwleak_unreadable",
        Kind::Gauge,
        "Pids or files the last scan could not read, by reason: permission-denied above 0 means the answer may be incomplete (missing capabilities?)",
    );
    for k in KINDS {
        let n = tally.unreadable.iter().filter(|u| **u == k).count();
        unreadable.push(vec![("kind", kind_name(k).into())], int(n));
    }
    out.push(unreadable);
    // What `scan` and `check` say with exit 2: an answer of "no leak" from
    // this look would not be worth one. The reasons are in /report.
    out.push(
        Family::new(
            "cwleak_scan_incomplete",
            Kind::Gauge,
            "1 when the last scan could not see enough to stand behind \"no leak\" (a namespace's table not read, most processes unreadable); the reasons are in /report's scan.incomplete",
        )
        .with(int(usize::from(!tally.incomplete.is_empty()))),
    );
}

/// Sockets per namespace and state: every state the scan read (0 included),
/// for the `top` namespaces with the most sockets; the rest summed under
/// netns="other", which is always there.
fn tcp_sockets(states: &StateCounts, read: &[TcpState], top: usize) -> Family {
    let kept = top_namespaces(states, top);
    let mut other: BTreeMap<TcpState, usize> = BTreeMap::new();
    for ((ns, st), n) in states {
        if !kept.contains(ns) {
            *other.entry(*st).or_default() += n;
        }
    }
    let mut f = Family::new(
        "cwleak_tcp_sockets",
        Kind::Gauge,
        "TCP sockets per network namespace and state at the last scan, for the states it read (live scans read CLOSE_WAIT and LISTEN); top namespaces, the rest summed under netns=other",
    );
    for ns in &kept {
        for st in read {
            let n = states.get(&(*ns, *st)).copied().unwrap_or(0);
            f.push(
                vec![("netns", ns.to_string()), ("state", st.name().into())],
                int(n),
            );
        }
    }
    for st in read {
        f.push(
            vec![("netns", OTHER.into()), ("state", st.name().into())],
            int(other.get(st).copied().unwrap_or(0)),
        );
    }
    f
}

/// The `top` namespaces with the most sockets (ties: lowest inode).
fn top_namespaces(states: &StateCounts, top: usize) -> Vec<Inode> {
    let mut per: BTreeMap<Inode, usize> = BTreeMap::new();
    for ((ns, _), n) in states {
        *per.entry(*ns).or_default() += n;
    }
    let mut ranked: Vec<(Inode, usize)> = per.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept: Vec<Inode> = ranked.into_iter().take(top).map(|(ns, _)| ns).collect();
    kept.sort_unstable();
    kept
}

fn folded_namespaces(states: &StateCounts, top: usize) -> usize {
    let all: std::collections::BTreeSet<Inode> = states.keys().map(|(ns, _)| *ns).collect();
    all.len().saturating_sub(top)
}

/// The `top` blamed processes with the most sockets (ties: lowest pid), and
/// how many others there are.
fn split_top(tally: &Tally, top: usize) -> (Vec<Pid>, usize) {
    let mut per: BTreeMap<Pid, usize> = BTreeMap::new();
    for g in &tally.groups {
        if let Some(pid) = g.pid {
            *per.entry(pid).or_default() += g.sockets;
        }
    }
    let mut ranked: Vec<(Pid, usize)> = per.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let folded = ranked.len().saturating_sub(top);
    (
        ranked.into_iter().take(top).map(|(p, _)| p).collect(),
        folded,
    )
}

fn kind_name(k: WarningKind) -> &'static str {
    match k {
        WarningKind::PermissionDenied => "permission-denied",
        WarningKind::Vanished => "vanished",
        WarningKind::Malformed => "malformed",
        WarningKind::NetTable => "net-table",
        WarningKind::Io => "io",
        WarningKind::TimedOut => "timed-out",
        WarningKind::Incomplete => "incomplete",
    }
}

fn int_of(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn int(n: usize) -> Value {
    Value::Int(int_of(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::{sock, Builder};

    /// Process `pid` blamed for `n` sockets.
    fn blame(b: &mut Builder, pid: Pid, n: usize, cause: Cause) {
        b.process(pid, 1, &format!("p{pid}"));
        let socks = (0..n)
            .map(|i| {
                sock(
                    "10.0.0.1:8080",
                    &format!("10.0.0.9:{}", 1000 + i),
                    vec![],
                    &[(pid, 4)],
                )
            })
            .collect();
        b.group(
            Some(pid),
            Some(&format!("p{pid}")),
            cause,
            &[],
            "f",
            "m",
            socks,
        );
    }

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .collect()
    }

    fn om(input: &Input) -> String {
        render(input, Format::OpenMetrics)
    }

    #[test]
    fn processes_past_the_top_are_folded_into_one_series() {
        let mut b = Builder::new();
        for (pid, n) in [(10, 5), (11, 9), (12, 1), (13, 2)] {
            blame(&mut b, pid, n, Cause::ForkParentKept);
        }
        blame(&mut b, 11, 3, Cause::NeverClosed);
        let report = b.build();
        let states = StateCounts::new();
        let counters = Counters::default();
        let text = om(&Input {
            report: Some(&report),
            states: &states,
            counters: &counters,
            top: 2,
        });
        let series = lines_of(&text, "cwleak_close_wait_sockets");
        // 11 (12 sockets, two causes) and 10 (5); 13 and 12 summed.
        assert_eq!(series.len(), 4, "{text}");
        assert!(
            text.contains("cwleak_close_wait_sockets{pid=\"11\",cause=\"fork-parent-kept\"} 9"),
            "{text}"
        );
        assert!(text.contains("cause=\"never-closed\"} 3"), "{text}");
        assert!(
            text.contains("cwleak_close_wait_sockets{pid=\"10\""),
            "{text}"
        );
        assert!(
            text.contains("cwleak_close_wait_sockets{pid=\"other\",cause=\"other\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("cwleak_close_wait_other_processes 2"),
            "{text}"
        );
        // comm and cgroup once per process, on the info series.
        assert!(
            text.contains("cwleak_process_info{pid=\"11\",comm=\"p11\",cgroup=\"/system.slice/api.service\"} 1"),
            "{text}"
        );
        assert_eq!(lines_of(&text, "cwleak_process_info").len(), 2, "{text}");
        assert_eq!(
            lines_of(&text, "cwleak_process_open_fds").len(),
            2,
            "{text}"
        );
        assert!(
            text.contains("cwleak_process_max_fds{pid=\"11\"} 1024"),
            "{text}"
        );
        assert!(
            text.contains("cwleak_findings{cause=\"fork-parent-kept\"} 17"),
            "{text}"
        );
        assert!(
            text.contains("cwleak_findings{cause=\"passed-fd-kept\"} 0"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn counters_and_an_empty_start() {
        let counters = Counters {
            scans: 4,
            errors: 1,
            duration_s: 2.5,
            last_duration_s: 0.5,
            last_success_s: Some(1_700_000_000.0),
        };
        let text = om(&Input {
            report: None,
            states: &StateCounts::new(),
            counters: &counters,
            top: 20,
        });
        for want in [
            "cwleak_scans_total 4",
            "cwleak_scan_errors_total 1",
            "# UNIT cwleak_scan_duration_seconds seconds",
            "cwleak_scan_duration_seconds_total 2.5",
            "cwleak_last_scan_duration_seconds 0.5",
            "cwleak_last_scan_timestamp_seconds 1700000000.0",
            "# TYPE cwleak_scans counter",
            "# TYPE cwleak_build info",
            "cwleak_build_info{version=",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        // No scan yet: no per-process series at all.
        assert!(!text.contains("cwleak_close_wait_sockets"), "{text}");
    }

    /// Zeros stay: every warning kind, every state read, pid and netns
    /// "other"; namespaces past the top are summed.
    #[test]
    fn zero_series_stay_and_namespaces_are_capped() {
        let report = Builder::new().build();
        let mut states = StateCounts::new();
        states.insert((4026531840, TcpState::CloseWait), 3);
        states.insert((4026531840, TcpState::Listen), 2);
        states.insert((4026532001, TcpState::Listen), 1);
        states.insert((4026532002, TcpState::CloseWait), 1);
        let text = om(&Input {
            report: Some(&report),
            states: &states,
            counters: &Counters::default(),
            top: 1,
        });
        for want in [
            "cwleak_unreadable{kind=\"permission-denied\"} 0",
            "cwleak_unreadable{kind=\"timed-out\"} 0",
            "cwleak_tcp_sockets{netns=\"4026531840\",state=\"CLOSE_WAIT\"} 3",
            "cwleak_tcp_sockets{netns=\"4026531840\",state=\"LISTEN\"} 2",
            "cwleak_tcp_sockets{netns=\"other\",state=\"CLOSE_WAIT\"} 1",
            "cwleak_tcp_sockets{netns=\"other\",state=\"LISTEN\"} 1",
            "cwleak_tcp_other_namespaces 2",
            "cwleak_close_wait_sockets{pid=\"other\",cause=\"other\"} 0",
            "cwleak_transient_close_wait_sockets 0",
            "cwleak_scan_incomplete 0",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        let read = report.scan.states_read.len();
        assert_eq!(
            lines_of(&text, "cwleak_tcp_sockets").len(),
            2 * read,
            "{text}"
        );
    }

    /// A look that cannot stand behind "no leak" says so, as `scan` does
    /// with exit 2; a complete one says 0.
    #[test]
    fn an_incomplete_scan_is_a_gauge_of_1() {
        let mut report = Builder::new().build();
        report.scan.incomplete =
            vec!["network namespace 4026532001: its TCP table was not read".into()];
        let text = om(&Input {
            report: Some(&report),
            states: &StateCounts::new(),
            counters: &Counters::default(),
            top: 1,
        });
        assert_eq!(
            lines_of(&text, "cwleak_scan_incomplete"),
            ["cwleak_scan_incomplete 1"]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut b = Builder::new();
        b.process(7, 1, "a\"b\\c\nd");
        b.group(
            Some(7),
            Some("x"),
            Cause::NeverClosed,
            &[],
            "f",
            "m",
            vec![sock("10.0.0.1:80", "10.0.0.2:9", vec![], &[(7, 3)])],
        );
        let report = b.build();
        let text = om(&Input {
            report: Some(&report),
            states: &StateCounts::new(),
            counters: &Counters::default(),
            top: 20,
        });
        assert!(text.contains("comm=\"a\\\"b\\\\c\\nd\""), "{text}");
    }
}
