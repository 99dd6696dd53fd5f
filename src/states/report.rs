//! What `cwleak states` answers, as plain serde data: the JSON output is this
//! struct as serde writes it (docs/states.schema.json), and the text output is
//! drawn from it.

use super::count::{Owners, StateChange, StateCounts};
use super::side::Side;
use crate::diagnose::{Host, Tool, Unreadable};
use crate::model::{Inode, KernelCounts, Pid, TcpState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatesReport {
    pub schema_version: u32,
    pub tool: Tool,
    pub host: Host,
    /// Sockets counted (in scope), all namespaces together.
    pub sockets: u64,
    /// Sockets per state over all namespaces in scope.
    pub total: StateCounts,
    /// Per state, the change since the previous look of `--watch`; null on
    /// the first look and without --watch.
    pub change: Option<StateChange>,
    /// Every network namespace read, most sockets first; with `--netns`, those
    /// named; with `--pid` or `--port`, those with sockets in scope.
    pub namespaces: Vec<NamespaceStates>,
    /// States with at least one socket, in the kernel's order.
    pub by_state: Vec<StateDetail>,
    pub top: TopOptions,
    pub scan: ReadInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamespaceStates {
    /// Inode of /proc/PID/ns/net.
    pub netns: Inode,
    /// The process whose view of the namespace was read.
    pub via_pid: Option<Pid>,
    pub comm: Option<String>,
    /// The namespace cwleak itself ran in (live only).
    pub own: bool,
    /// "sock_diag" or "proc".
    pub method: String,
    pub sockets: u64,
    /// The namespace file read when no process sits in the namespace (a
    /// named one under /run/netns, or a path given with --netns).
    pub file: Option<String>,
    /// Full sockets in FIN_WAIT1, FIN_WAIT2, LAST_ACK or CLOSING that no
    /// process holds any more (what net.ipv4.tcp_max_orphans limits). An
    /// orphaned FIN_WAIT2 handed to timewait is not one: see `tw_buckets`.
    pub orphans: u64,
    /// Timewait mini-sockets: TIME_WAIT, and orphaned FIN_WAIT2 sockets the
    /// kernel handed to timewait (tcp_fin_timeout <= 60). What
    /// net.ipv4.tcp_max_tw_buckets limits; the kernel's `tw`.
    pub tw_buckets: u64,
    pub states: StateCounts,
    /// What the kernel counts (the TCP line of the namespace's
    /// /proc/net/sockstat); null when not read. `orphans`, `alloc` and
    /// `mem_pages` are host-wide: the same in every namespace.
    pub kernel: Option<KernelCounts>,
    /// TcpExt counters of the namespace's /proc/net/netstat (events since
    /// the namespace was created); empty when not read.
    pub counters: BTreeMap<String, u64>,
    /// Per counter, the change since the previous look of `--watch`; null
    /// on the first look and without --watch.
    pub counters_change: Option<BTreeMap<String, i64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateDetail {
    pub state: TcpState,
    pub count: u64,
    pub owners: Owners,
    /// Top processes holding sockets in this state (a socket shared by
    /// several processes counts for each); null unless `--by process`.
    pub processes: Option<Top<ProcessCount>>,
    /// Top service ports (see `Side`); null unless `--by port`.
    pub ports: Option<Top<PortCount>>,
    /// Top remote addresses; null unless `--by remote`.
    pub remotes: Option<Top<RemoteCount>>,
    /// Top network namespaces; null unless `--by netns`.
    pub netns: Option<Top<NetnsCount>>,
}

/// The largest entries of one breakdown, most sockets first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Top<T> {
    pub entries: Vec<T>,
    /// How many distinct keys there were (entries shows at most `top.limit`).
    pub distinct: u64,
    /// Sockets counted under the keys not shown.
    pub rest: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessCount {
    pub pid: Pid,
    pub comm: String,
    pub netns: Option<Inode>,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PortCount {
    pub port: u16,
    pub side: Side,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RemoteCount {
    pub address: IpAddr,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetnsCount {
    pub netns: Inode,
    pub count: u64,
}

/// A breakdown of each state's sockets (`--by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Process,
    Port,
    Netns,
    Remote,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopOptions {
    /// The breakdowns computed (`--by`).
    pub by: Vec<Dimension>,
    /// Entries kept per breakdown (`--top`).
    pub limit: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatesScope {
    pub pids: Vec<Pid>,
    pub with_children: bool,
    /// Matched against the local or the remote port.
    pub ports: Vec<u16>,
    pub netns: Vec<Inode>,
}

impl StatesScope {
    pub fn is_everything(&self) -> bool {
        self.pids.is_empty() && self.ports.is_empty() && self.netns.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadInfo {
    /// The snapshot file counted (`--from`); null when read through a proc root.
    pub from: Option<String>,
    pub proc_root: String,
    pub live: bool,
    pub processes: usize,
    /// TCP sockets read, before the scope.
    pub tcp_sockets: usize,
    pub duration_ms: u64,
    pub scope: StatesScope,
    pub unreadable: Vec<Unreadable>,
}
