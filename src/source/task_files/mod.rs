//! Every process's open files in one pass of the kernel's task_file BPF
//! iterator (the way bpftool lists the pids that hold BPF objects), instead of
//! one readlink per fd under `/proc/PID/fd`. On a busy host the readlinks are
//! most of a scan: each is a path lookup and a fresh proc inode in the kernel,
//! where the iterator reads the fd table directly.
//!
//! Two more programs read no file at all. The kernel keeps each fd's
//! `struct file` address in the fd table itself; summed into one signature
//! per process, the addresses say whether any fd of it points elsewhere
//! than at the last look: `watch` and `serve` read again only the processes
//! whose signature changed (`incremental.rs`). One signs each table where
//! it lies, on the task iterator (`sign_prog.rs`, Linux 6.4+); where the
//! kernel refuses it, the other writes each fd's address from the
//! task_file iterator, to be summed here (a third of a reading pass).
//!
//! It is only a faster way to read the same facts, used when it is sure to
//! give the same answer: a live `/proc` of the initial pid namespace (the
//! iterator reports global pids), root with BPF allowed, and a kernel with
//! BTF. Anything else, and the walk reads `/proc/PID/fd`. So does any
//! process the iterator did not report.

mod prog;
mod sign_prog;

use super::bpf_iter;
use super::kernel_btf::with_kernel_btf;
use super::root::ProcRoot;
use super::SourceError;
use crate::model::{FastMap, Inode, Pid, SocketFd};
use prog::{Reads, Record, RECORD};
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
    /// Every fd the pass saw of the process (its threads' own tables too).
    pub signature: Signature,
}

pub type Tables = FastMap<Pid, Table>;

/// Which file each fd of a process points at, summed: the number of fds
/// and a sum of one 64-bit hash per (tid, fd, file address). A sum, so that
/// it does not depend on the order the kernel reports threads in; any fd
/// that points at another file, or any fd more or fewer, changes it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    pub files: u32,
    pub digest: u64,
}

impl Signature {
    fn add(&mut self, r: &Record) {
        self.files = self.files.saturating_add(1);
        let at = (u64::from(r.tid as u32) << 32) | u64::from(r.fd as u32);
        self.digest = self.digest.wrapping_add(mix(r.file ^ at.rotate_left(17)));
    }

    fn merge(&mut self, other: Signature) {
        self.files = self.files.saturating_add(other.files);
        self.digest = self.digest.wrapping_add(other.digest);
    }
}

/// splitmix64's finalizer: every input bit moves about half the output's.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub type Signatures = FastMap<Pid, Signature>;

/// What the signing program read of a process besides its fds
/// (`sign_prog`), where its leader's table was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// A digest of its tables' close-on-exec bits, of its stat fields (all
    /// but the state) and of its details' uid, fd limit and cgroups.
    pub digest: u64,
    /// Its network namespace, where it has one.
    pub netns: Option<Inode>,
    /// Its state, as /proc/PID/stat shows it.
    pub state: char,
}

/// One pass's signatures, and each process's facts where the program that
/// signs in place read them (none from the pointers program).
#[derive(Debug, Default)]
pub struct Signed {
    pub sigs: Signatures,
    pub facts: FastMap<Pid, Facts>,
}

/// The state letter /proc shows for a task's state bits (`__state |
/// exit_state`), as the kernel's `task_state_index` picks it.
pub fn state_letter(bits: u32) -> char {
    const REPORT: u32 = 0x7f;
    const IDLE: u32 = 0x402;
    const RTLOCK_WAIT: u32 = 0x1000;
    const UNINTERRUPTIBLE: u32 = 0x2;
    let mut s = bits & REPORT;
    if bits & IDLE == IDLE {
        s = REPORT + 1;
    }
    if bits & RTLOCK_WAIT != 0 {
        s = UNINTERRUPTIBLE;
    }
    let index = (u32::BITS - s.leading_zeros()) as usize;
    b"RSDTtXZPI".get(index).map_or('?', |&c| char::from(c))
}

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
    let tables = pass(root, Reads::Files, collect)?;
    // Our own table must be there under our pid, or pids do not match /proc's.
    match tables.get(&(std::process::id() as Pid)) {
        Some(t) if t.fd_count > 0 => Ok(tables),
        _ => Err("its pids do not match /proc's".into()),
    }
}

/// Every process's signature from one pass of the pointers program, where
/// the iterator runs as for `read` (live, root, BTF, a busy host or `--fds
/// bpf`); None where it does not: the caller reads tables another way.
pub fn signatures(method: FdMethod, root: &ProcRoot, live: bool) -> Option<Signed> {
    if !live || !wanted(method, root, live) {
        return None;
    }
    let signed = match signing() {
        Ok(link) => pass_with(root, || Ok(link), sign_tables),
        Err(why) => {
            super::timing_note(&format!("fd tables not signed in place: {why}"));
            pass(root, Reads::Pointers, sign).map(|sigs| Signed {
                sigs,
                facts: FastMap::default(),
            })
        }
    };
    match signed {
        Ok(s) if s.sigs.contains_key(&(std::process::id() as Pid)) => Some(s),
        Ok(_) => {
            super::timing_note("fd pointers not used: their pids do not match /proc's");
            None
        }
        Err(why) => {
            super::timing_note(&format!("fd pointers not used: {why}"));
            None
        }
    }
}

/// One pass of the program that `reads`, its output handed to `take`, once
/// the proc root is known to be this process's /proc in the initial pid
/// namespace (the iterator reports global pids).
fn pass<T>(
    root: &ProcRoot,
    reads: Reads,
    take: fn(std::fs::File) -> std::io::Result<T>,
) -> Result<T, String> {
    pass_with(root, || attached(reads), take)
}

/// `pass` through the link `make_link` gives (made only once the proc root is
/// known to be the right one).
fn pass_with<L: std::borrow::Borrow<OwnedFd>, T>(
    root: &ProcRoot,
    make_link: impl FnOnce() -> Result<L, String>,
    take: fn(std::fs::File) -> std::io::Result<T>,
) -> Result<T, String> {
    let me = std::process::id();
    let link = |rel: &str| root.read_link(None, std::path::Path::new(rel)).ok();
    if link("self") != Some(me.to_string().into_bytes()) {
        return Err("the proc root is not this process's /proc".into());
    }
    if link("self/ns/pid").as_deref() != Some(INIT_PID_NS) {
        return Err("not in the initial pid namespace (the iterator reports global pids)".into());
    }
    let iter = bpf_iter::iterate(make_link()?.borrow())
        .map_err(|e| format!("opening the iterator: {e}"))?;
    take(std::fs::File::from(iter)).map_err(|e| format!("reading it: {e}"))
}

/// The programs attached to the iterator, made once per process and kept:
/// making one reads and parses the kernel's BTF (megabytes) and runs the
/// verifier, which `watch` and `serve` would otherwise pay at every look.
/// A failure is not kept: the next look tries again.
/// Each is the program and its link to every task; the reading program is
/// also linked to single processes (`read_processes`).
static FILES: OnceLock<Attached> = OnceLock::new();
static POINTERS: OnceLock<Attached> = OnceLock::new();
/// The pointers program's refusal, kept: it would be tried at every look
/// (parsing the kernel's BTF each time), and what refuses it (privileges,
/// the kernel) does not change between looks.
static POINTERS_REFUSED: OnceLock<String> = OnceLock::new();

struct Attached {
    prog: OwnedFd,
    link: OwnedFd,
}

fn attached(reads: Reads) -> Result<&'static OwnedFd, String> {
    attached_prog(reads).map(|a| &a.link)
}

fn attached_prog(reads: Reads) -> Result<&'static Attached, String> {
    let kept = match reads {
        Reads::Files => &FILES,
        Reads::Pointers => &POINTERS,
    };
    if let Some(a) = kept.get() {
        return Ok(a);
    }
    if let (Reads::Pointers, Some(why)) = (reads, POINTERS_REFUSED.get()) {
        return Err(why.clone());
    }
    let a = attach(reads).inspect_err(|why| {
        if reads == Reads::Pointers {
            let _ = POINTERS_REFUSED.set(why.clone());
        }
    })?;
    // Two threads may race here: one is kept, the other closed.
    Ok(kept.get_or_init(|| a))
}

fn attach(reads: Reads) -> Result<Attached, String> {
    let (insns, func) = with_kernel_btf(|btf| {
        let func = btf
            .func_id("bpf_iter_task_file")
            .ok_or("no task_file iterator in this kernel")?;
        Ok((prog::program(&prog::Offsets::from_btf(btf)?, reads)?, func))
    })?;
    let (prog, link) = bpf_iter::attach(&insns, func, "cwleak_fds")?;
    Ok(Attached { prog, link })
}

/// The fd tables of `pids` only, one pass of the reading program linked to
/// each process alone: a few processes' files instead of the host's. None
/// when that cannot be done (the caller then makes one pass over every
/// process); a process that has exited is simply absent. A kernel that
/// ignores the filter (before 6.1) reports every process in the first
/// pass: those tables are then the answer, for every pid at once.
pub fn read_processes(root: &ProcRoot, pids: &[Pid]) -> Option<Tables> {
    let prog = &attached_prog(Reads::Files).ok()?.prog;
    let mut tables = Tables::default();
    for &pid in pids {
        let one = pass_with(
            root,
            || {
                bpf_iter::link_process(prog, u32::try_from(pid).unwrap_or(0))
                    .map_err(|e| format!("attaching the iterator to {pid}: {e}"))
            },
            collect,
        );
        let mut one = match one {
            Ok(t) => t,
            Err(why) => {
                super::timing_note(&format!("one process's fds not iterated: {why}"));
                return None;
            }
        };
        if one.keys().any(|&p| p != pid) {
            return Some(one);
        }
        if let Some(t) = one.remove(&pid) {
            tables.insert(pid, t);
        }
    }
    Some(tables)
}

/// The program that signs each fd table where it lies, attached to the
/// task iterator, made once. A refusal is kept too: it comes from the
/// kernel (no open-coded iterators before 6.4), which does not change
/// between looks; the pointers program stands in for it.
static SIGNING: OnceLock<Result<OwnedFd, String>> = OnceLock::new();

fn signing() -> Result<&'static OwnedFd, String> {
    SIGNING
        .get_or_init(|| {
            let (insns, func) = with_kernel_btf(|btf| {
                let func = btf
                    .func_id("bpf_iter_task")
                    .ok_or("no task iterator in this kernel")?;
                Ok((
                    sign_prog::program(&sign_prog::Offsets::from_btf(btf)?)?,
                    func,
                ))
            })?;
            bpf_iter::attach(&insns, func, "cwleak_sign").map(|(_, link)| link)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Each process's signature from the signing program's records, one per
/// fd table, and its facts where its leader's table was among them.
fn sign_tables(from: impl Read) -> std::io::Result<Signed> {
    let mut sigs = Signatures::default();
    // Per process: its tables' facts summed, and its leader's fields.
    let mut read: FastMap<Pid, (u64, Option<(u32, u32)>)> = FastMap::default();
    bpf_iter::records(from, sign_prog::RECORD, |r| {
        if let Ok(r) = <&[u8; sign_prog::RECORD]>::try_from(r) {
            let r = sign_prog::Record::parse(r);
            sigs.entry(r.tgid).or_default().merge(Signature {
                files: r.files,
                digest: r.digest,
            });
            let f = read.entry(r.tgid).or_default();
            f.0 = f.0.wrapping_add(r.facts);
            if r.leader.is_some() {
                f.1 = r.leader;
            }
        }
    })?;
    let facts = read
        .into_iter()
        .filter_map(|(pid, (digest, leader))| {
            let (netns, state) = leader?;
            Some((
                pid,
                Facts {
                    digest,
                    netns: (netns != 0).then_some(Inode::from(netns)),
                    state: state_letter(state),
                },
            ))
        })
        .collect();
    Ok(Signed { sigs, facts })
}

/// Each process's signature, from records as they come.
fn sign(from: impl Read) -> std::io::Result<Signatures> {
    let mut sigs = Signatures::default();
    // Records come task by task: one map lookup per run, not per record.
    let mut run: Option<(Pid, Signature)> = None;
    bpf_iter::records(from, RECORD, |r| {
        let Ok(r) = <&[u8; RECORD]>::try_from(r) else {
            return;
        };
        let r = Record::parse(r);
        match &mut run {
            Some((tgid, s)) if *tgid == r.tgid => s.add(&r),
            _ => {
                if let Some((tgid, s)) = run.take() {
                    sigs.entry(tgid).or_default().merge(s);
                }
                let mut s = Signature::default();
                s.add(&r);
                run = Some((r.tgid, s));
            }
        }
    })?;
    if let Some((tgid, s)) = run {
        sigs.entry(tgid).or_default().merge(s);
    }
    Ok(sigs)
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
            let all = runs.iter().fold(Signature::default(), |mut s, t| {
                s.merge(t.signature);
                s
            });
            match self.tables.get_mut(&tgid) {
                Some(leader) => {
                    leader.signature.merge(all);
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
                    if let Some(mut first) = runs.into_iter().next() {
                        first.signature = all;
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
    t.signature.add(&r);
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
            file: 0xffff_8880_0000_0000 + ((tgid as u64) << 16) + ((fd as u64) << 8),
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

    /// Records as bytes, as the iterator writes them.
    fn bytes_of(records: &[Record]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for r in records {
            bytes.extend(r.tgid.to_ne_bytes());
            bytes.extend(r.tid.to_ne_bytes());
            bytes.extend(r.fd.to_ne_bytes());
            bytes.extend(r.magic.to_ne_bytes());
            bytes.extend(r.inode.to_ne_bytes());
            bytes.extend(r.file.to_ne_bytes());
        }
        bytes
    }

    /// The pointers pass and the reading pass give a process the same
    /// signature for the same fds, in whatever order its threads come:
    /// a look read by one is compared with a look read by the other.
    #[test]
    fn both_passes_sign_a_process_alike() {
        let records = [
            rec(50, 12, 4, true),
            rec(10, 10, 0, false),
            rec(10, 10, 3, true),
            rec(50, 50, 3, true),
            rec(20, 20, 1, true),
            rec(10, 30, 5, true),
        ];
        let tables = collect(&bytes_of(&records)[..]).unwrap();
        let sigs = sign(&bytes_of(&records)[..]).unwrap();
        assert_eq!(sigs.len(), 3);
        for (pid, t) in &tables {
            assert_eq!(sigs[pid], t.signature, "pid {pid}");
        }
        assert_eq!(sigs[&10].files, 3);
        // Another thread order: the same signatures.
        let mut shuffled = records;
        shuffled.swap(0, 3);
        assert_eq!(sign(&bytes_of(&shuffled)[..]).unwrap(), sigs);
    }

    /// Any fd pointing at another file changes the signature, at the same
    /// count: one fd traded, or two fds' files swapped.
    #[test]
    fn a_traded_or_swapped_fd_changes_the_signature() {
        let sig = |records: &[Record]| sign(&bytes_of(records)[..]).unwrap()[&10];
        let a = rec(10, 10, 3, true);
        let b = rec(10, 10, 4, true);
        let before = sig(&[a, b]);
        assert_eq!(sig(&[a, b]), before);
        let traded = Record {
            file: b.file + 0x100,
            ..b
        };
        assert_ne!(sig(&[a, traded]), before);
        let swapped = [Record { file: b.file, ..a }, Record { file: a.file, ..b }];
        assert_ne!(sig(&swapped), before);
        assert_ne!(sig(&[a]), before);
    }

    /// On the live kernel: a pass linked to one process alone gives its
    /// table as a pass over every process does, and only its; the pointers
    /// pass signs it as the reading pass does. The process is a child of
    /// ours that sits still (this process's own table changes with every
    /// pass: each opens the iterator).
    #[test]
    fn one_process_passes_and_pointers_match_a_whole_pass() {
        if !crate::source::running_as_root() {
            crate::skip::skip(
                "task_files::one_process_passes_and_pointers_match_a_whole_pass",
                "the task_file iterator needs root",
            );
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                listener.try_clone().unwrap(),
            )))
            .spawn()
            .unwrap();
        let pid = child.id() as Pid;
        let root = ProcRoot::new(std::path::Path::new("/proc"));
        // Three passes, again while the child may still be starting (a
        // program opens and closes files before it sleeps).
        let mut last = None;
        for _ in 0..20 {
            let whole = iterate(&root).unwrap();
            let alone = read_processes(&root, &[pid]).unwrap();
            let sigs = signatures(FdMethod::Bpf, &root, true).unwrap();
            // Signed in place where the kernel takes that program (6.4+),
            // by the pointers program otherwise: both are checked here.
            let by_pointers = pass(&root, Reads::Pointers, sign).unwrap();
            let in_place =
                signing().map(|link| pass_with(&root, || Ok(link), sign_tables).unwrap());
            let theirs = whole
                .get(&pid)
                .map(|t| (t.fd_count, t.sockets.clone(), t.signature));
            let theirs_signed = whole.get(&pid).map(|t| &t.signature);
            let agree = alone.len() == 1
                && alone.get(&pid) == whole.get(&pid)
                && sigs.sigs.get(&pid) == theirs_signed
                && by_pointers.get(&pid) == theirs_signed
                && in_place
                    .as_ref()
                    .map_or(true, |s| s.sigs.get(&pid) == theirs_signed);
            last = Some((theirs, alone.len(), agree));
            if agree {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let Some((Some((_, sockets, _)), 1, true)) = last else {
            panic!("the passes never agreed: {last:?}");
        };
        assert_eq!(sockets.len(), 1, "{sockets:?}");
    }

    /// The facts the signing program reads of a child: its namespace and
    /// state as /proc shows them; a close-on-exec bit flipped, a new name or
    /// a lower fd limit changes them and not the fd signature.
    #[test]
    fn facts_follow_close_on_exec_and_stat_but_not_the_fds() {
        let test = "task_files::facts_follow_close_on_exec_and_stat_but_not_the_fds";
        if !crate::source::running_as_root() {
            crate::skip::skip(test, "the task iterator needs root");
            return;
        }
        if let Err(why) = signing() {
            crate::skip::skip(test, &format!("no signing in place here: {why}"));
            return;
        }
        use std::io::{BufRead, Write};
        // Flips FD_CLOEXEC of its fd 5 on "flip", lowers its fd limit on
        // "limit", renames itself otherwise; answers each line once done.
        let script = "import fcntl, os, sys, ctypes, resource\n\
            os.dup2(0, 5)\n\
            print('ready', flush=True)\n\
            for line in sys.stdin:\n\
            \x20   if line.strip() == 'flip':\n\
            \x20       fcntl.fcntl(5, fcntl.F_SETFD, fcntl.fcntl(5, fcntl.F_GETFD) ^ fcntl.FD_CLOEXEC)\n\
            \x20   elif line.strip() == 'limit':\n\
            \x20       soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n\
            \x20       resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))\n\
            \x20   else:\n\
            \x20       ctypes.CDLL(None).prctl(15, b'cwleak-facts', 0, 0, 0)\n\
            \x20   print('done', flush=True)\n";
        let mut child = match std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                crate::skip::skip(test, &format!("no python3: {e}"));
                return;
            }
        };
        let pid = child.id() as Pid;
        let mut to = child.stdin.take().unwrap();
        let mut from = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut answer = |line: &mut String| {
            line.clear();
            from.read_line(line).unwrap();
            line.trim().to_string()
        };
        let root = ProcRoot::new(std::path::Path::new("/proc"));
        let signed = || {
            let s = signatures(FdMethod::Bpf, &root, true).unwrap();
            (s.sigs[&pid], s.facts[&pid])
        };
        let stat_state = || {
            let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap();
            crate::parse::proc_files::stat(&stat).unwrap().state
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_eq!(answer(&mut line), "ready");
            // Once it blocks reading its stdin, both say it sleeps (it may
            // still be running just after its answer).
            let mut seen = Vec::new();
            for _ in 0..100 {
                let before = stat_state();
                let (_, f) = signed();
                let after = stat_state();
                seen.push((before, f.state, after));
                if (before, f.state, after) == ('S', 'S', 'S') {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert_eq!(seen.last(), Some(&('S', 'S', 'S')), "{seen:?}");
            let (sig, facts) = signed();
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
            let ns = crate::parse::link::bracket_inode(ns.as_os_str().as_encoded_bytes(), b"net");
            assert_eq!(facts.netns, ns);
            // Nothing changed: the same facts.
            let (s, f) = signed();
            assert_eq!((s, f.digest), (sig, facts.digest));
            let mut last = facts.digest;
            for (command, what) in [
                ("flip", "FD_CLOEXEC set"),
                ("flip", "FD_CLOEXEC cleared"),
                ("name", "a new name"),
                ("limit", "a lower fd limit"),
            ] {
                writeln!(to, "{command}").unwrap();
                assert_eq!(answer(&mut line), "done");
                let (s, f) = signed();
                assert_eq!(s, sig, "{what}: the fds did not move");
                assert_ne!(f.digest, last, "{what}: the facts changed");
                last = f.digest;
            }
        }));
        drop(to);
        let _ = child.kill();
        let _ = child.wait();
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }

    #[test]
    fn the_state_letter_is_the_kernels() {
        for (bits, letter) in [
            (0, 'R'),
            (0x1, 'S'),
            (0x2, 'D'),
            (0x4, 'T'),
            (0x8, 't'),
            (0x10, 'X'),
            (0x20, 'Z'),
            // A zombie's __state is TASK_DEAD (0x80) beside EXIT_ZOMBIE.
            (0x80 | 0x20, 'Z'),
            (0x40, 'P'),
            // TASK_IDLE: uninterruptible without counting towards the load.
            (0x402, 'I'),
            // Waiting on an rtlock (PREEMPT_RT): shown as D.
            (0x1000, 'D'),
        ] {
            assert_eq!(state_letter(bits), letter, "{bits:#x}");
        }
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
        let mut bytes = bytes_of(&[rec(1, 1, 0, true), rec(1, 1, 1, false)]);
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
