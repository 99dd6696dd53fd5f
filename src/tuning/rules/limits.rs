//! Limits the live counts are measured against: TIME_WAIT buckets, local
//! ports per destination, SYN and accept queues, orphans.

use super::{level, Namespace, WARN_PCT};
use crate::model::TcpState;
use crate::states::numbers::grouped;
use crate::tuning::finding::{int, pct, text, Finding, Rule, Severity};
use crate::tuning::observe::Listener;
use crate::tuning::settings::*;
use std::collections::BTreeMap;

/// Orphans are reset before the limit (see `orphans`): warn from half.
const ORPHAN_WARN_PCT: u64 = 50;

pub fn time_wait_buckets(ns: &Namespace) -> Option<Finding> {
    let max = ns.settings.num(MAX_TW_BUCKETS)?;
    let o = ns.observed;
    let tw = o.states.get(TcpState::TimeWait);
    let p = pct(tw, max);
    // Reaching it loses a protection, it breaks nothing: never critical.
    let severity = level(p, WARN_PCT)?.min(Severity::Warn);
    let title = if tw >= max {
        format!(
            "TIME_WAIT at the tcp_max_tw_buckets limit ({} of {})",
            grouped(tw),
            grouped(max)
        )
    } else {
        format!(
            "TIME_WAIT at {p}% of tcp_max_tw_buckets ({} of {})",
            grouped(tw),
            grouped(max)
        )
    };
    Some(Finding {
        rule: Rule::TimeWaitBuckets,
        severity,
        netns: Some(ns.netns),
        setting: Some(MAX_TW_BUCKETS.into()),
        title,
        observed: vec![
            int("TIME_WAIT", tw),
            int(MAX_TW_BUCKETS, max),
            int("percent", p),
            int(
                "TIME_WAIT on connections accepted here",
                o.time_wait_incoming,
            ),
            int("TIME_WAIT on connections opened here", o.time_wait_outgoing),
        ],
        reason: format!(
            "TIME_WAIT is the state of the side that closed first. It lasts {TIME_WAIT_SECONDS} s, \
             a constant of the kernel, so that late segments of an old connection are not taken \
             for a new one with the same addresses and ports. When a namespace holds \
             tcp_max_tw_buckets of them, the kernel closes further connections without TIME_WAIT \
             and counts each in TcpExtTCPTimeWaitOverflow (`nstat -az`; older kernels also \
             logged \"time wait bucket table overflow\"): nothing fails, but that protection is \
             lost. Here {} are on connections this host accepted (it closed first) and {} on \
             connections it opened.",
            grouped(o.time_wait_incoming),
            grouped(o.time_wait_outgoing)
        ),
        action: "Find who closes first: `cwleak states --by port,remote` shows the ports and \
                 peers. Reusing connections (HTTP keep-alive, connection pools) closes fewer of \
                 them; a server that lets its clients close first leaves TIME_WAIT on their side. \
                 Raising tcp_max_tw_buckets keeps the protection for a few hundred bytes of \
                 memory per socket. tcp_fin_timeout does not shorten TIME_WAIT."
            .into(),
    })
}

pub fn local_port_range(ns: &Namespace) -> Option<Finding> {
    let range = ns.settings.port_range()?;
    let d = ns.observed.busiest.as_ref()?;
    let size = range.size();
    let p = pct(d.sockets, size);
    let severity = level(p, WARN_PCT)?;
    let reuse = ns.settings.num(TW_REUSE);
    let loopback = d.remote.ip().to_canonical().is_loopback();
    let tw_words = match reuse {
        _ if d.time_wait == 0 => String::new(),
        Some(1) => " With tcp_tw_reuse=1 a new connection may take over a TIME_WAIT port \
                    once it is older than tcp_tw_reuse_delay (1 s by default) if both ends use \
                    TCP timestamps, so those ports are not all lost."
            .into(),
        Some(2) if loopback => " tcp_tw_reuse=2 covers this loopback destination: a new \
                                connection may take over a TIME_WAIT port older than \
                                tcp_tw_reuse_delay (1 s by default) when timestamps are on."
            .into(),
        Some(2) => " tcp_tw_reuse=2 covers loopback only: these TIME_WAIT ports stay taken \
                    for their 60 s."
            .into(),
        Some(0) => " tcp_tw_reuse=0: TIME_WAIT ports stay taken for their 60 s.".into(),
        _ => String::new(),
    };
    Some(Finding {
        rule: Rule::LocalPortRange,
        severity,
        netns: Some(ns.netns),
        setting: Some(PORT_RANGE.into()),
        title: format!(
            "{} of {} local ports taken by connections from {} to {} ({p}%)",
            grouped(d.sockets),
            grouped(size),
            d.local_ip,
            d.remote
        ),
        observed: vec![
            text("destination", d.remote.to_string()),
            text("source address", d.local_ip.to_string()),
            int("sockets", d.sockets),
            int("of which TIME_WAIT", d.time_wait),
            text(PORT_RANGE, format!("{} {}", range.lo, range.hi)),
            int("ports in range", size),
            int("percent", p),
            text(
                TW_REUSE,
                reuse.map_or_else(|| "unknown".into(), |v| v.to_string()),
            ),
        ],
        reason: format!(
            "Every connection from one source address to one destination address and port \
             needs a local port of its own, picked from ip_local_port_range ({}-{}: {} ports, \
             fewer if net.ipv4.ip_local_reserved_ports reserves some). {} are taken, {} of them \
             by TIME_WAIT. When none is left, connect() fails with EADDRNOTAVAIL (\"Cannot \
             assign requested address\").{tw_words}",
            range.lo,
            range.hi,
            grouped(size),
            grouped(d.sockets),
            grouped(d.time_wait)
        ),
        action: format!(
            "Reuse connections to {} (a pool, keep-alive) rather than opening one per request. \
             Otherwise spread them over more destination addresses or ports, or more source \
             addresses: each (source, destination) pair has its own ports. Widening \
             ip_local_port_range adds ports (keep it clear of ports your services listen on). \
             tcp_tw_reuse=1 lets outgoing connections reuse TIME_WAIT ports (it needs TCP \
             timestamps on both ends).",
            d.remote
        ),
    })
}

/// Listeners grouped by port: half-open connections are counted per port.
fn by_port(listeners: &[Listener]) -> BTreeMap<u16, (u64, u64)> {
    let mut ports: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
    for l in listeners {
        let e = ports.entry(l.local.port()).or_default();
        e.0 = l.syn_recv;
        e.1 += l.backlog;
    }
    ports
}

pub fn syn_backlog(ns: &Namespace) -> Vec<Finding> {
    let cookies = ns.settings.num(SYNCOOKIES);
    let max_syn = ns.settings.num(MAX_SYN_BACKLOG);
    let somaxconn = ns.settings.num(SOMAXCONN);
    let mut out = Vec::new();
    for (port, (syn_recv, backlog)) in by_port(&ns.observed.listeners) {
        if syn_recv == 0 {
            continue;
        }
        let p = pct(syn_recv, backlog);
        // Without cookies, SYNs are also dropped once 3/4 of tcp_max_syn_backlog is used.
        let p_max = match (cookies, max_syn) {
            (Some(0), Some(m)) if m > 0 => pct(syn_recv * 4, m * 3),
            _ => 0,
        };
        let Some(mut severity) = level(p.max(p_max), WARN_PCT) else {
            continue;
        };
        if cookies != Some(0) {
            // With cookies connections still complete.
            severity = severity.min(Severity::Warn);
        }
        let mut observed = vec![
            int("port", u64::from(port)),
            int("SYN_RECV", syn_recv),
            int("listener backlog", backlog),
            int("percent", p),
        ];
        for (name, v) in [
            (SOMAXCONN, somaxconn),
            (MAX_SYN_BACKLOG, max_syn),
            (SYNCOOKIES, cookies),
        ] {
            if let Some(v) = v {
                observed.push(int(name, v));
            }
        }
        let full_words = match cookies {
            Some(0) => {
                "drops new SYNs (tcp_syncookies=0); without syncookies it also drops \
                        SYNs from unproven peers once fewer than a quarter of \
                        tcp_max_syn_backlog remains"
            }
            _ => {
                "answers new SYNs with SYN cookies (tcp_syncookies is on): connections still \
                  complete, and the kernel logs \"Possible SYN flooding on port\""
            }
        };
        out.push(Finding {
            rule: Rule::SynBacklog,
            severity,
            netns: Some(ns.netns),
            setting: Some(if cookies == Some(0) {
                MAX_SYN_BACKLOG.into()
            } else {
                SOMAXCONN.into()
            }),
            title: format!(
                "{} half-open connections (SYN_RECV) on port {port}, {p}% of its backlog",
                grouped(syn_recv)
            ),
            observed,
            reason: format!(
                "A listener keeps half-open connections up to its backlog: the smaller of the \
                 backlog its application passed to listen() and net.core.somaxconn. When that is \
                 full the kernel {full_words}. Many SYN_RECV usually means clients that do not \
                 complete the handshake (a SYN flood, or ACKs lost on the way), rarely a slow \
                 application."
            ),
            action: "If it is a flood, keep tcp_syncookies on. If the load is real, raise the \
                     application's listen() backlog and net.core.somaxconn together (either \
                     alone has no effect). tcp_max_syn_backlog only matters with syncookies off."
                .into(),
        });
    }
    out
}

pub fn accept_queue(ns: &Namespace) -> Vec<Finding> {
    let somaxconn = ns.settings.num(SOMAXCONN);
    let mut out = Vec::new();
    for l in &ns.observed.listeners {
        if l.backlog == 0 || l.accept_queue == 0 {
            continue;
        }
        let p = pct(l.accept_queue, l.backlog);
        let Some(severity) = level(p, WARN_PCT) else {
            continue;
        };
        let holder = ns
            .listener_holders
            .iter()
            .find(|(a, _, _)| *a == l.local)
            .map(|(_, pid, comm)| format!("pid {pid} ({comm})"));
        let mut observed = vec![
            text("listener", l.local.to_string()),
            int("accept queue", l.accept_queue),
            int("backlog", l.backlog),
            int("percent", p),
        ];
        if let Some(s) = somaxconn {
            observed.push(int(SOMAXCONN, s));
        }
        if let Some(h) = &holder {
            observed.push(text("held by", h.clone()));
        }
        let capped = if somaxconn == Some(l.backlog) {
            " Here the backlog equals net.core.somaxconn, which caps whatever the application asked for."
        } else {
            ""
        };
        out.push(Finding {
            rule: Rule::AcceptQueue,
            severity,
            netns: Some(ns.netns),
            setting: Some(SOMAXCONN.into()),
            title: format!(
                "accept queue of {} at {p}% ({} of {})",
                l.local,
                grouped(l.accept_queue),
                grouped(l.backlog)
            ),
            observed,
            reason: format!(
                "Connections the kernel has completed wait in the accept queue until the \
                 application calls accept(). It holds the smaller of the listen() backlog and \
                 net.core.somaxconn. When it is full the kernel drops the client's final ACK (or \
                 resets the connection with tcp_abort_on_overflow=1): clients retry and time out, \
                 and `nstat` counts TcpExtListenOverflows.{capped}"
            ),
            action: format!(
                "The application is not accepting fast enough (blocked, overloaded or stuck): \
                 look at {}. A larger backlog (listen() and somaxconn together) absorbs bursts, \
                 it does not fix a server that has stopped accepting.",
                holder.unwrap_or_else(|| "the process holding the listener".into())
            ),
        });
    }
    out
}

/// Orphans are host-wide: counted over every namespace, against the limit
/// only the initial namespace shows.
pub fn orphans(namespaces: &[Namespace]) -> Option<Finding> {
    let max = namespaces
        .iter()
        .find_map(|n| n.settings.num(MAX_ORPHANS))?;
    let total: u64 = namespaces.iter().map(|n| n.observed.orphans).sum();
    let p = pct(total, max);
    let severity = level(p, ORPHAN_WARN_PCT)?;
    let mut busiest: Vec<(u64, u64)> = namespaces
        .iter()
        .map(|n| (n.observed.orphans, n.netns))
        .filter(|&(o, _)| o > 0)
        .collect();
    busiest.sort_by(|a, b| b.cmp(a));
    let mut observed = vec![
        int("orphans", total),
        int(MAX_ORPHANS, max),
        int("percent", p),
    ];
    for (o, netns) in busiest.iter().take(3) {
        observed.push(int(&format!("orphans in netns {netns}"), *o));
    }
    Some(Finding {
        rule: Rule::Orphans,
        severity,
        netns: None,
        setting: Some(MAX_ORPHANS.into()),
        title: format!(
            "{} orphaned sockets, {p}% of tcp_max_orphans ({})",
            grouped(total),
            grouped(max)
        ),
        observed,
        reason: "An orphan is a socket its application has closed while the kernel still sends \
                 its last data and FIN (FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING). The limit is \
                 host-wide, shared by all namespaces. Past it the kernel resets orphans instead \
                 of closing them gracefully and logs \"too many orphaned sockets\"; an orphan \
                 whose peer has long been silent counts twice (four times after an ICMP error), \
                 so resets start before the limit."
            .into(),
        action: "Find the peers that do not read or acknowledge: `cwleak states --by remote` \
                 (FIN_WAIT1, LAST_ACK). tcp_orphan_retries bounds how long an orphan \
                 retransmits, tcp_fin_timeout how long an orphaned FIN_WAIT2 waits. Raising \
                 tcp_max_orphans costs up to about 64 KiB of unswappable memory per orphan."
            .into(),
    })
}
