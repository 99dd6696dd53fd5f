//! Looks taken one after the other: a CLOSE_WAIT socket counts in a look
//! only if the look before saw it in CLOSE_WAIT too, so the interval between
//! looks is the settle window and sockets about to be closed make no noise.
//! Counted per blamed process. Shared by `check --during` and `watch`.
//! Pure: it reads the diagnosis's tallies (with their briefs), never the OS.

use crate::diagnose::{Cause, Tally};
use crate::model::Pid;
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;

/// One blamed process (None: sockets nobody visibly holds) in one look: its
/// sockets that persisted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Persisting {
    pub sockets: usize,
    pub comm: Option<String>,
    /// Causes of its sockets, in the order of the report's groups.
    pub causes: Vec<Cause>,
    /// The longest a counted socket has been in CLOSE_WAIT, when known.
    pub oldest_ms: Option<u64>,
}

/// The sockets of the previous look, each by a 64-bit digest of its key: a
/// tenth of the memory of the keys (80 bytes each), with 40,000 sockets on a
/// busy host, and this look's set is built while the last one is kept.
#[derive(Debug, Default)]
pub struct Persistence {
    prev: FxHashSet<u64>,
}

impl Persistence {
    /// Count the findings the previous look saw too, per blamed process.
    pub fn count(&mut self, look: &Tally) -> BTreeMap<Option<Pid>, Persisting> {
        self.tally(look, false)
    }

    /// Count every finding: for a look whose own settle window already
    /// told leaks from closing sockets (the first look of a series).
    pub fn seed(&mut self, look: &Tally) -> BTreeMap<Option<Pid>, Persisting> {
        self.tally(look, true)
    }

    /// A look with nothing in scope: the next one starts afresh.
    pub fn forget(&mut self) {
        self.prev.clear();
    }

    fn tally(&mut self, look: &Tally, all: bool) -> BTreeMap<Option<Pid>, Persisting> {
        let mut now: BTreeMap<Option<Pid>, Persisting> = BTreeMap::new();
        let mut keys = FxHashSet::default();
        keys.reserve(look.briefs.len());
        let comm = |pid: Option<Pid>| {
            let pid = pid?;
            let i = look.processes.binary_search_by_key(&pid, |p| p.pid).ok()?;
            Some(look.processes[i].comm.clone())
        };
        // Briefs are ordered by (pid, cause): each group's are one run.
        for g in &look.groups {
            let from = look
                .briefs
                .partition_point(|b| (b.pid, b.cause) < (g.pid, g.cause));
            let to = look
                .briefs
                .partition_point(|b| (b.pid, b.cause) <= (g.pid, g.cause));
            for b in &look.briefs[from..to] {
                if all || self.prev.contains(&b.socket) {
                    let t = now.entry(g.pid).or_default();
                    t.sockets += 1;
                    if t.comm.is_none() {
                        t.comm = comm(g.pid);
                    }
                    if !t.causes.contains(&g.cause) {
                        t.causes.push(g.cause);
                    }
                    t.oldest_ms = t.oldest_ms.max(b.close_wait_ms);
                }
                keys.insert(b.socket);
            }
        }
        self.prev = keys;
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::leaking_to_ports;

    fn sample(ports: &[u16]) -> Tally {
        Tally::of(&leaking_to_ports(ports))
    }

    #[test]
    fn a_socket_counts_from_its_second_look() {
        let mut p = Persistence::default();
        assert!(p.count(&sample(&[1])).is_empty());
        let now = p.count(&sample(&[1, 2]));
        assert_eq!(now.get(&Some(10)).map(|t| t.sockets), Some(1));
        let now = p.count(&sample(&[1, 2, 3]));
        let t = &now[&Some(10)];
        assert_eq!((t.sockets, t.comm.as_deref()), (2, Some("leakyd")));
        assert_eq!(t.causes, vec![Cause::ForkParentKept]);
        assert_eq!(t.oldest_ms, Some(60_000));
    }

    #[test]
    fn each_group_counts_its_own_sockets() {
        use crate::report::testdata::{sock, Builder};
        let mut b = Builder::new();
        b.process(10, 1, "leakyd");
        b.process(11, 1, "other");
        let s = |port: u16, pid| {
            sock(
                "10.0.0.1:8080",
                &format!("10.0.0.9:{port}"),
                vec![],
                &[(pid, 4)],
            )
        };
        let mut group = |pid, comm, cause, socks| {
            b.group(Some(pid), Some(comm), cause, &[], "f", "m", socks);
        };
        group(11, "other", Cause::NeverClosed, vec![s(5, 11)]);
        group(
            10,
            "leakyd",
            Cause::ForkParentKept,
            vec![s(1, 10), s(2, 10)],
        );
        group(10, "leakyd", Cause::NeverClosed, vec![s(3, 10)]);
        let now = Persistence::default().seed(&Tally::of(&b.build()));
        let t = &now[&Some(10)];
        assert_eq!((t.sockets, t.comm.as_deref()), (3, Some("leakyd")));
        assert_eq!(t.causes, vec![Cause::ForkParentKept, Cause::NeverClosed]);
        let t = &now[&Some(11)];
        assert_eq!((t.sockets, t.comm.as_deref()), (1, Some("other")));
        assert_eq!(t.causes, vec![Cause::NeverClosed]);
        assert_eq!(now.len(), 2);
    }

    #[test]
    fn a_seed_counts_everything_and_forget_starts_afresh() {
        let mut p = Persistence::default();
        assert_eq!(p.seed(&sample(&[1, 2]))[&Some(10)].sockets, 2);
        assert_eq!(p.count(&sample(&[1, 2]))[&Some(10)].sockets, 2);
        p.forget();
        assert!(p.count(&sample(&[1, 2])).is_empty());
    }
}
