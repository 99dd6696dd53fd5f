//! The breakdowns under each state: one row per process, port, address or
//! namespace, then one row summing up the ones left out.

use crate::report::wrap::clean;
use crate::states::numbers::{grouped, percent};
use crate::states::report::{Dimension, StateDetail, Top};
use crate::states::side::Side;
use std::io::{self, Write};

/// One breakdown of a state, as text keys.
pub struct Breakdown {
    label: &'static str,
    /// What the keys are, singular and plural.
    things: (&'static str, &'static str),
    rows: Vec<(String, u64)>,
    distinct: u64,
    rest: u64,
}

pub fn breakdown(d: &StateDetail, dim: Dimension) -> Option<Breakdown> {
    fn make<T>(
        label: &'static str,
        things: (&'static str, &'static str),
        top: Option<&Top<T>>,
        row: impl Fn(&T) -> (String, u64),
    ) -> Option<Breakdown> {
        let top = top?;
        Some(Breakdown {
            label,
            things,
            rows: top.entries.iter().map(row).collect(),
            distinct: top.distinct,
            rest: top.rest,
        })
    }
    match dim {
        Dimension::Process => make(
            "process",
            ("process", "processes"),
            d.processes.as_ref(),
            |p| (format!("{} {}", p.pid, clean(&p.comm)), p.count),
        ),
        Dimension::Port => make("port", ("port", "ports"), d.ports.as_ref(), |p| {
            (format!("{} {}", side_name(p.side), p.port), p.count)
        }),
        Dimension::Remote => make(
            "remote",
            ("address", "addresses"),
            d.remotes.as_ref(),
            |p| (p.address.to_string(), p.count),
        ),
        Dimension::Netns => make(
            "netns",
            ("namespace", "namespaces"),
            d.netns.as_ref(),
            |p| (p.netns.to_string(), p.count),
        ),
    }
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Local => "local",
        Side::Remote => "remote",
    }
}

pub fn rows(out: &mut dyn Write, b: &Breakdown, key_w: usize, whole: u64) -> io::Result<()> {
    let label = b.label;
    for (key, n) in &b.rows {
        let mut k = key.clone();
        if k.chars().count() > key_w {
            k = k.chars().take(key_w.saturating_sub(1)).collect::<String>() + "~";
        }
        writeln!(
            out,
            "    {label:<8}{k:<key_w$} {:>11} {:>5}",
            grouped(*n),
            percent(*n, whole)
        )?;
    }
    let shown = b.rows.len() as u64;
    if b.distinct > shown {
        let n = b.distinct - shown;
        let (one, many) = b.things;
        let more = format!(
            "and {} more {}",
            grouped(n),
            if n == 1 { one } else { many }
        );
        writeln!(
            out,
            "    {:<8}{more:<key_w$} {:>11} {:>5}",
            "",
            grouped(b.rest),
            percent(b.rest, whole)
        )?;
    }
    Ok(())
}
