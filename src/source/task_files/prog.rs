//! The BPF program run by the kernel's task_file iterator (once per open file
//! of every task), built from the running kernel's struct offsets. For each
//! file it writes one 24-byte record to the iterator's output:
//! `tgid u32, tid u32, fd u32, superblock magic u32, inode u64`.
//! Pure code: offsets in, instructions out.

use crate::parse::btf::{Btf, Member};
use crate::parse::ParseResult;
use crate::source::bpf_asm::{Asm, Cond, Reg, Size, FP, R0, R1, R2, R3, R4, R6, R7, R8, R9};

pub const RECORD: usize = 24;

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

/// dst = *(member)(src + member.offset), at the member's own size.
fn load(a: &mut Asm, dst: Reg, src: Reg, m: Member) -> ParseResult<()> {
    let size = Size::of_bytes(m.size).ok_or_else(|| {
        format!(
            "a {}-byte member cannot be loaded in one instruction",
            m.size
        )
    })?;
    let off =
        i16::try_from(m.offset).map_err(|_| format!("member offset {} too large", m.offset))?;
    a.ldx(size, dst, src, off);
    Ok(())
}

pub fn program(o: &Offsets) -> ParseResult<Vec<u64>> {
    let base = -(RECORD as i16);
    let mut a = Asm::default();
    let out = a.label();
    a.mov(R6, R1);
    load(&mut a, R7, R6, o.ctx_task)?;
    // No task: the iteration's end.
    a.jmp_imm(Cond::Eq, R7, 0, out);
    load(&mut a, R8, R6, o.ctx_file)?;
    a.jmp_imm(Cond::Eq, R8, 0, out);
    load(&mut a, R1, R6, o.ctx_meta)?;
    load(&mut a, R9, R1, o.meta_seq)?;
    load(&mut a, R2, R7, o.task_tgid)?;
    a.stx(Size::W, FP, base, R2);
    load(&mut a, R2, R7, o.task_pid)?;
    a.stx(Size::W, FP, base + 4, R2);
    load(&mut a, R2, R6, o.ctx_fd)?;
    a.stx(Size::W, FP, base + 8, R2);
    load(&mut a, R3, R8, o.file_inode)?;
    load(&mut a, R4, R3, o.inode_sb)?;
    load(&mut a, R2, R4, o.sb_magic)?;
    a.stx(Size::W, FP, base + 12, R2);
    load(&mut a, R2, R3, o.inode_ino)?;
    a.stx(Size::DW, FP, base + 16, R2);
    a.seq_write(R9, base, RECORD as i32);
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
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
    fn loads_each_member_at_its_size() {
        // r2 = *(u32 *)(r7 + 2452): ldxw, dst 2, src 7.
        let mut a = Asm::default();
        load(
            &mut a,
            R2,
            R7,
            Member {
                offset: 2452,
                size: 4,
            },
        )
        .unwrap();
        load(&mut a, R2, R7, Member { offset: 8, size: 8 }).unwrap();
        assert_eq!(
            a.finish().unwrap(),
            [0x0000_0000_0994_7261, 0x0000_0000_0008_7279]
        );
        let mut a = Asm::default();
        assert!(load(
            &mut a,
            R2,
            R7,
            Member {
                offset: 0,
                size: 16
            }
        )
        .is_err());
        assert!(load(
            &mut a,
            R2,
            R7,
            Member {
                offset: 1 << 16,
                size: 4
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
