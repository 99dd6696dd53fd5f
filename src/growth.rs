//! Looks taken one after the other: a CLOSE_WAIT socket counts in a look
//! only if the look before saw it in CLOSE_WAIT too, so the interval between
//! looks is the settle window and sockets about to be closed make no noise.
//! Counted per blamed process. Shared by `check --during` and `watch`.
//! Pure: it reads reports, never the OS.

use crate::diagnose::{Cause, Finding, Report};
use crate::model::{Pid, SocketKey};
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// One blamed process (None: sockets nobody visibly holds) in one look.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub sockets: usize,
    pub comm: Option<String>,
    /// Causes of its sockets, in the order the report's groups give them.
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
    pub fn count(&mut self, report: &Report) -> BTreeMap<Option<Pid>, Tally> {
        self.tally(report, false)
    }

    /// Count every finding: for a report whose own settle window already
    /// told leaks from closing sockets (the first look of a series).
    pub fn seed(&mut self, report: &Report) -> BTreeMap<Option<Pid>, Tally> {
        self.tally(report, true)
    }

    /// A look with nothing in scope: the next one starts afresh.
    pub fn forget(&mut self) {
        self.prev.clear();
    }

    fn tally(&mut self, report: &Report, all: bool) -> BTreeMap<Option<Pid>, Tally> {
        let mut now: BTreeMap<Option<Pid>, Tally> = BTreeMap::new();
        let mut keys = FxHashSet::default();
        keys.reserve(report.findings.len());
        for g in &report.groups {
            for f in g.findings.iter().filter_map(|&i| report.findings.get(i)) {
                let key = key(f);
                if all || self.prev.contains(&key) {
                    let t = now.entry(g.pid).or_default();
                    t.sockets += 1;
                    t.comm = g.comm.clone();
                    if !t.causes.contains(&g.cause) {
                        t.causes.push(g.cause);
                    }
                    t.oldest_ms = t.oldest_ms.max(f.socket.close_wait_ms);
                }
                keys.insert(key);
            }
        }
        self.prev = keys;
        now
    }
}

fn key(f: &Finding) -> u64 {
    let key = SocketKey {
        netns: f.socket.netns,
        inode: f.socket.inode,
        local: f.socket.local,
        remote: f.socket.remote,
    };
    // SipHash with fixed keys: the same digest for the same socket in every
    // look; two sockets of one host colliding in 64 bits is not a concern.
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::leaking_to_ports as sample;

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
    fn a_seed_counts_everything_and_forget_starts_afresh() {
        let mut p = Persistence::default();
        assert_eq!(p.seed(&sample(&[1, 2]))[&Some(10)].sockets, 2);
        assert_eq!(p.count(&sample(&[1, 2]))[&Some(10)].sockets, 2);
        p.forget();
        assert!(p.count(&sample(&[1, 2])).is_empty());
    }
}
