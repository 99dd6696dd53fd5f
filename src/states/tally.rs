//! The breakdowns of `--by`: per state, sockets per process, per service
//! port, per remote address. Ports count into one flat array indexed by
//! (state, side, port); processes into one `StateCounts` per process; only
//! remote addresses need a hash map. Nothing is allocated per socket.

use super::count::{index, StateCounts, STATES};
use super::report::{Dimension, PortCount, ProcessCount, RemoteCount, Top};
use super::side::Side;
use crate::model::{Process, TcpState};
use std::collections::HashMap;
use std::net::IpAddr;

const PORTS: usize = 1 << 16;

#[derive(Default)]
pub struct Tally {
    /// Per process (index into the snapshot's processes).
    processes: Option<Vec<StateCounts>>,
    /// [state][side][port], 6 MiB of zeroed pages touched only where counted.
    ports: Option<Vec<u32>>,
    remotes: Option<HashMap<(u8, IpAddr), u64>>,
}

impl Tally {
    pub fn new(by: &[Dimension], processes: usize) -> Tally {
        Tally {
            processes: by
                .contains(&Dimension::Process)
                .then(|| vec![StateCounts::default(); processes]),
            ports: by
                .contains(&Dimension::Port)
                .then(|| vec![0; STATES * 2 * PORTS]),
            remotes: by.contains(&Dimension::Remote).then(HashMap::new),
        }
    }

    pub fn wants_ports(&self) -> bool {
        self.ports.is_some()
    }

    /// Count a socket for each process index in `holders`.
    pub fn holders(&mut self, state: TcpState, holders: &[u32]) {
        if let Some(p) = &mut self.processes {
            for &i in holders {
                if let Some(c) = p.get_mut(i as usize) {
                    c.add(state);
                }
            }
        }
    }

    pub fn port(&mut self, state: TcpState, port: u16, side: Side) {
        if let Some(p) = &mut self.ports {
            let slot = &mut p[port_slot(state, side, port)];
            *slot = slot.saturating_add(1);
        }
    }

    pub fn remote(&mut self, state: TcpState, addr: IpAddr) {
        if let Some(r) = &mut self.remotes {
            // IPv4 peers of an IPv6 socket show as ::ffff:a.b.c.d; count them as IPv4.
            *r.entry((state as u8, addr.to_canonical())).or_default() += 1;
        }
    }

    pub fn top_processes(
        &self,
        state: TcpState,
        procs: &[Process],
        limit: usize,
    ) -> Option<Top<ProcessCount>> {
        let counts = self.processes.as_ref()?;
        let items = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.get(state)))
            // Lower pid first among equals: processes are sorted by pid.
            .filter(|&(_, n)| n > 0);
        Some(top(items, limit, |i, count| {
            let p = &procs[i];
            ProcessCount {
                pid: p.pid,
                comm: p.comm.clone(),
                netns: p.netns,
                count,
            }
        }))
    }

    pub fn top_ports(&self, state: TcpState, limit: usize) -> Option<Top<PortCount>> {
        let p = self.ports.as_ref()?;
        let base = index(state) * 2 * PORTS;
        let items = p[base..base + 2 * PORTS]
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            // Key: (port, side) so that equal counts list the lower port first.
            .map(|(i, &n)| ((i % PORTS, i / PORTS), u64::from(n)));
        Some(top(items, limit, |(port, side), count| PortCount {
            port: u16::try_from(port).unwrap_or(u16::MAX),
            side: if side == 0 { Side::Local } else { Side::Remote },
            count,
        }))
    }

    pub fn top_remotes(&self, state: TcpState, limit: usize) -> Option<Top<RemoteCount>> {
        let r = self.remotes.as_ref()?;
        let items = r
            .iter()
            .filter(|((s, _), _)| *s == state as u8)
            .map(|((_, a), &n)| (*a, n));
        Some(top(items, limit, |address, count| RemoteCount {
            address,
            count,
        }))
    }
}

fn port_slot(state: TcpState, side: Side, port: u16) -> usize {
    let side = match side {
        Side::Local => 0,
        Side::Remote => 1,
    };
    (index(state) * 2 + side) * PORTS + usize::from(port)
}

/// The `limit` largest (key, count) pairs, most first, ties by key; plus how
/// many keys there were and the sockets under the keys left out.
pub fn top<K: Ord + Copy, T>(
    items: impl Iterator<Item = (K, u64)>,
    limit: usize,
    make: impl Fn(K, u64) -> T,
) -> Top<T> {
    let mut all: Vec<(K, u64)> = items.collect();
    let order = |a: &(K, u64), b: &(K, u64)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
    let distinct = all.len() as u64;
    if all.len() > limit && limit > 0 {
        all.select_nth_unstable_by(limit - 1, order);
    }
    let rest: u64 = all.iter().skip(limit).map(|&(_, n)| n).sum();
    all.truncate(limit);
    all.sort_unstable_by(order);
    Top {
        entries: all.into_iter().map(|(k, n)| make(k, n)).collect(),
        distinct,
        rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_keeps_the_largest_and_counts_the_rest() {
        let items = [(5, 1u64), (1, 9), (2, 9), (3, 4), (4, 2)];
        let t = top(items.into_iter(), 3, |k, n| (k, n));
        assert_eq!(t.entries, vec![(1, 9), (2, 9), (3, 4)]);
        assert_eq!((t.distinct, t.rest), (5, 3));
        let t = top(items.into_iter(), 10, |k, n| (k, n));
        assert_eq!(t.entries.len(), 5);
        assert_eq!(t.rest, 0);
        let t = top(items.into_iter(), 0, |k, n| (k, n));
        assert!(t.entries.is_empty());
        assert_eq!((t.distinct, t.rest), (5, 25));
    }

    #[test]
    fn ports_are_counted_per_state_and_side() {
        let mut t = Tally::new(&[Dimension::Port], 0);
        for _ in 0..3 {
            t.port(TcpState::TimeWait, 443, Side::Local);
        }
        t.port(TcpState::TimeWait, 5432, Side::Remote);
        t.port(TcpState::Established, 443, Side::Local);
        t.port(TcpState::TimeWait, 65535, Side::Remote);
        let top = t.top_ports(TcpState::TimeWait, 2).unwrap();
        assert_eq!(top.entries[0].port, 443);
        assert_eq!(top.entries[0].side, Side::Local);
        assert_eq!(top.entries[0].count, 3);
        assert_eq!(top.entries[1].port, 5432);
        assert_eq!((top.distinct, top.rest), (3, 1));
        assert_eq!(t.top_ports(TcpState::Established, 5).unwrap().distinct, 1);
        assert!(t.top_remotes(TcpState::TimeWait, 5).is_none());
    }

    #[test]
    fn remotes_fold_mapped_ipv4() {
        let mut t = Tally::new(&[Dimension::Remote], 0);
        t.remote(TcpState::TimeWait, "::ffff:10.0.0.1".parse().unwrap());
        t.remote(TcpState::TimeWait, "10.0.0.1".parse().unwrap());
        let top = t.top_remotes(TcpState::TimeWait, 5).unwrap();
        assert_eq!(top.entries.len(), 1);
        assert_eq!(top.entries[0].address.to_string(), "10.0.0.1");
        assert_eq!(top.entries[0].count, 2);
    }
}
