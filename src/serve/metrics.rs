//! The Prometheus exposition (OpenMetrics text, through `prometheus-client`)
//! of one scan. Pure: built from plain numbers and the report, so a scrape
//! only copies a string rendered once per scan.
//!
//! Label cardinality is bounded: per-process series exist for the `top` blamed
//! processes with the most sockets; the others are summed into one series
//! with `pid="other"`. Namespaces are labelled by inode (as `scan` names them).
//! docs/fleet.md lists every metric.

use crate::diagnose::{Cause, Report};
use crate::model::{Inode, Pid, Snapshot, TcpState, WarningKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;

/// Content-Type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

pub fn state_counts(snap: &Snapshot) -> StateCounts {
    let mut counts = StateCounts::new();
    for s in &snap.sockets {
        *counts.entry((s.netns, s.state)).or_default() += 1;
    }
    counts
}

/// One scan's worth of input.
pub struct Input<'a> {
    /// The last successful scan (None before the first one).
    pub report: Option<&'a Report>,
    pub states: &'a StateCounts,
    pub counters: &'a Counters,
    pub top: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProcCause {
    pid: String,
    comm: String,
    cgroup: String,
    cause: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Proc {
    pid: String,
    comm: String,
    cgroup: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NsState {
    netns: String,
    state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CauseLabel {
    cause: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Version {
    version: String,
}

const OTHER: &str = "other";

/// The whole exposition, `# EOF` included.
pub fn render(input: &Input) -> String {
    let mut reg = Registry::default();
    let info = Info::new(Version {
        version: env!("CARGO_PKG_VERSION").to_string(),
    });
    reg.register(
        "cwleak_build",
        "The cwleak that exports these metrics",
        info,
    );
    scanner_metrics(&mut reg, input.counters);
    if let Some(report) = input.report {
        leak_metrics(&mut reg, report, input.top);
    }
    let states: Family<NsState, Gauge> = Family::default();
    for ((netns, state), n) in input.states {
        states
            .get_or_create(&NsState {
                netns: netns.to_string(),
                state: state.name().to_string(),
            })
            .set(gauge(*n));
    }
    reg.register(
        "cwleak_tcp_sockets",
        "TCP sockets per network namespace and state, at the last scan (a state with none is absent)",
        states,
    );
    let mut out = String::new();
    // Writing into a String cannot fail; an empty answer would be the only outcome.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

fn scanner_metrics(reg: &mut Registry, c: &Counters) {
    let scans: Counter = Counter::default();
    scans.inc_by(c.scans);
    reg.register(
        "cwleak_scans",
        "Scans run since cwleak serve started",
        scans,
    );
    let errors: Counter = Counter::default();
    errors.inc_by(c.errors);
    reg.register(
        "cwleak_scan_errors",
        "Scans that failed (the previous results stay exported)",
        errors,
    );
    let total: Counter<f64, AtomicU64> = Counter::default();
    total.inc_by(c.duration_s);
    reg.register(
        "cwleak_scan_duration_seconds",
        "Time spent scanning, settle windows included",
        total,
    );
    let last: Gauge<f64, AtomicU64> = Gauge::default();
    last.set(c.last_duration_s);
    reg.register(
        "cwleak_last_scan_duration_seconds",
        "How long the last scan took",
        last,
    );
    if let Some(t) = c.last_success_s {
        let ts: Gauge<f64, AtomicU64> = Gauge::default();
        ts.set(t);
        reg.register(
            "cwleak_last_scan_timestamp_seconds",
            "When the last successful scan ended (Unix time)",
            ts,
        );
    }
}

/// Per blamed process: sockets (by cause), open fds and the fd limit.
fn leak_metrics(reg: &mut Registry, report: &Report, top: usize) {
    let sockets: Family<ProcCause, Gauge> = Family::default();
    let fds: Family<Proc, Gauge> = Family::default();
    let limits: Family<Proc, Gauge> = Family::default();
    let (kept, folded) = split_top(report, top);
    let info: HashMap<Pid, &crate::diagnose::ProcessInfo> =
        report.processes.iter().map(|p| (p.pid, p)).collect();
    let mut other = 0;
    for g in &report.groups {
        let cgroup = g
            .pid
            .and_then(|p| info.get(&p))
            .and_then(|p| p.cgroup.clone())
            .unwrap_or_default();
        let labels = match g.pid {
            Some(pid) if !kept.contains(&pid) => {
                other += g.sockets;
                continue;
            }
            Some(pid) => ProcCause {
                pid: pid.to_string(),
                comm: g.comm.clone().unwrap_or_default(),
                cgroup,
                cause: g.cause.name().to_string(),
            },
            // Sockets nobody visibly holds: one series whatever their number.
            None => ProcCause {
                pid: "none".into(),
                comm: String::new(),
                cgroup,
                cause: g.cause.name().to_string(),
            },
        };
        sockets.get_or_create(&labels).inc_by(gauge(g.sockets));
    }
    // Always there, 0 when nothing is folded: queries and alerts never see it vanish.
    sockets
        .get_or_create(&ProcCause {
            pid: OTHER.into(),
            comm: OTHER.into(),
            cgroup: OTHER.into(),
            cause: OTHER.into(),
        })
        .set(gauge(other));
    for pid in &kept {
        let Some(p) = info.get(pid) else { continue };
        let labels = Proc {
            pid: pid.to_string(),
            comm: p.comm.clone(),
            cgroup: p.cgroup.clone().unwrap_or_default(),
        };
        fds.get_or_create(&labels).set(i64::from(p.fd_count));
        if let Some(limit) = p.fd_limit {
            limits
                .get_or_create(&labels)
                .set(i64::try_from(limit).unwrap_or(i64::MAX));
        }
    }
    reg.register(
        "cwleak_close_wait_sockets",
        "Persistent CLOSE_WAIT sockets per blamed process and cause (top processes; the rest summed under pid=\"other\")",
        sockets,
    );
    let n_folded: Gauge = Gauge::default();
    n_folded.set(gauge(folded));
    reg.register(
        "cwleak_close_wait_other_processes",
        "Blamed processes summed into the pid=\"other\" series",
        n_folded,
    );
    reg.register(
        "cwleak_process_open_fds",
        "Open fds of each blamed process with its own series",
        fds,
    );
    reg.register(
        "cwleak_process_fd_limit",
        "Soft RLIMIT_NOFILE of each blamed process with its own series (accept() fails with EMFILE at it)",
        limits,
    );
    let by_cause: Family<CauseLabel, Gauge> = Family::default();
    for c in Cause::ALL {
        let n = report.summary.by_cause.get(&c).copied().unwrap_or(0);
        by_cause
            .get_or_create(&CauseLabel {
                cause: c.name().into(),
            })
            .set(gauge(n));
    }
    reg.register(
        "cwleak_findings",
        "Persistent CLOSE_WAIT sockets (findings) per cause, all processes",
        by_cause,
    );
    let transient: Gauge = Gauge::default();
    transient.set(gauge(report.summary.transient));
    reg.register(
        "cwleak_transient_close_wait_sockets",
        "CLOSE_WAIT sockets closed within the settle window at the last scan: normal traffic",
        transient,
    );
    let unreadable: Family<KindLabel, Gauge> = Family::default();
    for u in &report.scan.unreadable {
        unreadable
            .get_or_create(&KindLabel {
                kind: kind_name(u.kind).into(),
            })
            .inc();
    }
    reg.register(
        "cwleak_unreadable",
        "Pids or files the last scan could not read, by reason: not 0 means the answer may be incomplete (missing capabilities?)",
        unreadable,
    );
}

/// The `top` blamed processes with the most sockets (ties: lowest pid), and
/// how many others there are.
fn split_top(report: &Report, top: usize) -> (Vec<Pid>, usize) {
    let mut per: BTreeMap<Pid, usize> = BTreeMap::new();
    for g in &report.groups {
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

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
        let text = render(&Input {
            report: Some(&report),
            states: &states,
            counters: &counters,
            top: 2,
        });
        let series = lines_of(&text, "cwleak_close_wait_sockets");
        // 11 (12 sockets, two causes) and 10 (5); 13 and 12 summed.
        assert_eq!(series.len(), 4, "{text}");
        assert!(text.contains(
            "cwleak_close_wait_sockets{pid=\"11\",comm=\"p11\",cgroup=\"/system.slice/api.service\",cause=\"fork-parent-kept\"} 9"
        ), "{text}");
        assert!(text.contains("cause=\"never-closed\"} 3"), "{text}");
        assert!(
            text.contains("cwleak_close_wait_sockets{pid=\"10\""),
            "{text}"
        );
        assert!(text.contains(
            "cwleak_close_wait_sockets{pid=\"other\",comm=\"other\",cgroup=\"other\",cause=\"other\"} 3"
        ), "{text}");
        assert!(
            text.contains("cwleak_close_wait_other_processes 2"),
            "{text}"
        );
        assert_eq!(
            lines_of(&text, "cwleak_process_open_fds").len(),
            2,
            "{text}"
        );
        assert!(text.contains("cwleak_process_fd_limit{pid=\"11\",comm=\"p11\",cgroup=\"/system.slice/api.service\"} 1024"), "{text}");
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
    fn counters_states_and_an_empty_start() {
        let mut states = StateCounts::new();
        states.insert((4026531840, TcpState::CloseWait), 3);
        states.insert((4026531840, TcpState::Listen), 2);
        let counters = Counters {
            scans: 4,
            errors: 1,
            duration_s: 2.5,
            last_duration_s: 0.5,
            last_success_s: Some(1_700_000_000.0),
        };
        let text = render(&Input {
            report: None,
            states: &states,
            counters: &counters,
            top: 20,
        });
        for want in [
            "cwleak_scans_total 4",
            "cwleak_scan_errors_total 1",
            "cwleak_scan_duration_seconds_total 2.5",
            "cwleak_last_scan_duration_seconds 0.5",
            "cwleak_last_scan_timestamp_seconds 1700000000.0",
            "cwleak_tcp_sockets{netns=\"4026531840\",state=\"CLOSE_WAIT\"} 3",
            "cwleak_tcp_sockets{netns=\"4026531840\",state=\"LISTEN\"} 2",
            "# TYPE cwleak_scans counter",
            "cwleak_build_info{version=",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        // No scan yet: no per-process series at all.
        assert!(!text.contains("cwleak_close_wait_sockets"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut b = Builder::new();
        b.process(7, 1, "x");
        b.group(
            Some(7),
            Some("a\"b\\c\nd"),
            Cause::NeverClosed,
            &[],
            "f",
            "m",
            vec![sock("10.0.0.1:80", "10.0.0.2:9", vec![], &[(7, 3)])],
        );
        let report = b.build();
        let text = render(&Input {
            report: Some(&report),
            states: &StateCounts::new(),
            counters: &Counters::default(),
            top: 20,
        });
        assert!(text.contains("comm=\"a\\\"b\\\\c\\nd\""), "{text}");
    }
}
