//! What `watch` says when it stops (Ctrl-C, `--count`, `--duration`): which
//! processes grew and by how much, and what the looks cost. Pure.

use super::lines;
use super::table::row;
use super::track::Tracker;
use crate::report::units::duration_ms;
use std::fmt::Write;

/// What the looks cost: per look, the read time and how much was walked.
#[derive(Debug, Clone, Default)]
pub struct Costs {
    pub read_ms: Vec<u64>,
    pub walked: Vec<usize>,
    pub processes: Vec<usize>,
}

impl Costs {
    pub fn add(&mut self, read_ms: u64, walked: usize, processes: usize) {
        self.read_ms.push(read_ms);
        self.walked.push(walked);
        self.processes.push(processes);
    }
}

/// The middle value (the upper one of an even count); 0 for none.
pub fn median<T: Copy + Ord + Default>(v: &[T]) -> T {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or_default()
}

pub struct Totals<'a> {
    pub tracker: &'a Tracker,
    pub costs: &'a Costs,
    pub elapsed_ms: u64,
    pub interval_ms: u64,
    /// Wall clock at the end, ms since the epoch (pipe lines carry it).
    pub epoch_ms: u64,
    /// `--trace`: what it recorded and lost, as of the last look.
    pub trace: Option<&'a crate::trace::TraceInfo>,
}

/// For people, after the last frame on a terminal.
pub fn text(t: &Totals) -> String {
    let mut out = String::new();
    let all = t.tracker.all();
    let grew: Vec<_> = all.iter().filter(|r| r.count > r.first).collect();
    let _ = writeln!(
        out,
        "cwleak watch: {} looks in {} (every {}); reading took {} ms, {} of {} processes walked again (medians)",
        t.tracker.looks(),
        duration_ms(t.elapsed_ms),
        duration_ms(t.interval_ms),
        median(&t.costs.read_ms),
        median(&t.costs.walked),
        median(&t.costs.processes),
    );
    if grew.is_empty() {
        let _ = writeln!(out, "no process's CLOSE_WAIT count grew");
    } else {
        let _ = writeln!(out, "{} process(es) grew (first look -> now):", grew.len());
        for r in grew {
            let _ = writeln!(out, "{}", row(r));
            if let Some(m) = &r.made {
                let _ = writeln!(out, "        made: {}", crate::report::wrap::clean(m));
            }
        }
    }
    let holding = all
        .iter()
        .filter(|r| r.count > 0 && r.count <= r.first)
        .count();
    let gone = all.iter().filter(|r| r.count == 0).count();
    let _ = writeln!(
        out,
        "{holding} process(es) hold CLOSE_WAIT sockets without growing; {gone} let go of all of theirs"
    );
    if let Some(tr) = t.trace {
        let _ = writeln!(out, "{}", crate::report::wrap::clean(&tr.summary()));
    }
    out
}

/// For a pipe: a `summary` line, then a `final` line per process seen.
pub fn lines(t: &Totals) -> String {
    let mut out = String::new();
    let all = t.tracker.all();
    let _ = writeln!(
        out,
        "{} summary looks={} elapsed={} interval={} grew={} holding={} read_median_ms={} walked_median={} processes={}",
        lines::timestamp(t.epoch_ms),
        t.tracker.looks(),
        duration_ms(t.elapsed_ms),
        duration_ms(t.interval_ms),
        all.iter().filter(|r| r.count > r.first).count(),
        all.iter().filter(|r| r.count > 0).count(),
        median(&t.costs.read_ms),
        median(&t.costs.walked),
        median(&t.costs.processes),
    );
    if let Some(tr) = t.trace {
        let _ = writeln!(
            out,
            "{} trace events={} dropped_events={} untracked_processes={} untracked_passes={}",
            lines::timestamp(t.epoch_ms),
            tr.events,
            tr.dropped_events,
            tr.untracked_processes,
            tr.untracked_passes
        );
    }
    for r in &all {
        let _ = writeln!(out, "{}", lines::last(t.epoch_ms, r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;
    use crate::watch::track::{ProcKey, Seen};

    fn s(pid: i32, count: usize) -> Seen {
        Seen {
            key: ProcKey {
                pid: Some(pid),
                start_time: 1,
            },
            comm: "leakyd".into(),
            cgroup: None,
            count,
            causes: vec![Cause::ForkParentKept],
            oldest_ms: None,
            born_ms: None,
            made: None,
        }
    }

    #[test]
    fn the_summary_names_who_grew() {
        let mut tr = Tracker::default();
        tr.update(0, vec![s(1, 2), s(2, 4)]);
        tr.update(2000, vec![s(1, 6), s(2, 4)]);
        let mut costs = Costs::default();
        costs.add(9, 80, 80);
        costs.add(3, 2, 80);
        costs.add(4, 1, 80);
        let t = Totals {
            tracker: &tr,
            costs: &costs,
            elapsed_ms: 2000,
            interval_ms: 2000,
            epoch_ms: 0,
            trace: None,
        };
        let text = text(&t);
        assert!(
            text.contains("2 looks in 2s (every 2s); reading took 4 ms, 2 of 80"),
            "{text}"
        );
        assert!(text.contains("1 process(es) grew"), "{text}");
        assert!(
            text.contains("1 process(es) hold CLOSE_WAIT sockets without growing"),
            "{text}"
        );
        let lines = lines(&t);
        assert!(
            lines.starts_with(
                "1970-01-01T00:00:00Z summary looks=2 elapsed=2s interval=2s grew=1 holding=2"
            ),
            "{lines}"
        );
        assert!(
            lines.contains("final pid=1 comm=leakyd count=6 change=+4"),
            "{lines}"
        );
        assert_eq!(median::<u64>(&[]), 0);
    }
}
