//! What the user asked about: pids (with descendants), cgroups, ports,
//! namespaces. Kinds combine with AND, values of one kind with OR.

use crate::graph::HoldGraph;
use crate::model::{Inode, Pid, Process, Snapshot, TcpSocket};
use std::collections::HashSet;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    pub pids: Vec<Pid>,
    pub with_children: bool,
    /// Matched against the local or the remote port.
    pub ports: Vec<u16>,
    pub netns: Vec<Inode>,
    /// Cgroup paths (as in /proc/PID/cgroup): processes in one of them or below.
    #[serde(default)]
    pub cgroups: Vec<String>,
    /// Matched against the local port only (`check --port`: the service's port).
    #[serde(default)]
    pub local_ports: Vec<u16>,
}

impl Scope {
    pub fn everything() -> Self {
        Scope {
            with_children: true,
            ..Scope::default()
        }
    }
}

/// `cgroup` is `scope` or lies below it ("/a/b" is below "/a", "/ab" is not).
pub fn cgroup_within(cgroup: &str, scope: &str) -> bool {
    let scope = scope.trim_end_matches('/');
    scope.is_empty()
        || cgroup == scope
        || cgroup
            .strip_prefix(scope)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The scope resolved against one snapshot: the processes it names, and the
/// socket inodes those processes hold.
pub struct Resolved {
    /// None: no process-kind scope (pid or cgroup), every process counts.
    pids: Option<HashSet<Pid>>,
    held: HashSet<Inode>,
    ports: Vec<u16>,
    local_ports: Vec<u16>,
    netns: Vec<Inode>,
}

impl Resolved {
    pub fn new(scope: &Scope, snap: &Snapshot, graph: &HoldGraph) -> Self {
        let by_pid = !scope.pids.is_empty();
        let by_cgroup = !scope.cgroups.is_empty();
        let roots: HashSet<Pid> = scope.pids.iter().copied().collect();
        let in_pids = |p: &Process| {
            roots.contains(&p.pid)
                || (scope.with_children && graph.ancestors(p.pid).iter().any(|a| roots.contains(a)))
        };
        // The cgroup is read only for the processes that matter (holders of
        // CLOSE_WAIT sockets and of their listeners, and their ancestors):
        // exactly the ones a finding can name.
        let in_cgroups = |p: &Process| {
            p.cgroup
                .as_deref()
                .is_some_and(|cg| scope.cgroups.iter().any(|s| cgroup_within(cg, s)))
        };
        let pids: Option<HashSet<Pid>> = (by_pid || by_cgroup).then(|| {
            snap.processes
                .iter()
                .filter(|p| (!by_pid || in_pids(p)) && (!by_cgroup || in_cgroups(p)))
                .map(|p| p.pid)
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
            local_ports: scope.local_ports.clone(),
            netns: scope.netns.clone(),
        }
    }

    pub fn pid_in(&self, pid: Pid) -> bool {
        self.pids.as_ref().is_none_or(|s| s.contains(&pid))
    }

    /// A socket is in scope when its ports and namespace match and, with a pid
    /// or cgroup scope, a process in scope holds it or (for a socket nobody
    /// holds, like one still in the accept queue) holds one of `listeners`.
    /// Whether every socket of network namespace `netns` is in scope, whatever
    /// its ports and holders: then the sockets a look only counted
    /// (`NetNs::unkept`) count too.
    pub fn whole_namespace_in(&self, netns: Inode) -> bool {
        self.pids.is_none()
            && self.ports.is_empty()
            && self.local_ports.is_empty()
            && (self.netns.is_empty() || self.netns.contains(&netns))
    }

    pub fn socket_in(&self, s: &TcpSocket, listeners: &[Inode]) -> bool {
        let port_ok = self.ports.is_empty()
            || self.ports.contains(&s.local.port())
            || self.ports.contains(&s.remote.port());
        let local_ok = self.local_ports.is_empty() || self.local_ports.contains(&s.local.port());
        let ns_ok = self.netns.is_empty() || self.netns.contains(&s.netns);
        let pid_ok = self.pids.is_none()
            || (s.inode != 0 && self.held.contains(&s.inode))
            || listeners.iter().any(|l| self.held.contains(l));
        port_ok && local_ok && ns_ok && pid_ok
    }
}

#[cfg(test)]
mod tests {
    use super::cgroup_within;

    #[test]
    fn cgroup_paths_match_themselves_and_below_only() {
        assert!(cgroup_within(
            "/system.slice/api.service",
            "/system.slice/api.service"
        ));
        assert!(cgroup_within(
            "/system.slice/api.service/worker",
            "/system.slice/api.service/"
        ));
        assert!(cgroup_within("/system.slice/api.service", "/system.slice"));
        assert!(!cgroup_within(
            "/system.slice/api.service2",
            "/system.slice/api.service"
        ));
        assert!(!cgroup_within("/user.slice", "/system.slice"));
        assert!(cgroup_within("/anything", "/"));
    }
}
