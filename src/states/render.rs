//! `cwleak states` as text (a fixed table of the twelve states, then each
//! state's breakdowns), as JSON, and as one plain line per look for `--watch`
//! into a pipe. Pure: writes the report to `out`, nothing else.

use super::count::Owners;
use super::numbers::{grouped, signed};
use super::report::{NamespaceStates, StateDetail, StatesReport};
use crate::model::TcpState;
use crate::report::style::Style;
use crate::report::units::{duration_ms, utc};
use crate::report::wrap::{clean, wrap};
use crate::report::RenderOptions;
use std::io::{self, Write};

/// Namespaces listed one per line; the rest are summed up.
const MAX_NAMESPACES: usize = 12;
const MIN_WIDTH: usize = 60;

/// The whole report, for a terminal or a file. `note` is one more line under
/// the heading (the watch interval).
pub fn text(
    r: &StatesReport,
    opts: &RenderOptions,
    note: Option<&str>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let st = Style::new(opts.color);
    let width = opts.width.max(MIN_WIDTH);
    writeln!(out, "{}", st.bold(&heading(r)))?;
    let mut sub = vec![];
    if let Some(h) = &r.host.hostname {
        sub.push(clean(h).into_owned());
    }
    sub.push(utc(r.host.taken_at_ms));
    sub.push(source_words(
        r.scan.from.as_deref(),
        r.scan.live,
        &r.scan.proc_root,
        r.scan.duration_ms,
    ));
    if let Some(n) = note {
        sub.push(n.to_string());
    }
    for l in wrap(&sub.join(", "), width, "", "") {
        writeln!(out, "{}", st.dim(&l))?;
    }
    writeln!(out)?;
    table(r, st, out)?;
    namespaces(r, width, out)?;
    kernel(r, width, out)?;
    let mut details: Vec<&StateDetail> = r.by_state.iter().collect();
    details.sort_by(|a, b| b.count.cmp(&a.count).then(a.state.cmp(&b.state)));
    for d in details {
        writeln!(out)?;
        state_block(r, d, width, st, out)?;
    }
    unreadable(r, width, out)
}

/// Where the counts come from: "read in 40ms", "from snapshot FILE", "from DIR".
pub fn source_words(from: Option<&str>, live: bool, proc_root: &str, duration: u64) -> String {
    match from {
        Some(f) => format!("from snapshot {}", clean(f)),
        None if live => format!("read in {}", duration_ms(duration)),
        None => format!("from {}", clean(proc_root)),
    }
}

fn heading(r: &StatesReport) -> String {
    let ns = r.namespaces.len();
    let mut h = format!(
        "cwleak states: {} TCP socket{} in {} network namespace{}",
        grouped(r.sockets),
        if r.sockets == 1 { "" } else { "s" },
        ns,
        if ns == 1 { "" } else { "s" }
    );
    let s = &r.scan.scope;
    if !s.is_everything() {
        let mut parts = vec![];
        parts.extend(s.pids.iter().map(|p| format!("--pid {p}")));
        parts.extend(s.ports.iter().map(|p| format!("--port {p}")));
        parts.extend(s.netns.iter().map(|n| format!("--netns {n}")));
        h.push_str(&format!(" (scope: {})", parts.join(" ")));
    }
    h
}

/// All twelve states, always in the kernel's order, so that redraws line up.
fn table(r: &StatesReport, st: Style, out: &mut dyn Write) -> io::Result<()> {
    let w = r
        .total
        .iter()
        .map(|(_, n)| grouped(n).len())
        .max()
        .unwrap_or(1)
        .max("SOCKETS".len());
    match &r.change {
        Some(_) => writeln!(out, "  {:<13} {:>w$}  {:>9}", "STATE", "SOCKETS", "CHANGE")?,
        None => writeln!(out, "  {:<13} {:>w$}", "STATE", "SOCKETS")?,
    }
    for (s, n) in r.total.iter() {
        let count = format!("{:>w$}", grouped(n));
        let count = if s == TcpState::CloseWait && n > 0 {
            st.yellow(&count)
        } else {
            count
        };
        match &r.change {
            Some(c) if c.get(s) != 0 => {
                writeln!(out, "  {:<13} {count}  {:>9}", s.name(), signed(c.get(s)))?
            }
            _ => writeln!(out, "  {:<13} {count}", s.name())?,
        }
    }
    Ok(())
}

fn namespaces(r: &StatesReport, width: usize, out: &mut dyn Write) -> io::Result<()> {
    // One namespace needs no list, unless it was read through its file (no
    // process in it): say so.
    if r.namespaces.len() < 2 && r.namespaces.iter().all(|n| n.file.is_none()) {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "Per network namespace, most sockets first:")?;
    for n in r.namespaces.iter().take(MAX_NAMESPACES) {
        let first = format!("  {:<11} ", n.netns);
        for l in wrap(&namespace_line(n), width, &first, "              ") {
            writeln!(out, "{l}")?;
        }
    }
    if r.namespaces.len() > MAX_NAMESPACES {
        let rest = &r.namespaces[MAX_NAMESPACES..];
        let sockets: u64 = rest.iter().map(|n| n.sockets).sum();
        writeln!(
            out,
            "  and {} more with {} sockets (--format json lists them all)",
            rest.len(),
            grouped(sockets)
        )?;
    }
    Ok(())
}

/// What the kernel itself counts, per namespace: sockstat beside the table's
/// own counts, and the TcpExt counters that are not zero (moving ones first).
fn kernel(r: &StatesReport, width: usize, out: &mut dyn Write) -> io::Result<()> {
    let read: Vec<&NamespaceStates> = r
        .namespaces
        .iter()
        .filter(|n| n.kernel.is_some())
        .take(MAX_NAMESPACES)
        .collect();
    if read.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "What the kernel counts (net/sockstat, TcpExt of net/netstat):"
    )?;
    for n in read {
        let first = format!("  {:<11} ", n.netns);
        let pad = " ".repeat(first.len());
        for l in wrap(&kernel_line(n), width, &first, &pad) {
            writeln!(out, "{l}")?;
        }
        if let Some(moving) = moving_counters(n) {
            for l in wrap(&moving, width, &pad, &pad) {
                writeln!(out, "{l}")?;
            }
        }
        let totals: Vec<String> = n
            .counters
            .iter()
            .filter(|(_, &v)| v > 0)
            .map(|(k, v)| format!("{k} {}", grouped(*v)))
            .collect();
        if !totals.is_empty() {
            let line = format!("since the namespace was created: {}", totals.join(", "));
            for l in wrap(&line, width, &pad, &pad) {
                writeln!(out, "{l}")?;
            }
        }
    }
    Ok(())
}

/// "tw 4,518 (4,518 in the table), inuse 12; host-wide: orphans 45 (...)".
fn kernel_line(n: &NamespaceStates) -> String {
    let Some(k) = n.kernel else {
        return String::new();
    };
    format!(
        "tw {} ({} timewait sockets in the table), inuse {}; host-wide: orphans {} \
         ({} in this namespace's table), alloc {}, mem {} pages",
        grouped(k.tw),
        grouped(n.tw_buckets),
        grouped(k.inuse),
        grouped(k.orphans),
        grouped(n.orphans),
        grouped(k.alloc),
        grouped(k.mem_pages)
    )
}

/// "moving: ListenOverflows +12, TCPTimeWaitOverflow +3", None when nothing moved.
pub fn moving_counters(n: &NamespaceStates) -> Option<String> {
    let c = n.counters_change.as_ref()?;
    let moving: Vec<String> = c
        .iter()
        .filter(|(_, &d)| d != 0)
        .map(|(k, d)| format!("{k} {}", signed(*d)))
        .collect();
    (!moving.is_empty()).then(|| format!("moving since the last look: {}", moving.join(", ")))
}

/// "(this namespace; pid 1 systemd) 1,000,100 sockets: TIME_WAIT 1,000,000, ..."
fn namespace_line(n: &NamespaceStates) -> String {
    let mut who = vec![];
    if n.own {
        who.push("this namespace".to_string());
    }
    if let Some(pid) = n.via_pid {
        let comm = n.comm.as_deref().map(clean).unwrap_or_default();
        who.push(format!("pid {pid} {comm}").trim_end().to_string());
    }
    if let Some(f) = &n.file {
        who.push(format!("{}, no process in it", clean(f)));
    }
    let states: Vec<String> = n
        .states
        .nonzero_by_count()
        .iter()
        .map(|(s, c)| format!("{} {}", s.name(), grouped(*c)))
        .collect();
    let mut line = String::new();
    if !who.is_empty() {
        line.push_str(&format!("({}) ", who.join("; ")));
    }
    line.push_str(&format!(
        "{} socket{}",
        grouped(n.sockets),
        if n.sockets == 1 { "" } else { "s" }
    ));
    if !states.is_empty() {
        line.push_str(&format!(": {}", states.join(", ")));
    }
    line
}

fn state_block(
    r: &StatesReport,
    d: &StateDetail,
    width: usize,
    st: Style,
    out: &mut dyn Write,
) -> io::Result<()> {
    let head = format!("{} {}", d.state.name(), grouped(d.count));
    let note = owners_note(d.state, &d.owners, d.count);
    let first = format!("{}  ", st.bold(&head));
    let pad = " ".repeat(head.len() + 2);
    for (i, l) in wrap(&note, width, &pad, "    ").iter().enumerate() {
        match i {
            0 => writeln!(out, "{first}{}", &l[pad.len().min(l.len())..])?,
            _ => writeln!(out, "{l}")?,
        }
    }
    if d.state == TcpState::CloseWait {
        for l in wrap(
            "the peer has closed, the application has not: `cwleak scan` names the process \
             and fd keeping each one (no sysctl closes them)",
            width,
            "    ",
            "    ",
        ) {
            writeln!(out, "{}", st.yellow(&l))?;
        }
    }
    let key_w = width.saturating_sub(4 + 8 + 12 + 6).clamp(16, 40);
    for dim in &r.top.by {
        if let Some(b) = rows::breakdown(d, *dim) {
            rows::rows(out, &b, key_w, d.count)?;
        }
    }
    Ok(())
}

/// Who the sockets of one state belong to, in words.
pub fn owners_note(state: TcpState, o: &Owners, count: u64) -> String {
    let kernel_words = match state {
        TcpState::TimeWait => "no process: closed first on this side, kept 60 s by the kernel",
        TcpState::SynRecv | TcpState::NewSynRecv => "no process: handshakes in progress",
        TcpState::FinWait1 | TcpState::FinWait2 | TcpState::LastAck | TcpState::Closing => {
            "no process (orphans): closed, the kernel finishes the close"
        }
        _ => "no process",
    };
    let parts = [
        (o.process, "held by processes"),
        (o.kernel, kernel_words),
        (o.accept_queue, "waiting in accept queues, not yet accepted"),
        (o.unknown, "holder not found (unreadable or exited process)"),
    ];
    if let Some((_, words)) = parts.iter().find(|(n, _)| *n == count && count > 0) {
        return (*words).to_string();
    }
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, words)| format!("{} {words}", grouped(*n)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn unreadable(r: &StatesReport, width: usize, out: &mut dyn Write) -> io::Result<()> {
    let (tables, others) = crate::diagnose::Unreadable::counts(&r.scan.unreadable);
    let mut lines = vec![];
    if tables > 0 {
        lines.push(format!(
            "{tables} TCP table read(s) failed: the counts may be incomplete (see scan.unreadable \
             in --format json)"
        ));
    }
    if others > 0 {
        lines.push(format!(
            "{others} process file(s) could not be read: sockets they hold count as \"holder \
             not found\" (see scan.unreadable in --format json)"
        ));
    }
    if !lines.is_empty() {
        writeln!(out)?;
    }
    for l in lines {
        for w in wrap(&l, width, "", "  ") {
            writeln!(out, "{w}")?;
        }
    }
    Ok(())
}

mod lines;
mod rows;

pub use lines::{json, json_line, plain_line};

#[cfg(test)]
mod tests;
