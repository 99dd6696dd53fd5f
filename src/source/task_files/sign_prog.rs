//! The BPF program run by the kernel's task iterator (once per task) that
//! signs each fd table where it lies: it reads the table's array of `struct
//! file` pointers 32 at a time and sums, for every pointer that is not NULL,
//! the same 64-bit hash of (tid, fd, address) as `Signature::add` does for a
//! record of the task_file programs. No file is followed, and the kernel
//! takes no reference on any (the task_file iterator's `fget` per file is
//! most of a pass that reads nothing); one 24-byte record per table:
//! `tgid u32, tid u32, files u32, 0 u32, digest u64`.
//!
//! Threads that share their leader's table are skipped, as the task_file
//! iterator skips them. A table of more than `MAX_CHUNKS` * 32 slots is not
//! read: its record says `files` u32::MAX and a digest that no other look
//! gives (the time), so that it is read again at every look.
//! Pure code: offsets in, instructions out.

use super::prog::{load, TaskOffsets};
use crate::parse::btf::{Btf, Member};
use crate::parse::ParseResult;
use crate::source::bpf_asm::{
    Asm, Cond, Size, FP, HELPER_PROBE_READ_KERNEL, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9,
};

pub const RECORD: usize = 24;

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
    iter_new: u32,
    iter_next: u32,
    iter_destroy: u32,
}

impl Offsets {
    pub fn from_btf(btf: &Btf) -> ParseResult<Offsets> {
        let [ctx_meta, ctx_task] = btf.members("bpf_iter__task", ["meta", "task"])?;
        let [task_files, task_leader] = btf.members("task_struct", ["files", "group_leader"])?;
        let [files_fdt] = btf.members("files_struct", ["fdt"])?;
        let [fdt_max_fds, fdt_fd] = btf.members("fdtable", ["max_fds", "fd"])?;
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
            iter_new: kfunc("bpf_iter_num_new")?,
            iter_next: kfunc("bpf_iter_num_next")?,
            iter_destroy: kfunc("bpf_iter_num_destroy")?,
        })
    }
}

// The stack: the seq_file, the table's array, (tid << 32), the iterator
// (8 bytes), the record, the chunk read.
const SEQ: i16 = -8;
const ARRAY: i16 = -16;
const AT: i16 = -24;
const ITER: i16 = -32;
const OUT: i16 = -32 - RECORD as i16;
const BUF: i16 = OUT - 8 * CHUNK as i16;

pub fn program(o: &Offsets) -> ParseResult<Vec<u64>> {
    let mut a = Asm::default();
    let out = a.label();
    let leader = a.label();
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
    load(&mut a, R2, R7, o.task.tgid)?;
    a.stx(Size::W, FP, OUT, R2);
    load(&mut a, R3, R7, o.task.pid)?;
    a.stx(Size::W, FP, OUT + 4, R3);
    a.st_imm(Size::W, FP, OUT + 12, 0);
    // (tid << 32): the high half of every (tid, fd) hashed.
    a.mov(R4, R3);
    a.lsh_imm(R4, 32);
    a.stx(Size::DW, FP, AT, R4);
    a.jmp_reg(Cond::Eq, R2, R3, leader);
    // A thread sharing its leader's table: the leader's record has it.
    load(&mut a, R4, R7, o.task_leader)?;
    load(&mut a, R4, R4, o.task_files)?;
    a.jmp_reg(Cond::Eq, R4, R8, out);
    a.bind(leader);
    load(&mut a, R8, R8, o.files_fdt)?;
    a.jmp_imm(Cond::Eq, R8, 0, out);
    // The array's address, as a number (read, not loaded through the
    // typed pointer: it is added to below).
    a.mov(R1, FP);
    a.add_imm(R1, i32::from(ARRAY));
    a.mov_imm(R2, 8);
    a.mov(R3, R8);
    a.add_imm(R3, o.fdt_fd.offset as i32);
    a.call(HELPER_PROBE_READ_KERNEL);
    a.jmp_imm(Cond::Ne, R0, 0, out);
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
    a.mov(R1, FP);
    a.add_imm(R1, i32::from(BUF));
    a.mov_imm(R2, 8 * CHUNK);
    a.ldx(Size::DW, R3, FP, ARRAY);
    a.mov(R4, R6);
    a.lsh_imm(R4, 8);
    a.add(R3, R4);
    a.call(HELPER_PROBE_READ_KERNEL);
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
    a.ldx(Size::DW, R4, FP, SEQ);
    a.seq_write(R4, OUT, RECORD as i32);
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
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

/// One record of the program's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub tgid: i32,
    pub tid: i32,
    pub files: u32,
    pub digest: u64,
}

impl Record {
    pub fn parse(b: &[u8; RECORD]) -> Record {
        let w = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        let mut d = [0u8; 8];
        d.copy_from_slice(&b[16..24]);
        Record {
            tgid: i32::from_ne_bytes(w(0)),
            tid: i32::from_ne_bytes(w(4)),
            files: u32::from_ne_bytes(w(8)),
            digest: u64::from_ne_bytes(d),
        }
    }
}
