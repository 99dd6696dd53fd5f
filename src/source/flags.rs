//! Which socket fds get their fdinfo read for O_CLOEXEC. The flag explains
//! how a *copy* came to be (inherited across exec, or not), so it is read for
//! the fds of CLOSE_WAIT sockets held more than once, and for holders that
//! did not create the connection's listener (helpers that inherited it with
//! the connection, receivers of passed fds, prefork workers). A lone fd in
//! the process that created the listener (its oldest holder) is the owner's
//! own accepted socket: its flag explains nothing, and skipping it saves one
//! open/read per leaked socket on a host with tens of thousands of them.

use super::walk::Walked;
use crate::model::{FastMap, Inode, InodeSet, Pid, Process, TcpSocket, TcpState};
use std::collections::HashSet;

/// (network namespace, local port): how a connection finds its listener.
type PortKey = (Inode, u16);

pub struct FlagPolicy {
    /// CLOSE_WAIT inodes and their port.
    close_wait: FastMap<Inode, PortKey>,
    /// Listener inodes and their port.
    listeners: FastMap<Inode, PortKey>,
    /// Per listener, its oldest holder (start time, pid): the one that created it.
    creators: FastMap<Inode, (u64, Pid)>,
    /// CLOSE_WAIT inodes held by more than one fd (in one process or several).
    copied: InodeSet,
}

impl FlagPolicy {
    pub fn new(walked: &[Walked], sockets: &[TcpSocket]) -> Self {
        let key = |s: &TcpSocket| (s.inode, (s.netns, s.local.port()));
        // Sized first: tens of thousands of sockets would otherwise be
        // hashed again at every doubling of a table.
        let in_state = |state| {
            let of = |s: &&TcpSocket| s.state == state && s.inode != 0;
            let mut m: FastMap<Inode, PortKey> = FastMap::with_capacity_and_hasher(
                sockets.iter().filter(of).count(),
                Default::default(),
            );
            m.extend(sockets.iter().filter(of).map(key));
            m
        };
        let close_wait = in_state(TcpState::CloseWait);
        let listeners = in_state(TcpState::Listen);
        let mut seen = InodeSet::with_capacity_and_hasher(close_wait.len(), Default::default());
        let mut copied = InodeSet::default();
        let mut creators: FastMap<Inode, (u64, Pid)> = FastMap::default();
        for p in walked.iter().map(|w| &w.process) {
            for s in &p.sockets {
                if close_wait.contains_key(&s.inode) && !seen.insert(s.inode) {
                    copied.insert(s.inode);
                }
                if listeners.contains_key(&s.inode) {
                    let me = (p.start_time, p.pid);
                    creators
                        .entry(s.inode)
                        .and_modify(|c| *c = me.min(*c))
                        .or_insert(me);
                }
            }
        }
        FlagPolicy {
            close_wait,
            listeners,
            creators,
            copied,
        }
    }

    /// The CLOSE_WAIT fds of `p` whose flags are worth reading.
    pub fn wanted(&self, p: &Process) -> HashSet<i32> {
        let owns: HashSet<PortKey> = p
            .sockets
            .iter()
            .filter(|s| self.creators.get(&s.inode).is_some_and(|c| c.1 == p.pid))
            .filter_map(|s| self.listeners.get(&s.inode).copied())
            .collect();
        p.sockets
            .iter()
            .filter(|s| {
                self.close_wait
                    .get(&s.inode)
                    .is_some_and(|port| self.copied.contains(&s.inode) || !owns.contains(port))
            })
            .map(|s| s.fd)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Family, SocketFd};

    fn sock(inode: Inode, state: TcpState, local: &str) -> TcpSocket {
        TcpSocket {
            inode,
            netns: 1,
            family: Family::Ipv4,
            state,
            local: local.parse().unwrap(),
            remote: "127.0.0.1:4000".parse().unwrap(),
            recv_q: 0,
            send_q: 0,
            uid: 0,
            last_ack_ms: None,
            bytes_acked: None,
            timewait: false,
            bound_if: None,
        }
    }

    fn walked(pid: i32, fds: &[(i32, Inode)]) -> Walked {
        let mut w = Walked {
            process: Process {
                pid,
                start_time: 1000 + pid as u64,
                ..Process::default()
            },
            base: pid.to_string().into(),
        };
        w.process.sockets = fds
            .iter()
            .map(|&(fd, inode)| SocketFd {
                fd,
                inode,
                cloexec: None,
                tid: None,
            })
            .collect();
        w
    }

    #[test]
    fn reads_copies_and_non_owners_only() {
        let sockets = [
            sock(10, TcpState::Listen, "127.0.0.1:80"),
            sock(11, TcpState::CloseWait, "127.0.0.1:80"),
            sock(12, TcpState::CloseWait, "127.0.0.1:80"),
            sock(13, TcpState::CloseWait, "127.0.0.1:80"),
            sock(14, TcpState::Established, "127.0.0.1:80"),
        ];
        // Owner: listener, a lone CLOSE_WAIT (11), one forked copy (12), an established one.
        // Child: the copy of 12; a helper without the listener holds 13; an
        // exec'd helper that inherited the listener holds 15 alone.
        let w = [
            walked(1, &[(3, 10), (4, 11), (5, 12), (6, 14)]),
            walked(2, &[(3, 10), (5, 12)]),
            walked(3, &[(7, 13)]),
            walked(4, &[(3, 10), (8, 15)]),
        ];
        let mut sockets = sockets.to_vec();
        sockets.push(sock(15, TcpState::CloseWait, "127.0.0.1:80"));
        let p = FlagPolicy::new(&w, &sockets);
        assert_eq!(p.wanted(&w[0].process), HashSet::from([5]));
        assert_eq!(p.wanted(&w[1].process), HashSet::from([5]));
        assert_eq!(p.wanted(&w[2].process), HashSet::from([7]));
        assert_eq!(p.wanted(&w[3].process), HashSet::from([8]));
    }
}
