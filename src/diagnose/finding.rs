//! What the diagnosis concludes: findings, grouped per blamed process, with a
//! summary. Renderers read only these types.

use crate::model::{Family, Inode, Pid, TcpState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub const SCHEMA_VERSION: u32 = 1;

/// A line of text that thousands of findings can share (the same fix, the
/// same "pid 10 listens on :80"): one allocation, not one per socket.
pub type Line = std::sync::Arc<str>;

/// The mechanism that made the forgotten copy; it decides the fix.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    ForkParentKept,
    InheritedNoCloexec,
    NeverClosed,
    DupCopyKept,
    PassedFdKept,
    NoVisibleHolder,
}

impl Cause {
    pub const ALL: [Cause; 6] = [
        Cause::ForkParentKept,
        Cause::InheritedNoCloexec,
        Cause::NeverClosed,
        Cause::DupCopyKept,
        Cause::PassedFdKept,
        Cause::NoVisibleHolder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cause::ForkParentKept => "fork-parent-kept",
            Cause::InheritedNoCloexec => "inherited-no-cloexec",
            Cause::NeverClosed => "never-closed",
            Cause::DupCopyKept => "dup-copy-kept",
            Cause::PassedFdKept => "passed-fd-kept",
            Cause::NoVisibleHolder => "no-visible-holder",
        }
    }

    pub fn parse(s: &str) -> Option<Cause> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// The whole answer of one scan: what every renderer draws from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub tool: Tool,
    pub host: Host,
    pub summary: Summary,
    /// One per blamed process (or per group of unheld sockets), most sockets first.
    pub groups: Vec<Group>,
    /// One per persistent CLOSE_WAIT socket in scope.
    pub findings: Vec<Finding>,
    /// Every process named in a finding, and their ancestors.
    pub processes: Vec<ProcessInfo>,
    pub scan: ScanInfo,
    /// What `cwleak check` concluded; None (null) in scan output.
    #[serde(default)]
    pub check: Option<crate::check::CheckInfo>,
    /// `check --trace`: whether the history was recorded, and what was
    /// lost; None (null) without --trace.
    #[serde(default)]
    pub trace: Option<crate::trace::TraceInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Tool {
    /// This program, as every report names it.
    pub fn this() -> Tool {
        Tool {
            name: "cwleak".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Host {
    pub hostname: Option<String>,
    pub kernel: Option<String>,
    pub taken_at_ms: u64,
}

impl Host {
    /// The host a look was taken on, from the look's metadata.
    pub fn of(meta: &crate::model::Meta) -> Host {
        Host {
            hostname: meta.hostname.clone(),
            kernel: meta.kernel.clone(),
            taken_at_ms: meta.taken_at_ms,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Persistent CLOSE_WAIT sockets in scope (= findings.len()).
    pub leaked: usize,
    /// CLOSE_WAIT sockets that were gone or changed by the end of the settle window.
    pub transient: usize,
    /// CLOSE_WAIT sockets whose owner was still sending across the settle
    /// window (bytes acked grew or the send queue drained): a stream being
    /// finished, not a leak; not in `findings`.
    #[serde(default)]
    pub still_sending: usize,
    /// Distinct processes blamed.
    pub processes_blamed: usize,
    pub by_cause: BTreeMap<Cause, usize>,
    /// Every TCP socket in scope, by state (the first look).
    pub by_state: BTreeMap<TcpState, usize>,
}

/// Serialized through `FindingView` (the mitigation is written from the
/// socket's addresses); equal when they print the same.
#[derive(Debug, Clone, Deserialize)]
pub struct Finding {
    pub socket: SocketInfo,
    pub holders: Vec<Holder>,
    pub blamed: Vec<Blame>,
    pub cause: Cause,
    /// Other causes one look cannot rule out, most likely first; empty when
    /// the evidence decides.
    #[serde(default)]
    pub alternatives: Vec<Alternative>,
    pub evidence: Vec<Line>,
    /// The code change that removes the leak.
    pub fix: Line,
    /// What a person can run by hand now; printed, never executed.
    pub mitigation: super::mitigation::Mitigation,
    /// `cwleak check`: the allow rule that accepts this leak (it is listed,
    /// not counted); None when it counts, and always in scan output.
    #[serde(default)]
    pub allowed: Option<Line>,
    /// Whether `cause` was read from a recorded history or inferred.
    #[serde(default)]
    pub basis: super::origin::Basis,
}

impl Finding {
    pub fn mitigation_text(&self) -> String {
        self.mitigation.text(&self.socket).to_string()
    }

    fn view(&self) -> FindingView<'_> {
        FindingView {
            socket: &self.socket,
            holders: &self.holders,
            blamed: &self.blamed,
            cause: self.cause,
            alternatives: &self.alternatives,
            evidence: &self.evidence,
            fix: &self.fix,
            mitigation: self.mitigation.text(&self.socket),
            allowed: &self.allowed,
            basis: self.basis,
        }
    }
}

/// The JSON shape of a finding (docs/report.schema.json).
#[derive(Serialize)]
struct FindingView<'a> {
    socket: &'a SocketInfo,
    holders: &'a [Holder],
    blamed: &'a [Blame],
    cause: Cause,
    alternatives: &'a [Alternative],
    #[serde(serialize_with = "super::escaped::lines")]
    evidence: &'a [Line],
    #[serde(serialize_with = "super::escaped::line")]
    fix: &'a Line,
    mitigation: super::mitigation::Text<'a>,
    allowed: &'a Option<Line>,
    basis: super::origin::Basis,
}

impl Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(s)
    }
}

impl PartialEq for Finding {
    fn eq(&self, o: &Self) -> bool {
        self.socket == o.socket
            && self.holders == o.holders
            && self.blamed == o.blamed
            && self.cause == o.cause
            && self.alternatives == o.alternatives
            && self.evidence == o.evidence
            && self.fix == o.fix
            && self.mitigation_text() == o.mitigation_text()
            && self.allowed == o.allowed
            && self.basis == o.basis
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SocketInfo {
    pub inode: Inode,
    pub netns: Inode,
    pub family: Family,
    #[serde(serialize_with = "super::addr::serialize")]
    pub local: SocketAddr,
    #[serde(serialize_with = "super::addr::serialize")]
    pub remote: SocketAddr,
    pub state: TcpState,
    pub recv_q: u32,
    pub send_q: u32,
    /// Lower bound of the time spent in CLOSE_WAIT; null when unknown.
    pub close_wait_ms: Option<u64>,
}

impl SocketInfo {
    pub fn key(&self) -> crate::model::SocketKey {
        crate::model::SocketKey {
            netns: self.netns,
            inode: self.inode,
            local: self.local,
            remote: self.remote,
        }
    }
}

/// One (process, fd) that refers to the socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: Pid,
    pub ppid: Pid,
    #[serde(serialize_with = "super::escaped::line")]
    pub comm: Line,
    pub fd: i32,
    pub cloexec: Option<bool>,
    /// The thread whose own fd table (unshare(CLONE_FILES)) holds this fd;
    /// None (null) for the process's table, the one /proc/PID/fd shows.
    #[serde(default)]
    pub tid: Option<Pid>,
    /// `--trace`: the calls that made this copy, with their stacks; None
    /// (null) without --trace or for a copy made before tracing started.
    #[serde(default)]
    pub origin: Option<Box<crate::trace::Origin>>,
}

/// A cause the evidence does not rule out, and what would tell it apart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alternative {
    pub cause: Cause,
    /// When it would be this cause instead, and what would tell them apart.
    #[serde(serialize_with = "super::escaped::line")]
    pub why: Line,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blame {
    pub pid: Pid,
    pub fd: i32,
    /// The thread whose own fd table holds the fd (see `Holder::tid`).
    #[serde(default)]
    pub tid: Option<Pid>,
}

/// Findings that share a blamed process and a cause, for people to read.
/// Serialized through `GroupView` (the mitigation is written from `fds`);
/// equal when they print the same.
#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    /// None for sockets nobody visibly holds.
    pub pid: Option<Pid>,
    pub comm: Option<String>,
    pub cause: Cause,
    /// The first finding's alternatives (see `Finding::alternatives`).
    #[serde(default)]
    pub alternatives: Vec<Alternative>,
    pub sockets: usize,
    /// Blamed fds of this process (sorted).
    pub fds: Vec<i32>,
    /// Local ports involved, with counts, most first.
    pub local_ports: Vec<(u16, usize)>,
    pub oldest_close_wait_ms: Option<u64>,
    /// Data bytes no holder has read (the FIN itself not counted).
    pub unread_bytes: u64,
    /// Evidence shared by the group, from its first finding.
    pub evidence: Vec<Line>,
    pub fix: Line,
    pub mitigation: super::mitigation::GroupMitigation,
    /// Indexes into `findings`.
    pub findings: Vec<usize>,
}

impl Group {
    pub fn mitigation_text(&self) -> String {
        self.mitigation.text(self.pid, &self.fds).to_string()
    }
}

/// The JSON shape of a group (docs/report.schema.json).
#[derive(Serialize)]
struct GroupView<'a> {
    pid: Option<Pid>,
    comm: &'a Option<String>,
    cause: Cause,
    alternatives: &'a [Alternative],
    sockets: usize,
    fds: &'a [i32],
    local_ports: &'a [(u16, usize)],
    oldest_close_wait_ms: Option<u64>,
    unread_bytes: u64,
    evidence: &'a [Line],
    fix: &'a Line,
    mitigation: super::mitigation::GroupText<'a>,
    findings: &'a [usize],
}

impl Serialize for Group {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        GroupView {
            pid: self.pid,
            comm: &self.comm,
            cause: self.cause,
            alternatives: &self.alternatives,
            sockets: self.sockets,
            fds: &self.fds,
            local_ports: &self.local_ports,
            oldest_close_wait_ms: self.oldest_close_wait_ms,
            unread_bytes: self.unread_bytes,
            evidence: &self.evidence,
            fix: &self.fix,
            mitigation: self.mitigation.text(self.pid, &self.fds),
            findings: &self.findings,
        }
        .serialize(s)
    }
}

impl PartialEq for Group {
    fn eq(&self, o: &Self) -> bool {
        self.pid == o.pid
            && self.comm == o.comm
            && self.cause == o.cause
            && self.alternatives == o.alternatives
            && self.sockets == o.sockets
            && self.fds == o.fds
            && self.local_ports == o.local_ports
            && self.oldest_close_wait_ms == o.oldest_close_wait_ms
            && self.unread_bytes == o.unread_bytes
            && self.evidence == o.evidence
            && self.fix == o.fix
            && self.mitigation_text() == o.mitigation_text()
            && self.findings == o.findings
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessInfo {
    pub pid: Pid,
    pub ppid: Pid,
    pub comm: String,
    pub exe: Option<String>,
    /// Full command line, secrets masked; only in a snapshot recorded with
    /// `capture --cmdline` (live scans never read it).
    #[serde(default)]
    pub cmdline: Option<String>,
    pub uid: u32,
    pub cgroup: Option<String>,
    pub netns: Option<Inode>,
    pub ns_pid: Option<Pid>,
    /// Runs another program than its parent (it exec'd); null when unknown.
    pub execd: Option<bool>,
    pub threads: u32,
    pub fd_count: u32,
    pub fd_limit: Option<u64>,
    /// CLOSE_WAIT sockets in scope this process holds / is blamed for.
    pub close_wait_held: usize,
    pub close_wait_blamed: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScanInfo {
    pub proc_root: String,
    pub live: bool,
    pub processes: usize,
    pub fds: usize,
    pub socket_fds: usize,
    pub tcp_sockets: usize,
    /// The TCP states read from the tables: `tcp_sockets`, the namespaces'
    /// `sockets` and `summary.by_state` count sockets in these states only.
    pub states_read: Vec<crate::model::TcpState>,
    pub namespaces: Vec<NamespaceInfo>,
    pub duration_ms: u64,
    pub settle_ms: u64,
    /// What the findings were limited to (all empty: the whole host).
    pub scope: super::Scope,
    /// Every pid or path that could not be read, and why.
    pub unreadable: Vec<Unreadable>,
    /// Why this look cannot support "no leak" (hidden processes, a table not
    /// read, the processes in scope unreadable); empty when it can. Not
    /// empty, a report without findings is no all-clear: exit 2.
    #[serde(default)]
    pub incomplete: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamespaceInfo {
    pub inode: Inode,
    pub via_pid: Option<Pid>,
    pub method: String,
    pub sockets: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unreadable {
    pub pid: Option<Pid>,
    pub path: Option<String>,
    pub kind: crate::model::WarningKind,
    pub message: String,
}

impl Unreadable {
    /// (failed table reads, unreadable process files): what a summary warns
    /// about. A process that exited while it was read held nothing any more.
    pub fn counts(list: &[Unreadable]) -> (usize, usize) {
        use crate::model::WarningKind::{NetTable, Vanished};
        let tables = list.iter().filter(|w| w.kind == NetTable).count();
        let others = list
            .iter()
            .filter(|w| !matches!(w.kind, NetTable | Vanished))
            .count();
        (tables, others)
    }

    /// The source's warnings as every report lists them.
    pub fn all(warnings: &[crate::model::Warning]) -> Vec<Unreadable> {
        warnings
            .iter()
            .map(|w| Unreadable {
                pid: w.pid,
                path: w.path.clone(),
                kind: w.kind,
                message: w.message.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::mitigation::{GroupMitigation, Mitigation};
    use crate::diagnose::origin::Basis;
    use crate::diagnose::test_host::socket_info as socket;

    /// One field changed: its name, and the change.
    type Change<T> = (&'static str, fn(&mut T));

    fn json<T: Serialize>(x: &T) -> String {
        serde_json::to_string(x).unwrap()
    }

    fn finding() -> Finding {
        let blamed = Blame {
            pid: 10,
            fd: 4,
            tid: None,
        };
        Finding {
            socket: socket(),
            holders: vec![Holder {
                pid: 10,
                ppid: 1,
                comm: "server".into(),
                fd: 4,
                cloexec: Some(false),
                tid: None,
                origin: None,
            }],
            blamed: vec![blamed],
            cause: Cause::ForkParentKept,
            alternatives: vec![Alternative {
                cause: Cause::NeverClosed,
                why: "it may not fork".into(),
            }],
            evidence: vec!["pid 10 forks".into()],
            fix: "close it after fork()".into(),
            mitigation: Mitigation::Commands {
                close: Some(blamed),
                ns_pid: None,
            },
            allowed: None,
            basis: Basis::Inferred,
        }
    }

    #[test]
    fn findings_are_equal_exactly_when_they_print_the_same() {
        let a = finding();
        // Read back from its JSON: the mitigation is the text, not the
        // commands it was written from, and it prints the same.
        let back: Finding = serde_json::from_str(&json(&a)).unwrap();
        assert!(matches!(back.mitigation, Mitigation::Text(_)));
        assert_eq!(json(&back), json(&a));
        assert_eq!(back, a);
        let changed: Vec<Change<Finding>> = vec![
            ("socket", |f| f.socket.recv_q = 2),
            ("holders", |f| f.holders[0].fd = 5),
            ("blamed", |f| f.blamed.clear()),
            ("cause", |f| f.cause = Cause::NeverClosed),
            ("alternatives", |f| f.alternatives.clear()),
            ("evidence", |f| f.evidence.push("another line".into())),
            ("fix", |f| f.fix = "another fix".into()),
            ("mitigation", |f| {
                f.mitigation = Mitigation::Commands {
                    close: None,
                    ns_pid: None,
                }
            }),
            ("allowed", |f| f.allowed = Some("port 8080".into())),
            ("basis", |f| f.basis = Basis::Traced),
        ];
        for (what, change) in changed {
            let mut b = finding();
            change(&mut b);
            assert_ne!(json(&b), json(&a), "{what}");
            assert_ne!(b, a, "{what} differs");
            assert_ne!(a, b, "{what} differs");
        }
    }

    fn group() -> Group {
        Group {
            pid: Some(10),
            comm: Some("server".into()),
            cause: Cause::ForkParentKept,
            alternatives: finding().alternatives,
            sockets: 2,
            fds: vec![4, 5],
            local_ports: vec![(8080, 2)],
            oldest_close_wait_ms: Some(60_000),
            unread_bytes: 0,
            evidence: vec!["pid 10 forks".into()],
            fix: "close it after fork()".into(),
            mitigation: GroupMitigation::CloseAll { tid: None },
            findings: vec![0, 1],
        }
    }

    #[test]
    fn groups_are_equal_exactly_when_they_print_the_same() {
        let a = group();
        let back: Group = serde_json::from_str(&json(&a)).unwrap();
        assert!(matches!(back.mitigation, GroupMitigation::Text(_)));
        assert_eq!(json(&back), json(&a));
        assert_eq!(back, a);
        let changed: Vec<Change<Group>> = vec![
            ("pid", |g| g.pid = Some(11)),
            ("comm", |g| g.comm = None),
            ("cause", |g| g.cause = Cause::NeverClosed),
            ("alternatives", |g| g.alternatives.clear()),
            ("sockets", |g| g.sockets = 3),
            ("fds", |g| g.fds = vec![4]),
            ("local_ports", |g| g.local_ports = vec![(8081, 2)]),
            ("oldest_close_wait_ms", |g| g.oldest_close_wait_ms = None),
            ("unread_bytes", |g| g.unread_bytes = 7),
            ("evidence", |g| g.evidence.clear()),
            ("fix", |g| g.fix = "another fix".into()),
            ("mitigation", |g| g.mitigation = GroupMitigation::Restart),
            ("findings", |g| g.findings = vec![1, 0]),
        ];
        for (what, change) in changed {
            let mut b = group();
            change(&mut b);
            assert_ne!(json(&b), json(&a), "{what}");
            assert_ne!(b, a, "{what} differs");
            assert_ne!(a, b, "{what} differs");
        }
    }

    #[test]
    fn a_summary_counts_failed_tables_and_unreadable_processes_but_not_exited_ones() {
        use crate::model::WarningKind::{self, *};
        let of = |kind: WarningKind| Unreadable {
            pid: Some(10),
            path: None,
            kind,
            message: String::new(),
        };
        let list: Vec<Unreadable> = [NetTable, PermissionDenied, NetTable, Vanished, Malformed]
            .into_iter()
            .map(of)
            .collect();
        assert_eq!(Unreadable::counts(&list), (2, 2));
        assert_eq!(Unreadable::counts(&[]), (0, 0));
    }
}
