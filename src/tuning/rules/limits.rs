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
    // What the limit counts: every timewait mini-socket, FIN_WAIT2 ones
    // included; the kernel's own count when it was read.
    let tw = o
        .kernel
        .map_or(o.tw_buckets.max(o.states.get(TcpState::TimeWait)), |k| k.tw);
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
            int("timewait sockets", tw),
            int("TIME_WAIT", o.states.get(TcpState::TimeWait)),
            int("FIN_WAIT2 handed to timewait", o.fin_wait2_timewait),
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
             lost. The limit also counts orphaned FIN_WAIT2 sockets the kernel handed to \
             timewait (tcp_fin_timeout <= 60), which `ss` shows as FIN-WAIT-2. Here {} are on \
             connections this host accepted (it closed first) and {} on connections it opened.{}",
            grouped(o.time_wait_incoming),
            grouped(o.time_wait_outgoing),
            incoming_words(ns)
        ),
        action: "Find who closes first: `cwleak states --by port,remote` shows the ports and \
                 peers. Reusing connections (HTTP keep-alive, connection pools) closes fewer of \
                 them; a server that lets its clients close first leaves TIME_WAIT on their side. \
                 Raising tcp_max_tw_buckets keeps the protection for a few hundred bytes of \
                 memory per socket. tcp_fin_timeout does not shorten TIME_WAIT."
            .into(),
    })
}

/// " Most TIME_WAIT on accepted connections: port 8080 (412, listened on by
/// pid 31 (nginx))."; empty without any.
pub fn incoming_words(ns: &Namespace) -> String {
    let Some(&(port, n)) = ns.observed.time_wait_incoming_ports.first() else {
        return String::new();
    };
    let holder = ns
        .listener_holders
        .iter()
        .find(|(a, _, _)| a.port() == port)
        .map_or_else(String::new, |(_, pid, comm)| {
            format!(", listened on by pid {pid} ({comm}), which closes first")
        });
    format!(
        " Most TIME_WAIT on accepted connections is on port {port} ({}{holder}).",
        grouped(n)
    )
}

/// Whether tcp_tw_reuse lets connect() take over TIME_WAIT ports to this
/// destination: None when a setting it depends on is unknown.
pub fn reuse_applies(ns: &Namespace, loopback: bool) -> Option<bool> {
    let reuse = ns.settings.num(TW_REUSE)?;
    let stamps = ns.settings.num(TIMESTAMPS).unwrap_or(1);
    Some(stamps != 0 && (reuse == 1 || (reuse == 2 && loopback)))
}

pub fn local_port_range(ns: &Namespace) -> Option<Finding> {
    let range = ns.settings.port_range()?;
    let d = ns.observed.busiest.as_ref()?;
    let size = range.size();
    let p = pct(d.sockets, size);
    let reuse = ns.settings.num(TW_REUSE);
    let loopback = d.remote.ip().to_canonical().is_loopback();
    let reusable = reuse_applies(ns, loopback) == Some(true);
    // With reuse, TIME_WAIT ports older than the reuse delay are free for
    // connect(): only the other sockets make the range run out.
    let blocking = if reusable {
        d.sockets - d.time_wait
    } else {
        d.sockets
    };
    let p_blocking = pct(blocking, size);
    let mut severity = level(p, WARN_PCT)?;
    let reused = ns
        .observed
        .moved
        .as_ref()
        .and_then(|m| m.get("TWRecycled").copied());
    if reusable {
        severity = level(p_blocking, WARN_PCT).unwrap_or(Severity::Info);
    }
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
    let reuse_words = match (reusable, reused) {
        (true, Some(r)) if r > 0 => format!(
            " TWRecycled moved by {} while cwleak watched: connect() is taking over TIME_WAIT \
             ports, so new connections succeed.",
            grouped(r.unsigned_abs())
        ),
        (true, _) => " Reuse applies here (tcp_tw_reuse and TCP timestamps), so the severity \
                      counts only the ports held by sockets other than TIME_WAIT."
            .into(),
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
            text("reuse applies", if reusable { "yes" } else { "no" }),
            int("ports not reusable", blocking),
        ]
        .into_iter()
        .chain(reused.map(|r| int("TWRecycled in the window", r.unsigned_abs())))
        .collect(),
        reason: format!(
            "Every connection from one source address to one destination address and port \
             needs a local port of its own, picked from ip_local_port_range ({}-{}: {} ports, \
             fewer if net.ipv4.ip_local_reserved_ports reserves some). {} are taken, {} of them \
             by TIME_WAIT. When none is left, connect() fails with EADDRNOTAVAIL (\"Cannot \
             assign requested address\").{tw_words}{reuse_words} cwleak cannot see failed \
             connect() calls: the application's EADDRNOTAVAIL errors are the proof that ports \
             ran out.",
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
        // Without cookies, SYNs are also dropped once 3/4 of tcp_max_syn_backlog
        // is used. A limit of 0 gives 0% (pct); a huge one (a hostile snapshot)
        // must not overflow.
        let p_max = match (cookies, max_syn) {
            (Some(0), Some(m)) => pct(syn_recv * 4, m.saturating_mul(3)),
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
        // An unknown backlog (0: tables from /proc) gives 0% (pct), as does an
        // empty queue: nothing to say.
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
        // The backlog shown is min(listen() backlog, somaxconn): when it is
        // below somaxconn, the application's own backlog is the limit.
        let app_limited = somaxconn.is_some_and(|m| l.backlog < m);
        let limit_words = if app_limited {
            format!(
                " Here the backlog ({}) is below net.core.somaxconn ({}): it is the \
                 application's own listen() backlog, and raising somaxconn changes nothing.",
                l.backlog,
                somaxconn.unwrap_or(0)
            )
        } else if somaxconn == Some(l.backlog) {
            " Here the backlog equals net.core.somaxconn, which caps whatever the application \
             asked for."
                .into()
        } else {
            String::new()
        };
        let who = holder.unwrap_or_else(|| "the process holding the listener".into());
        out.push(Finding {
            rule: Rule::AcceptQueue,
            severity,
            netns: Some(ns.netns),
            setting: (!app_limited).then(|| SOMAXCONN.into()),
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
                 net.core.somaxconn. When it is full the kernel drops new SYNs (tcp_conn_request: \
                 clients stay in SYN_SENT and retransmit after 1 s, 3 s, 7 s...) and drops the \
                 final ACK of completed handshakes (or resets them with \
                 tcp_abort_on_overflow=1); `nstat` counts TcpExtListenOverflows. Syncookies do \
                 not help a full accept queue.{limit_words}"
            ),
            action: if app_limited {
                format!(
                    "The application is not accepting fast enough (blocked, overloaded or \
                     stuck): look at {who}. A larger listen() backlog in the application (its \
                     configuration, e.g. nginx `listen ... backlog=`) absorbs bursts; it does not \
                     fix a server that has stopped accepting."
                )
            } else {
                format!(
                    "The application is not accepting fast enough (blocked, overloaded or \
                     stuck): look at {who}. A larger backlog (listen() and somaxconn together) \
                     absorbs bursts, it does not fix a server that has stopped accepting."
                )
            },
        });
    }
    out
}

/// Orphans are host-wide: the kernel's own count when it was read (the same
/// in every namespace), else counted over the namespaces read, against the
/// limit only the initial namespace shows.
pub fn orphans(namespaces: &[Namespace]) -> Option<Finding> {
    let max = namespaces
        .iter()
        .find_map(|n| n.settings.num(MAX_ORPHANS))?;
    let counted: u64 = namespaces.iter().map(|n| n.observed.orphans).sum();
    let kernel = namespaces.iter().find_map(|n| n.observed.kernel);
    let total = kernel.map_or(counted, |k| k.orphans);
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
        int("orphans in the tables read", counted),
        int(MAX_ORPHANS, max),
        int("percent", p),
    ];
    for (o, netns) in busiest.iter().take(3) {
        observed.push(int(&format!("orphans in netns {netns}"), *o));
    }
    let wmem_max = namespaces.iter().find_map(|n| n.settings.nth(TCP_WMEM, 2));
    if let Some(w) = wmem_max {
        observed.push(int("tcp_wmem[2] bytes", w));
    }
    let memory = wmem_max.map_or_else(
        || "up to tcp_wmem[2] of unsent data each".to_string(),
        |w| {
            format!(
                "up to tcp_wmem[2] = {} bytes of unsent data each",
                grouped(w)
            )
        },
    );
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
        reason: format!(
            "An orphan is a full socket its application has closed while the kernel still \
             sends its last data and FIN (FIN_WAIT1, FIN_WAIT2, LAST_ACK, CLOSING). An orphaned \
             FIN_WAIT2 handed to timewait (tcp_fin_timeout <= 60) is no longer one: it counts \
             against tcp_max_tw_buckets. The count and the limit are host-wide, shared by all \
             namespaces. tcp_check_oom() resets orphans once they pass tcp_max_orphans or once \
             TCP memory passes tcp_mem[2] (TcpExtTCPAbortOnMemory, \"too many orphaned \
             sockets\" in the log); an orphan that keeps retransmitting counts double or more, so \
             resets start before the limit. Orphans hold {memory}."
        ),
        action: "Find the peers that do not read or acknowledge: `cwleak states --by remote` \
                 (FIN_WAIT1, LAST_ACK). tcp_orphan_retries bounds how long an orphan \
                 retransmits, tcp_fin_timeout how long an orphaned FIN_WAIT2 waits. Raising \
                 tcp_max_orphans costs unswappable memory, up to tcp_wmem[2] per orphan."
            .into(),
    })
}

/// TCP buffer memory (host-wide, sockstat `mem`, in pages) against tcp_mem:
/// pressure from tcp_mem[1], allocation failures and orphan resets at tcp_mem[2].
pub fn tcp_mem(namespaces: &[Namespace]) -> Option<Finding> {
    let (pressure, max) = namespaces
        .iter()
        .find_map(|n| Some((n.settings.nth(TCP_MEM, 1)?, n.settings.nth(TCP_MEM, 2)?)))?;
    let pages = namespaces.iter().find_map(|n| n.observed.kernel)?.mem_pages;
    let p = pct(pages, max);
    let severity = if pages >= max {
        Severity::Critical
    } else if pages >= pressure {
        Severity::Warn
    } else {
        return None;
    };
    Some(Finding {
        rule: Rule::TcpMem,
        severity,
        netns: None,
        setting: Some(TCP_MEM.into()),
        title: format!(
            "TCP buffer memory at {} pages, {p}% of tcp_mem[2] ({}), past the pressure level ({})",
            grouped(pages),
            grouped(max),
            grouped(pressure)
        ),
        observed: vec![
            int("pages", pages),
            int("tcp_mem[1] pages", pressure),
            int("tcp_mem[2] pages", max),
            int("percent", p),
        ],
        reason: "TCP's buffer memory is counted host-wide in pages (/proc/net/sockstat `mem`). \
                 Past tcp_mem[1] the kernel is under memory pressure and shrinks socket buffers; \
                 past tcp_mem[2] allocations fail and tcp_check_oom() resets orphans."
            .into(),
        action: "Look for sockets with large queues (`ss -tm`): peers that do not read, unread \
                 data in CLOSE_WAIT sockets. Raise tcp_mem only with memory to spare."
            .into(),
    })
}
