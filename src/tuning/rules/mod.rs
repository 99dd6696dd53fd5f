//! The rules of `cwleak sysctl`. Each looks at one namespace's settings and
//! live counts (or at all of them, for host-wide limits) and returns findings
//! that carry their own evidence, reason and advice. Pure functions: the
//! unit tests feed them hand-set values.

pub mod conf;
mod counters;
mod facts;
mod limits;

use super::finding::{Finding, Severity};
use super::observe::Observed;
use super::settings::Settings;
use crate::model::{Inode, Pid};
use std::net::SocketAddr;

/// Fill (percent of a limit) from which a limit is worth a warning.
pub const WARN_PCT: u64 = 80;
/// ... and a critical finding.
pub const CRITICAL_PCT: u64 = 100;
/// TIME_WAIT sockets from which the facts about TIME_WAIT are worth telling
/// even when no setting was changed.
pub const NOTABLE_TIME_WAIT: u64 = 1000;

/// One namespace as the rules see it.
#[derive(Debug, Clone)]
pub struct Namespace<'a> {
    pub netns: Inode,
    pub settings: Settings<'a>,
    pub observed: &'a Observed,
    /// The process holding each listener, by local address (for advice).
    pub listener_holders: &'a [(SocketAddr, Pid, String)],
}

/// Every finding for these namespaces, most severe first.
pub fn evaluate(namespaces: &[Namespace]) -> Vec<Finding> {
    let mut out = Vec::new();
    for ns in namespaces {
        out.extend(facts::tw_recycle(ns));
        out.extend(limits::time_wait_buckets(ns));
        out.extend(limits::local_port_range(ns));
        out.extend(limits::syn_backlog(ns));
        out.extend(limits::accept_queue(ns));
        out.extend(facts::fin_timeout(ns));
        out.extend(facts::tw_reuse(ns));
        out.extend(facts::close_wait(ns));
        out.extend(counters::moving(ns));
    }
    out.extend(limits::orphans(namespaces));
    out.extend(limits::tcp_mem(namespaces));
    out.extend(facts::namespaces_differ(namespaces));
    // Stable: within a severity, namespaces keep their order and rules theirs.
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// Severity of a fill against a limit; None below the warning level.
pub fn level(pct: u64, warn_at: u64) -> Option<Severity> {
    if pct >= CRITICAL_PCT {
        Some(Severity::Critical)
    } else if pct >= warn_at {
        Some(Severity::Warn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
