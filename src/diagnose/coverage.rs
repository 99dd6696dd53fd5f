//! Whether a look can support "no leak". A CLOSE_WAIT socket is found in a
//! namespace's TCP table, so "none" needs every table in scope read, and the
//! namespaces found (through processes); for a pid scope, the fd tables of
//! the processes in it. Anything less is named here, and a clean answer
//! built on it is not given as one (`scan` and `check` exit 2).

use super::scope::{Resolved, Scope};
use crate::model::{Pid, Snapshot, WarningKind};
use std::collections::BTreeSet;

/// At most this share of the processes unreadable still lets an unscoped
/// look stand: root on a host where pid 1 alone is unreadable passes; a user
/// who can read only their own processes does not.
const MAX_UNREADABLE_SHARE: f64 = 0.5;

/// What this look could not see that a "no leak" would depend on; empty when
/// it saw enough.
pub fn gaps(snap: &Snapshot, scope: &Scope, resolved: &Resolved) -> Vec<String> {
    let mut gaps: Vec<String> = Vec::new();
    let mut add = |g: String| {
        if !gaps.contains(&g) {
            gaps.push(g);
        }
    };
    for w in snap
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::Incomplete)
    {
        add(w.message.clone());
    }
    let read: BTreeSet<u64> = snap.namespaces.iter().map(|n| n.inode).collect();
    for ns in scope.netns.iter().filter(|n| !read.contains(n)) {
        add(format!(
            "no process visible here is in network namespace {ns}: its TCP table was not read"
        ));
    }
    // A pid scope reads the tables its processes hold sockets in: none
    // read because they hold none is no gap (they can leak nothing).
    if snap.meta.live && scope.netns.is_empty() && scope.pids.is_empty() && read.is_empty() {
        add("no TCP table was read".into());
    }
    let denied: BTreeSet<Pid> = snap
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::PermissionDenied)
        .filter_map(|w| w.pid)
        .collect();
    if !scope.pids.is_empty() {
        // The scope is these processes: each one unreadable may hold a leak.
        let hidden: Vec<String> = denied
            .iter()
            .filter(|p| resolved.pid_in(**p))
            .map(Pid::to_string)
            .collect();
        if !hidden.is_empty() {
            add(format!(
                "process(es) in scope could not be read (permission denied): pid {}",
                hidden.join(", ")
            ));
        }
    } else {
        let seen: BTreeSet<Pid> = snap.processes.iter().map(|p| p.pid).collect();
        let total = seen.union(&denied).count();
        // No process at all: 0 > 0, no gap from this rule.
        if denied.len() as f64 > total as f64 * MAX_UNREADABLE_SHARE {
            add(format!(
                "{} of {total} processes could not be read (permission denied): the namespaces \
                 they alone are in were not found; run as root",
                denied.len()
            ));
        }
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::HoldGraph;
    use crate::model::{Meta, NetNs, Process, Warning};

    fn snap(processes: usize, denied: &[Pid], namespaces: &[u64]) -> Snapshot {
        Snapshot {
            meta: Meta {
                live: true,
                ..Meta::default()
            },
            processes: (1..=processes)
                .map(|p| Process {
                    pid: p as Pid,
                    ..Process::default()
                })
                .collect(),
            namespaces: namespaces
                .iter()
                .map(|&inode| NetNs {
                    inode,
                    ..NetNs::default()
                })
                .collect(),
            warnings: denied
                .iter()
                .map(|&pid| Warning {
                    pid: Some(pid),
                    path: None,
                    kind: WarningKind::PermissionDenied,
                    message: "permission denied".into(),
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    fn gaps_of(s: &Snapshot, scope: &Scope) -> Vec<String> {
        let graph = HoldGraph::build(s, &Default::default());
        gaps(s, scope, &Resolved::new(scope, s, &graph))
    }

    #[test]
    fn root_with_pid_1_unreadable_sees_enough() {
        let s = snap(200, &[1], &[7]);
        assert!(gaps_of(&s, &Scope::everything()).is_empty());
    }

    /// "At most" half: exactly half unreadable still stands.
    #[test]
    fn exactly_half_unreadable_still_stands() {
        let s = snap(10, &[1, 2, 3, 4, 5], &[7]);
        assert!(gaps_of(&s, &Scope::everything()).is_empty());
    }

    #[test]
    fn most_processes_unreadable_cannot_support_no_leak() {
        let s = snap(10, &[1, 2, 3, 4, 5, 6], &[7]);
        let g = gaps_of(&s, &Scope::everything());
        assert!(g[0].contains("6 of 10 processes"), "{g:?}");
    }

    #[test]
    fn a_pid_scope_needs_only_its_own_processes() {
        let s = snap(10, &[1, 2, 3, 4, 5, 6], &[7]);
        let mine = Scope {
            pids: vec![9],
            ..Scope::everything()
        };
        assert!(gaps_of(&s, &mine).is_empty());
        let theirs = Scope {
            pids: vec![2],
            ..Scope::everything()
        };
        assert!(gaps_of(&s, &theirs)[0].contains("pid 2"));
    }

    #[test]
    fn no_table_or_a_scoped_namespace_unread_is_a_gap() {
        let s = snap(3, &[], &[]);
        assert_eq!(gaps_of(&s, &Scope::everything()), ["no TCP table was read"]);
        let socketless = Scope {
            pids: vec![2],
            ..Scope::everything()
        };
        assert!(gaps_of(&s, &socketless).is_empty());
        let s = snap(3, &[], &[7]);
        let other = Scope {
            netns: vec![8],
            ..Scope::everything()
        };
        assert!(gaps_of(&s, &other)[0].contains("namespace 8"));
    }

    #[test]
    fn the_sources_incomplete_warnings_are_gaps() {
        let mut s = snap(3, &[], &[7]);
        s.warnings.push(Warning {
            pid: None,
            path: Some("/proc".into()),
            kind: WarningKind::Incomplete,
            message: "this /proc hides other users' processes".into(),
        });
        assert_eq!(
            gaps_of(&s, &Scope::everything()),
            ["this /proc hides other users' processes"]
        );
    }
}
