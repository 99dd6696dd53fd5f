//! The settle window's second look: only the sockets that were in CLOSE_WAIT
//! the first time, and only the fds that held them. No second walk.

use super::root::{readlink_at, ProcRoot};
use super::sock_diag::DumpRequest;
use super::tables::{self, NsMember, TableMethod};
use crate::model::{Inode, Pid, Process, Settle, Snapshot, SocketKey, TcpState};
use crate::parse::link;
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use rustc_hash::{FxHashMap, FxHashSet};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

/// Look again at the CLOSE_WAIT sockets of a live snapshot and fold the answer
/// into it: sockets gone from CLOSE_WAIT become transient, fds closed since
/// the first look stop being holders, and close-wait ages are refreshed.
pub fn settle(snap: &mut Snapshot, method: TableMethod, window_ms: u64) {
    let root = ProcRoot::new(&snap.meta.proc_root);
    let cw: FxHashSet<SocketKey> = snap
        .sockets
        .iter()
        .filter(|s| s.state == TcpState::CloseWait)
        .map(|s| s.key())
        .collect();
    let req = DumpRequest::only(&[TcpState::CloseWait], true);
    let members = members_with_close_wait(snap, &cw);
    let live = snap.meta.live;
    // The namespaces' dumps side by side (each walks the kernel's whole
    // socket hash), and the fds re-read meanwhile: they do not depend on them.
    let (reads, closed) = std::thread::scope(|s| {
        let closed = s.spawn(|| closed_fds(snap, &root, &cw));
        let reads = crate::par::spread(&members, 0, |ms| {
            ms.map(|member| {
                let mut warnings = Vec::new();
                let t = tables::read_namespace(&root, live, method, member, &req, &mut warnings);
                (t, warnings)
            })
            .collect::<Vec<_>>()
        });
        (reads, crate::par::join(closed))
    });
    let mut still: FxHashMap<SocketKey, Progress> = FxHashMap::default();
    let mut warnings = Vec::new();
    for (t, w) in reads.into_iter().flatten() {
        warnings.extend(w);
        for s in t.sockets.iter().filter(|s| s.state == TcpState::CloseWait) {
            if cw.contains(&s.key()) {
                still.insert(
                    s.key(),
                    Progress {
                        last_ack_ms: s.last_ack_ms,
                        bytes_acked: s.bytes_acked,
                        send_q: s.send_q,
                    },
                );
            }
        }
    }
    for p in &mut snap.processes {
        p.sockets.retain(|s| !closed.contains(&(p.pid, s.fd)));
    }
    let mut still_sending = Vec::new();
    for s in snap
        .sockets
        .iter_mut()
        .filter(|s| s.state == TcpState::CloseWait)
    {
        let Some(now) = still.get(&s.key()) else {
            continue;
        };
        if sent_since(s, now) {
            still_sending.push(s.key());
        }
        if let Some(age) = now.last_ack_ms {
            s.last_ack_ms = Some(age);
        }
        s.bytes_acked = now.bytes_acked.or(s.bytes_acked);
        s.send_q = now.send_q;
    }
    still_sending.sort_by_key(|k| (k.netns, k.inode, k.local, k.remote));
    let mut transient: Vec<SocketKey> = cw.into_iter().filter(|k| !still.contains_key(k)).collect();
    transient.sort_by_key(|k| (k.netns, k.inode, k.local, k.remote));
    // Warnings in pid order, as the first look's.
    warnings.sort_by_key(|w| w.pid);
    snap.warnings.extend(warnings);
    snap.settle = Some(Settle {
        window_ms,
        transient,
        still_sending,
    });
}

/// A CLOSE_WAIT socket's sending side, as the second look saw it.
struct Progress {
    last_ack_ms: Option<u64>,
    bytes_acked: Option<u64>,
    send_q: u32,
}

/// Whether the owner kept sending between the looks: the peer acknowledged
/// more bytes, or the send queue drained. A frozen sender (a full send queue
/// the peer no longer reads, or nothing sent at all) shows neither.
fn sent_since(first: &crate::model::TcpSocket, now: &Progress) -> bool {
    let acked_more = matches!((first.bytes_acked, now.bytes_acked), (Some(a), Some(b)) if b > a);
    acked_more || now.send_q < first.send_q
}

/// (pid, fd) pairs that held a CLOSE_WAIT socket and no longer point at it.
/// Each process's fd directory is opened once and its fds read relative to
/// it, with the processes spread over the cores: a server holding 40,000
/// leaked sockets means 40,000 links to read again.
/// Only sockets held by more than one fd: a socket with one holder that is
/// still in CLOSE_WAIT is still held, and closing that one fd would have
/// moved it to LAST_ACK.
fn closed_fds(
    snap: &Snapshot,
    root: &ProcRoot,
    cw: &FxHashSet<SocketKey>,
) -> FxHashSet<(Pid, i32)> {
    let shared = super::prune::shared_inodes(snap.processes.iter());
    let cw_inodes: FxHashSet<Inode> = cw
        .iter()
        .map(|k| k.inode)
        .filter(|i| *i != 0 && shared.contains(i))
        .collect();
    let todo: Vec<&Process> = snap
        .processes
        .iter()
        .filter(|p| p.sockets.iter().any(|s| cw_inodes.contains(&s.inode)))
        .collect();
    crate::par::spread(&todo, 0, |procs| {
        let mut closed = Vec::new();
        for p in procs {
            let wanted = p.sockets.iter().filter(|s| cw_inodes.contains(&s.inode));
            let dir = root.join(task_base(p.pid, p.fd_table_tid).join("fd"));
            let Ok(dir) = Dir::open(
                &dir,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) else {
                // The process is gone: every copy it held is closed.
                closed.extend(wanted.map(|s| (p.pid, s.fd)));
                continue;
            };
            // SAFETY: `dir` owns the fd and outlives every use of `dfd`.
            let dfd = unsafe { BorrowedFd::borrow_raw(dir.as_raw_fd()) };
            let mut buf = [0u8; 256];
            for s in wanted {
                let Ok(name) = CString::new(s.fd.to_string()) else {
                    continue;
                };
                let held = readlink_at(dfd, &name, &mut buf)
                    .is_ok_and(|t| link::bracket_inode(t, b"socket") == Some(s.inode));
                if !held {
                    closed.push((p.pid, s.fd));
                }
            }
        }
        closed
    })
    .into_iter()
    .flatten()
    .collect()
}

fn task_base(pid: Pid, tid: Option<Pid>) -> PathBuf {
    match tid {
        Some(tid) => PathBuf::from(format!("{pid}/task/{tid}")),
        None => PathBuf::from(pid.to_string()),
    }
}

fn members_with_close_wait(snap: &Snapshot, cw: &FxHashSet<SocketKey>) -> Vec<NsMember> {
    let namespaces: FxHashSet<Inode> = cw.iter().map(|k| k.netns).collect();
    snap.namespaces
        .iter()
        .filter(|n| namespaces.contains(&n.inode))
        .filter_map(|n| {
            let pid = n.via_pid?;
            let tid = snap
                .processes
                .iter()
                .find(|p| p.pid == pid)
                .and_then(|p| p.fd_table_tid);
            Some(NsMember {
                netns: n.inode,
                pid,
                base: task_base(pid, tid),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{sent_since, Progress};
    use crate::model::{Family, TcpSocket, TcpState};

    fn first(bytes_acked: Option<u64>, send_q: u32) -> TcpSocket {
        TcpSocket {
            inode: 1,
            netns: 1,
            family: Family::Ipv4,
            local: "127.0.0.1:80".parse().unwrap(),
            remote: "127.0.0.1:4000".parse().unwrap(),
            state: TcpState::CloseWait,
            recv_q: 0,
            send_q,
            uid: 0,
            last_ack_ms: None,
            bytes_acked,
        }
    }

    fn now(bytes_acked: Option<u64>, send_q: u32) -> Progress {
        Progress {
            last_ack_ms: None,
            bytes_acked,
            send_q,
        }
    }

    #[test]
    fn more_bytes_acked_is_still_sending() {
        assert!(sent_since(&first(Some(100), 0), &now(Some(101), 0)));
        assert!(!sent_since(&first(Some(100), 0), &now(Some(100), 0)));
    }

    #[test]
    fn a_draining_send_queue_is_still_sending() {
        // /proc/net/tcp has no tcp_info: the queue alone tells.
        assert!(sent_since(&first(None, 5000), &now(None, 4000)));
        assert!(!sent_since(&first(None, 5000), &now(None, 5000)));
    }

    #[test]
    fn a_frozen_sender_is_not() {
        // A full send queue the peer stopped reading: nothing moves.
        assert!(!sent_since(&first(Some(7), 65536), &now(Some(7), 65536)));
        // Counters from one look only decide nothing.
        assert!(!sent_since(&first(None, 0), &now(Some(9), 0)));
    }
}
