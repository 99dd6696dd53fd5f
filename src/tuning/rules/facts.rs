//! Settings that do not do what blog posts say, told when they matter here:
//! a setting changed from its default, or the state it is believed to fix
//! present in numbers.

use super::{Namespace, NOTABLE_TIME_WAIT};
use crate::model::TcpState;
use crate::states::numbers::grouped;
use crate::tuning::finding::{int, text, Finding, Rule, Severity};
use crate::tuning::settings::*;
use std::collections::BTreeMap;

/// Settings compared across namespaces.
const PER_NAMESPACE: [&str; 10] = [
    FIN_TIMEOUT,
    TW_REUSE,
    MAX_TW_BUCKETS,
    SYNCOOKIES,
    PORT_RANGE,
    SOMAXCONN,
    MAX_SYN_BACKLOG,
    KEEPALIVE_TIME,
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
/// Namespaces named per value in a namespaces-differ finding.
const NAMED: usize = 5;

fn many_time_wait(ns: &Namespace) -> bool {
    let tw = ns.observed.states.get(TcpState::TimeWait);
    let quarter = ns
        .settings
        .num(MAX_TW_BUCKETS)
        .is_some_and(|m| tw.saturating_mul(4) >= m && tw > 0);
    tw >= NOTABLE_TIME_WAIT || quarter
}

pub fn tw_recycle(ns: &Namespace) -> Option<Finding> {
    let v = ns.settings.num(TW_RECYCLE)?;
    let on = v != 0;
    Some(Finding {
        rule: Rule::TwRecycle,
        severity: if on {
            Severity::Critical
        } else {
            Severity::Info
        },
        netns: Some(ns.netns),
        setting: Some(TW_RECYCLE.into()),
        title: if on {
            format!("tcp_tw_recycle={v} drops connections from clients behind NAT")
        } else {
            "tcp_tw_recycle exists (a kernel older than 4.12); it is off".into()
        },
        observed: vec![int(TW_RECYCLE, v)],
        reason: "tcp_tw_recycle made the kernel drop SYNs whose TCP timestamp was lower than \
                 the last one seen from the same address. Clients behind one NAT address have \
                 unrelated timestamps, so their connections failed at random; once Linux 4.10 \
                 randomized timestamps per connection it broke for everyone, and Linux 4.12 \
                 removed the setting."
            .into(),
        action: if on {
            "Turn it off (0) and delete it from sysctl.conf and its drop-ins: the setting does \
             not exist on Linux 4.12 and later, where applying those files reports an error."
                .into()
        } else {
            "Leave it off, and delete it from sysctl.conf and its drop-ins before moving to \
             Linux 4.12 or later, where the setting no longer exists."
                .into()
        },
    })
}

pub fn fin_timeout(ns: &Namespace) -> Option<Finding> {
    let v = ns.settings.num(FIN_TIMEOUT)?;
    let o = ns.observed;
    let changed = v != DEFAULT_FIN_TIMEOUT;
    let fin_wait2 = o.orphan_fin_wait2 + o.fin_wait2_timewait;
    if !changed && !many_time_wait(ns) && fin_wait2 < NOTABLE_TIME_WAIT {
        return None;
    }
    let tw = o.states.get(TcpState::TimeWait);
    let lowered = if v < TIME_WAIT_SECONDS {
        format!(" Setting it to {v} did not make TIME_WAIT any shorter.")
    } else {
        String::new()
    };
    Some(Finding {
        rule: Rule::FinTimeout,
        severity: Severity::Info,
        netns: Some(ns.netns),
        setting: Some(FIN_TIMEOUT.into()),
        title: format!(
            "tcp_fin_timeout={v} does not shorten TIME_WAIT ({TIME_WAIT_SECONDS} s, fixed)"
        ),
        observed: vec![
            int(FIN_TIMEOUT, v),
            int("TIME_WAIT", tw),
            int("orphaned FIN_WAIT2", o.orphan_fin_wait2),
            int("FIN_WAIT2 handed to timewait", o.fin_wait2_timewait),
        ],
        reason: format!(
            "TIME_WAIT lasts {TIME_WAIT_SECONDS} s, a constant compiled into the kernel \
             (TCP_TIMEWAIT_LEN): no sysctl changes it. tcp_fin_timeout bounds something else: \
             how long an orphaned FIN_WAIT2 socket (closed by this side, the peer has not \
             closed yet) waits for the peer's FIN. At 60 s or less the kernel hands such a \
             socket to the timewait machinery, where it counts against tcp_max_tw_buckets \
             (`ss` still shows FIN-WAIT-2); above 60 s it stays an orphan for the part beyond \
             60 s. Orphaned FIN_WAIT2 now: {} full sockets, {} handed to timewait.{lowered}",
            grouped(o.orphan_fin_wait2),
            grouped(o.fin_wait2_timewait)
        ),
        action: "For fewer TIME_WAIT sockets, close fewer connections (reuse them) or let the \
                 peer close first: `cwleak states --by port` shows where they come from. Lower \
                 tcp_fin_timeout only when orphaned FIN_WAIT2 sockets pile up from peers that \
                 never close."
            .into(),
    })
}

pub fn tw_reuse(ns: &Namespace) -> Option<Finding> {
    let v = ns.settings.num(TW_REUSE)?;
    let o = ns.observed;
    if v == DEFAULT_TW_REUSE && !many_time_wait(ns) {
        return None;
    }
    let tw = o.states.get(TcpState::TimeWait);
    let delay = ns
        .settings
        .num(TW_REUSE_DELAY)
        .map_or_else(|| "1 s".to_string(), |ms| format!("{ms} ms"));
    let action = if o.time_wait_outgoing > 0 && v != 1 {
        "If outgoing connections run short of local ports (see a local-port-range finding), \
         tcp_tw_reuse=1 lets them reuse TIME_WAIT ports; it relies on TCP timestamps on both \
         ends. TIME_WAIT on accepted connections needs nothing: it costs little memory and ends \
         by itself."
    } else {
        "Nothing to do for TIME_WAIT itself: it costs little memory and ends by itself. To have \
         fewer, reuse connections instead of closing them."
    };
    Some(Finding {
        rule: Rule::TwReuse,
        severity: Severity::Info,
        netns: Some(ns.netns),
        setting: Some(TW_REUSE.into()),
        title: format!(
            "tcp_tw_reuse={v} ({}) never helps connections accepted here",
            tw_reuse_words(v)
        ),
        observed: vec![
            int(TW_REUSE, v),
            int("TIME_WAIT", tw),
            int("on connections accepted here", o.time_wait_incoming),
            int("on connections opened here", o.time_wait_outgoing),
            int("of those, to loopback", o.time_wait_outgoing_loopback),
        ],
        reason: format!(
            "tcp_tw_reuse lets a new outgoing connection (connect()) take over the local port of \
             a TIME_WAIT socket to the same destination, when both use TCP timestamps and the \
             TIME_WAIT socket is older than {delay}. It does nothing for connections this host \
             accepts and does not end TIME_WAIT sockets early. 0 is off, 1 is on, 2 (the \
             default) is on for loopback only. Here {} TIME_WAIT sockets are on connections this \
             host accepted and {} on connections it opened ({} to loopback).{}",
            grouped(o.time_wait_incoming),
            grouped(o.time_wait_outgoing),
            grouped(o.time_wait_outgoing_loopback),
            super::limits::incoming_words(ns)
        ),
        action: action.into(),
    })
}

pub fn close_wait(ns: &Namespace) -> Option<Finding> {
    let n = ns.observed.states.get(TcpState::CloseWait);
    if n == 0 {
        return None;
    }
    Some(Finding {
        rule: Rule::CloseWait,
        severity: Severity::Info,
        netns: Some(ns.netns),
        setting: None,
        title: format!(
            "{} socket{} in CLOSE_WAIT: no sysctl closes {}",
            grouped(n),
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        ),
        observed: vec![int("CLOSE_WAIT", n)],
        reason: "CLOSE_WAIT means the peer has closed and the application has not yet closed its \
                 last copy of the socket (often a forgotten fd, inherited through fork or exec). \
                 The kernel waits for the application: tcp_fin_timeout, tcp_tw_reuse and the \
                 other settings here do not apply to it. With SO_KEEPALIVE, keepalive probes may \
                 reset one whose peer has vanished, but its fd stays open."
            .into(),
        action: format!(
            "Run `cwleak scan --netns {}`: it names the process and fd that keep each one, the \
             cause and the fix. Only the application closing its last copy (or the socket being \
             destroyed, e.g. with `ss -K`) ends CLOSE_WAIT.",
            ns.netns
        ),
    })
}

/// One finding per setting whose value is not the same in every namespace
/// that has it.
pub fn namespaces_differ(namespaces: &[Namespace]) -> Vec<Finding> {
    let mut out = Vec::new();
    for name in PER_NAMESPACE {
        let mut by_value: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for ns in namespaces {
            if let Some(v) = ns.settings.raw(name) {
                by_value.entry(v).or_default().push(ns.netns);
            }
        }
        if by_value.len() < 2 {
            continue;
        }
        let observed = by_value
            .iter()
            .map(|(v, list)| {
                let mut named: Vec<String> = list.iter().take(NAMED).map(u64::to_string).collect();
                if list.len() > NAMED {
                    named.push(format!("and {} more", list.len() - NAMED));
                }
                text(
                    &format!("value {v}"),
                    format!("in netns {}", named.join(", ")),
                )
            })
            .collect();
        out.push(Finding {
            rule: Rule::NamespacesDiffer,
            severity: Severity::Info,
            netns: None,
            setting: Some(name.into()),
            title: format!(
                "{name} differs between network namespaces ({} values)",
                by_value.len()
            ),
            observed,
            reason: "This setting belongs to the network namespace. A new namespace (a \
                     container, a pod) starts from the kernel's default, not from the host's \
                     value: a value tuned on the host does not apply inside containers, and the \
                     reverse."
                .into(),
            action: "Set it where the sockets are: in Kubernetes through the pod's \
                     securityContext.sysctls, with Docker through --sysctl, or inside the \
                     namespace (`nsenter --net=/proc/PID/ns/net sysctl ...`)."
                .into(),
        });
    }
    out
}
