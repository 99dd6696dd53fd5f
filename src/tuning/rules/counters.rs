//! Overflows happening now: the kernel's own TcpExt counters moving while
//! cwleak watched (a fill level says a limit is near; a moving counter says
//! the kernel is already dropping, resetting or skipping something).

use super::Namespace;
use crate::states::numbers::grouped;
use crate::tuning::finding::{int, text, Finding, Rule, Severity};
use crate::tuning::settings::*;

/// One kind of overflow: the counters that show it and what it means.
struct Overflow {
    rule: Rule,
    counters: &'static [&'static str],
    severity: Severity,
    setting: Option<&'static str>,
    what: &'static str,
    reason: &'static str,
    action: &'static str,
}

const OVERFLOWS: [Overflow; 6] = [
    Overflow {
        rule: Rule::TimeWaitOverflow,
        counters: &["TCPTimeWaitOverflow"],
        severity: Severity::Warn,
        setting: Some(MAX_TW_BUCKETS),
        what: "connections closed without TIME_WAIT: the timewait table is full",
        reason: "The namespace holds tcp_max_tw_buckets timewait sockets (TIME_WAIT, and orphaned \
                 FIN_WAIT2 handed to timewait), so tcp_time_wait() could not allocate another \
                 and closed the connection at once (tcp_minisocks.c). Nothing fails, but the \
                 protection TIME_WAIT gives against late segments of an old connection is gone \
                 for these.",
        action: "Find who closes first (`cwleak states --by port,remote`) and reuse \
                 connections. If the load is real, raise tcp_max_tw_buckets: ip-sysctl.rst asks \
                 never to lower it artificially; each timewait socket costs a few hundred bytes.",
    },
    Overflow {
        rule: Rule::ListenOverflow,
        counters: &["ListenOverflows", "ListenDrops"],
        severity: Severity::Critical,
        setting: Some(SOMAXCONN),
        what: "SYNs or handshake ACKs dropped: an accept queue is full",
        reason: "A listener's accept queue was full: the kernel dropped new SYNs \
                 (tcp_conn_request: clients stay in SYN_SENT and retransmit after 1 s, 3 s, \
                 7 s...) and the final ACKs of completed handshakes (tcp_check_req, or a reset \
                 with tcp_abort_on_overflow=1). ListenOverflows counts the full-queue drops; \
                 ListenDrops counts every drop on a listener, those included.",
        action: "The application is not accepting fast enough: see the accept-queue finding \
                 and the process holding the listener. A larger backlog (the application's \
                 listen() backlog, capped by net.core.somaxconn) absorbs bursts; it does not \
                 fix a server that stopped accepting.",
    },
    Overflow {
        rule: Rule::SynQueueOverflow,
        counters: &["TCPReqQFullDrop"],
        severity: Severity::Critical,
        setting: Some(SYNCOOKIES),
        what: "SYNs dropped: a SYN queue is full and no syncookie was sent",
        reason: "A listener's SYN queue (handshakes in progress, as many as its backlog) was \
                 full and the kernel did not answer with a syncookie (tcp_syncookies=0, or \
                 cookies refused): the SYN was dropped (tcp_conn_request, tcp_syn_flood_action).",
        action: "Keep tcp_syncookies at 1 (the default). If these are real clients, raise the \
                 listener's backlog (listen() and somaxconn together).",
    },
    Overflow {
        rule: Rule::SynCookies,
        counters: &["TCPReqQFullDoCookies", "SyncookiesSent"],
        severity: Severity::Warn,
        setting: Some(SYNCOOKIES),
        what: "SYN queue full: answered with syncookies",
        reason: "A listener's SYN queue was full, so the kernel answered SYNs with cookies \
                 instead of keeping state (tcp_syn_flood_action logs \"Possible SYN flooding \
                 on port\"). Connections still complete, but a cookie keeps few TCP options \
                 (without timestamps: no window scaling, no SACK).",
        action: "If it is a flood, this is syncookies working. If the load is real, raise the \
                 listener's backlog (listen() and somaxconn together).",
    },
    Overflow {
        rule: Rule::MemoryAbort,
        counters: &["TCPAbortOnMemory"],
        severity: Severity::Critical,
        setting: Some(MAX_ORPHANS),
        what:
            "connections reset for lack of memory: too many orphans, or TCP memory past tcp_mem[2]",
        reason: "tcp_check_oom() reset these sockets: orphans were past tcp_max_orphans (an \
                 orphan that keeps retransmitting counts double or more), or TCP buffer memory \
                 was past tcp_mem[2] (\"out of memory -- consider tuning tcp_mem\"). Their peers \
                 got a reset instead of the last data. Both limits are host-wide.",
        action: "Find the peers that do not read or acknowledge (`cwleak states --by remote`, \
                 FIN_WAIT1 and LAST_ACK). Raising tcp_max_orphans or tcp_mem costs unswappable \
                 memory: up to tcp_wmem[2] per orphan.",
    },
    Overflow {
        rule: Rule::MemoryPressure,
        counters: &["TCPMemoryPressures"],
        severity: Severity::Warn,
        setting: Some(TCP_MEM),
        what: "TCP entered memory pressure (tcp_mem[1] passed)",
        reason: "TCP buffer memory, host-wide, passed tcp_mem[1]: the kernel shrinks socket \
                 buffers and stops growing them until it falls below tcp_mem[0].",
        action: "Look for sockets with large queues (`ss -tm`): peers that do not read, or \
                 unread data in CLOSE_WAIT sockets. Raise tcp_mem only with memory to spare.",
    },
];

/// One finding per kind of overflow whose counters moved in the window.
pub fn moving(ns: &Namespace) -> Vec<Finding> {
    let o = ns.observed;
    let Some(moved) = &o.moved else {
        return Vec::new();
    };
    let seconds = format!("{:.1} s", o.window_ms as f64 / 1000.0);
    let mut out = Vec::new();
    for ov in &OVERFLOWS {
        let deltas: Vec<(&str, i64)> = ov
            .counters
            .iter()
            .filter_map(|c| Some((*c, *moved.get(*c)?)))
            .filter(|(_, d)| *d > 0)
            .collect();
        let Some(&(_, first)) = deltas.first() else {
            continue;
        };
        let mut observed = vec![text("window", seconds.clone())];
        for (c, d) in &deltas {
            observed.push(int(&format!("{c} in the window"), d.unsigned_abs()));
            if let Some(total) = o.counters.get(*c) {
                let now = total.saturating_add(d.unsigned_abs());
                observed.push(int(&format!("{c} since the namespace was created"), now));
            }
        }
        out.push(Finding {
            rule: ov.rule,
            severity: ov.severity,
            netns: Some(ns.netns),
            setting: ov.setting.map(String::from),
            title: format!(
                "{} {} in {seconds}: {}",
                deltas[0].0,
                crate::states::numbers::signed(first),
                ov.what
            ),
            observed,
            reason: format!(
                "{} ({} counted during the window: while cwleak watched, or between two \
                 looks of a capture; the counters are the namespace's own, /proc/net/netstat).",
                ov.reason,
                grouped(first.unsigned_abs())
            ),
            action: ov.action.into(),
        });
    }
    out
}
