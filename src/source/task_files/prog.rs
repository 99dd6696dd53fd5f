//! The BPF program run by the kernel's task_file iterator (once per open file
//! of every task), built from the running kernel's struct offsets. For each
//! file it writes one 24-byte record to the iterator's output:
//! `tgid u32, tid u32, fd u32, superblock magic u32, inode u64`.
//! Pure code: offsets in, instructions out.

use crate::parse::btf::{Btf, Member};
use crate::parse::ParseResult;

pub const RECORD: usize = 24;
/// bpf_seq_write, from the kernel's list of helper functions.
const HELPER_SEQ_WRITE: i32 = 127;

/// The struct members the program reads.
pub struct Offsets {
    ctx_meta: Member,
    ctx_task: Member,
    ctx_fd: Member,
    ctx_file: Member,
    meta_seq: Member,
    task_tgid: Member,
    task_pid: Member,
    file_inode: Member,
    inode_sb: Member,
    inode_ino: Member,
    sb_magic: Member,
}

impl Offsets {
    pub fn from_btf(btf: &Btf) -> ParseResult<Offsets> {
        let [ctx_meta, ctx_task, ctx_fd, ctx_file] =
            btf.members("bpf_iter__task_file", ["meta", "task", "fd", "file"])?;
        let [meta_seq] = btf.members("bpf_iter_meta", ["seq"])?;
        let [task_tgid, task_pid] = btf.members("task_struct", ["tgid", "pid"])?;
        let [file_inode] = btf.members("file", ["f_inode"])?;
        let [inode_sb, inode_ino] = btf.members("inode", ["i_sb", "i_ino"])?;
        let [sb_magic] = btf.members("super_block", ["s_magic"])?;
        Ok(Offsets {
            ctx_meta,
            ctx_task,
            ctx_fd,
            ctx_file,
            meta_seq,
            task_tgid,
            task_pid,
            file_inode,
            inode_sb,
            inode_ino,
            sb_magic,
        })
    }
}

// Registers: r1-r5 arguments, r0 return, r6-r9 kept across calls, r10 frame.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const FP: u8 = 10;

/// One instruction, encoded as the kernel's `struct bpf_insn` (little endian:
/// destination register in the low nibble).
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst & 0xf) << 8
        | u64::from(src & 0xf) << 12
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}

fn size_code(size: u32) -> ParseResult<u8> {
    match size {
        1 => Ok(0x10),
        2 => Ok(0x08),
        4 => Ok(0x00),
        8 => Ok(0x18),
        n => Err(format!(
            "a {n}-byte member cannot be loaded in one instruction"
        )),
    }
}

fn offset(m: Member) -> ParseResult<i16> {
    i16::try_from(m.offset).map_err(|_| format!("member offset {} too large", m.offset))
}

/// dst = *(member)(src + member.offset)
fn load(dst: u8, src: u8, m: Member) -> ParseResult<u64> {
    Ok(insn(0x61 | size_code(m.size)?, dst, src, offset(m)?, 0))
}

fn store32(off: i16, src: u8) -> u64 {
    insn(0x63, FP, src, off, 0)
}

fn store64(off: i16, src: u8) -> u64 {
    insn(0x7b, FP, src, off, 0)
}

fn mov_reg(dst: u8, src: u8) -> u64 {
    insn(0xbf, dst, src, 0, 0)
}

fn mov_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm)
}

fn add_imm(dst: u8, imm: i32) -> u64 {
    insn(0x07, dst, 0, 0, imm)
}

/// if dst == 0 goto +off
fn jump_if_zero(dst: u8, off: i16) -> u64 {
    insn(0x15, dst, 0, off, 0)
}

pub fn program(o: &Offsets) -> ParseResult<Vec<u64>> {
    let base = -(RECORD as i16);
    let mut p = vec![
        mov_reg(R6, R1),
        load(R7, R6, o.ctx_task)?,
        0, // task == NULL: the iteration's end
        load(R8, R6, o.ctx_file)?,
        0, // file == NULL
        load(R1, R6, o.ctx_meta)?,
        load(R9, R1, o.meta_seq)?,
        load(R2, R7, o.task_tgid)?,
        store32(base, R2),
        load(R2, R7, o.task_pid)?,
        store32(base + 4, R2),
        load(R2, R6, o.ctx_fd)?,
        store32(base + 8, R2),
        load(R3, R8, o.file_inode)?,
        load(R4, R3, o.inode_sb)?,
        load(R2, R4, o.sb_magic)?,
        store32(base + 12, R2),
        load(R2, R3, o.inode_ino)?,
        store64(base + 16, R2),
        mov_reg(R1, R9),
        mov_reg(R2, FP),
        add_imm(R2, i32::from(base)),
        mov_imm(R3, RECORD as i32),
        insn(0x85, 0, 0, 0, HELPER_SEQ_WRITE),
    ];
    let out = p.len();
    p.extend([mov_imm(R0, 0), insn(0x95, 0, 0, 0, 0)]);
    for at in [2, 4] {
        let reg = if at == 2 { R7 } else { R8 };
        p[at] = jump_if_zero(reg, (out - at - 1) as i16);
    }
    Ok(p)
}

/// One record of the program's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub tgid: i32,
    pub tid: i32,
    pub fd: i32,
    pub magic: u32,
    pub inode: u64,
}

impl Record {
    pub fn parse(b: &[u8; RECORD]) -> Record {
        let w = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Record {
            tgid: i32::from_ne_bytes(w(0)),
            tid: i32::from_ne_bytes(w(4)),
            fd: i32::from_ne_bytes(w(8)),
            magic: u32::from_ne_bytes(w(12)),
            inode: u64::from_ne_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_instructions_as_the_kernel_lays_them_out() {
        // r2 = *(u32 *)(r7 + 2452): ldxw, dst 2, src 7.
        let m = Member {
            offset: 2452,
            size: 4,
        };
        assert_eq!(load(R2, R7, m).unwrap(), 0x0000_0000_0994_7261);
        assert_eq!(insn(0x95, 0, 0, 0, 0), 0x95);
        assert_eq!(jump_if_zero(R7, 3), 0x0003_0715);
        assert!(load(
            R2,
            R7,
            Member {
                offset: 0,
                size: 16
            }
        )
        .is_err());
    }

    #[test]
    fn parses_a_record() {
        let mut b = [0u8; RECORD];
        b[..4].copy_from_slice(&7i32.to_ne_bytes());
        b[4..8].copy_from_slice(&9i32.to_ne_bytes());
        b[8..12].copy_from_slice(&3i32.to_ne_bytes());
        b[12..16].copy_from_slice(&0x534f_434bu32.to_ne_bytes());
        b[16..].copy_from_slice(&123_456u64.to_ne_bytes());
        let r = Record::parse(&b);
        assert_eq!((r.tgid, r.tid, r.fd, r.inode), (7, 9, 3, 123_456));
        assert_eq!(r.magic, 0x534f_434b);
    }
}
