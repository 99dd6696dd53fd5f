//! The holding graph (petgraph): process nodes and socket nodes; edges say
//! "process is parent of process" and "process holds socket at fd". Holders
//! are fd tables: threads are already one process, and processes that share a
//! table (CLONE_FILES) are folded into the one with the lowest pid.

use crate::model::{FastMap, Inode, InodeSet, Pid, Process, Snapshot};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// Index into `Snapshot::processes`.
    Process(usize),
    Socket(Inode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Parent,
    /// `tid`: the thread whose own fd table holds it (None: the process's).
    Holds {
        fd: i32,
        cloexec: Option<bool>,
        tid: Option<Pid>,
    },
}

/// One (process, fd) holding a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBy {
    pub pid: Pid,
    pub fd: i32,
    pub cloexec: Option<bool>,
    /// The thread whose own fd table holds it (unshare(CLONE_FILES)).
    pub tid: Option<Pid>,
}

pub struct HoldGraph<'a> {
    snap: &'a Snapshot,
    graph: StableDiGraph<Node, Edge>,
    procs: FastMap<Pid, NodeIndex>,
    sockets: FastMap<Inode, NodeIndex>,
}

impl<'a> HoldGraph<'a> {
    /// Build the graph for the sockets in `inodes` (the ones worth explaining).
    pub fn build(snap: &'a Snapshot, inodes: &InodeSet) -> Self {
        // Sized up front: grown by doubling, a 90,000-edge graph would carry
        // up to as much again in spare capacity.
        let holds = snap
            .processes
            .iter()
            .filter(|p| p.shares_fd_table_with.is_none())
            .flat_map(|p| &p.sockets)
            .filter(|s| inodes.contains(&s.inode))
            .count();
        let mut graph = StableDiGraph::with_capacity(
            snap.processes.len() + inodes.len(),
            snap.processes.len() + holds,
        );
        let mut procs = FastMap::default();
        procs.reserve(snap.processes.len());
        for (i, p) in snap.processes.iter().enumerate() {
            procs.insert(p.pid, graph.add_node(Node::Process(i)));
        }
        let mut sockets = FastMap::default();
        sockets.reserve(inodes.len());
        for p in &snap.processes {
            let Some(&pn) = procs.get(&p.pid) else {
                continue;
            };
            if let Some(&parent) = procs.get(&p.ppid) {
                graph.add_edge(parent, pn, Edge::Parent);
            }
            if p.shares_fd_table_with.is_some() {
                continue;
            }
            for s in p.sockets.iter().filter(|s| inodes.contains(&s.inode)) {
                let sn = *sockets
                    .entry(s.inode)
                    .or_insert_with(|| graph.add_node(Node::Socket(s.inode)));
                graph.add_edge(
                    pn,
                    sn,
                    Edge::Holds {
                        fd: s.fd,
                        cloexec: s.cloexec,
                        tid: s.tid,
                    },
                );
            }
        }
        HoldGraph {
            snap,
            graph,
            procs,
            sockets,
        }
    }

    pub fn process(&self, pid: Pid) -> Option<&'a Process> {
        match self.graph.node_weight(*self.procs.get(&pid)?)? {
            Node::Process(i) => self.snap.processes.get(*i),
            Node::Socket(_) => None,
        }
    }

    /// Whether any process holds the socket (without listing them).
    pub fn is_held(&self, inode: Inode) -> bool {
        self.sockets.get(&inode).is_some_and(|&sn| {
            self.graph
                .edges_directed(sn, Direction::Incoming)
                .any(|e| matches!(e.weight(), Edge::Holds { .. }))
        })
    }

    /// Every (process, fd) holding the socket, sorted by pid then fd.
    pub fn holders(&self, inode: Inode) -> Vec<HeldBy> {
        let Some(&sn) = self.sockets.get(&inode) else {
            return Vec::new();
        };
        let mut out: Vec<HeldBy> = self
            .graph
            .edges_directed(sn, Direction::Incoming)
            .filter_map(|e| match (e.weight(), self.graph.node_weight(e.source())) {
                (Edge::Holds { fd, cloexec, tid }, Some(Node::Process(i))) => Some(HeldBy {
                    pid: self.snap.processes.get(*i)?.pid,
                    fd: *fd,
                    cloexec: *cloexec,
                    tid: *tid,
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|h| (h.pid, h.tid, h.fd));
        out
    }

    pub fn parent(&self, pid: Pid) -> Option<Pid> {
        let n = *self.procs.get(&pid)?;
        self.graph
            .edges_directed(n, Direction::Incoming)
            .find(|e| *e.weight() == Edge::Parent)
            .and_then(|e| self.pid_of(e.source()))
    }

    /// Parent, grandparent, ... (bounded: a corrupt snapshot may hold a cycle).
    pub fn ancestors(&self, pid: Pid) -> Vec<Pid> {
        let mut out = Vec::new();
        let mut cur = pid;
        while let Some(p) = self.parent(cur) {
            if p == pid || out.contains(&p) || out.len() > 4096 {
                break;
            }
            out.push(p);
            cur = p;
        }
        out
    }

    pub fn is_ancestor(&self, older: Pid, younger: Pid) -> bool {
        self.ancestors(younger).contains(&older)
    }

    pub fn related(&self, a: Pid, b: Pid) -> bool {
        a == b || self.is_ancestor(a, b) || self.is_ancestor(b, a)
    }

    pub fn children(&self, pid: Pid) -> Vec<&'a Process> {
        let Some(&n) = self.procs.get(&pid) else {
            return Vec::new();
        };
        self.graph
            .edges_directed(n, Direction::Outgoing)
            .filter(|e| *e.weight() == Edge::Parent)
            .filter_map(|e| match self.graph.node_weight(e.target()) {
                Some(Node::Process(i)) => self.snap.processes.get(*i),
                _ => None,
            })
            .collect()
    }

    /// Whether `pid` runs another program than its parent: a different exe, or
    /// a memory layout that fork would have copied unchanged. None when unknown.
    pub fn execd(&self, pid: Pid) -> Option<bool> {
        let p = self.process(pid)?;
        let parent = self.process(self.parent(pid)?)?;
        if let (Some(a), Some(b)) = (&p.exe, &parent.exe) {
            if a != b {
                return Some(true);
            }
        }
        match (p.layout, parent.layout) {
            (Some(a), Some(b)) => Some(a != b),
            _ if p.exe.is_some() && parent.exe.is_some() => Some(false),
            _ => None,
        }
    }

    fn pid_of(&self, n: NodeIndex) -> Option<Pid> {
        match self.graph.node_weight(n)? {
            Node::Process(i) => Some(self.snap.processes.get(*i)?.pid),
            Node::Socket(_) => None,
        }
    }
}
