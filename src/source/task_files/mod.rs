//! Every process's open files in one pass of the kernel's task_file BPF
//! iterator (the way bpftool lists the pids that hold BPF objects), instead of
//! one readlink per fd under `/proc/PID/fd`. On a busy host the readlinks are
//! most of a scan: each is a path lookup and a fresh proc inode in the kernel,
//! where the iterator reads the fd table directly.
//!
//! It is only a faster way to read the same facts, used when it is sure to
//! give the same answer: a live `/proc` of the initial pid namespace (the
//! iterator reports global pids), root with BPF allowed, and a kernel with
//! BTF. Anything else, and the walk reads `/proc/PID/fd`. So does any
//! process the iterator did not report.

mod prog;

use super::bpf_iter;
use super::kernel_btf::with_kernel_btf;
use super::root::ProcRoot;
use super::SourceError;
#[cfg(test)]
use crate::model::Inode;
use crate::model::{FastMap, Pid, SocketFd};
use prog::{Record, RECORD};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

/// `super_block.s_magic` of sockfs: the files /proc shows as `socket:[N]`.
const SOCKFS_MAGIC: u32 = 0x534f_434b;
/// The inode of the initial pid namespace (PROC_PID_INIT_INO).
const INIT_PID_NS: &[u8] = b"pid:[4026531836]";

/// One process's fd table as the iterator saw it: read from thread `tid`
/// (the leader, unless the leader has exited and a thread holds the table).
#[derive(Debug, Default, PartialEq)]
pub struct Table {
    pub tid: Pid,
    pub fd_count: u32,
    pub sockets: Vec<SocketFd>,
}

pub type Tables = FastMap<Pid, Table>;

/// How fd tables are read (`--fds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FdMethod {
    /// The iterator when it can run and the host is busy enough to repay
    /// setting it up; /proc otherwise.
    #[default]
    Auto,
    Proc,
    /// The iterator on any live host; an error when it cannot run.
    Bpf,
}

/// Below this many open files (all processes), readlink under /proc is
/// done before the iterator is ready: loading it costs a few milliseconds.
const BUSY: u64 = 2_000;

/// Every process's fd table from the iterator, or None when /proc is to be
/// walked instead. An error only when `--fds bpf` asked for the iterator.
pub fn read(method: FdMethod, root: &ProcRoot, live: bool) -> Result<Option<Tables>, SourceError> {
    if !wanted(method, root, live) {
        return Ok(None);
    }
    read_wanted(method, root, live)
}

/// `read` once `wanted` has said yes.
pub fn read_wanted(
    method: FdMethod,
    root: &ProcRoot,
    live: bool,
) -> Result<Option<Tables>, SourceError> {
    let read = if live {
        iterate(root)
    } else {
        Err("the proc root is not a live /proc".into())
    };
    match (read, method) {
        (Ok(tables), _) => Ok(Some(tables)),
        (Err(message), FdMethod::Bpf) => Err(SourceError::FdIterator { message }),
        // Not allowed here (no root, no BTF, an old kernel): /proc gives the
        // same facts, only slower.
        (Err(why), _) => {
            super::timing_note(&format!("task_file iterator not used: {why}"));
            Ok(None)
        }
    }
}

/// Whether `read` would try the iterator.
pub fn wanted(method: FdMethod, root: &ProcRoot, live: bool) -> bool {
    match method {
        FdMethod::Proc => false,
        FdMethod::Bpf => true,
        FdMethod::Auto => live && open_files(root).is_some_and(|n| n >= BUSY),
    }
}

/// Open files on the whole host: the first field of fs/file-nr.
pub fn open_files(root: &ProcRoot) -> Option<u64> {
    let text = root
        .read_string(None, std::path::Path::new("sys/fs/file-nr"))
        .ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn iterate(root: &ProcRoot) -> Result<Tables, String> {
    let me = std::process::id();
    let link = |rel: &str| root.read_link(None, std::path::Path::new(rel)).ok();
    if link("self") != Some(me.to_string().into_bytes()) {
        return Err("the proc root is not this process's /proc".into());
    }
    if link("self/ns/pid").as_deref() != Some(INIT_PID_NS) {
        return Err("not in the initial pid namespace (the iterator reports global pids)".into());
    }
    let iter = bpf_iter::iterate(attached()?).map_err(|e| format!("opening the iterator: {e}"))?;
    let tables = collect(std::fs::File::from(iter)).map_err(|e| format!("reading it: {e}"))?;
    // Our own table must be there under our pid, or pids do not match /proc's.
    match tables.get(&(me as Pid)) {
        Some(t) if t.fd_count > 0 => Ok(tables),
        _ => Err("its pids do not match /proc's".into()),
    }
}

/// The program attached to the iterator, made once per process and kept:
/// making it reads and parses the kernel's BTF (megabytes) and runs the
/// verifier, which `watch` and `serve` would otherwise pay at every look.
/// A failure is not kept: the next look tries again.
static LINK: OnceLock<OwnedFd> = OnceLock::new();

fn attached() -> Result<&'static OwnedFd, String> {
    if let Some(link) = LINK.get() {
        return Ok(link);
    }
    let link = attach()?;
    // Two threads may race here: one link is kept, the other closed.
    Ok(LINK.get_or_init(|| link))
}

fn attach() -> Result<OwnedFd, String> {
    let (insns, func) = with_kernel_btf(|btf| {
        let func = btf
            .func_id("bpf_iter_task_file")
            .ok_or("no task_file iterator in this kernel")?;
        Ok((prog::program(&prog::Offsets::from_btf(btf)?)?, func))
    })?;
    let prog = bpf_iter::load(&insns, func, "cwleak_fds")
        .map_err(|e| format!("loading the program: {e}"))?;
    bpf_iter::link(&prog).map_err(|e| format!("attaching the iterator: {e}"))
}

/// Read records as they come, without holding the whole output.
fn collect(from: impl Read) -> std::io::Result<Tables> {
    let mut grouper = Grouper::default();
    bpf_iter::records(from, RECORD, |r| {
        if let Ok(r) = <&[u8; RECORD]>::try_from(r) {
            grouper.push(Record::parse(r));
        }
    })?;
    Ok(grouper.finish())
}

/// Records arrive task by task, in tid order. Threads that share their
/// leader's table are skipped by the kernel; a thread with a table of its own
/// (unshare(CLONE_FILES)) is not: its sockets are added to the process's with
/// their tid, as the walk adds what kcmp finds. Without the leader (it
/// exited), every thread is reported and none can be told private without
/// kcmp: the lowest tid's table is kept, as the walk does.
#[derive(Default)]
struct Grouper {
    tables: Tables,
    /// Runs of threads other than the leader, by tgid, in tid order.
    threads: FastMap<Pid, Vec<Table>>,
    run: Option<(Pid, Table)>,
}

impl Grouper {
    fn push(&mut self, r: Record) {
        match &mut self.run {
            Some((tgid, t)) if *tgid == r.tgid && t.tid == r.tid => add(t, r),
            _ => {
                self.end_run();
                let mut t = Table {
                    tid: r.tid,
                    ..Table::default()
                };
                add(&mut t, r);
                self.run = Some((r.tgid, t));
            }
        }
    }

    fn end_run(&mut self) {
        let Some((tgid, t)) = self.run.take() else {
            return;
        };
        if t.tid == tgid {
            self.tables.insert(tgid, t);
        } else {
            self.threads.entry(tgid).or_default().push(t);
        }
    }

    fn finish(mut self) -> Tables {
        self.end_run();
        for (tgid, mut runs) in self.threads {
            match self.tables.get_mut(&tgid) {
                Some(leader) => {
                    for t in runs {
                        crate::source::fdtable::add_thread_table(
                            &mut leader.sockets,
                            t.tid,
                            t.sockets,
                        );
                    }
                }
                None => {
                    runs.sort_by_key(|t| t.tid);
                    if let Some(first) = runs.into_iter().next() {
                        self.tables.insert(tgid, first);
                    }
                }
            }
        }
        self.tables
    }
}

fn add(t: &mut Table, r: Record) {
    t.fd_count += 1;
    if r.magic == SOCKFS_MAGIC {
        t.sockets.push(SocketFd {
            fd: r.fd,
            inode: r.inode,
            cloexec: None,
            tid: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tgid: Pid, tid: Pid, fd: i32, socket: bool) -> Record {
        Record {
            tgid,
            tid,
            fd,
            magic: if socket { SOCKFS_MAGIC } else { 0xef53 },
            inode: 1000 + fd as u64,
        }
    }

    #[test]
    fn keeps_the_leaders_table_and_its_threads_private_ones() {
        let mut g = Grouper::default();
        for r in [
            rec(10, 10, 0, false),
            rec(10, 10, 3, true),
            rec(20, 20, 1, true),
            // A thread of 10 with a table of its own: /proc/10/fd does not
            // show it. fd 3 is the copy unshare made of the leader's fd 3.
            rec(10, 30, 3, true),
            rec(10, 30, 5, true),
            rec(10, 30, 6, false),
            // 40's leader exited: its threads 41 and 42 both show the shared table.
            rec(40, 41, 7, true),
            rec(40, 42, 7, true),
        ] {
            g.push(r);
        }
        let t = g.finish();
        assert_eq!(t[&10].tid, 10);
        // The leader's table's count: the thread's is not /proc/10/fd's.
        assert_eq!(t[&10].fd_count, 2);
        let held: Vec<(i32, Inode, Option<Pid>)> = t[&10]
            .sockets
            .iter()
            .map(|s| (s.fd, s.inode, s.tid))
            .collect();
        assert_eq!(held, vec![(3, 1003, None), (5, 1005, Some(30))]);
        assert_eq!(t[&20].sockets[0].fd, 1);
        assert_eq!(t[&40].tid, 41);
        assert_eq!(t[&40].fd_count, 1);
        assert!(t[&40].sockets.iter().all(|s| s.tid.is_none()));
    }

    #[test]
    fn a_thread_run_before_its_leaders_is_still_the_threads() {
        // Tids wrap: a thread may have a lower tid than its leader.
        let mut g = Grouper::default();
        for r in [rec(50, 12, 4, true), rec(50, 50, 3, true)] {
            g.push(r);
        }
        let t = g.finish();
        assert_eq!(t[&50].tid, 50);
        let held: Vec<(i32, Option<Pid>)> = t[&50].sockets.iter().map(|s| (s.fd, s.tid)).collect();
        assert_eq!(held, vec![(3, None), (4, Some(12))]);
    }

    #[test]
    fn a_record_split_across_reads_is_joined() {
        let mut bytes = Vec::new();
        for r in [rec(1, 1, 0, true), rec(1, 1, 1, false)] {
            bytes.extend(r.tgid.to_ne_bytes());
            bytes.extend(r.tid.to_ne_bytes());
            bytes.extend(r.fd.to_ne_bytes());
            bytes.extend(r.magic.to_ne_bytes());
            bytes.extend(r.inode.to_ne_bytes());
        }
        // A reader that hands out 7 bytes at a time.
        struct Trickle(Vec<u8>, usize);
        impl Read for Trickle {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = 7.min(self.0.len() - self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let t = collect(Trickle(bytes.clone(), 0)).unwrap();
        assert_eq!(t[&1].fd_count, 2);
        assert_eq!(t[&1].sockets.len(), 1);
        bytes.pop();
        assert!(collect(Trickle(bytes, 0)).is_err());
    }
}
