//! Which network namespaces' tables a look reads. A scan scoped to some
//! processes or namespaces needs only theirs: on a host with hundreds of
//! containers, dumping every table would be most of the work of a CI check.

use super::walk::Walked;
use crate::model::{Inode, InodeSet, Pid};
use std::collections::{HashMap, HashSet};

/// Empty: every namespace. Otherwise the namespaces in `netns`, and/or those
/// of the processes in `pids` (with their descendants when `with_children`);
/// both given: the namespaces that are in both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableScope {
    pub netns: Vec<Inode>,
    pub pids: Vec<Pid>,
    pub with_children: bool,
}

impl TableScope {
    /// The namespaces to read, or None for all of them.
    pub(super) fn namespaces(&self, walked: &[Walked]) -> Option<InodeSet> {
        let by_netns = (!self.netns.is_empty()).then(|| self.netns.iter().copied().collect());
        let by_pid = (!self.pids.is_empty()).then(|| self.of_processes(walked));
        match (by_netns, by_pid) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a),
            (Some(a), Some(b)) => Some(a.intersection(&b).copied().collect()),
        }
    }

    fn of_processes(&self, walked: &[Walked]) -> InodeSet {
        let mut children: HashMap<Pid, Vec<&Walked>> = HashMap::new();
        for w in walked {
            children.entry(w.process.ppid).or_default().push(w);
        }
        let by_pid: HashMap<Pid, &Walked> = walked.iter().map(|w| (w.process.pid, w)).collect();
        let mut todo: Vec<&Walked> = self
            .pids
            .iter()
            .filter_map(|p| by_pid.get(p).copied())
            .collect();
        let mut seen = HashSet::new();
        let mut out = InodeSet::default();
        while let Some(w) = todo.pop() {
            if !seen.insert(w.process.pid) {
                continue;
            }
            out.extend(w.process.netns);
            if self.with_children {
                todo.extend(children.get(&w.process.pid).into_iter().flatten());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Process;

    fn w(pid: Pid, ppid: Pid, netns: Option<Inode>) -> Walked {
        Walked {
            process: Process {
                pid,
                ppid,
                netns,
                ..Process::default()
            },
            base: pid.to_string().into(),
        }
    }

    #[test]
    fn namespaces_of_the_scope() {
        // 10 runs in the host (1); its child 11 in a container (2); 20 elsewhere (3).
        let walked = [w(10, 1, Some(1)), w(11, 10, Some(2)), w(20, 1, Some(3))];
        let all = TableScope::default();
        assert_eq!(all.namespaces(&walked), None);
        let tree = TableScope {
            pids: vec![10],
            with_children: true,
            ..TableScope::default()
        };
        assert_eq!(tree.namespaces(&walked), Some(InodeSet::from_iter([1, 2])));
        let alone = TableScope {
            with_children: false,
            ..tree.clone()
        };
        assert_eq!(alone.namespaces(&walked), Some(InodeSet::from_iter([1])));
        let both = TableScope {
            netns: vec![2, 3],
            ..tree
        };
        assert_eq!(both.namespaces(&walked), Some(InodeSet::from_iter([2])));
        let gone = TableScope {
            pids: vec![99],
            ..TableScope::default()
        };
        assert_eq!(gone.namespaces(&walked), Some(InodeSet::default()));
    }
}
