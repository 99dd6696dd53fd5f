//! The BPF program run by the kernel's task iterator (once per task) that
//! signs each fd table where it lies: it reads the table's array of `struct
//! file` pointers 32 at a time and sums, for every pointer that is not NULL,
//! the same 64-bit hash of (tid, fd, address) as `Signature::add` does for a
//! record of the task_file programs. No file is followed, and the kernel
//! takes no reference on any (the task_file iterator's `fget` per file is
//! most of a pass that reads nothing); one `RECORD`-byte record per table
//! (`Record`).
//!
//! The record also carries what a look would otherwise read from /proc for
//! a process whose fds did not move: its network namespace and state (read
//! each look), and `facts`, a digest of the table's close-on-exec bits and,
//! for the leader's table, of every field of its `stat` that a look keeps
//! (parent, name, start time, threads, the memory layout, its exec count,
//! reaped children's faults, SIGCHLD's disposition) and of what its details
//! say (uid, fd limit, cgroups). Where the facts did not change either, the
//! look reuses the process's stat, O_CLOEXEC flags and details as last read.
//!
//! Threads that share their leader's table are skipped, as the task_file
//! iterator skips them. A table of more than `MAX_CHUNKS` * 32 slots is not
//! read: its record says `files` u32::MAX and a digest that no other look
//! gives (the time), so that it is read again at every look.
//! Pure code: offsets in, instructions out.

use super::prog::{load, TaskOffsets};
use crate::parse::btf::{Btf, Member};
use crate::parse::ParseResult;
use crate::source::bpf_asm::{Asm, Cond, Size, FP, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9};

pub const RECORD: usize = 40;

/// Pointers read per call of bpf_probe_read_kernel.
const CHUNK: i32 = 32;
/// At most this many chunks of a table are read (32M fds).
const MAX_CHUNKS: i32 = 1 << 20;
const HELPER_KTIME_GET_NS: i32 = 5;

/// The struct members and kernel functions the program uses.
pub struct Offsets {
    task: TaskOffsets,
    ctx_meta: Member,
    ctx_task: Member,
    task_files: Member,
    task_leader: Member,
    files_fdt: Member,
    fdt_max_fds: Member,
    fdt_fd: Member,
    fdt_cloexec: Member,
    facts: FactOffsets,
    iter_new: u32,
    iter_next: u32,
    iter_destroy: u32,
}

impl Offsets {
    pub fn from_btf(btf: &Btf) -> ParseResult<Offsets> {
        let [ctx_meta, ctx_task] = btf.members("bpf_iter__task", ["meta", "task"])?;
        let [task_files, task_leader] = btf.members("task_struct", ["files", "group_leader"])?;
        let [files_fdt] = btf.members("files_struct", ["fdt"])?;
        let [fdt_max_fds, fdt_fd, fdt_cloexec] =
            btf.members("fdtable", ["max_fds", "fd", "close_on_exec"])?;
        let kfunc = |name: &str| {
            btf.func_id(name)
                .ok_or_else(|| format!("no {name} in this kernel (open-coded iterators: 6.4+)"))
        };
        Ok(Offsets {
            task: TaskOffsets::from_btf(btf)?,
            ctx_meta,
            ctx_task,
            task_files,
            task_leader,
            files_fdt,
            fdt_max_fds,
            fdt_fd,
            fdt_cloexec,
            facts: FactOffsets::from_btf(btf)?,
            iter_new: kfunc("bpf_iter_num_new")?,
            iter_next: kfunc("bpf_iter_num_next")?,
            iter_destroy: kfunc("bpf_iter_num_destroy")?,
        })
    }
}

/// Where the leader's facts are: task_struct members, and members of the
/// structs it points to, each a path of loads from the task.
pub struct FactOffsets {
    state: Member,
    exit_state: Member,
    /// Loads from the task, each folded into the facts in this order:
    /// a path of pointers then the value (`stat`'s fields).
    folded: Vec<Vec<Member>>,
    /// 8 bytes read by the helper and folded the same way, at an offset
    /// from the task or from a pointer it holds: pointers themselves (a
    /// pointer is not a number a program may mix), SIGCHLD's handler and
    /// the css_set of the task's cgroups.
    read: Vec<(Option<Member>, u32)>,
    /// task -> nsproxy -> net_ns -> ns.inum
    netns: [Member; 3],
}

/// RLIMIT_NOFILE's slot in the limits, and their number.
const RLIMIT_NOFILE: u32 = 7;
const RLIM_NLIMITS: u32 = 16;
/// SIGCHLD's slot in the handler table.
const SIGCHLD_SLOT: u32 = 16;
/// Slots in the handler table (`_NSIG`).
const NSIG: u32 = 64;

impl FactOffsets {
    pub fn from_btf(btf: &Btf) -> ParseResult<FactOffsets> {
        let [state, exit_state, start, parent, comm, signal, sighand, mm, nsproxy] = btf.members(
            "task_struct",
            [
                "__state",
                "exit_state",
                "start_boottime",
                "real_parent",
                "comm",
                "signal",
                "sighand",
                "mm",
                "nsproxy",
            ],
        )?;
        let [tgid, exec_id, real_cred, cgroups] = btf.members(
            "task_struct",
            ["tgid", "self_exec_id", "real_cred", "cgroups"],
        )?;
        let [uid] = btf.members("cred", ["uid"])?;
        let [rlim] = btf.members("signal_struct", ["rlim"])?;
        let [rlim_cur] = btf.members("rlimit", ["rlim_cur"])?;
        let [threads, cmin_flt] = btf.members("signal_struct", ["nr_threads", "cmin_flt"])?;
        let [action] = btf.members("sighand_struct", ["action"])?;
        let [sa] = btf.members("k_sigaction", ["sa"])?;
        let [handler] = btf.members("sigaction", ["sa_handler"])?;
        let [start_code, end_code, start_stack, arg_start] = btf.members(
            "mm_struct",
            ["start_code", "end_code", "start_stack", "arg_start"],
        )?;
        let [net_ns] = btf.members("nsproxy", ["net_ns"])?;
        let [ns] = btf.members("net", ["ns"])?;
        let [inum] = btf.members("ns_common", ["inum"])?;
        if comm.size != 16 {
            return Err(format!("a {}-byte task comm", comm.size));
        }
        let word = |offset: u32| Member { offset, size: 8 };
        if handler.size != 8 || cgroups.size != 8 {
            return Err("a signal handler or a css_set pointer not of 8 bytes".into());
        }
        let handler_at =
            action.offset + SIGCHLD_SLOT * (action.size / NSIG) + sa.offset + handler.offset;
        let netns = [
            nsproxy,
            net_ns,
            Member {
                offset: ns.offset + inum.offset,
                size: inum.size,
            },
        ];
        Ok(FactOffsets {
            state,
            exit_state,
            folded: vec![
                vec![start],
                vec![parent, tgid],
                vec![word(comm.offset)],
                vec![word(comm.offset + 8)],
                vec![signal, threads],
                vec![signal, cmin_flt],
                vec![real_cred, uid],
                vec![
                    signal,
                    Member {
                        offset: rlim.offset
                            + RLIMIT_NOFILE * (rlim.size / RLIM_NLIMITS)
                            + rlim_cur.offset,
                        size: rlim_cur.size,
                    },
                ],
                vec![exec_id],
                vec![mm, start_code],
                vec![mm, end_code],
                vec![mm, start_stack],
                vec![mm, arg_start],
            ],
            read: vec![(Some(sighand), handler_at), (None, cgroups.offset)],
            netns,
        })
    }
}

// The stack: the seq_file, the table's array, (tid << 32), the iterator
// (8 bytes), the close-on-exec bitmap's address, the facts, a bitmap word,
// the record, the chunk read.
const SEQ: i16 = -8;
const ARRAY: i16 = -16;
const AT: i16 = -24;
const ITER: i16 = -32;
const CLOEXEC: i16 = -40;
const FACTS: i16 = -48;
const WORD: i16 = -56;
const OUT: i16 = -56 - RECORD as i16;
const BUF: i16 = OUT - 8 * CHUNK as i16;

pub fn program(o: &Offsets) -> ParseResult<Vec<u64>> {
    let mut a = Asm::default();
    let out = a.label();
    let leader = a.label();
    let table = a.label();
    let write = a.label();
    let next = a.label();
    let done = a.label();
    // r6 ctx, r7 task, r8 files (then fdt).
    a.mov(R6, R1);
    load(&mut a, R7, R6, o.ctx_task)?;
    a.jmp_imm(Cond::Eq, R7, 0, out);
    load(&mut a, R1, R6, o.ctx_meta)?;
    load(&mut a, R1, R1, o.task.meta_seq)?;
    a.stx(Size::DW, FP, SEQ, R1);
    load(&mut a, R8, R7, o.task_files)?;
    a.jmp_imm(Cond::Eq, R8, 0, out);
    a.mov_imm(R1, 0);
    for off in (OUT..OUT + RECORD as i16).step_by(8).chain([FACTS]) {
        a.stx(Size::DW, FP, off, R1);
    }
    load(&mut a, R2, R7, o.task.tgid)?;
    a.stx(Size::W, FP, OUT, R2);
    load(&mut a, R3, R7, o.task.pid)?;
    a.stx(Size::W, FP, OUT + 4, R3);
    // (tid << 32): the high half of every (tid, fd) hashed.
    a.mov(R4, R3);
    a.lsh_imm(R4, 32);
    a.stx(Size::DW, FP, AT, R4);
    a.jmp_reg(Cond::Eq, R2, R3, leader);
    // A thread sharing its leader's table: the leader's record has it.
    load(&mut a, R4, R7, o.task_leader)?;
    load(&mut a, R4, R4, o.task_files)?;
    a.jmp_reg(Cond::Eq, R4, R8, out);
    a.goto(table);
    a.bind(leader);
    leader_facts(&mut a, &o.facts)?;
    a.bind(table);
    load(&mut a, R8, R8, o.files_fdt)?;
    a.jmp_imm(Cond::Eq, R8, 0, out);
    // The arrays' addresses, as numbers (read, not loaded through the
    // typed pointer: they are added to below).
    for (slot, member) in [(ARRAY, o.fdt_fd), (CLOEXEC, o.fdt_cloexec)] {
        a.probe_read(slot, 8, R8, member.offset as i32);
        a.jmp_imm(Cond::Ne, R0, 0, out);
    }
    load(&mut a, R2, R8, o.fdt_max_fds)?;
    // Tables are allocated in powers of two from 64 slots: whole chunks.
    a.rsh_imm(R2, 5);
    // Too big to read: a record that never matches.
    let fits = a.label();
    a.jmp_imm(Cond::Lt, R2, MAX_CHUNKS, fits);
    a.call(HELPER_KTIME_GET_NS);
    a.stx(Size::DW, FP, OUT + 16, R0);
    a.mov_imm(R1, -1);
    a.stx(Size::W, FP, OUT + 8, R1);
    a.goto(write);
    a.bind(fits);
    // r8 files, r9 digest (kept across the calls).
    a.mov_imm(R8, 0);
    a.mov_imm(R9, 0);
    a.mov(R3, R2);
    a.mov(R1, FP);
    a.add_imm(R1, i32::from(ITER));
    a.mov_imm(R2, 0);
    a.call_kfunc(o.iter_new);
    a.bind(next);
    a.mov(R1, FP);
    a.add_imm(R1, i32::from(ITER));
    a.call_kfunc(o.iter_next);
    a.jmp_imm(Cond::Eq, R0, 0, done);
    // r6: the chunk's index.
    a.ldx(Size::W, R6, R0, 0);
    // The chunk's 32 close-on-exec bits: a word that is not 0 goes into the
    // facts with the table's thread and the chunk (a bit moved between
    // fds or chunks changes them).
    let no_bits = a.label();
    a.st_imm(Size::DW, FP, WORD, 0);
    a.ldx(Size::DW, R3, FP, CLOEXEC);
    a.mov(R4, R6);
    a.lsh_imm(R4, 2);
    a.add(R3, R4);
    a.probe_read(WORD, 4, R3, 0);
    a.ldx(Size::DW, R4, FP, WORD);
    a.jmp_imm(Cond::Eq, R4, 0, no_bits);
    a.ldx(Size::DW, R1, FP, AT);
    a.or(R1, R6);
    mix(&mut a);
    a.ldx(Size::DW, R4, FP, WORD);
    a.xor(R1, R4);
    mix(&mut a);
    a.ldx(Size::DW, R4, FP, FACTS);
    a.add(R4, R1);
    a.stx(Size::DW, FP, FACTS, R4);
    a.bind(no_bits);
    a.ldx(Size::DW, R3, FP, ARRAY);
    a.mov(R4, R6);
    a.lsh_imm(R4, 8);
    a.add(R3, R4);
    a.probe_read(BUF, 8 * CHUNK, R3, 0);
    // Unreadable (the table was being replaced): a digest no look matches.
    let read = a.label();
    a.jmp_imm(Cond::Eq, R0, 0, read);
    a.call(HELPER_KTIME_GET_NS);
    a.add(R9, R0);
    a.goto(next);
    a.bind(read);
    // r5: (tid << 32) | the chunk's first fd.
    a.mov(R5, R6);
    a.lsh_imm(R5, 5);
    a.ldx(Size::DW, R4, FP, AT);
    a.or(R5, R4);
    for j in 0..CHUNK {
        let empty = a.label();
        a.ldx(Size::DW, R1, FP, BUF + 8 * j as i16);
        a.jmp_imm(Cond::Eq, R1, 0, empty);
        a.add_imm(R8, 1);
        // r1 ^= rotate_left((tid << 32) | fd, 17)
        a.mov(R2, R5);
        a.add_imm(R2, j);
        a.mov(R3, R2);
        a.lsh_imm(R3, 17);
        a.rsh_imm(R2, 47);
        a.or(R2, R3);
        a.xor(R1, R2);
        mix(&mut a);
        a.add(R9, R1);
        a.bind(empty);
    }
    a.goto(next);
    a.bind(done);
    a.mov(R1, FP);
    a.add_imm(R1, i32::from(ITER));
    a.call_kfunc(o.iter_destroy);
    a.stx(Size::W, FP, OUT + 8, R8);
    a.stx(Size::DW, FP, OUT + 16, R9);
    a.bind(write);
    a.ldx(Size::DW, R1, FP, FACTS);
    a.stx(Size::DW, FP, OUT + 24, R1);
    a.ldx(Size::DW, R4, FP, SEQ);
    a.seq_write(R4, OUT, RECORD as i32);
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
}

/// The leader's state, namespace and stat facts (r7 the task) into the
/// record and `FACTS`: each value `v` makes the facts mix(facts ^ v), in
/// `folded`'s order. A load through a pointer that is NULL (a task exiting
/// has no nsproxy, a kernel thread no mm) reads 0. Clobbers r0-r5.
fn leader_facts(a: &mut Asm, f: &FactOffsets) -> ParseResult<()> {
    load(a, R1, R7, f.state)?;
    load(a, R2, R7, f.exit_state)?;
    a.or(R1, R2);
    a.stx(Size::W, FP, OUT + 32, R1);
    a.st_imm(Size::W, FP, OUT + 36, 1);
    load_path(a, &f.netns)?;
    a.stx(Size::W, FP, OUT + 12, R1);
    for path in &f.folded {
        load_path(a, path)?;
        fold(a);
    }
    for (through, at) in &f.read {
        a.st_imm(Size::DW, FP, WORD, 0);
        match through {
            Some(m) => load(a, R3, R7, *m)?,
            None => a.mov(R3, R7),
        }
        a.probe_read(WORD, 8, R3, *at as i32);
        a.ldx(Size::DW, R1, FP, WORD);
        fold(a);
    }
    Ok(())
}

/// r1 = the value at the end of `path`, a chain of loads from the task (r7).
fn load_path(a: &mut Asm, path: &[Member]) -> ParseResult<()> {
    let mut from = R7;
    for m in path {
        load(a, R1, from, *m)?;
        from = R1;
    }
    Ok(())
}

/// `FACTS` = mix(`FACTS` ^ r1); clobbers r1-r4.
fn fold(a: &mut Asm) {
    a.ldx(Size::DW, R4, FP, FACTS);
    a.xor(R1, R4);
    mix(a);
    a.stx(Size::DW, FP, FACTS, R1);
}

/// r1 = splitmix64's finalizer of r1 (`super::mix`); clobbers r2, r3.
fn mix(a: &mut Asm) {
    for (shift, factor) in [(30, 0xbf58_476d_1ce4_e5b9u64), (27, 0x94d0_49bb_1331_11eb)] {
        a.mov(R2, R1);
        a.rsh_imm(R2, shift);
        a.xor(R1, R2);
        a.ld_imm64(R3, factor);
        a.mul(R1, R3);
    }
    a.mov(R2, R1);
    a.rsh_imm(R2, 31);
    a.xor(R1, R2);
}

/// One record of the program's output:
///
/// | at | size | what |
/// |---|---|---|
/// | 0 | 4 | tgid |
/// | 4 | 4 | tid (the table's thread) |
/// | 8 | 4 | files (u32::MAX: too many to read) |
/// | 12 | 4 | network namespace's inode (leader; 0: not known) |
/// | 16 | 8 | digest of the fd pointers |
/// | 24 | 8 | facts |
/// | 32 | 4 | task state bits (`__state \| exit_state`; leader) |
/// | 36 | 4 | 1 when the leader's fields are in the record |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub tgid: i32,
    pub tid: i32,
    pub files: u32,
    pub digest: u64,
    pub facts: u64,
    /// The leader's namespace and state bits, in the leader's record.
    pub leader: Option<(u32, u32)>,
}

impl Record {
    pub fn parse(b: &[u8; RECORD]) -> Record {
        let w = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        let dw = |i: usize| {
            let mut d = [0u8; 8];
            d.copy_from_slice(&b[i..i + 8]);
            u64::from_ne_bytes(d)
        };
        Record {
            tgid: i32::from_ne_bytes(w(0)),
            tid: i32::from_ne_bytes(w(4)),
            files: u32::from_ne_bytes(w(8)),
            digest: dw(16),
            facts: dw(24),
            leader: (u32::from_ne_bytes(w(36)) == 1)
                .then(|| (u32::from_ne_bytes(w(12)), u32::from_ne_bytes(w(32)))),
        }
    }
}
