//! `cwleak sysctl` as text: the findings first (most severe first), then each
//! namespace's settings beside the counts they limit. And as JSON. Pure.

use super::finding::{Finding, Observation, Severity, Value};
use super::report::TuningReport;
use crate::report::style::Style;
use crate::report::units::utc;
use crate::report::wrap::{clean, wrap};
use crate::report::RenderOptions;
use crate::states::numbers::grouped;
use std::io::{self, Write};

const MIN_WIDTH: usize = 60;
const LABEL: &str = "            ";

pub fn text(r: &TuningReport, opts: &RenderOptions, out: &mut dyn Write) -> io::Result<()> {
    let st = Style::new(opts.color);
    let width = opts.width.max(MIN_WIDTH);
    writeln!(out, "{}", st.bold(&heading(r)))?;
    let mut sub = vec![];
    if let Some(h) = &r.host.hostname {
        sub.push(clean(h).into_owned());
    }
    if let Some(k) = &r.host.kernel {
        sub.push(format!("Linux {}", clean(k)));
    }
    sub.push(utc(r.host.taken_at_ms));
    sub.push(crate::states::render::source_words(
        r.scan.from.as_deref(),
        r.scan.live,
        &r.scan.proc_root,
        r.scan.duration_ms,
    ));
    for l in wrap(&sub.join(", "), width, "", "") {
        writeln!(out, "{}", st.dim(&l))?;
    }
    for f in &r.findings {
        writeln!(out)?;
        finding(r, f, width, st, out)?;
    }
    table::tables(r, width, out)?;
    explain::settings(r, width, st, out)?;
    unreadable(r, width, out)
}

fn unreadable(r: &TuningReport, width: usize, out: &mut dyn Write) -> io::Result<()> {
    let (tables, others) = crate::diagnose::Unreadable::counts(&r.scan.unreadable);
    let mut lines = vec![];
    if tables > 0 {
        lines.push(format!(
            "{tables} read(s) of a TCP table or of a namespace's settings failed: counts or \
             settings may be missing (scan.unreadable in --format json)"
        ));
    }
    if others > 0 {
        lines.push(format!(
            "{others} process file(s) could not be read: the holders of some listeners may be \
             unknown (scan.unreadable in --format json)"
        ));
    }
    for l in lines {
        writeln!(out)?;
        for w in wrap(&l, width, "", "  ") {
            writeln!(out, "{w}")?;
        }
    }
    Ok(())
}

fn heading(r: &TuningReport) -> String {
    let s = &r.summary;
    let ns = r.namespaces.len();
    let where_ = format!(
        "in {ns} network namespace{}",
        if ns == 1 { "" } else { "s" }
    );
    if ns == 0 {
        // Nothing read: no claim about any limit.
        return "cwleak sysctl: no network namespace read: nothing judged".into();
    }
    let unread = r.namespaces.iter().filter(|n| n.sysctls.is_empty()).count();
    if r.findings.is_empty() && unread > 0 {
        return format!(
            "cwleak sysctl: no findings {where_}, but the settings of {unread} could not be read"
        );
    }
    if r.findings.is_empty() {
        return format!("cwleak sysctl: no findings {where_}: no limit is near");
    }
    let mut parts = vec![];
    if s.critical > 0 {
        parts.push(format!("{} critical", s.critical));
    }
    if s.warn > 0 {
        parts.push(format!(
            "{} warning{}",
            s.warn,
            if s.warn == 1 { "" } else { "s" }
        ));
    }
    if s.info > 0 {
        parts.push(format!(
            "{} note{}",
            s.info,
            if s.info == 1 { "" } else { "s" }
        ));
    }
    format!("cwleak sysctl: {} {where_}", parts.join(", "))
}

fn finding(
    r: &TuningReport,
    f: &Finding,
    width: usize,
    st: Style,
    out: &mut dyn Write,
) -> io::Result<()> {
    let tag = format!("{:<9}", f.severity.name().to_uppercase());
    let painted = match f.severity {
        Severity::Critical => st.red(&tag),
        Severity::Warn => st.yellow(&tag),
        Severity::Info => st.dim(&tag),
    };
    let first = " ".repeat(tag.len());
    for (i, l) in wrap(&f.title, width, &first, &first).iter().enumerate() {
        if i == 0 {
            writeln!(out, "{painted}{}", st.bold(&l[first.len().min(l.len())..]))?;
        } else {
            writeln!(out, "{l}")?;
        }
    }
    let mut field = |label: &str, text: &str| -> io::Result<()> {
        let head = format!("  {label:<10}");
        for (i, l) in wrap(text, width, &head, LABEL).iter().enumerate() {
            if i == 0 {
                let rest = &l[head.len().min(l.len())..];
                writeln!(
                    out,
                    "  {}{}{rest}",
                    st.bold(label),
                    " ".repeat(10 - label.len())
                )?;
            } else {
                writeln!(out, "{l}")?;
            }
        }
        Ok(())
    };
    match f.netns {
        Some(n) => field("netns", &namespace_label(r, n))?,
        None => field("netns", "host-wide")?,
    }
    if let Some(s) = &f.setting {
        let value = f
            .netns
            .and_then(|n| r.namespaces.iter().find(|x| x.netns == n))
            .and_then(|n| n.sysctls.get(s));
        match value {
            Some(v) => field("setting", &format!("{s} = {v}"))?,
            None => field("setting", s)?,
        }
    }
    let observed: Vec<String> = f.observed.iter().map(observation).collect();
    field("observed", &observed.join("; "))?;
    field("why", &f.reason)?;
    field("do", &f.action)
}

/// "TIME_WAIT 1,000,000", "90% of the limit", "net.core.somaxconn 4096".
fn observation(o: &Observation) -> String {
    match &o.value {
        Value::Int(n) if o.name == "percent" => format!("{n}% of the limit"),
        // A port is a name, not a quantity: never "port 8,086".
        Value::Int(n) if o.name == "port" => format!("port {n}"),
        // A setting reads as sysctl prints it.
        Value::Int(n) if o.name.starts_with("net.") => format!("{} {n}", o.name),
        Value::Int(n) if *n >= 0 => format!("{} {}", o.name, grouped(n.unsigned_abs())),
        v => format!("{} {}", o.name, clean(&v.to_string())),
    }
}

pub(super) fn namespace_label(r: &TuningReport, netns: u64) -> String {
    let Some(n) = r.namespaces.iter().find(|n| n.netns == netns) else {
        return netns.to_string();
    };
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
    if who.is_empty() {
        netns.to_string()
    } else {
        format!("{netns} ({})", who.join("; "))
    }
}

pub fn json(r: &TuningReport, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, r).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

mod explain;
mod table;

#[cfg(test)]
mod tests;
