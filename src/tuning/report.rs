//! What `cwleak sysctl` answers, as plain serde data (docs/sysctl.schema.json),
//! and how it is built from a snapshot. Pure.

use super::explain::{explain_all, recipe, Explained, RecipeLine};
use super::finding::{Finding, Severity};
use super::observe::{fill, observe, Observed};
use super::rules::{self, Namespace};
use super::settings::Settings;
use crate::diagnose::{Host, Tool, Unreadable};
use crate::model::KernelCounts;
use crate::model::{Inode, Pid, Snapshot, TcpState};
use crate::source::sysctl_conf::ConfSetting;
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
    /// Every key the host's sysctl configuration files set (the last line
    /// setting each), beside the value running in the namespace cwleak runs
    /// in; empty when reading a snapshot or when no file sets any.
    pub config_files: Vec<ConfSetting>,
    pub scan: ScanInfo,
}

/// What a look alone does not hold: counters read again after a window,
/// and the host's sysctl configuration files.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// How long after the look the counters were read again (0: they were not).
    pub window_ms: u64,
    /// Each namespace's TcpExt counters read at the end of the window.
    pub later: HashMap<Inode, BTreeMap<String, u64>>,
    /// ... or at its start, when the look judged is the later one (the
    /// previous look of a capture).
    pub earlier: HashMap<Inode, BTreeMap<String, u64>>,
    pub conf: Vec<ConfSetting>,
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
    /// The namespace file read when no process sits in it (/run/netns/NAME).
    pub file: Option<String>,
    /// The TCP settings as read (name as `sysctl` prints it -> value); a
    /// setting this kernel or namespace does not have is absent.
    pub sysctls: BTreeMap<String, String>,
    pub states: StateCounts,
    /// Full sockets closed by their application, still closing (what
    /// tcp_max_orphans limits), in this namespace's table.
    pub orphans: u64,
    /// Of those, in FIN_WAIT2.
    pub orphan_fin_wait2: u64,
    /// Timewait sockets in the table: TIME_WAIT, and FIN_WAIT2 handed to
    /// timewait (what tcp_max_tw_buckets limits).
    pub tw_buckets: u64,
    /// Of those, orphaned FIN_WAIT2 handed to timewait (`ss` shows FIN-WAIT-2).
    pub fin_wait2_timewait: u64,
    pub time_wait_incoming: u64,
    pub time_wait_outgoing: u64,
    /// The destination with the most outgoing connections on ephemeral ports.
    pub busiest_destination: Option<BusiestDestination>,
    /// The listener whose accept or SYN queue is fullest.
    pub fullest_listener: Option<FullestListener>,
    /// The TCP line of the namespace's /proc/net/sockstat; null when not
    /// read. `orphans`, `alloc` and `mem_pages` are host-wide.
    pub kernel: Option<KernelCounts>,
    /// TcpExt counters of the namespace's /proc/net/netstat (since the
    /// namespace was created); empty when not read.
    pub counters: BTreeMap<String, u64>,
    /// How much each counter moved during `scan.window_ms`; null when the
    /// counters were read once.
    pub counters_change: Option<BTreeMap<String, i64>>,
    /// Every setting cwleak knows, explained for this kernel and namespace.
    pub explained: Vec<Explained>,
    /// The popular TIME_WAIT recipe, line by line, judged here.
    pub recipe: Vec<RecipeLine>,
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
    /// How long the TcpExt counters were watched for movement (`--window`);
    /// 0 when they were read once.
    pub window_ms: u64,
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
    build_with(snap, scope, &Extra::default())
}

pub fn build_with(snap: &Snapshot, scope: &[Inode], extra: &Extra) -> TuningReport {
    let mut observed: Vec<Observed> = observe(snap)
        .into_iter()
        .filter(|o| scope.is_empty() || scope.contains(&o.netns))
        .collect();
    for o in &mut observed {
        if let Some(later) = extra.later.get(&o.netns) {
            o.moved = Some(crate::states::counter_change(&o.counters, later));
            o.window_ms = extra.window_ms;
        } else if let Some(earlier) = extra.earlier.get(&o.netns) {
            o.moved = Some(crate::states::counter_change(earlier, &o.counters));
            o.window_ms = extra.window_ms;
        }
    }
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
    let mut findings = rules::evaluate(&views);
    findings.extend(rules::conf::conf(&extra.conf));
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
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
        config_files: extra.conf.clone(),
        scan: ScanInfo {
            from: None,
            proc_root: snap.meta.proc_root.clone(),
            live: snap.meta.live,
            duration_ms: snap.stats.duration_ms,
            window_ms: extra.window_ms,
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
    let empty = BTreeMap::new();
    let settings = Settings::new(sysctls.unwrap_or(&empty));
    NamespaceSettings {
        netns: o.netns,
        via_pid,
        comm: via_pid.and_then(|pid| {
            let p = snap.processes.iter().find(|p| p.pid == pid)?;
            Some(p.comm.clone())
        }),
        own: snap.meta.netns == Some(o.netns),
        method: info.map_or_else(String::new, |n| n.method.clone()),
        file: info.and_then(|n| n.file.clone()),
        sysctls: sysctls.cloned().unwrap_or_default(),
        states: o.states,
        orphans: o.orphans,
        orphan_fin_wait2: o.orphan_fin_wait2,
        tw_buckets: o.tw_buckets,
        fin_wait2_timewait: o.fin_wait2_timewait,
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
        kernel: o.kernel,
        counters: o.counters.clone(),
        counters_change: o.moved.clone(),
        explained: explain_all(settings, o),
        recipe: recipe(settings, o),
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
