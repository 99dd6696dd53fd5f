//! `cwleak states --watch D`: look again every D and show the change since
//! the previous look. On a terminal the table is redrawn in place; into a
//! pipe or a file each look is one plain line (one JSON document per line
//! with --format json). Ctrl-C (or SIGTERM) ends it after the current look,
//! with status 0; so does a reader that went away, or `--count N` looks.

use super::cmd::{look, write_report};
use super::config::StatesConfig;
use super::count::StateCounts;
use super::render;
use crate::exit::Exit;
use crate::model::Inode;
use crate::report::units::duration_ms;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

pub fn run(cfg: &StatesConfig, every: Duration) -> Result<Exit> {
    crate::stop::install()?;
    let tty = io::stdout().is_terminal();
    let note = format!(
        "every {}, Ctrl-C stops",
        duration_ms(u64::try_from(every.as_millis()).unwrap_or(u64::MAX))
    );
    let mut before: Option<StateCounts> = None;
    let mut counters_before: Option<HashMap<Inode, BTreeMap<String, u64>>> = None;
    let mut looks = 0u64;
    loop {
        let started = Instant::now();
        let mut report = look(cfg)?;
        report.change = before.map(|b| report.total.change_since(&b));
        before = Some(report.total);
        if let Some(prev) = &counters_before {
            for n in &mut report.namespaces {
                n.counters_change = prev.get(&n.netns).map(|p| counter_change(p, &n.counters));
            }
        }
        counters_before = Some(
            report
                .namespaces
                .iter()
                .map(|n| (n.netns, n.counters.clone()))
                .collect(),
        );
        let mut frame = Vec::new();
        if cfg.json {
            render::json_line(&report, &mut frame)?;
        } else if tty {
            write_report(cfg, &report, &cfg.render, Some(&note), &mut frame)?;
            frame = in_place(&frame, terminal_rows());
        } else {
            render::plain_line(&report, &mut frame)?;
        }
        if !emit(&frame)? {
            return Ok(Exit::Clean);
        }
        looks += 1;
        if cfg.count.is_some_and(|n| looks >= n) || !crate::stop::sleep_until(started + every) {
            return Ok(Exit::Clean);
        }
    }
}

/// Per counter present now, its change since `before` (a counter new since
/// then changed by its whole value; the namespace is young).
pub fn counter_change(
    before: &BTreeMap<String, u64>,
    now: &BTreeMap<String, u64>,
) -> BTreeMap<String, i64> {
    let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    now.iter()
        .map(|(k, &v)| {
            let was = before.get(k).copied().unwrap_or(0);
            (k.clone(), signed(v) - signed(was))
        })
        .collect()
}

/// Write one frame; false when the reader has gone away.
fn emit(frame: &[u8]) -> Result<bool> {
    let mut out = io::stdout().lock();
    match out.write_all(frame).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing output"),
    }
}

/// A frame that overwrites the previous one without clearing the screen
/// first (no flicker): cursor home, each line cleared to its end, and the
/// rest of the screen cleared after the last line. A frame taller than the
/// terminal would scroll and break the next redraw, so it is cut to fit.
fn in_place(frame: &[u8], rows: usize) -> Vec<u8> {
    let text = frame.strip_suffix(b"\n").unwrap_or(frame);
    let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    let room = rows.saturating_sub(1).max(2);
    let (shown, cut) = if lines.len() > room {
        (&lines[..room - 1], lines.len() - (room - 1))
    } else {
        (&lines[..], 0)
    };
    let mut out = Vec::with_capacity(frame.len() + 8 * shown.len() + 64);
    out.extend_from_slice(b"\x1b[H");
    for l in shown {
        out.extend_from_slice(l);
        out.extend_from_slice(b"\x1b[K\n");
    }
    if cut > 0 {
        out.extend_from_slice(
            format!(
                "... {cut} more lines: a taller terminal or a smaller --top shows them\x1b[K\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\x1b[J");
    out
}

/// Rows of the terminal on stdout (LINES wins, as for COLUMNS); 50 when unknown.
fn terminal_rows() -> usize {
    if let Some(n) = std::env::var("LINES").ok().and_then(|l| l.parse().ok()) {
        return n;
    }
    crate::source::tty_height().filter(|h| *h > 0).unwrap_or(50)
}

#[cfg(test)]
mod tests {
    use super::in_place;

    #[test]
    fn counters_change_per_name() {
        let a: super::BTreeMap<String, u64> =
            [("TW".into(), 5), ("ListenOverflows".into(), 2)].into();
        let b: super::BTreeMap<String, u64> =
            [("TW".into(), 9), ("ListenOverflows".into(), 2)].into();
        let d = super::counter_change(&a, &b);
        assert_eq!(d["TW"], 4);
        assert_eq!(d["ListenOverflows"], 0);
    }

    #[test]
    fn frames_overwrite_in_place() {
        assert_eq!(
            in_place(b"a\nbc\n", 50),
            b"\x1b[Ha\x1b[K\nbc\x1b[K\n\x1b[J".to_vec()
        );
    }

    #[test]
    fn a_tall_frame_is_cut_to_the_terminal() {
        let frame: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let out = String::from_utf8(in_place(frame.as_bytes(), 10)).unwrap();
        assert_eq!(out.matches('\n').count(), 9, "{out:?}");
        assert!(out.contains("line 7\x1b[K\n... 22 more lines"), "{out:?}");
        assert!(!out.contains("line 8"));
    }
}
