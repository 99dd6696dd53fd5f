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
    let mut still: FxHashMap<SocketKey, Option<u64>> = FxHashMap::default();
    let mut warnings = Vec::new();
    for (t, w) in reads.into_iter().flatten() {
        warnings.extend(w);
        for s in t.sockets.iter().filter(|s| s.state == TcpState::CloseWait) {
            if cw.contains(&s.key()) {
                still.insert(s.key(), s.last_ack_ms);
            }
        }
    }
    for p in &mut snap.processes {
        p.sockets.retain(|s| !closed.contains(&(p.pid, s.fd)));
    }
    for s in snap
        .sockets
        .iter_mut()
        .filter(|s| s.state == TcpState::CloseWait)
    {
        if let Some(Some(age)) = still.get(&s.key()) {
            s.last_ack_ms = Some(*age);
        }
    }
    let mut transient: Vec<SocketKey> = cw.into_iter().filter(|k| !still.contains_key(k)).collect();
    transient.sort_by_key(|k| (k.netns, k.inode, k.local, k.remote));
    // Warnings in pid order, as the first look's.
    warnings.sort_by_key(|w| w.pid);
    snap.warnings.extend(warnings);
    snap.settle = Some(Settle {
        window_ms,
        transient,
    });
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
            if let Some(file) = &n.file {
                return Some(NsMember::file(n.inode, file.into()));
            }
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
                file: None,
            })
        })
        .collect()
}
