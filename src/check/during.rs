//! `--during`: sample the scope while the wrapped command runs and keep, per
//! blamed process, how its CLOSE_WAIT count grew: when first seen, the peak
//! and when, and a series of the changes. A socket counts in a sample only if
//! the sample before saw it in CLOSE_WAIT too (`crate::growth`, shared with
//! `watch`): the interval is the settle window.

use super::outcome::{During, Growth};
use crate::diagnose::{Report, Tally};
use crate::growth::{Persistence, Persisting};

/// Points kept per series; past it every other point is dropped (first
/// seen and the peak are kept apart, so nothing that matters is lost).
const MAX_POINTS: usize = 512;

#[derive(Debug, Default)]
pub struct Tracker {
    persist: Persistence,
    /// The whole scope, as one series.
    total: Growth,
    procs: Vec<Growth>,
    samples: usize,
    failed: usize,
    last_error: Option<String>,
}

impl Tracker {
    /// Fold in one sample (a report of the scope) taken `at_ms` after the
    /// command started.
    pub fn add(&mut self, at_ms: u64, report: &Report) {
        self.samples += 1;
        let now = self.persist.count(&Tally::of(report));
        set(
            &mut self.total,
            at_ms,
            now.values().map(|t| t.sockets).sum(),
        );
        for p in &mut self.procs {
            if !now.contains_key(&p.pid) {
                set(p, at_ms, 0);
            }
        }
        for (
            pid,
            Persisting {
                sockets: n,
                comm,
                causes,
                ..
            },
        ) in now
        {
            let i = match self.procs.iter().position(|p| p.pid == pid) {
                Some(i) => i,
                None => {
                    self.procs.push(Growth {
                        pid,
                        comm: None,
                        causes: Vec::new(),
                        first_seen_ms: at_ms,
                        peak: 0,
                        peak_at_ms: at_ms,
                        last: 0,
                        series: Vec::new(),
                    });
                    self.procs.len() - 1
                }
            };
            let p = &mut self.procs[i];
            p.comm = comm.or(p.comm.take());
            for c in causes {
                if !p.causes.contains(&c) {
                    p.causes.push(c);
                }
            }
            set(p, at_ms, n);
        }
    }

    /// A sample with nothing in scope (every process in scope gone, or not
    /// started yet).
    pub fn empty(&mut self, at_ms: u64) {
        self.samples += 1;
        self.persist.forget();
        set(&mut self.total, at_ms, 0);
        for p in &mut self.procs {
            set(p, at_ms, 0);
        }
    }

    /// A sample whose scan failed: counted, the message kept, growth unchanged.
    pub fn failed(&mut self, message: String) {
        self.failed += 1;
        self.last_error = Some(message);
    }

    pub fn finish(self, interval_ms: u64) -> During {
        During {
            interval_ms,
            samples: self.samples,
            failed_samples: self.failed,
            last_error: self.last_error,
            peak: self.total.peak,
            peak_at_ms: self.total.peak_at_ms,
            last: self.total.last,
            series: self.total.series,
            processes: self.procs,
        }
    }
}

fn set(p: &mut Growth, at_ms: u64, n: usize) {
    if n > p.peak {
        p.peak = n;
        p.peak_at_ms = at_ms;
    }
    if n != p.last || p.series.is_empty() {
        p.series.push((at_ms, n));
        if p.series.len() > MAX_POINTS {
            thin(&mut p.series);
        }
    }
    p.last = n;
}

/// Every other point dropped, the last one kept.
fn thin(series: &mut Vec<(u64, usize)>) {
    let last = series.last().copied();
    let mut i = 0;
    series.retain(|_| {
        i += 1;
        i % 2 == 1
    });
    if let (Some(l), Some(end)) = (last, series.last()) {
        if *end != l {
            series.push(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;
    use crate::report::testdata::leaking_to_ports as sample;

    #[test]
    fn growth_first_seen_peak_and_series() {
        let mut t = Tracker::default();
        t.add(0, &sample(&[]));
        t.add(100, &sample(&[1]));
        // Socket 1 seen twice: it counts from here.
        t.add(200, &sample(&[1, 2]));
        t.add(300, &sample(&[1, 2, 3]));
        t.add(400, &sample(&[1, 2, 3]));
        // Closed at last: the count drops to 0.
        t.add(500, &sample(&[]));
        let d = t.finish(100);
        assert_eq!((d.samples, d.failed_samples), (6, 0));
        assert_eq!(d.processes.len(), 1);
        let g = &d.processes[0];
        assert_eq!((g.pid, g.comm.as_deref()), (Some(10), Some("leakyd")));
        assert_eq!(g.causes, vec![Cause::ForkParentKept]);
        assert_eq!(
            (g.first_seen_ms, g.peak, g.peak_at_ms, g.last),
            (200, 3, 400, 0)
        );
        assert_eq!(g.series, vec![(200, 1), (300, 2), (400, 3), (500, 0)]);
        assert_eq!((d.peak, d.peak_at_ms, d.last), (3, 400, 0));
        assert_eq!(
            d.series,
            vec![(0, 0), (200, 1), (300, 2), (400, 3), (500, 0)]
        );
    }

    #[test]
    fn a_socket_seen_once_is_not_counted() {
        let mut t = Tracker::default();
        t.add(0, &sample(&[1]));
        t.add(100, &sample(&[2]));
        t.failed("scan failed".into());
        let d = t.finish(100);
        assert!(d.processes.is_empty());
        assert_eq!(
            (d.failed_samples, d.last_error.as_deref()),
            (1, Some("scan failed"))
        );
    }

    #[test]
    fn long_series_are_thinned_not_unbounded() {
        let mut g = Growth {
            pid: None,
            comm: None,
            causes: vec![],
            first_seen_ms: 0,
            peak: 0,
            peak_at_ms: 0,
            last: 0,
            series: vec![],
        };
        for i in 0..5000u64 {
            set(&mut g, i, usize::try_from(i % 7).unwrap_or(0) + 1);
        }
        assert!(g.series.len() <= MAX_POINTS, "{}", g.series.len());
        assert_eq!(g.series.last(), Some(&(4999, 4999 % 7 + 1)));
        assert_eq!((g.peak, g.peak_at_ms), (7, 6));
    }
}
