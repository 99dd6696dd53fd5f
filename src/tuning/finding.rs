//! A finding of `cwleak sysctl`: one setting (or none) set against what the
//! tables show, with the reason and what to do. Plain serde data.

use crate::model::Inode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A fact worth knowing here (a setting that does not do what is often
    /// believed, a count that no setting changes).
    Info,
    /// A limit is getting close, or a setting works against you.
    Warn,
    /// A limit is reached or a setting breaks connections.
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Critical => "critical",
        }
    }
}

/// Every rule, with a stable kebab-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// TIME_WAIT close to net.ipv4.tcp_max_tw_buckets.
    TimeWaitBuckets,
    /// Outgoing connections to one destination close to the local port range size.
    LocalPortRange,
    /// SYN_RECV close to a listener's backlog (or to tcp_max_syn_backlog without syncookies).
    SynBacklog,
    /// A listener's accept queue close to its backlog (capped by somaxconn).
    AcceptQueue,
    /// Orphaned sockets close to net.ipv4.tcp_max_orphans (host-wide).
    Orphans,
    /// net.ipv4.tcp_tw_recycle exists (kernel before 4.12).
    TwRecycle,
    /// tcp_fin_timeout does not shorten TIME_WAIT.
    FinTimeout,
    /// tcp_tw_reuse helps outgoing connections only.
    TwReuse,
    /// No sysctl fixes CLOSE_WAIT.
    CloseWait,
    /// A setting differs between network namespaces.
    NamespacesDiffer,
    /// TCPTimeWaitOverflow moving: connections closed without TIME_WAIT.
    TimeWaitOverflow,
    /// ListenOverflows/ListenDrops moving: a full accept queue drops SYNs and ACKs.
    ListenOverflow,
    /// TCPReqQFullDrop moving: SYNs dropped on a full SYN queue.
    SynQueueOverflow,
    /// TCPReqQFullDoCookies/SyncookiesSent moving: a full SYN queue answered with cookies.
    SynCookies,
    /// TCPAbortOnMemory moving: sockets reset for too many orphans or tcp_mem.
    MemoryAbort,
    /// TCPMemoryPressures moving: TCP memory past tcp_mem[1].
    MemoryPressure,
    /// TCP buffer memory (host-wide) close to tcp_mem.
    TcpMem,
    /// A line of /etc/sysctl.conf or /etc/sysctl.d/*.conf this kernel lacks,
    /// or whose value the running system does not have.
    SysctlConf,
}

impl Rule {
    pub const ALL: [Rule; 18] = [
        Rule::TimeWaitBuckets,
        Rule::LocalPortRange,
        Rule::SynBacklog,
        Rule::AcceptQueue,
        Rule::Orphans,
        Rule::TwRecycle,
        Rule::FinTimeout,
        Rule::TwReuse,
        Rule::CloseWait,
        Rule::NamespacesDiffer,
        Rule::TimeWaitOverflow,
        Rule::ListenOverflow,
        Rule::SynQueueOverflow,
        Rule::SynCookies,
        Rule::MemoryAbort,
        Rule::MemoryPressure,
        Rule::TcpMem,
        Rule::SysctlConf,
    ];
}

/// One value the finding is based on: a count, a setting, a ratio in percent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub name: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

pub fn int(name: &str, n: u64) -> Observation {
    Observation {
        name: name.into(),
        value: Value::Int(i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

pub fn text(name: &str, s: impl Into<String>) -> Observation {
    Observation {
        name: name.into(),
        value: Value::Text(s.into()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    /// The namespace it is about; null for a host-wide finding.
    pub netns: Option<Inode>,
    /// The sysctl it is about (as `sysctl` names it); null when none applies
    /// (CLOSE_WAIT: no setting fixes it).
    pub setting: Option<String>,
    /// One line.
    pub title: String,
    pub observed: Vec<Observation>,
    /// Why this matters, in kernel terms.
    pub reason: String,
    /// What to do (options with their costs, never a value to paste).
    pub action: String,
}

/// Percent of `part` in `whole`, rounded down (0 when the whole is 0).
pub fn pct(part: u64, whole: u64) -> u64 {
    part.saturating_mul(100).checked_div(whole).unwrap_or(0)
}
