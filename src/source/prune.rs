//! A look that read only CLOSE_WAIT and LISTEN sockets keeps, per process,
//! only the socket fds the diagnosis can use: those of sockets in the tables
//! read, and those of sockets held more than once (two processes holding
//! another socket at the same fd is the mark of a fork). On a busy host the
//! rest, most of them, would only take memory; they are counted instead.
//! Not for `watch`'s incremental looks, which reuse fd lists between looks.

use crate::model::{Inode, InodeSet, Process, TcpSocket};

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
    let in_tables: InodeSet = sockets
        .iter()
        .filter(|s| s.inode != 0)
        .map(|s| s.inode)
        .collect();
    for p in processes.iter_mut() {
        let before = p.sockets.len();
        p.sockets
            .retain(|s| in_tables.contains(&s.inode) || shared.contains(&s.inode));
        p.sockets.shrink_to_fit();
        let dropped = u32::try_from(before - p.sockets.len()).unwrap_or(u32::MAX);
        p.other_sockets = p.other_sockets.saturating_add(dropped);
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Family, Process, Snapshot, SocketFd, TcpSocket, TcpState};

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

    #[test]
    fn keeps_table_and_shared_sockets_and_counts_the_rest() {
        let mut snap = Snapshot::default();
        snap.sockets.push(TcpSocket {
            inode: 10,
            netns: 1,
            family: Family::Ipv4,
            local: "127.0.0.1:80".parse().unwrap(),
            remote: "127.0.0.1:4000".parse().unwrap(),
            state: TcpState::CloseWait,
            recv_q: 0,
            send_q: 0,
            uid: 0,
            last_ack_ms: None,
            bytes_acked: None,
            timewait: false,
            bound_if: None,
        });
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
}
