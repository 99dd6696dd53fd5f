//! A look that read only CLOSE_WAIT and LISTEN sockets keeps, per process,
//! only the socket fds the diagnosis can use: those of sockets in the tables
//! read, and those of sockets held more than once (two processes holding
//! another socket at the same fd is the mark of a fork). On a busy host the
//! rest, most of them, would only take memory; they are counted instead.
//! Not for `watch`'s incremental looks, which reuse fd lists between looks.

use crate::model::{Inode, InodeSet, Process, SocketFd, TcpSocket};

/// Inodes held by more than one fd (in one process or several): found before
/// the tables are read, on a core the table dump leaves free.
pub fn shared_inodes<'a>(processes: impl Iterator<Item = &'a Process>) -> InodeSet {
    let mut all: Vec<Inode> = processes
        .flat_map(|p| p.sockets.iter().map(|s| s.inode))
        .collect();
    all.sort_unstable();
    all.windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect()
}

/// Done as soon as the tables are read: everything after (fdinfo policy,
/// details, kcmp, the graph) then goes through a fifth of the fds.
pub fn socket_fds(processes: &mut [&mut Process], sockets: &[TcpSocket], shared: &InodeSet) {
    let keep = Keep::new(sockets, shared);
    for p in processes.iter_mut() {
        let before = p.sockets.len();
        p.sockets.retain(|s| keep.keeps(s.inode));
        p.sockets.shrink_to_fit();
        count_dropped(p, before);
    }
}

/// Prune `p` as `socket_fds` does, and hand back the whole list it had
/// (for a cache that must know every socket fd), without copying it.
pub fn split(p: &mut Process, keep: &Keep) -> Vec<SocketFd> {
    let all = std::mem::take(&mut p.sockets);
    p.sockets = all
        .iter()
        .filter(|s| keep.keeps(s.inode))
        .copied()
        .collect();
    count_dropped(p, all.len());
    all
}

fn count_dropped(p: &mut Process, before: usize) {
    let dropped = u32::try_from(before - p.sockets.len()).unwrap_or(u32::MAX);
    p.other_sockets = p.other_sockets.saturating_add(dropped);
}

/// What a pruned process keeps: sockets in the tables, and those held twice.
pub struct Keep<'a> {
    in_tables: InodeSet,
    shared: &'a InodeSet,
}

impl<'a> Keep<'a> {
    pub fn new(sockets: &[TcpSocket], shared: &'a InodeSet) -> Self {
        let in_tables = sockets
            .iter()
            .filter(|s| s.inode != 0)
            .map(|s| s.inode)
            .collect();
        Keep { in_tables, shared }
    }

    fn keeps(&self, inode: Inode) -> bool {
        self.in_tables.contains(&inode) || self.shared.contains(&inode)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Process, Snapshot, SocketFd, TcpSocket, TcpState};

    fn fds(list: &[(i32, u64)]) -> Vec<SocketFd> {
        list.iter()
            .map(|&(fd, inode)| SocketFd {
                fd,
                inode,
                cloexec: None,
                tid: None,
            })
            .collect()
    }

    /// Socket 10, in CLOSE_WAIT: the table both tests read.
    fn close_wait_10() -> TcpSocket {
        crate::states::testdata::sock(1, TcpState::CloseWait, 10, "127.0.0.1:80", "127.0.0.1:4000")
    }

    #[test]
    fn keeps_table_and_shared_sockets_and_counts_the_rest() {
        let mut snap = Snapshot::default();
        snap.sockets.push(close_wait_10());
        // 10 is in the table; 20 is shared by both; 30 and 40 are neither.
        snap.processes = vec![
            Process {
                pid: 1,
                sockets: fds(&[(3, 10), (4, 20), (5, 30)]),
                ..Process::default()
            },
            Process {
                pid: 2,
                sockets: fds(&[(4, 20), (6, 40)]),
                ..Process::default()
            },
        ];
        let shared = super::shared_inodes(snap.processes.iter());
        let mut processes: Vec<&mut Process> = snap.processes.iter_mut().collect();
        super::socket_fds(&mut processes, &snap.sockets, &shared);
        let kept =
            |i: usize| -> Vec<u64> { snap.processes[i].sockets.iter().map(|s| s.inode).collect() };
        assert_eq!(kept(0), vec![10, 20]);
        assert_eq!(kept(1), vec![20]);
        assert_eq!(snap.processes[0].other_sockets, 1);
        assert_eq!(snap.processes[1].other_sockets, 1);
    }

    #[test]
    fn split_prunes_as_socket_fds_does_and_hands_back_everything() {
        let mut p = Process {
            pid: 1,
            sockets: fds(&[(3, 10), (4, 20), (5, 30)]),
            ..Process::default()
        };
        let shared: crate::model::InodeSet = [20].into_iter().collect();
        let table = close_wait_10();
        let keep = super::Keep::new(std::slice::from_ref(&table), &shared);
        let all = super::split(&mut p, &keep);
        assert_eq!(all, fds(&[(3, 10), (4, 20), (5, 30)]));
        let kept: Vec<u64> = p.sockets.iter().map(|s| s.inode).collect();
        assert_eq!(kept, vec![10, 20]);
        assert_eq!(p.other_sockets, 1);
    }
}
