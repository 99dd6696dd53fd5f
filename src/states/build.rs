//! From a snapshot to a `StatesReport`: one pass over the sockets (two when
//! ports are asked for: listeners first), counting into arrays indexed by
//! state. Pure: reads the snapshot only.

use super::count::{index, is_orphan, is_tw_bucket, Owner, Owners, StateCounts, STATES};
use super::holders::Holders;
use super::report::*;
use super::side::{service_port, PortRange, PortSet};
use super::tally::{top, Tally};
use crate::diagnose::{Host, Tool, Unreadable};
use crate::model::{Inode, NetNs, Pid, Process, Snapshot, TcpSocket, TcpState};
use std::collections::{HashMap, HashSet};

/// What to count and how to break it down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub scope: StatesScope,
    pub by: Vec<Dimension>,
    pub limit: usize,
}

pub fn build(snap: &Snapshot, opts: &Options) -> StatesReport {
    let holders = Holders::new(&snap.processes);
    let scope = Filter::new(&opts.scope, &snap.processes, &holders);
    let mut tally = Tally::new(&opts.by, snap.processes.len());
    let mut nss = Namespaces::new(snap, tally.wants_ports());
    let mut total = StateCounts::default();
    let mut owners = [Owners::default(); STATES];
    let want_remote = opts.by.contains(&Dimension::Remote);
    for s in &snap.sockets {
        let ns = nss.index(s.netns);
        if !scope.admits(s) {
            continue;
        }
        let held = holders.of(s.inode);
        owners[index(s.state)].add(Owner::of(s.state, s.inode, !held.is_empty()));
        total.add(s.state);
        nss.count(ns, s);
        tally.holders(s.state, held);
        if tally.wants_ports() {
            let (port, side) = nss.service_port(ns, s);
            tally.port(s.state, port, side);
        }
        if want_remote && s.state != TcpState::Listen {
            tally.remote(s.state, s.remote.ip());
        }
    }
    let namespaces = nss.finish(snap, &opts.scope);
    let by_state = TcpState::ALL
        .iter()
        .filter(|&&st| total.get(st) > 0)
        .map(|&st| StateDetail {
            state: st,
            count: total.get(st),
            owners: owners[index(st)],
            processes: tally.top_processes(st, &snap.processes, opts.limit),
            ports: tally.top_ports(st, opts.limit),
            remotes: tally.top_remotes(st, opts.limit),
            netns: opts.by.contains(&Dimension::Netns).then(|| {
                let items = namespaces
                    .iter()
                    .map(|n| (n.netns, n.states.get(st)))
                    .filter(|&(_, c)| c > 0);
                top(items, opts.limit, |netns, count| NetnsCount {
                    netns,
                    count,
                })
            }),
        })
        .collect();
    StatesReport {
        schema_version: SCHEMA_VERSION,
        tool: Tool::this(),
        host: Host::of(&snap.meta),
        sockets: total.total(),
        total,
        change: None,
        namespaces,
        by_state,
        top: TopOptions {
            by: opts.by.clone(),
            limit: opts.limit,
        },
        scan: read_info(snap, &opts.scope),
    }
}

/// The scope as sets: a socket is in when every kind given matches (values
/// of one kind: any).
struct Filter<'a> {
    netns: &'a [Inode],
    ports: &'a [u16],
    /// Socket inodes the processes in a `--pid` scope hold.
    held: Option<HashSet<Inode>>,
}

impl<'a> Filter<'a> {
    fn new(scope: &'a StatesScope, procs: &[Process], holders: &Holders) -> Filter<'a> {
        let held = (!scope.pids.is_empty()).then(|| {
            let pids = with_descendants(procs, &scope.pids, scope.with_children);
            holders.inodes_of(procs, &pids)
        });
        Filter {
            netns: &scope.netns,
            ports: &scope.ports,
            held,
        }
    }

    fn admits(&self, s: &TcpSocket) -> bool {
        (self.netns.is_empty() || self.netns.contains(&s.netns))
            && (self.ports.is_empty()
                || self.ports.contains(&s.local.port())
                || self.ports.contains(&s.remote.port()))
            && self.held.as_ref().is_none_or(|h| h.contains(&s.inode))
    }
}

/// `roots`, and with `children` every process below them.
pub fn with_descendants(procs: &[Process], roots: &[Pid], children: bool) -> HashSet<Pid> {
    let mut set: HashSet<Pid> = roots.iter().copied().collect();
    if !children {
        return set;
    }
    let mut kids: HashMap<Pid, Vec<Pid>> = HashMap::new();
    for p in procs {
        kids.entry(p.ppid).or_default().push(p.pid);
    }
    let mut stack: Vec<Pid> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        for &k in kids.get(&pid).map_or(&[][..], Vec::as_slice) {
            if set.insert(k) {
                stack.push(k);
            }
        }
    }
    set
}

/// Per-namespace counts, and what the port breakdown needs to know of each.
struct Namespaces {
    list: Vec<Acc>,
    by_inode: HashMap<Inode, usize>,
    /// The namespace of the previous socket: tables come one namespace at a time.
    last: Option<(Inode, usize)>,
}

struct Acc {
    netns: Inode,
    counts: StateCounts,
    orphans: u64,
    tw_buckets: u64,
    listening: PortSet,
    range: PortRange,
}

impl Namespaces {
    fn new(snap: &Snapshot, ports: bool) -> Namespaces {
        let mut nss = Namespaces {
            list: Vec::new(),
            by_inode: HashMap::new(),
            last: None,
        };
        for n in &snap.namespaces {
            let i = nss.index(n.inode);
            nss.list[i].range = n
                .sysctls
                .get("net.ipv4.ip_local_port_range")
                .and_then(|r| PortRange::parse(r))
                .unwrap_or(PortRange::LINUX_DEFAULT);
        }
        if ports {
            for s in snap.sockets.iter().filter(|s| s.state == TcpState::Listen) {
                let i = nss.index(s.netns);
                nss.list[i].listening.insert(s.local.port());
            }
        }
        nss
    }

    fn index(&mut self, netns: Inode) -> usize {
        if let Some((n, i)) = self.last {
            if n == netns {
                return i;
            }
        }
        let i = *self.by_inode.entry(netns).or_insert_with(|| {
            self.list.push(Acc {
                netns,
                counts: StateCounts::default(),
                orphans: 0,
                tw_buckets: 0,
                listening: PortSet::default(),
                range: PortRange::LINUX_DEFAULT,
            });
            self.list.len() - 1
        });
        self.last = Some((netns, i));
        i
    }

    fn count(&mut self, i: usize, s: &TcpSocket) {
        let a = &mut self.list[i];
        a.counts.add(s.state);
        a.orphans += u64::from(is_orphan(s));
        a.tw_buckets += u64::from(is_tw_bucket(s));
    }

    fn service_port(&self, i: usize, s: &TcpSocket) -> (u16, super::side::Side) {
        let a = &self.list[i];
        service_port(s.local.port(), s.remote.port(), &a.listening, a.range)
    }

    /// The namespaces in scope, most sockets first.
    fn finish(self, snap: &Snapshot, scope: &StatesScope) -> Vec<NamespaceStates> {
        let info: HashMap<Inode, &NetNs> = snap.namespaces.iter().map(|n| (n.inode, n)).collect();
        let comm = |pid: Option<Pid>| {
            let pid = pid?;
            let p = snap.processes.iter().find(|p| p.pid == pid)?;
            Some(p.comm.clone())
        };
        let mut out: Vec<NamespaceStates> = self
            .list
            .into_iter()
            .filter(|a| match scope.netns.is_empty() {
                false => scope.netns.contains(&a.netns),
                // A pid or port scope: only the namespaces it reaches into.
                true => scope.is_everything() || a.counts.total() > 0,
            })
            .map(|a| {
                let n = info.get(&a.netns);
                let via_pid = n.and_then(|n| n.via_pid);
                NamespaceStates {
                    netns: a.netns,
                    via_pid,
                    comm: comm(via_pid),
                    own: snap.meta.netns == Some(a.netns),
                    method: n.map_or_else(String::new, |n| n.method.clone()),
                    file: n.and_then(|n| n.file.clone()),
                    sockets: a.counts.total(),
                    orphans: a.orphans,
                    tw_buckets: a.tw_buckets,
                    states: a.counts,
                    kernel: n.and_then(|n| n.kernel),
                    counters: n.map(|n| n.counters.clone()).unwrap_or_default(),
                    counters_change: None,
                }
            })
            .collect();
        out.sort_by(|a, b| b.sockets.cmp(&a.sockets).then(a.netns.cmp(&b.netns)));
        out
    }
}

fn read_info(snap: &Snapshot, scope: &StatesScope) -> ReadInfo {
    ReadInfo {
        from: None,
        proc_root: snap.meta.proc_root.clone(),
        live: snap.meta.live,
        processes: snap.stats.processes,
        tcp_sockets: snap.sockets.len(),
        duration_ms: snap.stats.duration_ms,
        scope: scope.clone(),
        unreadable: Unreadable::all(&snap.warnings),
    }
}

#[cfg(test)]
mod tests;
