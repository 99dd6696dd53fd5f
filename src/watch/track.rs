//! Each blamed process across the looks of `watch`: its count at the first
//! look (0 if it held none then, or was born since), now, its peak, and the
//! change per look. Pure: it reads snapshots and reports, never the OS.

use crate::diagnose::{Cause, Report, Tally};
use crate::growth::Persisting;
use crate::model::{Pid, Snapshot};
use std::collections::{BTreeMap, HashMap};

/// A process for good: a pid is reused, (pid, start time) is not. `pid`
/// None stands for the sockets nobody visibly holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcKey {
    pub pid: Option<Pid>,
    pub start_time: u64,
}

/// One blamed process in one look.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub key: ProcKey,
    pub comm: String,
    pub cgroup: Option<String>,
    pub count: usize,
    pub causes: Vec<Cause>,
    pub oldest_ms: Option<u64>,
    /// When it started, in ms since the watch started (negative: before).
    pub born_ms: Option<i64>,
    /// `--trace`: the call that made a leaked copy it is blamed for
    /// ("accept4() at server.c:55 (take) in pid 1234").
    pub made: Option<String>,
}

/// What changed for one process between two looks.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub row: Row,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Appeared,
    Grew,
    Shrank,
    /// It holds no CLOSE_WAIT socket any more (closed them, or exited).
    Gone,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Appeared => "appeared",
            EventKind::Grew => "grew",
            EventKind::Shrank => "shrank",
            EventKind::Gone => "gone",
        }
    }
}

/// A process as the table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: ProcKey,
    pub comm: String,
    pub cgroup: Option<String>,
    pub count: usize,
    /// Its count at the first look (0 when it held none, or was born since).
    pub first: usize,
    pub peak: usize,
    /// Count change since the previous look.
    pub step: i64,
    /// Per minute since the first look (or its birth); None until a second has passed.
    pub per_min: Option<f64>,
    pub oldest_ms: Option<u64>,
    pub causes: Vec<Cause>,
    /// `--trace`: the call that made a leaked copy it is blamed for.
    pub made: Option<String>,
}

impl Row {
    /// Change since the first look.
    pub fn change(&self) -> i64 {
        signed(self.count) - signed(self.first)
    }
}

fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone)]
struct Track {
    first: usize,
    /// From when its rate is measured (ms since the watch started).
    since_ms: u64,
    peak: usize,
    last: Seen,
    present: bool,
}

/// Every blamed process seen so far.
#[derive(Debug, Default)]
pub struct Tracker {
    looks: usize,
    at_ms: u64,
    tracks: BTreeMap<ProcKey, Track>,
}

/// The blamed processes of one look: the counts of `crate::growth` with
/// what the snapshot and the diagnosis say about each process (`made`: the
/// calls `made_by` found, with `--trace`).
pub fn seen(
    snap: &Snapshot,
    look: &Tally,
    tallies: &BTreeMap<Option<Pid>, Persisting>,
    made: &HashMap<Pid, String>,
    at_ms: u64,
) -> Vec<Seen> {
    let procs: HashMap<Pid, &crate::model::Process> =
        snap.processes.iter().map(|p| (p.pid, p)).collect();
    let cgroups: HashMap<Pid, &str> = look
        .processes
        .iter()
        .filter_map(|p| Some((p.pid, p.cgroup.as_deref()?)))
        .collect();
    let tick_ms = 1000.0 / snap.meta.clk_tck.max(1) as f64;
    tallies
        .iter()
        .filter(|(_, t)| t.sockets > 0)
        .map(|(pid, t)| {
            let p = pid.and_then(|pid| procs.get(&pid));
            let born_ms = p.zip(snap.meta.uptime_s).map(|(p, up)| {
                let age_ms = up * 1000.0 - p.start_time as f64 * tick_ms;
                at_ms as i64 - age_ms as i64
            });
            Seen {
                key: ProcKey {
                    pid: *pid,
                    start_time: p.map_or(0, |p| p.start_time),
                },
                comm: t
                    .comm
                    .clone()
                    .or_else(|| p.map(|p| p.comm.clone()))
                    .unwrap_or_default(),
                cgroup: pid.and_then(|pid| cgroups.get(&pid)).map(|c| c.to_string()),
                count: t.sockets,
                causes: t.causes.clone(),
                oldest_ms: t.oldest_ms,
                born_ms,
                made: pid.and_then(|pid| made.get(&pid).cloned()),
            }
        })
        .collect()
}

/// Per blamed process, the call that made the first copy it is blamed for
/// in a finding whose cause was traced.
pub fn made_by(report: &Report) -> HashMap<Pid, String> {
    let mut out = HashMap::new();
    for f in &report.findings {
        if f.basis != crate::diagnose::origin::Basis::Traced {
            continue;
        }
        let Some(b) = f.blamed.first() else { continue };
        let origin = f
            .holders
            .iter()
            .find(|h| h.pid == b.pid && h.fd == b.fd)
            .and_then(|h| h.origin.as_deref());
        if let Some(o) = origin {
            out.entry(b.pid)
                .or_insert_with(|| crate::diagnose::origin::call_at(&o.step));
        }
    }
    out
}

impl Tracker {
    /// Fold in one look taken `at_ms` after the watch started; returns
    /// what changed since the previous one, in table order.
    pub fn update(&mut self, at_ms: u64, seen: Vec<Seen>) -> Vec<Event> {
        let first_look = self.looks == 0;
        self.looks += 1;
        self.at_ms = at_ms;
        let mut events = Vec::new();
        let mut now: BTreeMap<ProcKey, Seen> = seen.into_iter().map(|s| (s.key, s)).collect();
        for (key, t) in &mut self.tracks {
            let before = if t.present { t.last.count } else { 0 };
            match now.remove(key) {
                Some(s) => {
                    let kind = match (t.present, s.count.cmp(&before)) {
                        (false, _) => Some(EventKind::Appeared),
                        (true, std::cmp::Ordering::Greater) => Some(EventKind::Grew),
                        (true, std::cmp::Ordering::Less) => Some(EventKind::Shrank),
                        (true, std::cmp::Ordering::Equal) => None,
                    };
                    t.peak = t.peak.max(s.count);
                    t.last = s;
                    t.present = true;
                    if let Some(kind) = kind {
                        events.push((kind, *key, before));
                    }
                }
                None if t.present => {
                    t.present = false;
                    events.push((EventKind::Gone, *key, before));
                }
                None => {}
            }
        }
        for (key, s) in now {
            let (first, since_ms) = if first_look {
                (s.count, at_ms)
            } else {
                // It held none at the first look, or did not exist yet.
                let born = s.born_ms.map_or(0, |b| u64::try_from(b).unwrap_or(0));
                (0, born.min(at_ms))
            };
            self.tracks.insert(
                key,
                Track {
                    first,
                    since_ms,
                    peak: s.count,
                    last: s,
                    present: true,
                },
            );
            events.push((EventKind::Appeared, key, 0));
        }
        let mut out: Vec<Event> = events
            .into_iter()
            .filter_map(|(kind, key, before)| {
                let t = self.tracks.get(&key)?;
                let mut row = self.row(t);
                let now = if t.present { t.last.count } else { 0 };
                row.count = now;
                row.step = signed(now) - signed(before);
                Some(Event { kind, row })
            })
            .collect();
        out.sort_by(|a, b| order(&a.row, &b.row));
        out
    }

    /// Processes holding CLOSE_WAIT sockets now, growing ones on top.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .tracks
            .values()
            .filter(|t| t.present)
            .map(|t| self.row(t))
            .collect();
        rows.sort_by(order);
        rows
    }

    /// Every process seen at some look, present or not, for the summary.
    pub fn all(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .tracks
            .values()
            .map(|t| {
                let mut r = self.row(t);
                if !t.present {
                    r.count = 0;
                }
                r
            })
            .collect();
        rows.sort_by(order);
        rows
    }

    /// Some process still holding sockets holds more than at its first look.
    pub fn any_grew(&self) -> bool {
        self.tracks
            .values()
            .any(|t| t.present && t.last.count > t.first)
    }

    pub fn looks(&self) -> usize {
        self.looks
    }

    fn row(&self, t: &Track) -> Row {
        let elapsed = self.at_ms.saturating_sub(t.since_ms);
        let change = signed(t.last.count) - signed(t.first);
        Row {
            key: t.last.key,
            comm: t.last.comm.clone(),
            cgroup: t.last.cgroup.clone(),
            count: t.last.count,
            first: t.first,
            peak: t.peak,
            step: 0,
            per_min: (elapsed >= 1000).then(|| change as f64 * 60_000.0 / elapsed as f64),
            oldest_ms: t.last.oldest_ms,
            causes: t.last.causes.clone(),
            made: t.last.made.clone(),
        }
    }
}

/// Growing most first, then most sockets, then by pid.
fn order(a: &Row, b: &Row) -> std::cmp::Ordering {
    b.change()
        .cmp(&a.change())
        .then(b.count.cmp(&a.count))
        .then(a.key.cmp(&b.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pid: Pid, count: usize) -> Seen {
        Seen {
            key: ProcKey {
                pid: Some(pid),
                start_time: 7,
            },
            comm: format!("p{pid}"),
            cgroup: None,
            count,
            causes: vec![Cause::ForkParentKept],
            oldest_ms: None,
            born_ms: Some(-10_000),
            made: None,
        }
    }

    fn kinds(ev: &[Event]) -> Vec<(Option<Pid>, &'static str, i64)> {
        ev.iter()
            .map(|e| (e.row.key.pid, e.kind.name(), e.row.step))
            .collect()
    }

    #[test]
    fn events_say_what_changed_and_rows_put_growth_on_top() {
        let mut t = Tracker::default();
        let ev = t.update(0, vec![s(1, 3), s(2, 5)]);
        assert_eq!(
            kinds(&ev),
            vec![(Some(2), "appeared", 5), (Some(1), "appeared", 3)]
        );
        assert_eq!(kinds(&t.update(2000, vec![s(1, 3), s(2, 5)])), vec![]);
        let ev = t.update(4000, vec![s(1, 7), s(2, 4), s(3, 1)]);
        assert_eq!(
            kinds(&ev),
            vec![
                (Some(1), "grew", 4),
                (Some(3), "appeared", 1),
                (Some(2), "shrank", -1)
            ]
        );
        let rows = t.rows();
        assert_eq!(rows[0].key.pid, Some(1));
        assert_eq!((rows[0].first, rows[0].count, rows[0].change()), (3, 7, 4));
        // +4 in 4 s.
        assert_eq!(rows[0].per_min, Some(60.0));
        // Born before the watch: it held none at the first look.
        assert_eq!((rows[1].key.pid, rows[1].first), (Some(3), 0));
        assert!(t.any_grew());
        let ev = t.update(6000, vec![s(2, 4)]);
        assert_eq!(
            kinds(&ev),
            vec![(Some(3), "gone", -1), (Some(1), "gone", -7)]
        );
        assert!(!t.any_grew());
        assert_eq!(t.rows().len(), 1);
        assert_eq!(t.all().len(), 3);
    }

    #[test]
    fn a_process_born_during_the_watch_is_rated_from_its_birth() {
        let mut t = Tracker::default();
        t.update(0, vec![]);
        let mut late = s(9, 6);
        late.born_ms = Some(58_000);
        t.update(60_000, vec![late]);
        let rows = t.rows();
        // 6 sockets in its 2 s of life, not over the whole minute.
        assert_eq!(rows[0].per_min, Some(180.0));
        assert_eq!(rows[0].change(), 6);
    }

    #[test]
    fn a_reused_pid_is_another_process() {
        let mut t = Tracker::default();
        t.update(0, vec![s(1, 2)]);
        let mut other = s(1, 2);
        other.key.start_time = 99;
        let ev = t.update(1000, vec![other]);
        assert_eq!(
            kinds(&ev),
            vec![(Some(1), "appeared", 2), (Some(1), "gone", -2)]
        );
    }
}
