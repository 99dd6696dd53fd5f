//! Machine-friendly forms of a look: JSON (pretty, or one compact document
//! per line for `--watch`) and one plain line per look for `--watch` into a
//! pipe.

use crate::report::units::utc;
use crate::states::numbers::{grouped, signed};
use crate::states::report::StatesReport;
use std::io::{self, Write};

/// The report exactly as serde writes it, pretty, with a final newline.
pub fn json(r: &StatesReport, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, r).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// One compact JSON document per line (`--watch --format json`).
pub fn json_line(r: &StatesReport, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer(&mut *out, r).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// One look as one line, for `--watch` into a pipe or a file:
/// "2026-03-14 09:26:53 UTC sockets 1,000,212 (+12) TIME_WAIT 1,000,000 (+10) ...".
/// Lists every state with sockets or with a change.
pub fn plain_line(r: &StatesReport, out: &mut dyn Write) -> io::Result<()> {
    let change = |d: i64| match r.change {
        Some(_) if d != 0 => format!(" ({})", signed(d)),
        _ => String::new(),
    };
    let mut line = format!(
        "{} sockets {}{}",
        utc(r.host.taken_at_ms),
        grouped(r.sockets),
        change(r.change.map_or(0, |c| c.total()))
    );
    for (s, n) in r.total.iter() {
        let d = r.change.map_or(0, |c| c.get(s));
        if n > 0 || d != 0 {
            line.push_str(&format!(" {} {}{}", s.name(), grouped(n), change(d)));
        }
    }
    for n in &r.namespaces {
        let moved = n.counters_change.iter().flatten().filter(|(_, &d)| d != 0);
        for (k, d) in moved {
            line.push_str(&format!(" netns {} {k} {}", n.netns, signed(*d)));
        }
    }
    writeln!(out, "{line}")
}
