//! Which processes hold each socket inode: two parallel sorted arrays built
//! from the fd tables, binary-searched per socket. Sockets without a file
//! (inode 0: TIME_WAIT, orphans, accept queues) skip the search.

use crate::model::{Inode, Pid, Process};
use std::collections::HashSet;

pub struct Holders {
    /// Sorted; one entry per (inode, process) even when the process holds
    /// the socket through several fds.
    inodes: Vec<Inode>,
    /// Index into the snapshot's processes, aligned with `inodes`.
    procs: Vec<u32>,
}

impl Holders {
    pub fn new(processes: &[Process]) -> Holders {
        let mut pairs: Vec<(Inode, u32)> = processes
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                let i = u32::try_from(i).unwrap_or(u32::MAX);
                p.sockets.iter().map(move |s| (s.inode, i))
            })
            .filter(|&(inode, _)| inode != 0)
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let (inodes, procs) = pairs.into_iter().unzip();
        Holders { inodes, procs }
    }

    /// Indexes of the processes holding `inode` (none for inode 0).
    pub fn of(&self, inode: Inode) -> &[u32] {
        if inode == 0 {
            return &[];
        }
        let start = self.inodes.partition_point(|&i| i < inode);
        let len = self.inodes[start..]
            .iter()
            .take_while(|&&i| i == inode)
            .count();
        &self.procs[start..start + len]
    }

    /// Every socket inode held by one of `pids`.
    pub fn inodes_of(&self, processes: &[Process], pids: &HashSet<Pid>) -> HashSet<Inode> {
        processes
            .iter()
            .filter(|p| pids.contains(&p.pid))
            .flat_map(|p| p.sockets.iter().map(|s| s.inode))
            .filter(|&i| i != 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SocketFd;

    fn proc_with(pid: Pid, inodes: &[Inode]) -> Process {
        Process {
            pid,
            sockets: inodes
                .iter()
                .enumerate()
                .map(|(fd, &inode)| SocketFd {
                    fd: fd as i32 + 3,
                    inode,
                    cloexec: None,
                    tid: None,
                })
                .collect(),
            ..Process::default()
        }
    }

    #[test]
    fn each_process_counts_once_per_socket() {
        let procs = vec![
            proc_with(10, &[100, 100, 200]),
            proc_with(11, &[100]),
            proc_with(12, &[0]),
        ];
        let h = Holders::new(&procs);
        assert_eq!(h.of(100), &[0, 1]);
        assert_eq!(h.of(200), &[0]);
        assert!(h.of(300).is_empty());
        assert!(h.of(0).is_empty());
        let pids: HashSet<Pid> = [11].into();
        assert_eq!(h.inodes_of(&procs, &pids), [100].into());
    }
}
