//! The records the tracing programs write to the ring buffer, and their
//! parsing. Every record starts with the same 48-byte header; syscall
//! records add the user registers (`struct pt_regs`), and those asked for
//! with a stack add a copy of the top of the user stack, for unwinding.
//! Pure code.

/// Header: time u64, pid_tgid u64, nr u32, kind u32, ret i64, inode u64,
/// magic u32, stack chunks u32.
pub const HEADER: usize = 48;
pub const REGS_AT: usize = HEADER;
/// x86_64 `struct pt_regs` (checked against the kernel's BTF at load).
pub const REGS: usize = 168;
pub const SMALL: usize = 224;
pub const CHUNK: usize = 1024;
pub const CHUNKS: usize = 8;
pub const LARGE: usize = SMALL + CHUNK * CHUNKS;

pub const KIND_ENTER: u32 = 1;
pub const KIND_EXIT: u32 = 2;
pub const KIND_FORK: u32 = 3;
pub const KIND_TASK_EXIT: u32 = 4;
/// One fd an SCM_RIGHTS message carried: `ret` is the fd (the sender's at
/// sendmsg, the receiver's new one at recvmsg), with its inode and magic;
/// written just before the call's own record.
pub const KIND_RIGHTS: u32 = 5;

/// Where the registers the user side needs sit in `struct pt_regs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegOffsets {
    pub di: usize,
    pub si: usize,
    pub dx: usize,
    pub r10: usize,
    pub ip: usize,
    pub sp: usize,
    pub bp: usize,
}

/// One record, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    pub time_ns: u64,
    pub tgid: i32,
    pub tid: i32,
    pub nr: u32,
    pub kind: u32,
    pub ret: i64,
    pub inode: u64,
    pub magic: u32,
    /// Syscall arguments 0-3 (di, si, dx, r10), for syscall records.
    pub args: [u64; 4],
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// The copied top of the user stack, from `sp` up.
    pub stack: Vec<u8>,
    /// The u32 at 44: stack chunks of a syscall record; for a KIND_RIGHTS
    /// record, 0 for the first fd of its call, 1 for the others.
    pub tail: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        u64::from_ne_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
    })
}

impl Raw {
    /// A KIND_RIGHTS record of the first fd of its call.
    pub fn first_right(&self) -> bool {
        self.tail == 0
    }

    /// None for a record shorter than its header.
    pub fn parse(b: &[u8], regs: &RegOffsets) -> Option<Raw> {
        if b.len() < HEADER {
            return None;
        }
        let pid_tgid = u64_at(b, 8);
        let kind = u32_at(b, 20);
        let mut r = Raw {
            time_ns: u64_at(b, 0),
            tgid: (pid_tgid >> 32) as i32,
            tid: pid_tgid as u32 as i32,
            nr: u32_at(b, 16),
            kind,
            ret: u64_at(b, 24) as i64,
            inode: u64_at(b, 32),
            magic: u32_at(b, 40),
            args: [0; 4],
            ip: 0,
            sp: 0,
            bp: 0,
            stack: Vec::new(),
            tail: u32_at(b, 44),
        };
        if matches!(kind, KIND_ENTER | KIND_EXIT) && b.len() >= SMALL {
            let reg = |off: usize| u64_at(b, REGS_AT + off);
            r.args = [reg(regs.di), reg(regs.si), reg(regs.dx), reg(regs.r10)];
            r.ip = reg(regs.ip);
            r.sp = reg(regs.sp);
            r.bp = reg(regs.bp);
            let chunks = (u32_at(b, 44) as usize).min(CHUNKS);
            if let Some(s) = b.get(SMALL..SMALL + chunks * CHUNK) {
                r.stack = s.to_vec();
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_registers_and_stack() {
        let regs = RegOffsets {
            di: 112,
            si: 104,
            dx: 96,
            r10: 56,
            ip: 128,
            sp: 152,
            bp: 32,
        };
        let mut b = vec![0u8; SMALL + CHUNK];
        b[0..8].copy_from_slice(&5u64.to_ne_bytes());
        b[8..16].copy_from_slice(&((7u64 << 32) | 9).to_ne_bytes());
        b[16..20].copy_from_slice(&43u32.to_ne_bytes());
        b[20..24].copy_from_slice(&KIND_EXIT.to_ne_bytes());
        b[24..32].copy_from_slice(&(-11i64).to_ne_bytes());
        b[44..48].copy_from_slice(&1u32.to_ne_bytes());
        b[REGS_AT + 112..REGS_AT + 120].copy_from_slice(&3u64.to_ne_bytes());
        b[REGS_AT + 152..REGS_AT + 160].copy_from_slice(&0x7ff0u64.to_ne_bytes());
        b[SMALL] = 0xaa;
        let r = Raw::parse(&b, &regs).unwrap();
        assert_eq!((r.tgid, r.tid, r.nr, r.ret), (7, 9, 43, -11));
        assert_eq!((r.args[0], r.sp), (3, 0x7ff0));
        assert_eq!(r.stack.len(), CHUNK);
        assert_eq!(r.stack[0], 0xaa);
        assert!(Raw::parse(&b[..10], &regs).is_none());
        // A chunk count past the record is cut to what is there.
        b[44..48].copy_from_slice(&8u32.to_ne_bytes());
        assert!(Raw::parse(&b, &regs).unwrap().stack.is_empty());
    }
}
