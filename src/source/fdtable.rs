//! Processes (not threads) that share one fd table through clone(CLONE_FILES)
//! are one holder. Only kcmp(KCMP_FILES) can prove it, so it runs on live
//! scans only, and only between processes whose socket fds of interest look
//! identical. kcmp also orders tables, so each group is sorted with it:
//! O(n log n) calls even for thousands of identical-looking workers.

use crate::model::{Inode, InodeSet, Pid, Process};
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
