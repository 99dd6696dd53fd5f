//! What the rules compare the settings with, per network namespace, measured
//! from the snapshot's TCP tables in one pass: where TIME_WAIT sits (incoming
//! or outgoing), the busiest destination of outgoing connections, and how
//! full each listener's queues are. Pure.

use crate::model::{Inode, KernelCounts, Snapshot, TcpState};
use crate::states::count::{is_orphan, is_tw_bucket, StateCounts};
use crate::states::side::{service_port, PortRange, PortSet, Side};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub netns: Inode,
    pub states: StateCounts,
    /// Full sockets in FIN_WAIT1/2, LAST_ACK, CLOSING without a file.
    pub orphans: u64,
    /// Orphaned FIN_WAIT2 still a full socket (tcp_fin_timeout > 60, or
    /// waiting for the timeout's part beyond 60 s).
    pub orphan_fin_wait2: u64,
    /// Timewait mini-sockets: TIME_WAIT and FIN_WAIT2 handed to timewait.
    pub tw_buckets: u64,
    /// Orphaned FIN_WAIT2 handed to timewait (counted in `tw_buckets`).
    pub fin_wait2_timewait: u64,
    /// TIME_WAIT of connections this namespace accepted (its local port is the service).
    pub time_wait_incoming: u64,
    /// TIME_WAIT of connections it opened.
    pub time_wait_outgoing: u64,
    /// ... of which to a loopback address (what tcp_tw_reuse=2 covers).
    pub time_wait_outgoing_loopback: u64,
    /// The destination with the most sockets on local ports from the
    /// ephemeral range.
    pub busiest: Option<Destination>,
    /// Listeners, fullest first (by the larger of their two queues' fill).
    pub listeners: Vec<Listener>,
    /// Ports listened on, ascending, each once.
    pub listening_ports: Vec<u16>,
    /// TIME_WAIT on accepted connections per local (service) port, most first.
    pub time_wait_incoming_ports: Vec<(u16, u64)>,
    /// The kernel's own counts (net/sockstat), when read.
    pub kernel: Option<KernelCounts>,
    /// TcpExt counters (net/netstat), when read.
    pub counters: BTreeMap<String, u64>,
    /// How much each counter moved while cwleak watched (`window_ms`);
    /// None when the counters were read once.
    pub moved: Option<BTreeMap<String, i64>>,
    pub window_ms: u64,
}

/// Outgoing connections from one local address to one remote address and port:
/// each needs its own local port from ip_local_port_range.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub local_ip: IpAddr,
    pub remote: SocketAddr,
    pub sockets: u64,
    pub time_wait: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub local: SocketAddr,
    /// Completed connections not yet accepted (Recv-Q).
    pub accept_queue: u64,
    /// min(listen() backlog, somaxconn) (Send-Q); 0 when unknown (/proc tables).
    pub backlog: u64,
    /// Handshakes in progress on this port (SYN_RECV), shared by every
    /// listener of the port.
    pub syn_recv: u64,
}

/// One `Observed` per namespace of the snapshot, in its order.
pub fn observe(snap: &Snapshot) -> Vec<Observed> {
    let mut out: Vec<Observed> = Vec::new();
    let mut index: HashMap<Inode, usize> = HashMap::new();
    let mut listening: Vec<PortSet> = Vec::new();
    let mut ranges: Vec<PortRange> = Vec::new();
    let mut slot =
        |netns: Inode, out: &mut Vec<Observed>, l: &mut Vec<PortSet>, r: &mut Vec<PortRange>| {
            *index.entry(netns).or_insert_with(|| {
                out.push(Observed {
                    netns,
                    ..Observed::default()
                });
                l.push(PortSet::default());
                r.push(PortRange::LINUX_DEFAULT);
                out.len() - 1
            })
        };
    for n in &snap.namespaces {
        let i = slot(n.inode, &mut out, &mut listening, &mut ranges);
        out[i].kernel = n.kernel;
        out[i].counters = n.counters.clone();
        if let Some(r) = n
            .sysctls
            .get(super::settings::PORT_RANGE)
            .and_then(|r| PortRange::parse(r))
        {
            ranges[i] = r;
        }
    }
    let mut syn_recv: HashMap<(usize, u16), u64> = HashMap::new();
    for s in snap.sockets.iter().filter(|s| s.state == TcpState::Listen) {
        let i = slot(s.netns, &mut out, &mut listening, &mut ranges);
        listening[i].insert(s.local.port());
    }
    let mut dests: HashMap<(usize, IpAddr, SocketAddr), (u64, u64)> = HashMap::new();
    let mut tw_in: HashMap<(usize, u16), u64> = HashMap::new();
    for s in &snap.sockets {
        let i = slot(s.netns, &mut out, &mut listening, &mut ranges);
        let o = &mut out[i];
        o.states.add(s.state);
        if is_orphan(s) {
            o.orphans += 1;
            if s.state == TcpState::FinWait2 {
                o.orphan_fin_wait2 += 1;
            }
        }
        if is_tw_bucket(s) {
            o.tw_buckets += 1;
            if s.state == TcpState::FinWait2 {
                o.fin_wait2_timewait += 1;
            }
        }
        match s.state {
            TcpState::Listen => continue,
            TcpState::SynRecv | TcpState::NewSynRecv => {
                *syn_recv.entry((i, s.local.port())).or_default() += 1;
                continue;
            }
            _ => {}
        }
        let (_, side) = service_port(s.local.port(), s.remote.port(), &listening[i], ranges[i]);
        let tw = s.state == TcpState::TimeWait;
        if tw {
            match side {
                Side::Local => {
                    o.time_wait_incoming += 1;
                    *tw_in.entry((i, s.local.port())).or_default() += 1;
                }
                Side::Remote => {
                    o.time_wait_outgoing += 1;
                    if s.remote.ip().to_canonical().is_loopback() {
                        o.time_wait_outgoing_loopback += 1;
                    }
                }
            }
        }
        if side == Side::Remote && ranges[i].contains(s.local.port()) {
            let e = dests
                .entry((i, s.local.ip().to_canonical(), s.remote))
                .or_default();
            e.0 += 1;
            e.1 += u64::from(tw);
        }
    }
    for ((i, local_ip, remote), (sockets, time_wait)) in dests {
        let d = Destination {
            local_ip,
            remote,
            sockets,
            time_wait,
        };
        let o = &mut out[i];
        let better = o.busiest.as_ref().is_none_or(|b| {
            (d.sockets, std::cmp::Reverse((d.remote, d.local_ip)))
                > (b.sockets, std::cmp::Reverse((b.remote, b.local_ip)))
        });
        if better {
            o.busiest = Some(d);
        }
    }
    for s in snap.sockets.iter().filter(|s| s.state == TcpState::Listen) {
        let i = index[&s.netns];
        out[i].listeners.push(Listener {
            local: s.local,
            accept_queue: u64::from(s.recv_q),
            backlog: u64::from(s.send_q),
            syn_recv: syn_recv.get(&(i, s.local.port())).copied().unwrap_or(0),
        });
    }
    for ((i, port), n) in tw_in {
        out[i].time_wait_incoming_ports.push((port, n));
    }
    for o in &mut out {
        o.time_wait_incoming_ports
            .sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        o.listening_ports = o.listeners.iter().map(|l| l.local.port()).collect();
        o.listening_ports.sort_unstable();
        o.listening_ports.dedup();
        o.listeners.sort_by(|a, b| {
            fill(b)
                .cmp(&fill(a))
                .then(b.syn_recv.cmp(&a.syn_recv))
                .then(a.local.cmp(&b.local))
        });
    }
    out
}

/// Per-mille fill of the fuller queue of a listener (0 when the backlog is unknown).
pub fn fill(l: &Listener) -> u64 {
    if l.backlog == 0 {
        return 0;
    }
    l.accept_queue.max(l.syn_recv) * 1000 / l.backlog
}

#[cfg(test)]
mod tests;
