//! Processes (not threads) that share one fd table through clone(CLONE_FILES)
//! are one holder. Only kcmp(KCMP_FILES) can prove it, so it runs on live
//! scans only, and only between processes whose socket fds look identical.

use crate::model::{Inode, Pid, Process};
use std::collections::HashMap;

const KCMP_FILES: libc::c_long = 2;

/// Set `shares_fd_table_with` on every process whose table is the same as a
/// lower pid's. Returns how many kcmp calls the kernel refused.
pub fn link_shared_tables(processes: &mut [Process]) -> usize {
    let mut by_sig: HashMap<Vec<(i32, Inode)>, Vec<usize>> = HashMap::new();
    for (i, p) in processes.iter().enumerate().filter(|(_, p)| !p.sockets.is_empty()) {
        let mut sig: Vec<(i32, Inode)> = p.sockets.iter().map(|s| (s.fd, s.inode)).collect();
        sig.sort_unstable();
        by_sig.entry(sig).or_default().push(i);
    }
    let mut refused = 0;
    for group in by_sig.values().filter(|g| g.len() > 1) {
        for (k, &i) in group.iter().enumerate() {
            for &j in &group[..k] {
                match same_files(processes[j].pid, processes[i].pid) {
                    Some(true) => {
                        let owner = processes[j].shares_fd_table_with.unwrap_or(processes[j].pid);
                        processes[i].shares_fd_table_with = Some(owner);
                        break;
                    }
                    Some(false) => {}
                    None => refused += 1,
                }
            }
        }
    }
    refused
}

fn same_files(a: Pid, b: Pid) -> Option<bool> {
    // SAFETY: kcmp takes plain integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_FILES, 0 as libc::c_long, 0 as libc::c_long) };
    (r >= 0).then_some(r == 0)
}
