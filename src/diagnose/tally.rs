//! What a diagnosis says in counts, without its findings. `serve` judges
//! every CLOSE_WAIT socket at every look but exports only counts: sockets
//! per blamed process and cause, findings per cause, the blamed processes'
//! fds. `watch` adds one small record per finding (`Brief`: whose, why,
//! since when) to follow sockets from look to look. A report of 40,000
//! findings is about 20 MB held at the look's peak; the tally is a few KB
//! (and 1.6 MB of briefs), each finding dropped as soon as it is judged.
//! The same rules judge: `Tally::of(&diagnose(..))` equals `tally(..)`
//! (tested on every corpus capture).

use super::context::{Ctx, Memo};
use super::finding::{Cause, Report};
use super::{judge_blame, pick, scope, Picked, Scope};
use crate::model::{FastMap, Pid, Snapshot, TcpSocket, TcpState, WarningKind};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// A report's group, as its key and size: the CLOSE_WAIT sockets whose
/// first blamed process is `pid` (None: nobody visibly holds them) with
/// this cause.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupCount {
    pub pid: Option<Pid>,
    pub cause: Cause,
    pub sockets: usize,
}

/// One finding, as `watch` follows it from look to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Brief {
    /// Its first blamed process (None: nobody visibly holds it).
    pub pid: Option<Pid>,
    pub cause: Cause,
    /// `SocketKey::digest` of its socket.
    pub socket: u64,
    pub close_wait_ms: Option<u64>,
}

impl Brief {
    fn of(f: &super::Finding) -> Brief {
        Brief {
            pid: f.blamed.first().map(|b| b.pid),
            cause: f.cause,
            socket: f.socket.key().digest(),
            close_wait_ms: f.socket.close_wait_ms,
        }
    }
}

/// A blamed process, as the metrics name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlamedProcess {
    pub pid: Pid,
    pub comm: String,
    pub cgroup: Option<String>,
    pub fd_count: u32,
    pub fd_limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// In the report's order: the most sockets first, then by (pid, cause).
    pub groups: Vec<GroupCount>,
    pub by_cause: BTreeMap<Cause, usize>,
    /// Closed within the settle window: normal traffic.
    pub transient: usize,
    /// The blamed processes, by pid.
    pub processes: Vec<BlamedProcess>,
    /// The kind of each pid or file the look could not read.
    pub unreadable: Vec<WarningKind>,
    /// Why the look cannot stand behind "no leak" (`scan.incomplete`).
    pub incomplete: Vec<String>,
    pub states_read: Vec<TcpState>,
    /// Every finding, ordered by (pid, cause, socket): each group's briefs
    /// are one run (`tally(.., briefs: true)` only; empty otherwise).
    pub briefs: Vec<Brief>,
}

impl Tally {
    /// The tally of a report already made.
    pub fn of(report: &Report) -> Tally {
        let groups: Vec<GroupCount> = report
            .groups
            .iter()
            .map(|g| GroupCount {
                pid: g.pid,
                cause: g.cause,
                sockets: g.sockets,
            })
            .collect();
        let mut briefs: Vec<Brief> = report.findings.iter().map(Brief::of).collect();
        briefs.sort_unstable();
        let blamed: BTreeSet<Pid> = groups.iter().filter_map(|g| g.pid).collect();
        Tally {
            groups,
            by_cause: report.summary.by_cause.clone(),
            transient: report.summary.transient,
            processes: report
                .processes
                .iter()
                .filter(|p| blamed.contains(&p.pid))
                .map(|p| BlamedProcess {
                    pid: p.pid,
                    comm: p.comm.clone(),
                    cgroup: p.cgroup.clone(),
                    fd_count: p.fd_count,
                    fd_limit: p.fd_limit,
                })
                .collect(),
            unreadable: report.scan.unreadable.iter().map(|u| u.kind).collect(),
            incomplete: report.scan.incomplete.clone(),
            states_read: report.scan.states_read.clone(),
            briefs,
        }
    }
}

type Counts = FastMap<(Option<Pid>, Cause), usize>;

/// What `Tally::of(&diagnose(snap, scope))` gives, without the report; its
/// briefs only if asked for.
pub fn tally(snap: &Snapshot, scope: &Scope, briefs: bool) -> Tally {
    let ctx = Ctx::of(snap);
    let resolved = scope::Resolved::new(scope, snap, &ctx.graph);
    let Picked {
        todo, transient, ..
    } = pick(&ctx, &resolved);
    let mut counts = Counts::default();
    let mut all_briefs = Vec::new();
    for (part, b) in judge_counting(&ctx, &todo, briefs) {
        for (k, n) in part {
            *counts.entry(k).or_default() += n;
        }
        all_briefs.extend(b);
    }
    all_briefs.sort_unstable();
    let mut by_cause: BTreeMap<Cause, usize> = BTreeMap::new();
    let mut groups: Vec<GroupCount> = counts
        .into_iter()
        .map(|((pid, cause), sockets)| {
            *by_cause.entry(cause).or_default() += sockets;
            GroupCount {
                pid,
                cause,
                sockets,
            }
        })
        .collect();
    groups.sort_unstable_by_key(|g| (Reverse(g.sockets), g.pid, g.cause));
    let blamed: BTreeSet<Pid> = groups.iter().filter_map(|g| g.pid).collect();
    let processes = blamed
        .into_iter()
        .filter_map(|pid| {
            let p = ctx.graph.process(pid)?;
            Some(BlamedProcess {
                pid,
                comm: p.comm.clone(),
                cgroup: p.cgroup.clone(),
                fd_count: p.fd_count,
                fd_limit: p.fd_limit,
            })
        })
        .collect();
    let info = super::scan_info(snap, scope);
    Tally {
        groups,
        by_cause,
        transient,
        processes,
        unreadable: info.unreadable.iter().map(|u| u.kind).collect(),
        incomplete: super::coverage::gaps(snap, scope, &resolved),
        states_read: info.states_read,
        briefs: all_briefs,
    }
}

/// Each socket judged as `diagnose` judges it, its finding counted under its
/// group's key (and briefed) and dropped; spread over the cores like
/// `judge_all`.
fn judge_counting(ctx: &Ctx, todo: &[&TcpSocket], briefs: bool) -> Vec<(Counts, Vec<Brief>)> {
    let count = |socks: &mut dyn Iterator<Item = &[&TcpSocket]>| {
        let mut memo = Memo::blame_only();
        let mut counts = Counts::default();
        let mut out = Vec::new();
        for chunk in socks {
            for s in chunk {
                let (pid, cause) = judge_blame(ctx, s, &mut memo);
                *counts.entry((pid, cause)).or_default() += 1;
                if briefs {
                    out.push(Brief {
                        pid,
                        cause,
                        socket: s.key().digest(),
                        close_wait_ms: s.last_ack_ms,
                    });
                }
            }
        }
        (counts, out)
    };
    // In the order of their first holders: each thread meets a holder's
    // sockets together, and its memo (an owner's verdict, its listeners)
    // is made once per holder rather than once per thread.
    let mut keyed: Vec<(Option<Pid>, &TcpSocket)> = todo
        .iter()
        .map(|s| (super::holders_of(ctx, s).first().map(|h| h.pid), *s))
        .collect();
    keyed.sort_unstable_by_key(|(pid, _)| *pid);
    let todo: Vec<&TcpSocket> = keyed.into_iter().map(|(_, s)| s).collect();
    let chunks: Vec<&[&TcpSocket]> = todo.chunks(256).collect();
    crate::par::spread(&chunks, 0, |mine| count(&mut mine.copied()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::diagnose;

    #[test]
    fn the_tally_is_what_the_report_says() {
        let looks = crate::capture::corpus();
        assert!(looks.len() >= 4, "corpus: {} looks", looks.len());
        let mut groups = 0;
        for (name, look) in &looks {
            let scopes = [
                Scope::everything(),
                // One process and its children: most sockets left out.
                Scope {
                    pids: look.processes.iter().map(|p| p.pid).take(1).collect(),
                    ..Scope::everything()
                },
            ];
            for scope in &scopes {
                let report = diagnose(look, scope);
                let t = tally(look, scope, true);
                assert_eq!(t, Tally::of(&report), "{name} {scope:?}");
                assert_eq!(t.briefs.len(), report.findings.len(), "{name}");
                let counted = tally(look, scope, false);
                assert!(counted.briefs.is_empty());
                assert_eq!(
                    Tally {
                        briefs: t.briefs.clone(),
                        ..counted
                    },
                    t,
                    "{name}"
                );
                assert_eq!(
                    t.groups.iter().map(|g| g.sockets).sum::<usize>(),
                    report.findings.len(),
                    "{name}"
                );
                groups += t.groups.len();
            }
        }
        assert!(groups > 4, "the corpus has groups of several causes");
    }
}
