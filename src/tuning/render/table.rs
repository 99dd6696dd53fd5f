//! Each namespace's settings beside the counts they limit: one line per
//! setting, its value, and the live number it is measured against.

use super::namespace_label;
use crate::model::TcpState;
use crate::report::wrap::{clean, wrap};
use crate::states::numbers::{grouped, percent};
use crate::tuning::report::{NamespaceSettings, TuningReport};
use crate::tuning::settings::*;
use std::io::{self, Write};

/// Namespaces whose settings table is drawn; the rest are counted.
const MAX_TABLES: usize = 6;

pub(super) fn tables(r: &TuningReport, width: usize, out: &mut dyn Write) -> io::Result<()> {
    if r.namespaces.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "Settings beside the live counts:")?;
    // Namespaces with findings first, then the others in report order.
    let with_findings =
        |n: &&NamespaceSettings| r.findings.iter().any(|f| f.netns == Some(n.netns));
    let mut shown: Vec<&NamespaceSettings> = r.namespaces.iter().filter(with_findings).collect();
    shown.extend(r.namespaces.iter().filter(|n| !with_findings(n)));
    for n in shown.iter().take(MAX_TABLES) {
        writeln!(out)?;
        table(r, n, width, out)?;
    }
    if shown.len() > MAX_TABLES {
        writeln!(out)?;
        writeln!(
            out,
            "and {} more namespaces (--format json lists them all)",
            shown.len() - MAX_TABLES
        )?;
    }
    Ok(())
}

fn table(
    r: &TuningReport,
    n: &NamespaceSettings,
    width: usize,
    out: &mut dyn Write,
) -> io::Result<()> {
    writeln!(
        out,
        "  netns {}: {} sockets",
        namespace_label(r, n.netns),
        grouped(n.states.total())
    )?;
    if n.sysctls.is_empty() {
        return writeln!(out, "    (settings not read)");
    }
    let get = |name: &str| n.sysctls.get(name).map(String::as_str);
    let num = |name: &str| get(name).and_then(|v| v.trim().parse::<u64>().ok());
    let tw = n.states.get(TcpState::TimeWait);
    let buckets = n.kernel.map_or(n.tw_buckets.max(tw), |k| k.tw);
    let mut rows: Vec<(&str, String)> = vec![];
    rows.push((
        MAX_TW_BUCKETS,
        if n.fin_wait2_timewait > 0 {
            format!(
                "timewait {} ({}): TIME_WAIT {}, FIN_WAIT2 {}",
                grouped(buckets),
                percent(buckets, num(MAX_TW_BUCKETS).unwrap_or(0)),
                grouped(tw),
                grouped(n.fin_wait2_timewait)
            )
        } else {
            format!(
                "TIME_WAIT {} ({})",
                grouped(buckets),
                percent(buckets, num(MAX_TW_BUCKETS).unwrap_or(0))
            )
        },
    ));
    rows.push((
        PORT_RANGE,
        match (
            &n.busiest_destination,
            get(PORT_RANGE).and_then(crate::states::side::PortRange::parse),
        ) {
            (Some(d), Some(range)) => format!(
                "{} ports; busiest destination {} from {}: {} ({})",
                grouped(range.size()),
                d.remote,
                d.local_ip,
                grouped(d.sockets),
                percent(d.sockets, range.size())
            ),
            (None, Some(range)) => {
                format!("{} ports; no outgoing connections", grouped(range.size()))
            }
            _ => String::new(),
        },
    ));
    rows.push((
        TW_REUSE,
        format!(
            "TIME_WAIT {}: {} accepted here, {} opened here",
            grouped(tw),
            grouped(n.time_wait_incoming),
            grouped(n.time_wait_outgoing)
        ),
    ));
    rows.push((
        FIN_TIMEOUT,
        format!("orphaned FIN_WAIT2 {}", grouped(n.orphan_fin_wait2)),
    ));
    let syn = n.states.get(TcpState::SynRecv) + n.states.get(TcpState::NewSynRecv);
    rows.push((MAX_SYN_BACKLOG, format!("SYN_RECV {}", grouped(syn))));
    rows.push((
        SOMAXCONN,
        n.fullest_listener.as_ref().map_or_else(String::new, |l| {
            if l.backlog > 0 {
                format!(
                    "fullest listener {}: accept queue {} of {}",
                    l.local,
                    grouped(l.accept_queue),
                    grouped(l.backlog)
                )
            } else {
                format!(
                    "fullest listener {}: accept queue {}",
                    l.local,
                    grouped(l.accept_queue)
                )
            }
        }),
    ));
    rows.push((SYNCOOKIES, String::new()));
    rows.push((KEEPALIVE_TIME, String::new()));
    rows.push(("net.ipv4.tcp_keepalive_intvl", String::new()));
    rows.push(("net.ipv4.tcp_keepalive_probes", String::new()));
    rows.push(("net.ipv4.tcp_orphan_retries", String::new()));
    rows.push((MAX_ORPHANS, format!("orphans {} here", grouped(n.orphans))));
    rows.push((TW_REUSE_DELAY, String::new()));
    rows.push((TW_RECYCLE, String::new()));
    for (name, live) in rows {
        let Some(value) = get(name) else { continue };
        let short = name
            .strip_prefix("net.ipv4.")
            .or_else(|| name.strip_prefix("net.core."))
            .unwrap_or(name);
        let head = format!("    {short:<22} {:<13} ", clean(value));
        for l in wrap(&live, width, &head, &" ".repeat(head.len())) {
            writeln!(out, "{}", l.trim_end())?;
        }
    }
    if let Some(k) = n.kernel {
        let line = format!(
            "kernel (sockstat): tw {}, inuse {}; host-wide: orphans {}, mem {} pages",
            grouped(k.tw),
            grouped(k.inuse),
            grouped(k.orphans),
            grouped(k.mem_pages)
        );
        for l in wrap(&line, width, "    ", "      ") {
            writeln!(out, "{l}")?;
        }
    }
    if let Some(moved) = &n.counters_change {
        let moving: Vec<String> = moved
            .iter()
            .filter(|(_, &d)| d != 0)
            .map(|(k, d)| format!("{k} {}", crate::states::numbers::signed(*d)))
            .collect();
        let line = if moving.is_empty() {
            format!(
                "TcpExt counters: none moved in {:.1} s",
                r.scan.window_ms as f64 / 1000.0
            )
        } else {
            format!(
                "TcpExt counters moving in {:.1} s: {}",
                r.scan.window_ms as f64 / 1000.0,
                moving.join(", ")
            )
        };
        for l in wrap(&line, width, "    ", "      ") {
            writeln!(out, "{l}")?;
        }
    }
    let cw = n.states.get(TcpState::CloseWait);
    if cw > 0 {
        let line = format!(
            "CLOSE_WAIT {}: no setting closes them; `cwleak scan --netns {}` explains them",
            grouped(cw),
            n.netns
        );
        for l in wrap(&line, width, "    ", "      ") {
            writeln!(out, "{l}")?;
        }
    }
    Ok(())
}
