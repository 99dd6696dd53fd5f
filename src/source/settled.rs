//! What a look can take from the one before it, for `serve`, which looks
//! again every interval: a socket that was in CLOSE_WAIT at the last look,
//! with the same holders, has stayed there for a whole interval, far longer
//! than any settle window. Only the others (new since the last look, or held
//! by other fds now) need the window's second look; when there are none, the
//! look neither waits nor reads any table again. Whether the owner of a
//! settled socket still sends is judged across the interval instead: the
//! peer acknowledged more bytes, or the send queue drained, since the last
//! look.

use super::recheck::sent_between;
use crate::model::{digest, Inode, Snapshot, SocketKey, TcpSocket, TcpState};
use rustc_hash::{FxHashMap, FxHashSet};

/// The CLOSE_WAIT sockets of the last look, each by a 64-bit digest of its
/// key (a tenth of the memory of the keys: 40,000 sockets on a busy host).
#[derive(Debug, Default)]
pub struct LastLook {
    seen: FxHashMap<u64, Seen>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Digest of who held it: (pid, start time, thread, fd) of every holder.
    holders: u64,
    bytes_acked: Option<u64>,
    send_q: u32,
}

/// This look's CLOSE_WAIT sockets, split by what the last look says.
#[derive(Debug, Default, PartialEq)]
pub struct Split {
    /// New since the last look, or held otherwise: to look at again.
    pub fresh: FxHashSet<SocketKey>,
    /// Settled since the last look, and their owner sent in between.
    pub still_sending: Vec<SocketKey>,
}

/// What a look's split and its remember both need, made once: each
/// CLOSE_WAIT socket's key digest and its holders' digest, by inode.
pub struct Digests {
    holders: FxHashMap<Inode, u64>,
    keys: FxHashMap<Inode, u64>,
}

impl Digests {
    pub fn of(snap: &Snapshot) -> Digests {
        // Sized first, as every map here: tens of thousands of entries
        // would otherwise be hashed again at every doubling.
        let mut keys =
            FxHashMap::with_capacity_and_hasher(close_wait(snap).count(), Default::default());
        keys.extend(
            close_wait(snap)
                .filter(|s| s.inode != 0)
                .map(|s| (s.inode, digest(&s.key()))),
        );
        Digests {
            holders: holder_digests(snap, keys.len()),
            keys,
        }
    }

    /// A socket's key digest: made for its inode, or now (inode 0: a
    /// connection not accepted yet, told apart by its addresses only).
    fn key(&self, s: &TcpSocket) -> u64 {
        match self.keys.get(&s.inode) {
            Some(&d) if s.inode != 0 => d,
            _ => digest(&s.key()),
        }
    }

    fn holders(&self, s: &TcpSocket) -> u64 {
        self.holders.get(&s.inode).copied().unwrap_or(0)
    }
}

fn close_wait(snap: &Snapshot) -> impl Iterator<Item = &TcpSocket> {
    snap.sockets
        .iter()
        .filter(|s| s.state == TcpState::CloseWait)
}

impl LastLook {
    /// `split_with` the snapshot's own digests (tests).
    #[cfg(test)]
    pub fn split(&self, snap: &Snapshot) -> Split {
        self.split_with(snap, &Digests::of(snap))
    }

    /// This look's CLOSE_WAIT sockets split by the last look, with `d`,
    /// the digests of this snapshot.
    pub fn split_with(&self, snap: &Snapshot, d: &Digests) -> Split {
        let mut out = Split::default();
        for s in close_wait(snap) {
            match self.seen.get(&d.key(s)) {
                Some(seen) if seen.holders == d.holders(s) => {
                    if sent_between((seen.bytes_acked, seen.send_q), (s.bytes_acked, s.send_q)) {
                        out.still_sending.push(s.key());
                    }
                }
                _ => {
                    out.fresh.insert(s.key());
                }
            }
        }
        out
    }

    /// `remember_with` the snapshot's own digests (tests).
    #[cfg(test)]
    pub fn remember(&mut self, snap: &Snapshot) {
        self.remember_with(snap, &Digests::of(snap));
    }

    /// Keep this look's CLOSE_WAIT sockets (as its second look left them)
    /// for the next, with `d`, the digests of this snapshot as it is now
    /// (made again after a second look, which drops closed sockets' fds).
    pub fn remember_with(&mut self, snap: &Snapshot, d: &Digests) {
        self.seen.clear();
        self.seen.reserve(close_wait(snap).count());
        self.seen.extend(close_wait(snap).map(|s| {
            let seen = Seen {
                holders: d.holders(s),
                bytes_acked: s.bytes_acked,
                send_q: s.send_q,
            };
            (d.key(s), seen)
        }));
    }

    pub fn forget(&mut self) {
        self.seen.clear();
    }
}

/// For every CLOSE_WAIT inode held by a process, a digest of its holders;
/// a sum of each holder's digest, so the order processes were read in does
/// not matter. (Inode 0, a connection not accepted yet, is held by no fd.)
fn holder_digests(snap: &Snapshot, n: usize) -> FxHashMap<Inode, u64> {
    let mut cw: FxHashSet<Inode> = FxHashSet::with_capacity_and_hasher(n, Default::default());
    cw.extend(close_wait(snap).map(|s| s.inode));
    let mut out: FxHashMap<Inode, u64> = FxHashMap::with_capacity_and_hasher(n, Default::default());
    for p in &snap.processes {
        for s in p.sockets.iter().filter(|s| cw.contains(&s.inode)) {
            let d = digest(&(p.pid, p.start_time, s.tid, s.fd));
            let e = out.entry(s.inode).or_default();
            *e = e.wrapping_add(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Process, SocketFd, TcpState};
    use crate::states::testdata::{sock, HOST};

    fn holder(pid: i32, start_time: u64, fds: &[(i32, Inode)]) -> Process {
        Process {
            pid,
            start_time,
            sockets: fds
                .iter()
                .map(|&(fd, inode)| SocketFd {
                    fd,
                    inode,
                    cloexec: None,
                    tid: None,
                })
                .collect(),
            ..Process::default()
        }
    }

    /// A look: CLOSE_WAIT inodes 10 (held by pid 100 fd 5) and 11 (held by
    /// pid 100 fd 6 and pid 200 fd 3), and a listener.
    fn look() -> Snapshot {
        let cw = |inode, remote| sock(HOST, TcpState::CloseWait, inode, "127.0.0.1:80", remote);
        Snapshot {
            sockets: vec![
                cw(10, "127.0.0.1:4000"),
                cw(11, "127.0.0.1:4001"),
                sock(HOST, TcpState::Listen, 1, "127.0.0.1:80", "0.0.0.0:0"),
            ],
            processes: vec![
                holder(100, 7, &[(5, 10), (6, 11), (4, 1)]),
                holder(200, 9, &[(3, 11)]),
            ],
            ..Snapshot::default()
        }
    }

    fn key(snap: &Snapshot, inode: Inode) -> SocketKey {
        snap.sockets
            .iter()
            .find(|s| s.inode == inode)
            .unwrap()
            .key()
    }

    #[test]
    fn with_no_last_look_every_close_wait_socket_is_fresh() {
        let snap = look();
        let split = LastLook::default().split(&snap);
        let want: FxHashSet<SocketKey> = [key(&snap, 10), key(&snap, 11)].into_iter().collect();
        assert_eq!(split.fresh, want, "the listener is never looked at again");
        assert!(split.still_sending.is_empty());
    }

    #[test]
    fn the_same_sockets_with_the_same_holders_have_settled() {
        let mut last = LastLook::default();
        last.remember(&look());
        let mut again = look();
        // Read in another order: the same holders.
        again.processes.reverse();
        assert_eq!(last.split(&again), Split::default());
    }

    #[test]
    fn a_new_socket_or_a_new_holder_is_fresh() {
        let mut last = LastLook::default();
        last.remember(&look());
        let mut again = look();
        again.sockets.push(sock(
            HOST,
            TcpState::CloseWait,
            12,
            "127.0.0.1:80",
            "127.0.0.1:4002",
        ));
        // A child forked since holds a copy of 10 (same fd number as its parent).
        again.processes.push(holder(300, 50, &[(5, 10)]));
        let split = last.split(&again);
        let want: FxHashSet<SocketKey> = [key(&again, 10), key(&again, 12)].into_iter().collect();
        assert_eq!(split.fresh, want);
    }

    #[test]
    fn a_holder_gone_or_reborn_makes_it_fresh() {
        let mut last = LastLook::default();
        last.remember(&look());
        // pid 200 closed its copy of 11.
        let mut closed = look();
        closed.processes.truncate(1);
        assert_eq!(closed_keys(&last, &closed), [11]);
        // pid 200 is another process now (a new start time): not the same holder.
        let mut reborn = look();
        reborn.processes[1].start_time = 99;
        assert_eq!(closed_keys(&last, &reborn), [11]);
        // The same socket at other addresses is another socket (inode 0:
        // connections no one accepted yet are told apart by address only).
        let mut moved = look();
        moved.sockets[0].remote = "127.0.0.1:4999".parse().unwrap();
        assert_eq!(closed_keys(&last, &moved), [10]);
    }

    fn closed_keys(last: &LastLook, snap: &Snapshot) -> Vec<Inode> {
        let mut v: Vec<Inode> = last.split(snap).fresh.iter().map(|k| k.inode).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_settled_socket_whose_owner_sent_since_is_still_sending() {
        let mut first = look();
        first.sockets[0].bytes_acked = Some(100);
        first.sockets[1].send_q = 5000;
        let mut last = LastLook::default();
        last.remember(&first);
        let mut again = look();
        again.sockets[0].bytes_acked = Some(150);
        again.sockets[1].send_q = 5000;
        let split = last.split(&again);
        assert!(split.fresh.is_empty());
        assert_eq!(
            split.still_sending,
            vec![key(&again, 10)],
            "11's queue did not move"
        );
        again.sockets[1].send_q = 10;
        assert_eq!(
            last.split(&again).still_sending.len(),
            2,
            "11's queue drained"
        );
    }

    #[test]
    fn only_the_last_look_counts() {
        let mut last = LastLook::default();
        last.remember(&look());
        let mut none = look();
        none.sockets.retain(|s| s.state != TcpState::CloseWait);
        last.remember(&none);
        assert_eq!(
            last.split(&look()).fresh.len(),
            2,
            "gone in between: fresh again"
        );
        last.remember(&look());
        last.forget();
        assert_eq!(last.split(&look()).fresh.len(), 2, "forgotten");
    }
}
