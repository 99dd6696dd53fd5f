//! The holding graph: the process tree (petgraph; edges say "process is
//! parent of process") and, per socket, the (process, fd) pairs holding it.
//! Holders are fd tables: threads are already one process, and processes that
//! share a table (CLONE_FILES) are folded into the one with the lowest pid.
//! Each socket's holders are one sorted run of a flat list: asked for once or
//! more per CLOSE_WAIT socket, they cost a lookup, not a graph walk, a
//! vector and a sort.

use crate::model::{FastMap, Inode, InodeSet, Pid, Process, Snapshot};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

/// How far up the tree `HoldGraph::ancestors` looks (a real one is a few
/// dozen deep).
pub const MAX_ANCESTORS: usize = 4096;

/// A process: its index into `Snapshot::processes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node(pub usize);

/// "Parent of".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent;

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
    graph: StableDiGraph<Node, Parent>,
    procs: FastMap<Pid, NodeIndex>,
    /// Every holding of a socket in `inodes`, sorted by (inode, pid, tid, fd).
    held: Vec<HeldBy>,
    /// Where each socket's run in `held` starts, and how long it is.
    sockets: FastMap<Inode, (u32, u32)>,
}

impl<'a> HoldGraph<'a> {
    /// Build the graph for the sockets in `inodes` (the ones worth explaining).
    pub fn build(snap: &'a Snapshot, inodes: &InodeSet) -> Self {
        let mut graph = StableDiGraph::with_capacity(snap.processes.len(), snap.processes.len());
        let mut procs = FastMap::default();
        procs.reserve(snap.processes.len());
        for (i, p) in snap.processes.iter().enumerate() {
            procs.insert(p.pid, graph.add_node(Node(i)));
        }
        let mut held: Vec<(Inode, HeldBy)> = Vec::new();
        for p in &snap.processes {
            let Some(&pn) = procs.get(&p.pid) else {
                continue;
            };
            if let Some(&parent) = procs.get(&p.ppid) {
                graph.add_edge(parent, pn, Parent);
            }
            if p.shares_fd_table_with.is_some() {
                continue;
            }
            held.extend(
                p.sockets
                    .iter()
                    .filter(|s| inodes.contains(&s.inode))
                    .map(|s| {
                        let h = HeldBy {
                            pid: p.pid,
                            fd: s.fd,
                            cloexec: s.cloexec,
                            tid: s.tid,
                        };
                        (s.inode, h)
                    }),
            );
        }
        // Equal keys (a corrupt snapshot) keep the newest holding first.
        held.reverse();
        held.sort_by_key(|(inode, h)| (*inode, h.pid, h.tid, h.fd));
        let mut sockets: FastMap<Inode, (u32, u32)> = FastMap::default();
        sockets.reserve(inodes.len());
        for (at, (inode, _)) in held.iter().enumerate() {
            let at = u32::try_from(at).unwrap_or(u32::MAX);
            sockets
                .entry(*inode)
                .and_modify(|run| run.1 += 1)
                .or_insert((at, 1));
        }
        HoldGraph {
            snap,
            graph,
            procs,
            held: held.into_iter().map(|(_, h)| h).collect(),
            sockets,
        }
    }

    pub fn process(&self, pid: Pid) -> Option<&'a Process> {
        let n = self.graph.node_weight(*self.procs.get(&pid)?)?;
        self.snap.processes.get(n.0)
    }

    /// Whether any process holds the socket (without listing them).
    pub fn is_held(&self, inode: Inode) -> bool {
        self.sockets.contains_key(&inode)
    }

    /// Every (process, fd) holding the socket, sorted by pid then fd.
    pub fn holders(&self, inode: Inode) -> &[HeldBy] {
        let Some(&(at, n)) = self.sockets.get(&inode) else {
            return &[];
        };
        let at = at as usize;
        self.held.get(at..at + n as usize).unwrap_or(&[])
    }

    pub fn parent(&self, pid: Pid) -> Option<Pid> {
        let n = *self.procs.get(&pid)?;
        self.graph
            .edges_directed(n, Direction::Incoming)
            .next()
            .and_then(|e| self.pid_of(e.source()))
    }

    /// Parent, grandparent, ..., at most `MAX_ANCESTORS` of them. A corrupt
    /// snapshot may hold a cycle (it ends where a pid comes back) or a chain
    /// so long that the cycle check would cost quadratic time.
    pub fn ancestors(&self, pid: Pid) -> Vec<Pid> {
        let mut out = Vec::new();
        let mut cur = pid;
        for _ in 0..MAX_ANCESTORS {
            let Some(p) = self.parent(cur) else { break };
            if p == pid || out.contains(&p) {
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
            .filter_map(|e| {
                self.snap
                    .processes
                    .get(self.graph.node_weight(e.target())?.0)
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
        Some(self.snap.processes.get(self.graph.node_weight(n)?.0)?.pid)
    }
}

#[cfg(test)]
mod tests {
    use super::{HeldBy, HoldGraph, MAX_ANCESTORS};
    use crate::model::{InodeSet, Layout, Process, Snapshot, SocketFd};

    fn fd(fd: i32, inode: u64, tid: Option<i32>) -> SocketFd {
        SocketFd {
            fd,
            inode,
            cloexec: Some(fd % 2 == 0),
            tid,
        }
    }

    fn held(pid: i32, fd: i32, tid: Option<i32>) -> HeldBy {
        HeldBy {
            pid,
            fd,
            cloexec: Some(fd % 2 == 0),
            tid,
        }
    }

    /// Holders come sorted by pid, thread, fd whatever order the snapshot
    /// lists processes and fds in; a sharer of another's fd table and a
    /// socket outside the set hold nothing; the tree is the ppid links.
    #[test]
    fn holders_of_each_socket_sorted_and_only_those_asked_for() {
        let snap = Snapshot {
            processes: vec![
                Process {
                    pid: 30,
                    ppid: 10,
                    sockets: vec![fd(9, 100, None), fd(4, 100, Some(31)), fd(5, 200, None)],
                    ..Process::default()
                },
                Process {
                    pid: 10,
                    ppid: 1,
                    sockets: vec![fd(7, 100, None), fd(3, 100, None), fd(6, 300, None)],
                    ..Process::default()
                },
                Process {
                    pid: 20,
                    ppid: 10,
                    shares_fd_table_with: Some(10),
                    sockets: vec![fd(7, 100, None)],
                    ..Process::default()
                },
            ],
            ..Snapshot::default()
        };
        let inodes: InodeSet = [100, 200].into_iter().collect();
        let g = HoldGraph::build(&snap, &inodes);
        assert_eq!(
            g.holders(100),
            [
                held(10, 3, None),
                held(10, 7, None),
                held(30, 9, None),
                held(30, 4, Some(31))
            ]
        );
        assert_eq!(g.holders(200), [held(30, 5, None)]);
        assert!(g.is_held(100) && g.is_held(200));
        assert!(
            g.holders(300).is_empty() && !g.is_held(300),
            "not asked for"
        );
        assert!(g.holders(999).is_empty() && !g.is_held(999));
        assert_eq!(g.parent(30), Some(10));
        assert_eq!(g.parent(10), None);
        let mut children: Vec<i32> = g.children(10).iter().map(|p| p.pid).collect();
        children.sort_unstable();
        assert_eq!(children, [20, 30]);
        assert_eq!(
            g.process(20).map(|p| p.shares_fd_table_with),
            Some(Some(10))
        );
    }

    fn proc(pid: i32, ppid: i32) -> Process {
        Process {
            pid,
            ppid,
            ..Process::default()
        }
    }

    fn graph_of(snap: &Snapshot) -> HoldGraph<'_> {
        HoldGraph::build(snap, &InodeSet::default())
    }

    /// Ancestors go up the ppid links; related is the same process, an
    /// ancestor or a descendant, never a sibling or a cousin.
    #[test]
    fn ancestors_and_relations_follow_the_ppid_links() {
        // 1 -> 10 -> 20 -> 30, 10 -> 21, 1 -> 11.
        let snap = Snapshot {
            processes: vec![
                proc(30, 20),
                proc(20, 10),
                proc(21, 10),
                proc(10, 1),
                proc(11, 1),
                proc(1, 0),
            ],
            ..Snapshot::default()
        };
        let g = graph_of(&snap);
        assert_eq!(g.ancestors(30), [20, 10, 1]);
        assert_eq!(g.ancestors(1), Vec::<i32>::new());
        assert_eq!(g.ancestors(999), Vec::<i32>::new(), "not in the snapshot");
        assert!(g.is_ancestor(10, 30) && g.is_ancestor(1, 30));
        assert!(!g.is_ancestor(30, 10) && !g.is_ancestor(21, 30));
        for (a, b) in [(30, 30), (10, 30), (30, 10), (1, 21)] {
            assert!(g.related(a, b), "{a} {b}");
        }
        for (a, b) in [(30, 21), (21, 30), (11, 20), (30, 999)] {
            assert!(!g.related(a, b), "{a} {b}");
        }
        let mut kids: Vec<i32> = g.children(1).iter().map(|p| p.pid).collect();
        kids.sort_unstable();
        assert_eq!(kids, [10, 11]);
        assert!(g.children(30).is_empty() && g.children(999).is_empty());
        assert_eq!(g.process(21).map(|p| p.ppid), Some(10));
        assert!(g.process(999).is_none());
    }

    /// A corrupt snapshot's ppid cycle ends the walk where a pid comes back,
    /// through the start or not; a chain past the bound is cut at it.
    #[test]
    fn ancestors_stop_at_a_cycle_and_at_the_bound() {
        // 2 <-> 3 is a cycle; 4's parent is 3.
        let snap = Snapshot {
            processes: vec![proc(2, 3), proc(3, 2), proc(4, 3)],
            ..Snapshot::default()
        };
        let g = graph_of(&snap);
        assert_eq!(g.ancestors(2), [3]);
        assert_eq!(g.ancestors(4), [3, 2]);
        assert!(g.related(2, 3));
        let deep = MAX_ANCESTORS as i32 + 10;
        let snap = Snapshot {
            processes: (1..=deep).map(|pid| proc(pid, pid - 1)).collect(),
            ..Snapshot::default()
        };
        let g = graph_of(&snap);
        let up = g.ancestors(deep);
        assert_eq!(up.len(), MAX_ANCESTORS);
        assert_eq!(up[0], deep - 1);
        assert_eq!(up[MAX_ANCESTORS - 1], deep - MAX_ANCESTORS as i32);
    }

    fn exe(pid: i32, ppid: i32, exe: Option<&str>, code: Option<u64>) -> Process {
        Process {
            exe: exe.map(str::to_string),
            layout: code.map(|start_code| Layout {
                start_code,
                ..Layout::default()
            }),
            ..proc(pid, ppid)
        }
    }

    /// execd: another exe is proof; else the memory layout (fork copies it,
    /// exec replaces it) decides; the same exe without a layout is a fork;
    /// with neither known, unknown.
    #[test]
    fn execd_from_the_exe_then_the_memory_layout() {
        let cases = [
            // (parent exe, parent layout, child exe, child layout, expected)
            (
                Some("/bin/sh"),
                Some(1),
                Some("/usr/bin/app"),
                Some(1),
                Some(true),
            ),
            (
                Some("/bin/sh"),
                None,
                Some("/usr/bin/app"),
                None,
                Some(true),
            ),
            (
                Some("/bin/app"),
                Some(1),
                Some("/bin/app"),
                Some(2),
                Some(true),
            ),
            (
                Some("/bin/app"),
                Some(1),
                Some("/bin/app"),
                Some(1),
                Some(false),
            ),
            (Some("/bin/app"), None, Some("/bin/app"), None, Some(false)),
            (
                Some("/bin/app"),
                Some(1),
                Some("/bin/app"),
                None,
                Some(false),
            ),
            (None, Some(1), None, Some(2), Some(true)),
            (None, Some(1), None, Some(1), Some(false)),
            (None, Some(1), Some("/bin/app"), None, None),
            (Some("/bin/app"), None, None, None, None),
            (None, None, None, None, None),
        ];
        for (pe, pl, ce, cl, want) in cases {
            let snap = Snapshot {
                processes: vec![exe(10, 1, pe, pl), exe(20, 10, ce, cl)],
                ..Snapshot::default()
            };
            let g = graph_of(&snap);
            assert_eq!(
                g.execd(20),
                want,
                "parent {pe:?} {pl:?}, child {ce:?} {cl:?}"
            );
            assert_eq!(g.execd(10), None, "no parent in the snapshot");
        }
    }
}
