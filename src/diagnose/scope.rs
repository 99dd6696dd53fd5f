//! What the user asked about: pids (with descendants), ports, namespaces.
//! Kinds combine with AND, values of one kind with OR.

use crate::graph::HoldGraph;
use crate::model::{Inode, Pid, Snapshot, TcpSocket};
use std::collections::HashSet;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    pub pids: Vec<Pid>,
    pub with_children: bool,
    /// Matched against the local or the remote port.
    pub ports: Vec<u16>,
    pub netns: Vec<Inode>,
}

impl Scope {
    pub fn everything() -> Self {
        Scope {
            with_children: true,
            ..Scope::default()
        }
    }

    pub fn is_everything(&self) -> bool {
        self.pids.is_empty() && self.ports.is_empty() && self.netns.is_empty()
    }
}

/// The scope resolved against one snapshot: the pids it names, and the
/// socket inodes those pids hold.
pub struct Resolved {
    pids: Option<HashSet<Pid>>,
    held: HashSet<Inode>,
    ports: Vec<u16>,
    netns: Vec<Inode>,
}

impl Resolved {
    pub fn new(scope: &Scope, snap: &Snapshot, graph: &HoldGraph) -> Self {
        let pids: Option<HashSet<Pid>> = (!scope.pids.is_empty()).then(|| {
            let roots: HashSet<Pid> = scope.pids.iter().copied().collect();
            snap.processes
                .iter()
                .map(|p| p.pid)
                .filter(|pid| {
                    roots.contains(pid)
                        || (scope.with_children
                            && graph.ancestors(*pid).iter().any(|a| roots.contains(a)))
                })
                .collect()
        });
        let held = match &pids {
            Some(pids) => snap
                .processes
                .iter()
                .filter(|p| pids.contains(&p.pid))
                .flat_map(|p| p.sockets.iter().map(|s| s.inode))
                .collect(),
            None => HashSet::new(),
        };
        Resolved {
            pids,
            held,
            ports: scope.ports.clone(),
            netns: scope.netns.clone(),
        }
    }

    pub fn pid_in(&self, pid: Pid) -> bool {
        self.pids.as_ref().is_none_or(|s| s.contains(&pid))
    }

    /// A socket is in scope when its ports and namespace match and, with a pid
    /// scope, a process in scope holds it or (for a socket nobody holds, like
    /// one still in the accept queue) holds one of `listeners`.
    pub fn socket_in(&self, s: &TcpSocket, listeners: &[Inode]) -> bool {
        let port_ok = self.ports.is_empty()
            || self.ports.contains(&s.local.port())
            || self.ports.contains(&s.remote.port());
        let ns_ok = self.netns.is_empty() || self.netns.contains(&s.netns);
        let pid_ok = self.pids.is_none()
            || (s.inode != 0 && self.held.contains(&s.inode))
            || listeners.iter().any(|l| self.held.contains(l));
        port_ok && ns_ok && pid_ok
    }
}
