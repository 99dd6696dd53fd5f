//! What `cwleak sysctl` answers, as plain serde data (docs/sysctl.schema.json),
//! and how it is built from a snapshot. Pure.

use super::finding::{Finding, Severity};
use super::observe::{fill, observe, Observed};
use super::rules::{self, Namespace};
use super::settings::Settings;
use crate::diagnose::{Host, Tool, Unreadable};
use crate::model::{Inode, Pid, Snapshot, TcpState};
use crate::states::StateCounts;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TuningReport {
    pub schema_version: u32,
    pub tool: Tool,
    pub host: Host,
    pub summary: Summary,
    /// Most severe first.
    pub findings: Vec<Finding>,
    /// Every namespace read (in scope): its settings beside its counts. The
    /// namespace cwleak ran in first, then most sockets first.
    pub namespaces: Vec<NamespaceSettings>,
    pub scan: ScanInfo,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub critical: usize,
    pub warn: usize,
    pub info: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamespaceSettings {
    pub netns: Inode,
    pub via_pid: Option<Pid>,
    pub comm: Option<String>,
    /// The namespace cwleak itself ran in (live only).
    pub own: bool,
    /// How the TCP table was read: "sock_diag" or "proc".
    pub method: String,
    /// The TCP settings as read (name as `sysctl` prints it -> value); a
    /// setting this kernel or namespace does not have is absent.
    pub sysctls: BTreeMap<String, String>,
    pub states: StateCounts,
    pub orphans: u64,
    pub orphan_fin_wait2: u64,
    pub time_wait_incoming: u64,
    pub time_wait_outgoing: u64,
    /// The destination with the most outgoing connections on ephemeral ports.
    pub busiest_destination: Option<BusiestDestination>,
    /// The listener whose accept or SYN queue is fullest.
    pub fullest_listener: Option<FullestListener>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BusiestDestination {
    pub local_ip: IpAddr,
    pub remote: SocketAddr,
    pub sockets: u64,
    pub time_wait: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FullestListener {
    pub local: SocketAddr,
    pub accept_queue: u64,
    /// 0 when unknown (tables read from /proc).
    pub backlog: u64,
    pub syn_recv: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScanInfo {
    /// The snapshot file judged (`--from`); null when read through a proc root.
    pub from: Option<String>,
    pub proc_root: String,
    pub live: bool,
    pub duration_ms: u64,
    /// `--netns` (empty: every namespace).
    pub netns: Vec<Inode>,
    pub unreadable: Vec<Unreadable>,
}

impl TuningReport {
    /// The most severe finding, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

pub fn build(snap: &Snapshot, scope: &[Inode]) -> TuningReport {
    let observed: Vec<Observed> = observe(snap)
        .into_iter()
        .filter(|o| scope.is_empty() || scope.contains(&o.netns))
        .collect();
    let empty = BTreeMap::new();
    let sysctls: HashMap<Inode, &BTreeMap<String, String>> = snap
        .namespaces
        .iter()
        .map(|n| (n.inode, &n.sysctls))
        .collect();
    let holders = listener_holders(snap);
    let mut order: Vec<&Observed> = observed.iter().collect();
    order.sort_by_key(|o| {
        (
            snap.meta.netns != Some(o.netns),
            std::cmp::Reverse(o.states.total()),
            o.netns,
        )
    });
    let views: Vec<Namespace> = order
        .iter()
        .map(|o| Namespace {
            netns: o.netns,
            settings: Settings::new(sysctls.get(&o.netns).copied().unwrap_or(&empty)),
            observed: o,
            listener_holders: holders.get(&o.netns).map_or(&[][..], Vec::as_slice),
        })
        .collect();
    let findings = rules::evaluate(&views);
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    TuningReport {
        schema_version: SCHEMA_VERSION,
        tool: Tool::this(),
        host: Host::of(&snap.meta),
        summary: Summary {
            critical: count(Severity::Critical),
            warn: count(Severity::Warn),
            info: count(Severity::Info),
        },
        namespaces: order
            .iter()
            .map(|o| namespace(snap, o, sysctls.get(&o.netns).copied()))
            .collect(),
        findings,
        scan: ScanInfo {
            from: None,
            proc_root: snap.meta.proc_root.clone(),
            live: snap.meta.live,
            duration_ms: snap.stats.duration_ms,
            netns: scope.to_vec(),
            unreadable: Unreadable::all(&snap.warnings),
        },
    }
}

fn namespace(
    snap: &Snapshot,
    o: &Observed,
    sysctls: Option<&BTreeMap<String, String>>,
) -> NamespaceSettings {
    let info = snap.namespaces.iter().find(|n| n.inode == o.netns);
    let via_pid = info.and_then(|n| n.via_pid);
    NamespaceSettings {
        netns: o.netns,
        via_pid,
        comm: via_pid.and_then(|pid| {
            let p = snap.processes.iter().find(|p| p.pid == pid)?;
            Some(p.comm.clone())
        }),
        own: snap.meta.netns == Some(o.netns),
        method: info.map_or_else(String::new, |n| n.method.clone()),
        sysctls: sysctls.cloned().unwrap_or_default(),
        states: o.states,
        orphans: o.orphans,
        orphan_fin_wait2: o.orphan_fin_wait2,
        time_wait_incoming: o.time_wait_incoming,
        time_wait_outgoing: o.time_wait_outgoing,
        busiest_destination: o.busiest.as_ref().map(|d| BusiestDestination {
            local_ip: d.local_ip,
            remote: d.remote,
            sockets: d.sockets,
            time_wait: d.time_wait,
        }),
        fullest_listener: o
            .listeners
            .first()
            .filter(|l| fill(l) > 0 || l.accept_queue > 0 || l.syn_recv > 0)
            .map(|l| FullestListener {
                local: l.local,
                accept_queue: l.accept_queue,
                backlog: l.backlog,
                syn_recv: l.syn_recv,
            }),
    }
}

/// The lowest pid holding each listener, per namespace.
fn listener_holders(snap: &Snapshot) -> HashMap<Inode, Vec<(SocketAddr, Pid, String)>> {
    let listeners: HashMap<Inode, (Inode, SocketAddr)> = snap
        .sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen && s.inode != 0)
        .map(|s| (s.inode, (s.netns, s.local)))
        .collect();
    let mut out: HashMap<Inode, Vec<(SocketAddr, Pid, String)>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut procs: Vec<_> = snap.processes.iter().collect();
    procs.sort_by_key(|p| p.pid);
    for p in procs {
        for fd in &p.sockets {
            if let Some(&(netns, local)) = listeners.get(&fd.inode) {
                if seen.insert(fd.inode) {
                    out.entry(netns)
                        .or_default()
                        .push((local, p.pid, p.comm.clone()));
                }
            }
        }
    }
    out
}
