//! Views of a group shared by the renderers: its findings, the processes that
//! hold its sockets, its ports and peers. Indexes that point nowhere are
//! skipped, never trusted.

use crate::diagnose::{Finding, Group, ProcessInfo, Report};
use crate::model::{Inode, Pid};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// ProcessInfo by pid.
pub struct Processes<'a>(HashMap<Pid, &'a ProcessInfo>);

impl<'a> Processes<'a> {
    pub fn new(report: &'a Report) -> Self {
        Processes(report.processes.iter().map(|p| (p.pid, p)).collect())
    }

    pub fn get(&self, pid: Pid) -> Option<&'a ProcessInfo> {
        self.0.get(&pid).copied()
    }
}

pub fn findings<'a>(
    report: &'a Report,
    group: &'a Group,
) -> impl Iterator<Item = &'a Finding> + 'a {
    group
        .findings
        .iter()
        .filter_map(|&i| report.findings.get(i))
}

/// One process that holds some of a group's sockets.
#[derive(Debug, Clone, PartialEq)]
pub struct HolderRow {
    pub pid: Pid,
    pub ppid: Pid,
    pub comm: String,
    /// Its fds that point at the group's sockets, sorted, distinct.
    pub fds: Vec<i32>,
    /// Blamed for at least one of the group's sockets.
    pub blamed: bool,
    /// fds with O_CLOEXEC set / clear / unknown.
    pub cloexec: [usize; 3],
    /// Threads whose own fd tables (unshare(CLONE_FILES)) hold some of the fds.
    pub threads: Vec<Pid>,
}

impl HolderRow {
    /// " in thread T's own fd table" when some of its fds are in threads'
    /// own tables (unshare(CLONE_FILES)); empty otherwise.
    pub fn threads_phrase(&self) -> String {
        let tids: Vec<String> = self.threads.iter().map(|t| t.to_string()).collect();
        match tids.as_slice() {
            [] => String::new(),
            [one] => format!(" in thread {one}'s own fd table"),
            _ => format!(" in the own fd tables of threads {}", tids.join(", ")),
        }
    }

    /// "yes", "no", "mixed" or "not read" for its fds' O_CLOEXEC (read only
    /// where it explains a copy; unread flags do not make a mix).
    pub fn cloexec_label(&self) -> &'static str {
        match self.cloexec {
            [_, 0, 0] => "yes",
            [0, _, 0] => "no",
            [0, 0, _] => "not read",
            [_, 0, _] => "yes",
            [0, _, _] => "no",
            _ => "mixed",
        }
    }
}

/// Every holder of the group's sockets: blamed first, then most fds, then pid.
pub fn holders(report: &Report, group: &Group) -> Vec<HolderRow> {
    let mut rows: BTreeMap<Pid, HolderRow> = BTreeMap::new();
    for f in findings(report, group) {
        for h in &f.holders {
            let row = rows.entry(h.pid).or_insert_with(|| HolderRow {
                pid: h.pid,
                ppid: h.ppid,
                comm: h.comm.to_string(),
                fds: Vec::new(),
                blamed: false,
                cloexec: [0; 3],
                threads: Vec::new(),
            });
            row.fds.push(h.fd);
            row.threads.extend(h.tid);
            row.cloexec[match h.cloexec {
                Some(true) => 0,
                Some(false) => 1,
                None => 2,
            }] += 1;
            if f.blamed.iter().any(|b| b.pid == h.pid) {
                row.blamed = true;
            }
        }
    }
    let mut rows: Vec<HolderRow> = rows.into_values().collect();
    for r in &mut rows {
        r.fds.sort_unstable();
        r.fds.dedup();
        r.threads.sort_unstable();
        r.threads.dedup();
    }
    rows.sort_by(|a, b| {
        b.blamed
            .cmp(&a.blamed)
            .then(b.fds.len().cmp(&a.fds.len()))
            .then(a.pid.cmp(&b.pid))
    });
    rows
}

/// The network namespace of the group's sockets, when they share one.
pub fn netns(report: &Report, group: &Group) -> Option<Inode> {
    let mut it = findings(report, group).map(|f| f.socket.netns);
    let first = it.next()?;
    it.all(|n| n == first).then_some(first)
}

/// Top entries of a count list as "8080 (5000), 9090 (3), and 2 more".
pub fn top_list(items: &[(String, usize)], max: usize) -> String {
    let mut parts: Vec<String> = items
        .iter()
        .take(max)
        .map(|(k, n)| format!("{k} ({n})"))
        .collect();
    if items.len() > max {
        parts.push(format!("and {} more", items.len() - max));
    }
    parts.join(", ")
}

/// "local port 8080 (5000)", "local ports 8080 (4), 9090 (1)", or, when
/// every socket has its own (ephemeral) port, "1200 distinct local ports".
pub fn ports_phrase(group: &Group, max: usize) -> Option<String> {
    let ports = &group.local_ports;
    match ports.len() {
        0 => None,
        1 => Some(format!("local port {} ({})", ports[0].0, ports[0].1)),
        n if ports.iter().all(|&(_, c)| c == 1) => Some(format!("{n} distinct local ports")),
        _ => {
            let items: Vec<(String, usize)> =
                ports.iter().map(|&(p, c)| (p.to_string(), c)).collect();
            Some(format!("local ports {}", top_list(&items, max)))
        }
    }
}

/// The remote side, most first: whole endpoints when some repeat (a client
/// that leaks connections to one server), otherwise peer addresses (a
/// server whose clients each came from their own port).
pub fn peers(report: &Report, group: &Group) -> Vec<(String, usize)> {
    let mut by_endpoint: HashMap<SocketAddr, usize> = HashMap::new();
    for f in findings(report, group) {
        *by_endpoint.entry(f.socket.remote).or_default() += 1;
    }
    let repeated = by_endpoint.values().any(|&n| n > 1);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (addr, n) in by_endpoint {
        let key = if repeated {
            addr.to_string()
        } else {
            addr.ip().to_string()
        };
        *counts.entry(key).or_default() += n;
    }
    let mut list: Vec<(String, usize)> = counts.into_iter().collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list
}

/// Unreadable pids, for "maybe held by" hints.
pub fn unreadable_pids(report: &Report) -> Vec<Pid> {
    let mut pids: Vec<Pid> = report
        .scan
        .unreadable
        .iter()
        .filter(|u| u.kind != crate::model::WarningKind::Vanished)
        .filter_map(|u| u.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata;

    #[test]
    fn holders_put_the_blamed_first() {
        let report = testdata::realistic();
        let rows = holders(&report, &report.groups[0]);
        assert_eq!(rows[0].pid, 4242);
        assert!(rows[0].blamed);
        assert_eq!(rows[0].fds.len(), 5000);
        assert!(rows[1..].iter().all(|r| !r.blamed));
    }

    #[test]
    fn dangling_finding_indexes_are_skipped() {
        let mut report = testdata::realistic();
        report.groups[0].findings.push(usize::MAX);
        assert_eq!(findings(&report, &report.groups[0]).count(), 5000);
    }

    #[test]
    fn peers_fall_back_to_addresses_when_every_endpoint_is_unique() {
        let report = testdata::realistic();
        let p = peers(&report, &report.groups[0]);
        assert!(!p[0].0.contains(':') || p[0].0.starts_with('['), "{p:?}");
        let p = peers(&report, &report.groups[1]);
        assert_eq!(p[0].0, "10.0.9.9:5432");
    }
}
