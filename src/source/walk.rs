//! Phase one of a scan: every process's stat and socket fds. Runs for every
//! process, so it reads as little as it can: stat, the fd directory, and
//! ns/net only for processes that hold sockets.

use super::root::{readlink_at, ProcRoot};
use super::SourceError;
use crate::model::{Inode, Pid, Process, SocketFd, Warning};
use crate::parse::{link, proc_files};
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// A process as walked, with the directory its fd table was read from
/// (`PID`, or `PID/task/TID` when the group leader has exited).
pub struct Walked {
    pub process: Process,
    pub base: PathBuf,
}

/// Per-thread scratch space reused across processes.
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    /// kcmp was refused once: not asked again, warned once.
    kcmp_refused: bool,
}

/// Where a process's fds come from: its fd directory, or the table the
/// task_file iterator already read.
pub enum Fds {
    Read,
    Known(super::task_files::Table),
}

/// Walk one process. Returns None when it vanished or could not be read at all;
/// the reason is pushed to `warnings`.
pub fn walk_process(
    root: &ProcRoot,
    pid: Pid,
    fds: Fds,
    netns: Option<Inode>,
    live: bool,
    scratch: &mut Scratch,
    warnings: &mut Vec<Warning>,
) -> Option<Walked> {
    let base = PathBuf::from(pid.to_string());
    let stat = match read_stat(root, pid, &base, &mut scratch.buf) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(e.to_warning());
            return None;
        }
    };
    let mut process = from_stat(pid, stat);
    // A zombie leader has dropped its fd table; a live thread still shares it.
    let base = if process.state == 'Z' && process.threads > 1 {
        match live_task(root, pid, &mut scratch.buf) {
            Some(tid) => {
                process.fd_table_tid = Some(tid);
                base.join("task").join(tid.to_string())
            }
            None => base,
        }
    } else {
        base
    };
    match fds {
        Fds::Known(t) => {
            process.fd_count = t.fd_count;
            process.sockets = t.sockets;
        }
        Fds::Read if process.state != 'Z' || process.fd_table_tid.is_some() => {
            match walk_fds(root, pid, &base.join("fd"), &mut process) {
                // Threads' own tables only where the process's could be read:
                // kcmp asks for the same access.
                Ok(()) if live && process.threads > 1 && process.fd_table_tid.is_none() => {
                    walk_thread_tables(root, &mut process, scratch, warnings);
                }
                Ok(()) => {}
                Err(e) if e.is_vanished() => {}
                Err(e) => warnings.push(e.to_warning()),
            }
        }
        Fds::Read => {}
    }
    // Only holders' namespaces are read. `netns` is already known, unless
    // this is a zombie leader's: that one is read through its thread.
    if !process.sockets.is_empty() {
        match netns.filter(|_| process.fd_table_tid.is_none()) {
            Some(known) => process.netns = Some(known),
            None => match root.read_link(Some(pid), &base.join("ns/net")) {
                Ok(t) => process.netns = link::bracket_inode(&t, b"net"),
                Err(e) if e.is_vanished() => {}
                Err(e) => warnings.push(e.to_warning()),
            },
        }
    }
    Some(Walked { process, base })
}

/// A process as its stat line describes it, before its fds are read.
pub(super) fn from_stat(pid: Pid, stat: proc_files::StatLine) -> Process {
    Process {
        pid,
        ppid: stat.ppid,
        comm: stat.comm,
        start_time: stat.start_time,
        state: stat.state,
        threads: stat.threads,
        layout: stat.layout,
        fork_signs: stat.fork_signs,
        ..Process::default()
    }
}

pub(super) fn read_stat(
    root: &ProcRoot,
    pid: Pid,
    base: &Path,
    buf: &mut Vec<u8>,
) -> Result<proc_files::StatLine, SourceError> {
    let rel = base.join("stat");
    root.read_into(Some(pid), &rel, buf)?;
    proc_files::stat(buf).map_err(|m| SourceError::malformed(Some(pid), root.join(&rel), m))
}

/// The first thread of `pid` that is not a zombie.
fn live_task(root: &ProcRoot, pid: Pid, buf: &mut Vec<u8>) -> Option<Pid> {
    let dir = std::fs::read_dir(root.join(format!("{pid}/task"))).ok()?;
    let mut tids: Vec<Pid> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|t| *t != pid)
        .collect();
    tids.sort_unstable();
    tids.into_iter().find(|tid| {
        let rel = PathBuf::from(format!("{pid}/task/{tid}/stat"));
        root.read_into(Some(pid), &rel, buf).is_ok()
            && proc_files::stat(buf).is_ok_and(|s| s.state != 'Z')
    })
}

/// The sockets of threads with an fd table of their own (found by kcmp
/// against the leader), added to the process's with their tid.
fn walk_thread_tables(
    root: &ProcRoot,
    process: &mut Process,
    scratch: &mut Scratch,
    warnings: &mut Vec<Warning>,
) {
    if scratch.kcmp_refused {
        return;
    }
    let pid = process.pid;
    let Ok(dir) = std::fs::read_dir(root.join(format!("{pid}/task"))) else {
        return;
    };
    let tids: Vec<Pid> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let private = match super::fdtable::private_threads(pid, &tids) {
        Ok(p) => p,
        // No kcmp in this kernel: no process's threads can be told apart.
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            scratch.kcmp_refused = true;
            warnings.push(Warning {
                pid: None,
                path: None,
                kind: crate::model::WarningKind::Incomplete,
                message: THREADS_UNREAD.into(),
            });
            return;
        }
        // Not allowed for this process (ptrace access mode): its fds are
        // most likely unreadable too.
        Err(e) => {
            warnings.push(Warning {
                pid: Some(pid),
                path: Some(root.join(format!("{pid}/task")).display().to_string()),
                kind: crate::model::WarningKind::PermissionDenied,
                message: format!(
                    "kcmp(KCMP_FILES) refused ({e}): fd tables of its threads that called unshare(CLONE_FILES) are not read"
                ),
            });
            return;
        }
    };
    for tid in private {
        let mut thread = Process {
            pid,
            ..Process::default()
        };
        let rel = PathBuf::from(format!("{pid}/task/{tid}/fd"));
        match walk_fds(root, pid, &rel, &mut thread) {
            Ok(()) => {}
            Err(e) if e.is_vanished() => {}
            Err(e) => warnings.push(e.to_warning()),
        }
        super::fdtable::add_thread_table(&mut process.sockets, tid, thread.sockets);
    }
}

/// Warned once per scan when kcmp is refused.
pub const THREADS_UNREAD: &str = "kcmp(KCMP_FILES) not in this kernel: fd tables of threads that called unshare(CLONE_FILES) are not read";

/// Read every fd link; keep the sockets, count the rest.
fn walk_fds(
    root: &ProcRoot,
    pid: Pid,
    rel: &Path,
    process: &mut Process,
) -> Result<(), SourceError> {
    let path = root.join(rel);
    let mut dir = Dir::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SourceError::io(Some(pid), &path, e.into()))?;
    let raw = dir.as_raw_fd();
    // SAFETY: `dir` owns `raw` and outlives every use of `dfd` below.
    let dfd = unsafe { BorrowedFd::borrow_raw(raw) };
    let mut buf = [0u8; 256];
    let mut unreadable = None;
    for entry in dir.iter() {
        let entry = entry.map_err(|e| SourceError::io(Some(pid), &path, e.into()))?;
        let name = entry.file_name();
        let Some(fd) = link::parse_u64(name.to_bytes()).and_then(|n| i32::try_from(n).ok()) else {
            continue;
        };
        process.fd_count += 1;
        let target = match readlink_at(dfd, name, &mut buf) {
            Ok(t) => t,
            // An fd closed between readdir and readlink is simply gone.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            // Listed but not readable (a protected process): the report must
            // say its fds were not seen, once per process.
            Err(e) => {
                unreadable.get_or_insert_with(|| {
                    SourceError::io(Some(pid), path.join(fd.to_string()), e)
                });
                continue;
            }
        };
        if let Some(inode) = link::bracket_inode(target, b"socket") {
            process.sockets.push(SocketFd {
                fd,
                inode,
                cloexec: None,
                tid: None,
            });
        }
    }
    unreadable.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_fd_listed_but_unreadable_is_a_warning_not_a_silent_gap() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("100");
        std::fs::create_dir_all(proc.join("fd")).unwrap();
        std::fs::write(
            proc.join("stat"),
            "100 (server) S 1 100 100 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 14 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("socket:[4242]", proc.join("fd/3")).unwrap();
        // Not a link: readlink fails (as it does for a protected process).
        std::fs::write(proc.join("fd/4"), "").unwrap();
        let root = ProcRoot::new(dir.path());
        let mut warnings = Vec::new();
        let w = walk_process(
            &root,
            100,
            Fds::Read,
            None,
            false,
            &mut Scratch::default(),
            &mut warnings,
        )
        .unwrap();
        assert_eq!(w.process.fd_count, 2);
        assert_eq!(w.process.sockets.len(), 1);
        assert_eq!(w.process.sockets[0].inode, 4242);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].pid, Some(100));
        assert!(warnings[0].message.contains("fd/4"), "{warnings:?}");
    }
}
