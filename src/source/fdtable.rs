//! Processes (not threads) that share one fd table through clone(CLONE_FILES)
//! are one holder. Only kcmp(KCMP_FILES) can prove it, so it runs on live
//! scans only, and only between processes whose socket fds of interest look
//! identical. kcmp also orders tables, so each group is sorted with it:
//! O(n log n) calls even for thousands of identical-looking workers.
//!
//! A thread that called unshare(CLONE_FILES) has a table of its own, which
//! /proc/PID/fd (the leader's) does not show. kcmp against the leader finds
//! such threads too; their sockets join the process's with their tid.

use crate::model::{Inode, InodeSet, Pid, Process, SocketFd};
use std::cmp::Ordering;
use std::collections::HashMap;

const KCMP_FILES: libc::c_long = 2;

/// Set `shares_fd_table_with` on every process whose table is the same as a
/// lower pid's. Returns false when the kernel refused kcmp (no CONFIG_KCMP,
/// no permission): tables are then assumed distinct.
pub fn link_shared_tables(processes: &mut [Process], interest: &InodeSet) -> bool {
    let mut by_sig: HashMap<Vec<(i32, Inode)>, Vec<usize>> = HashMap::new();
    for (i, p) in processes.iter().enumerate() {
        if !p.sockets.iter().any(|s| interest.contains(&s.inode)) {
            continue;
        }
        let mut sig: Vec<(i32, Inode)> = p.sockets.iter().map(|s| (s.fd, s.inode)).collect();
        sig.sort_unstable();
        by_sig.entry(sig).or_default().push(i);
    }
    let mut ok = true;
    for mut group in by_sig.into_values().filter(|g| g.len() > 1) {
        let mut refused = false;
        group.sort_by(|&a, &b| {
            compare(processes[a].pid, processes[b].pid).unwrap_or_else(|| {
                refused = true;
                Ordering::Equal
            })
        });
        if refused {
            ok = false;
            continue;
        }
        let runs: Vec<&[usize]> = group
            .chunk_by(|&a, &b| compare(processes[a].pid, processes[b].pid) == Some(Ordering::Equal))
            .collect();
        let mut links = Vec::new();
        for run in runs {
            let Some(owner) = run.iter().map(|&i| processes[i].pid).min() else {
                continue;
            };
            links.extend(
                run.iter()
                    .filter(|&&i| processes[i].pid != owner)
                    .map(|&i| (i, owner)),
            );
        }
        for (i, owner) in links {
            processes[i].shares_fd_table_with = Some(owner);
        }
    }
    ok
}

/// Threads of `pid` (from `tids`) whose fd table is not the leader's, by
/// kcmp. The error when kcmp was refused: they cannot be told apart.
pub fn private_threads(pid: Pid, tids: &[Pid]) -> Result<Vec<Pid>, std::io::Error> {
    let mut out = Vec::new();
    for &tid in tids.iter().filter(|&&t| t != pid) {
        match compare(pid, tid) {
            Some(Ordering::Equal) => {}
            Some(_) => out.push(tid),
            None => {
                let e = std::io::Error::last_os_error();
                // A thread that exited in between has no table to read.
                if e.raw_os_error() != Some(libc::ESRCH) {
                    return Err(e);
                }
            }
        }
    }
    Ok(out)
}

/// Add the socket fds of thread `tid`'s own table to its process's. The
/// copies unshare(CLONE_FILES) made (the same socket at the same fd in both
/// tables) are listed once, as the process's: otherwise one process would
/// seem to hold the socket twice, a dup it never made.
pub fn add_thread_table(process: &mut Vec<SocketFd>, tid: Pid, thread: Vec<SocketFd>) {
    let leader: std::collections::HashSet<(i32, Inode)> = process
        .iter()
        .filter(|s| s.tid.is_none())
        .map(|s| (s.fd, s.inode))
        .collect();
    process.extend(
        thread
            .into_iter()
            .filter(|s| !leader.contains(&(s.fd, s.inode)))
            .map(|s| SocketFd {
                tid: Some(tid),
                ..s
            }),
    );
}

/// kcmp's answer: 0 same table, 1 and 2 an (obfuscated but stable) order.
fn compare(a: Pid, b: Pid) -> Option<Ordering> {
    if a == b {
        return Some(Ordering::Equal);
    }
    // SAFETY: kcmp takes plain integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a,
            b,
            KCMP_FILES,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    match r {
        0 => Some(Ordering::Equal),
        1 => Some(Ordering::Less),
        2 => Some(Ordering::Greater),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(fd: i32, inode: Inode) -> SocketFd {
        SocketFd {
            fd,
            inode,
            cloexec: None,
            tid: None,
        }
    }

    #[test]
    fn a_thread_s_table_adds_its_own_sockets_not_unshare_s_copies() {
        let mut process = vec![fd(3, 100), fd(4, 101)];
        // fd 3 is the copy unshare made; fd 4 is another socket there
        // (the leader's fd 4 was closed and reused); fd 5 is the thread's.
        add_thread_table(&mut process, 7, vec![fd(3, 100), fd(4, 102), fd(5, 103)]);
        let held: Vec<(i32, Inode, Option<Pid>)> =
            process.iter().map(|s| (s.fd, s.inode, s.tid)).collect();
        assert_eq!(
            held,
            vec![
                (3, 100, None),
                (4, 101, None),
                (4, 102, Some(7)),
                (5, 103, Some(7))
            ]
        );
    }

    #[test]
    fn kcmp_tells_a_thread_with_its_own_table_from_one_sharing_it() {
        use std::sync::mpsc;
        let me = std::process::id() as Pid;
        let tid_of = || {
            // SAFETY: gettid takes no arguments.
            unsafe { libc::syscall(libc::SYS_gettid) as Pid }
        };
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let private = std::thread::spawn(move || {
            // SAFETY: unshare(CLONE_FILES) only copies this thread's fd table.
            let r = unsafe { libc::unshare(libc::CLONE_FILES) };
            tx.send((r, tid_of())).unwrap();
            let _ = stop_rx.recv();
        });
        let (r, tid) = rx.recv().unwrap();
        assert_eq!(r, 0, "unshare(CLONE_FILES)");
        match private_threads(me, &[me, tid_of(), tid]) {
            Ok(found) => assert_eq!(found, vec![tid]),
            // No kcmp here (no CONFIG_KCMP, or a seccomp filter): visible,
            // and never in CI.
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "kcmp refused: {e}");
                eprintln!(
                    "SKIPPED kcmp_tells_a_thread_with_its_own_table_from_one_sharing_it: {e}"
                );
            }
        }
        stop_tx.send(()).unwrap();
        private.join().unwrap();
    }
}
