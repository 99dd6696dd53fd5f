//! The tracing programs, built for the running kernel from its BTF (no
//! compiler, no per-kernel build), like the task_file iterator's:
//!
//! - `syscall(Enter|Exit)`, on the raw tracepoints `sys_enter`/`sys_exit`:
//!   for a tracked process (hash map of tgids) and a syscall marked in the
//!   `want` array, write a record: time, pid/tid, the user registers, the
//!   socket inode of the fd made or closed (read through task->files), and
//!   when asked, 8 KiB of the user stack from `sp` (for unwinding with the
//!   binaries' CFI, through code built without frame pointers).
//! - `fork`, on `sched_process_fork`: a child of a tracked process (or of
//!   cwleak itself: the wrapped command) is tracked before it first runs.
//! - `exit`, on `sched_process_exit`: the last thread's exit ends tracking.
//!
//! A record that does not fit in the ring buffer is counted, not lost
//! silently (`counters[0]`); a child that does not fit in the pid map too
//! (`counters[1]`). Pure code: offsets and map fds in, instructions out.

use super::record::{
    CHUNK, CHUNKS, HEADER, KIND_ENTER, KIND_EXIT, KIND_FORK, KIND_RIGHTS, KIND_TASK_EXIT, LARGE,
    REGS, REGS_AT, SMALL,
};
use crate::parse::btf::{Btf, Member};
use crate::parse::ParseResult;
use crate::source::bpf_asm::{
    Asm, Cond, Label, Reg, Size, FP, HELPER_PROBE_READ_KERNEL, R0, R1, R2, R3, R4, R6, R7, R8, R9,
};

const KTIME_GET_NS: i32 = 5;
const GET_PID_TGID: i32 = 14;
const GET_CURRENT_TASK: i32 = 35;
const PROBE_READ_USER: i32 = 112;
const RINGBUF_OUTPUT: i32 = 130;
const RINGBUF_RESERVE: i32 = 131;
const RINGBUF_SUBMIT: i32 = 132;

/// Per-syscall flags in the `want` array (enter in bits 0-7, exit in 8-15).
pub const WANT: u32 = 1;
/// Read the socket inode of the fd: the result at exit, argument 0 at entry.
pub const WANT_INODE: u32 = 2;
pub const WANT_STACK: u32 = 4;
/// fcntl: only F_DUPFD and F_DUPFD_CLOEXEC make an fd.
pub const WANT_DUPFD_ONLY: u32 = 8;
/// sendmsg/recvmsg (and the mmsg forms): record the fds an SCM_RIGHTS
/// message carries (each with its inode), and the call only when it
/// carried some.
pub const WANT_RIGHTS: u32 = 16;
/// Messages of one sendmmsg/recvmmsg, and fds of one message, looked at.
pub const MAX_MSGS: i32 = 4;
pub const MAX_RIGHTS: i32 = 8;
const SENDMSG: i32 = 46;
const RECVMSG: i32 = 47;
/// sizeof(struct mmsghdr) on x86_64; msg_control sits at 32 in struct msghdr.
const MMSGHDR: i32 = 64;
const MSG_CONTROL: i32 = 32;
/// At exit, the inode of the fd in argument 0, not of the result (connect).
pub const WANT_ARG0: u32 = 32;
const F_SETFD: i32 = 2;
const F_DUPFD_CLOEXEC: i32 = 1030;
pub const SYSCALLS: u32 = 512;

/// Stack slots of the programs (offsets from the frame pointer).
const KEY: i16 = -4;
const VALUE: i16 = -8;
const SCRATCH: i16 = -16;
const NR: i16 = -24;
const FLAGS: i16 = -32;
const FD: i16 = -40;
const SP: i16 = -48;
const PTR: i16 = -56;
const EVENT: i16 = -56 - SMALL as i16;
/// The SCM_RIGHTS walk's slots, below the event.
const MSG: i16 = EVENT - 8;
const LEFT_MSGS: i16 = EVENT - 16;
/// 1 once an fd was recorded (also the record's "not the first" mark).
const TOTAL: i16 = EVENT - 24;
const DATA: i16 = EVENT - 32;
const LEFT_FDS: i16 = EVENT - 40;
const CUR: i16 = EVENT - 48;
/// msg_control, msg_controllen
const CTRL: i16 = EVENT - 64;
/// struct cmsghdr: cmsg_len u64, cmsg_level i32, cmsg_type i32
const CMSG: i16 = EVENT - 80;
const FDV: i16 = EVENT - 88;

/// The kernel struct members the programs read.
#[derive(Debug, Clone, Copy)]
pub struct Offsets {
    pub task_tgid: Member,
    pub task_files: Member,
    pub task_signal: Member,
    pub signal_live: Member,
    pub files_fdt: Member,
    pub fdt_max_fds: Member,
    pub fdt_fd: Member,
    pub file_inode: Member,
    pub inode_ino: Member,
    pub inode_sb: Member,
    pub sb_magic: Member,
    pub regs: super::record::RegOffsets,
    pub regs_orig_ax: Member,
}

impl Offsets {
    pub fn from_btf(btf: &Btf) -> ParseResult<Offsets> {
        let [task_tgid, task_files, task_signal] =
            btf.members("task_struct", ["tgid", "files", "signal"])?;
        let [signal_live] = btf.members("signal_struct", ["live"])?;
        let [files_fdt] = btf.members("files_struct", ["fdt"])?;
        let [fdt_max_fds, fdt_fd] = btf.members("fdtable", ["max_fds", "fd"])?;
        let [file_inode] = btf.members("file", ["f_inode"])?;
        let [inode_ino, inode_sb] = btf.members("inode", ["i_ino", "i_sb"])?;
        let [sb_magic] = btf.members("super_block", ["s_magic"])?;
        let [di, si, dx, r10, ip, sp, bp, orig_ax, ss] = btf.members(
            "pt_regs",
            ["di", "si", "dx", "r10", "ip", "sp", "bp", "orig_ax", "ss"],
        )?;
        // ss is the last 8-byte slot (newer kernels split it into fields).
        if ss.offset as usize + 8 != REGS || orig_ax.size != 8 {
            return Err("struct pt_regs is not the x86_64 layout".into());
        }
        let at = |m: Member| m.offset as usize;
        Ok(Offsets {
            task_tgid,
            task_files,
            task_signal,
            signal_live,
            files_fdt,
            fdt_max_fds,
            fdt_fd,
            file_inode,
            inode_ino,
            inode_sb,
            sb_magic,
            regs: super::record::RegOffsets {
                di: at(di),
                si: at(si),
                dx: at(dx),
                r10: at(r10),
                ip: at(ip),
                sp: at(sp),
                bp: at(bp),
            },
            regs_orig_ax: orig_ax,
        })
    }
}

/// The maps the programs use, by fd.
#[derive(Debug, Clone, Copy)]
pub struct Maps {
    pub tracked: i32,
    pub want: i32,
    pub ring: i32,
    pub counters: i32,
}

fn off(m: Member) -> ParseResult<i32> {
    i32::try_from(m.offset).map_err(|_| "member offset too large".to_string())
}

/// probe_read_kernel(fp + SCRATCH, size, src + member) after zeroing the
/// slot; then dst = the value read. Jumps to `none` when it is 0.
fn read_kernel(a: &mut Asm, dst: Reg, src: Reg, m: Member, none: Label) -> ParseResult<()> {
    read_kernel_or(a, dst, src, m, Some(none))
}

/// read_kernel, jumping to `none` on 0 only when given one: without, a
/// failed read gives 0, and reading through it fails again, giving 0 (no
/// branch for the verifier to explore, in loops).
fn read_kernel_or(
    a: &mut Asm,
    dst: Reg,
    src: Reg,
    m: Member,
    none: Option<Label>,
) -> ParseResult<()> {
    a.st_imm(Size::DW, FP, SCRATCH, 0);
    a.probe_read(SCRATCH, m.size.min(8) as i32, src, off(m)?);
    a.ldx(
        if m.size >= 8 { Size::DW } else { Size::W },
        dst,
        FP,
        SCRATCH,
    );
    if let Some(none) = none {
        a.jmp_imm(Cond::Eq, dst, 0, none);
    }
    Ok(())
}

/// The prologue of the per-task programs: r6 = the context, r7 =
/// pid_tgid, and on to `out` unless the current process is tracked.
fn only_tracked(a: &mut Asm, maps: &Maps, out: Label) {
    a.mov(R6, R1);
    a.call(GET_PID_TGID);
    a.mov(R7, R0);
    a.rsh_imm(R0, 32);
    a.stx(Size::W, FP, KEY, R0);
    a.map_lookup(maps.tracked, KEY);
    a.jmp_imm(Cond::Eq, R0, 0, out);
}

/// counters[index] += 1
fn count(a: &mut Asm, maps: &Maps, index: i32) {
    let done = a.label();
    a.st_imm(Size::W, FP, KEY, index);
    a.map_lookup(maps.counters, KEY);
    a.jmp_imm(Cond::Eq, R0, 0, done);
    a.mov_imm(R1, 1);
    a.atomic_add64(R0, 0, R1);
    a.bind(done);
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Enter,
    Exit,
}

/// The record's fields, written at `base + at` (the ring's reserved memory,
/// or the stack).
fn fill(a: &mut Asm, o: &Offsets, hook: Hook, base: Reg, at: i16) -> ParseResult<()> {
    a.call(KTIME_GET_NS);
    a.stx(Size::DW, base, at, R0);
    a.stx(Size::DW, base, at + 8, R7);
    a.ldx(Size::DW, R1, FP, NR);
    a.stx(Size::W, base, at + 16, R1);
    let kind = if hook == Hook::Enter {
        KIND_ENTER
    } else {
        KIND_EXIT
    };
    a.st_imm(Size::W, base, at + 20, kind as i32);
    if hook == Hook::Exit {
        a.ldx(Size::DW, R1, R6, 8);
        a.stx(Size::DW, base, at + 24, R1);
    } else {
        a.st_imm(Size::DW, base, at + 24, 0);
    }
    a.st_imm(Size::DW, base, at + 32, 0);
    a.st_imm(Size::W, base, at + 40, 0);
    a.st_imm(Size::W, base, at + 44, 0);
    a.st_imm(Size::DW, base, at + (REGS_AT + REGS) as i16, 0);
    a.mov(R1, base);
    a.add_imm(R1, i32::from(at) + REGS_AT as i32);
    a.mov_imm(R2, REGS as i32);
    a.mov(R3, R8);
    a.call(HELPER_PROBE_READ_KERNEL);

    // The socket inode: task->files->fdt->fd[fd]->f_inode->{i_ino, i_sb->s_magic}.
    let done = a.label();
    a.ldx(Size::DW, R1, FP, FLAGS);
    a.and_imm(R1, WANT_INODE as i32);
    a.jmp_imm(Cond::Eq, R1, 0, done);
    let arg0 = a.label();
    let got = a.label();
    if hook == Hook::Exit {
        a.ldx(Size::DW, R1, FP, FLAGS);
        a.and_imm(R1, WANT_ARG0 as i32);
        a.jmp_imm(Cond::Ne, R1, 0, arg0);
        a.ldx(Size::DW, R1, R6, 8);
        a.goto(got);
    }
    a.bind(arg0);
    a.ldx(Size::DW, R1, base, at + (REGS_AT + o.regs.di) as i16);
    a.bind(got);
    a.jmp_imm(Cond::Slt, R1, 0, done);
    a.stx(Size::DW, FP, FD, R1);
    fd_inode(a, o, base, at, done, true)?;
    a.bind(done);
    Ok(())
}

/// The socket inode of the fd at fp + FD: task->files->fdt->fd[fd]->f_inode
/// ->{i_ino, i_sb->s_magic}, written at base + at + 32 (inode) and + 40
/// (magic). Jumps to `done` where a pointer is NULL or the fd out of range.
fn fd_inode(
    a: &mut Asm,
    o: &Offsets,
    base: Reg,
    at: i16,
    done: Label,
    branch: bool,
) -> ParseResult<()> {
    let none = branch.then_some(done);
    a.call(GET_CURRENT_TASK);
    a.mov(R4, R0);
    read_kernel_or(a, R4, R4, o.task_files, none)?;
    read_kernel_or(a, R4, R4, o.files_fdt, none)?;
    a.stx(Size::DW, FP, PTR, R4);
    read_kernel_or(a, R1, R4, o.fdt_max_fds, none)?;
    a.ldx(Size::DW, R2, FP, FD);
    a.jmp_reg(Cond::Ge, R2, R1, done);
    a.ldx(Size::DW, R4, FP, PTR);
    read_kernel_or(a, R4, R4, o.fdt_fd, none)?;
    a.ldx(Size::DW, R2, FP, FD);
    a.lsh_imm(R2, 3);
    a.add(R4, R2);
    read_kernel_or(a, R4, R4, Member { offset: 0, size: 8 }, none)?;
    read_kernel_or(a, R4, R4, o.file_inode, none)?;
    a.stx(Size::DW, FP, PTR, R4);
    read_kernel_or(a, R1, R4, o.inode_ino, none)?;
    a.stx(Size::DW, base, at + 32, R1);
    a.ldx(Size::DW, R4, FP, PTR);
    read_kernel_or(a, R4, R4, o.inode_sb, none)?;
    read_kernel_or(
        a,
        R1,
        R4,
        Member {
            offset: o.sb_magic.offset,
            size: 4,
        },
        none,
    )?;
    a.stx(Size::W, base, at + 40, R1);
    Ok(())
}

/// probe_read_user(fp + to, size, r1); jumps to `fail` when it fails.
fn read_user(a: &mut Asm, to: i16, size: i32, fail: Label) {
    a.mov(R3, R1);
    a.mov(R1, FP);
    a.add_imm(R1, i32::from(to));
    a.mov_imm(R2, size);
    a.call(PROBE_READ_USER);
    a.jmp_imm(Cond::Ne, R0, 0, fail);
}

/// if r1 > max { r1 = max }, so the verifier sees the loop bound.
fn cap(a: &mut Asm, max: i32) {
    let big = a.label();
    a.jmp_imm(Cond::Ge, R1, max, big);
    let done = a.label();
    a.goto(done);
    a.bind(big);
    a.mov_imm(R1, max);
    a.bind(done);
}

/// The fds an SCM_RIGHTS message carries, at sendmsg/sendmmsg entry (the
/// sender's fds) or recvmsg/recvmmsg exit (the fds the kernel installed):
/// one KIND_RIGHTS header record each (fd in `ret`, its inode and magic),
/// before the call's own record. The first two control messages of each of
/// the first MAX_MSGS messages are looked at, MAX_RIGHTS fds of each. No fd
/// carried: on to `out`, nothing is recorded.
fn rights(a: &mut Asm, o: &Offsets, maps: &Maps, hook: Hook, out: Label) -> ParseResult<()> {
    let one = a.label();
    let counted = a.label();
    a.st_imm(Size::DW, FP, TOTAL, 0);
    a.ldx(Size::DW, R1, FP, NR);
    if hook == Hook::Exit {
        a.ldx(Size::DW, R2, R6, 8);
        a.jmp_imm(Cond::Slt, R2, 0, out);
        a.jmp_imm(Cond::Eq, R1, RECVMSG, one);
        // recvmmsg returns the number of messages received.
        a.mov(R1, R2);
        a.goto(counted);
    } else {
        a.jmp_imm(Cond::Eq, R1, SENDMSG, one);
        // sendmmsg(fd, msgvec, vlen, flags)
        let vlen = Member {
            offset: o.regs.dx as u32,
            size: 8,
        };
        read_kernel(a, R1, R8, vlen, out)?;
        a.goto(counted);
    }
    a.bind(one);
    a.mov_imm(R1, 1);
    a.bind(counted);
    cap(a, MAX_MSGS);
    a.stx(Size::DW, FP, LEFT_MSGS, R1);
    let msghdr = Member {
        offset: o.regs.si as u32,
        size: 8,
    };
    read_kernel(a, R1, R8, msghdr, out)?;
    a.stx(Size::DW, FP, MSG, R1);

    let msg_loop = a.label();
    let next_msg = a.label();
    let msgs_done = a.label();
    a.bind(msg_loop);
    a.ldx(Size::DW, R1, FP, LEFT_MSGS);
    a.jmp_imm(Cond::Eq, R1, 0, msgs_done);
    a.add_imm(R1, -1);
    a.stx(Size::DW, FP, LEFT_MSGS, R1);
    a.ldx(Size::DW, R1, FP, MSG);
    a.add_imm(R1, MSG_CONTROL);
    read_user(a, CTRL, 16, next_msg);
    a.ldx(Size::DW, R1, FP, CTRL + 8);
    a.jmp_imm(Cond::Lt, R1, 20, next_msg);
    a.ldx(Size::DW, R1, FP, CTRL);
    a.stx(Size::DW, FP, CUR, R1);
    // SCM_RIGHTS (SOL_SOCKET 1, type 1): the first or second control message.
    let found = a.label();
    for k in 0..2 {
        let other = a.label();
        a.ldx(Size::DW, R1, FP, CUR);
        read_user(a, CMSG, 16, next_msg);
        a.ldx(Size::W, R1, FP, CMSG + 8);
        a.jmp_imm(Cond::Ne, R1, 1, other);
        a.ldx(Size::W, R1, FP, CMSG + 12);
        a.jmp_imm(Cond::Eq, R1, 1, found);
        a.bind(other);
        if k == 1 {
            a.goto(next_msg);
            break;
        }
        // The next one starts at CMSG_ALIGN(cmsg_len), inside msg_controllen.
        a.ldx(Size::DW, R1, FP, CMSG);
        a.jmp_imm(Cond::Lt, R1, 16, next_msg);
        a.add_imm(R1, 7);
        a.and_imm(R1, -8);
        a.ldx(Size::DW, R2, FP, CTRL + 8);
        a.jmp_reg(Cond::Ge, R1, R2, next_msg);
        a.ldx(Size::DW, R2, FP, CUR);
        a.add(R2, R1);
        a.stx(Size::DW, FP, CUR, R2);
    }
    a.bind(found);
    a.ldx(Size::DW, R1, FP, CMSG);
    a.jmp_imm(Cond::Lt, R1, 20, next_msg);
    a.add_imm(R1, -16);
    a.rsh_imm(R1, 2);
    cap(a, MAX_RIGHTS);
    a.stx(Size::DW, FP, LEFT_FDS, R1);
    a.ldx(Size::DW, R1, FP, CUR);
    a.add_imm(R1, 16);
    a.stx(Size::DW, FP, DATA, R1);

    let fd_loop = a.label();
    a.bind(fd_loop);
    a.ldx(Size::DW, R1, FP, LEFT_FDS);
    a.jmp_imm(Cond::Eq, R1, 0, next_msg);
    a.add_imm(R1, -1);
    a.stx(Size::DW, FP, LEFT_FDS, R1);
    a.st_imm(Size::DW, FP, FDV, 0);
    a.ldx(Size::DW, R1, FP, DATA);
    read_user(a, FDV, 4, next_msg);
    a.ldx(Size::DW, R1, FP, DATA);
    a.add_imm(R1, 4);
    a.stx(Size::DW, FP, DATA, R1);
    a.ldx(Size::W, R1, FP, FDV);
    a.stx(Size::DW, FP, FD, R1);
    let e = EVENT;
    a.call(KTIME_GET_NS);
    a.stx(Size::DW, FP, e, R0);
    a.stx(Size::DW, FP, e + 8, R7);
    a.ldx(Size::DW, R1, FP, NR);
    a.stx(Size::W, FP, e + 16, R1);
    a.st_imm(Size::W, FP, e + 20, KIND_RIGHTS as i32);
    a.ldx(Size::DW, R1, FP, FD);
    a.stx(Size::DW, FP, e + 24, R1);
    a.st_imm(Size::DW, FP, e + 32, 0);
    a.st_imm(Size::DW, FP, e + 40, 0);
    a.ldx(Size::DW, R1, FP, TOTAL);
    a.stx(Size::W, FP, e + 44, R1);
    let looked = a.label();
    fd_inode(a, o, FP, e, looked, false)?;
    a.bind(looked);
    output_header(a, maps, e);
    // A flag, not a count: a counter would be a different verifier state
    // on every path.
    a.st_imm(Size::DW, FP, TOTAL, 1);
    a.goto(fd_loop);

    a.bind(next_msg);
    a.ldx(Size::DW, R1, FP, MSG);
    a.add_imm(R1, MMSGHDR);
    a.stx(Size::DW, FP, MSG, R1);
    a.goto(msg_loop);

    a.bind(msgs_done);
    a.ldx(Size::DW, R1, FP, TOTAL);
    a.jmp_imm(Cond::Eq, R1, 0, out);
    Ok(())
}

/// The sys_enter or sys_exit program.
pub fn syscall(o: &Offsets, maps: &Maps, hook: Hook) -> ParseResult<Vec<u64>> {
    let mut a = Asm::default();
    let out = a.label();
    let drop = a.label();
    let large = a.label();
    only_tracked(&mut a, maps, out);
    a.ldx(Size::DW, R8, R6, 0);
    if hook == Hook::Enter {
        a.ldx(Size::DW, R1, R6, 8);
    } else {
        read_kernel(&mut a, R1, R8, o.regs_orig_ax, out)?;
    }
    a.jmp_imm(Cond::Gt, R1, SYSCALLS as i32 - 1, out);
    a.stx(Size::W, FP, KEY, R1);
    a.stx(Size::DW, FP, NR, R1);
    a.map_lookup(maps.want, KEY);
    a.jmp_imm(Cond::Eq, R0, 0, out);
    a.ldx(Size::W, R1, R0, 0);
    if hook == Hook::Exit {
        a.rsh_imm(R1, 8);
    }
    a.and_imm(R1, 0xff);
    a.jmp_imm(Cond::Eq, R1, 0, out);
    a.stx(Size::DW, FP, FLAGS, R1);
    // fcntl: only the commands that make an fd (F_DUPFD, F_DUPFD_CLOEXEC),
    // and F_SETFD (close-on-exec set or cleared; no inode: it makes no fd).
    let wanted = a.label();
    a.and_imm(R1, WANT_DUPFD_ONLY as i32);
    a.jmp_imm(Cond::Eq, R1, 0, wanted);
    let cmd = Member {
        offset: o.regs.si as u32,
        size: 8,
    };
    let f_dupfd = a.label();
    read_kernel(&mut a, R1, R8, cmd, f_dupfd)?;
    a.jmp_imm(Cond::Eq, R1, F_DUPFD_CLOEXEC, wanted);
    a.jmp_imm(Cond::Ne, R1, F_SETFD, out);
    a.st_imm(Size::DW, FP, FLAGS, (WANT | WANT_STACK) as i32);
    a.bind(f_dupfd);
    a.bind(wanted);
    let plain = a.label();
    a.ldx(Size::DW, R1, FP, FLAGS);
    a.and_imm(R1, WANT_RIGHTS as i32);
    a.jmp_imm(Cond::Eq, R1, 0, plain);
    rights(&mut a, o, maps, hook, out)?;
    a.bind(plain);
    a.ldx(Size::DW, R1, FP, FLAGS);
    a.jmp_imm(Cond::Set, R1, WANT_STACK as i32, large);

    // Small record, built on the stack.
    fill(&mut a, o, hook, FP, EVENT)?;
    a.ld_map(R1, maps.ring);
    a.mov(R2, FP);
    a.add_imm(R2, i32::from(EVENT));
    a.mov_imm(R3, SMALL as i32);
    a.mov_imm(R4, 0);
    a.call(RINGBUF_OUTPUT);
    a.jmp_imm(Cond::Eq, R0, 0, out);
    a.goto(drop);

    // Large record, written in place in the ring, with the user stack.
    a.bind(large);
    a.ld_map(R1, maps.ring);
    a.mov_imm(R2, LARGE as i32);
    a.mov_imm(R3, 0);
    a.call(RINGBUF_RESERVE);
    a.jmp_imm(Cond::Eq, R0, 0, drop);
    a.mov(R9, R0);
    fill(&mut a, o, hook, R9, 0)?;
    a.ldx(Size::DW, R1, R9, (REGS_AT + o.regs.sp) as i16);
    a.stx(Size::DW, FP, SP, R1);
    // Chunk by chunk: the stack's mapping may end before 8 KiB.
    let copied = a.label();
    for i in 0..CHUNKS {
        a.mov(R1, R9);
        a.add_imm(R1, (SMALL + i * CHUNK) as i32);
        a.mov_imm(R2, CHUNK as i32);
        a.ldx(Size::DW, R3, FP, SP);
        a.add_imm(R3, (i * CHUNK) as i32);
        a.call(PROBE_READ_USER);
        a.jmp_imm(Cond::Ne, R0, 0, copied);
        a.st_imm(Size::W, R9, 44, i as i32 + 1);
    }
    a.bind(copied);
    a.mov(R1, R9);
    a.mov_imm(R2, 0);
    a.call(RINGBUF_SUBMIT);
    a.goto(out);

    a.bind(drop);
    count(&mut a, maps, 0);
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
}

/// sched_process_fork(parent, child): track the child of a tracked process,
/// or of `spawner` (cwleak, starting the command), and record the fork.
pub fn fork(o: &Offsets, maps: &Maps, spawner: i32) -> ParseResult<Vec<u64>> {
    let mut a = Asm::default();
    let out = a.label();
    let tracked = a.label();
    a.mov(R6, R1);
    a.ldx(Size::DW, R8, R6, 0);
    a.ldx(Size::DW, R9, R6, 8);
    read_kernel(&mut a, R1, R8, o.task_tgid, out)?;
    a.stx(Size::W, FP, KEY, R1);
    a.stx(Size::DW, FP, NR, R1);
    a.map_lookup(maps.tracked, KEY);
    a.jmp_imm(Cond::Ne, R0, 0, tracked);
    a.ldx(Size::DW, R1, FP, NR);
    a.jmp_imm(Cond::Ne, R1, spawner, out);
    a.bind(tracked);
    read_kernel(&mut a, R1, R9, o.task_tgid, out)?;
    a.stx(Size::DW, FP, FD, R1);
    a.ldx(Size::DW, R2, FP, NR);
    // A new thread shares its process's table: nothing to record.
    a.jmp_reg(Cond::Eq, R1, R2, out);
    a.stx(Size::W, FP, KEY, R1);
    a.st_imm(Size::W, FP, VALUE, 1);
    a.map_update(maps.tracked, KEY, VALUE, 0);
    let added = a.label();
    a.jmp_imm(Cond::Eq, R0, 0, added);
    count(&mut a, maps, 1);
    a.bind(added);
    let e = EVENT;
    a.call(KTIME_GET_NS);
    a.stx(Size::DW, FP, e, R0);
    a.call(GET_PID_TGID);
    a.stx(Size::DW, FP, e + 8, R0);
    a.st_imm(Size::W, FP, e + 16, 0);
    a.st_imm(Size::W, FP, e + 20, KIND_FORK as i32);
    a.ldx(Size::DW, R1, FP, FD);
    a.stx(Size::DW, FP, e + 24, R1);
    a.st_imm(Size::DW, FP, e + 32, 0);
    a.st_imm(Size::DW, FP, e + 40, 0);
    // inode field: 1 when the child shares the parent's table (CLONE_FILES).
    let shared_done = a.label();
    read_kernel(&mut a, R1, R8, o.task_files, shared_done)?;
    a.stx(Size::DW, FP, PTR, R1);
    read_kernel(&mut a, R1, R9, o.task_files, shared_done)?;
    a.ldx(Size::DW, R2, FP, PTR);
    a.jmp_reg(Cond::Ne, R1, R2, shared_done);
    a.st_imm(Size::DW, FP, e + 32, 1);
    a.bind(shared_done);
    output_header(&mut a, maps, e);
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
}

/// ringbuf_output(the header at fp + at); a full ring is counted.
fn output_header(a: &mut Asm, maps: &Maps, at: i16) {
    let done = a.label();
    a.ld_map(R1, maps.ring);
    a.mov(R2, FP);
    a.add_imm(R2, i32::from(at));
    a.mov_imm(R3, HEADER as i32);
    a.mov_imm(R4, 0);
    a.call(RINGBUF_OUTPUT);
    a.jmp_imm(Cond::Eq, R0, 0, done);
    count(a, maps, 0);
    a.bind(done);
}

/// sched_process_exit(task): record each thread's exit; `ret` is the number
/// of live threads left (0: the process is gone, and is no longer tracked).
pub fn exit(o: &Offsets, maps: &Maps) -> ParseResult<Vec<u64>> {
    let mut a = Asm::default();
    let out = a.label();
    only_tracked(&mut a, maps, out);
    let e = EVENT;
    a.call(KTIME_GET_NS);
    a.stx(Size::DW, FP, e, R0);
    a.stx(Size::DW, FP, e + 8, R7);
    a.st_imm(Size::W, FP, e + 16, 0);
    a.st_imm(Size::W, FP, e + 20, KIND_TASK_EXIT as i32);
    a.st_imm(Size::DW, FP, e + 24, 0);
    a.st_imm(Size::DW, FP, e + 32, 0);
    a.st_imm(Size::DW, FP, e + 40, 0);
    let live_done = a.label();
    a.ldx(Size::DW, R8, R6, 0);
    read_kernel(&mut a, R4, R8, o.task_signal, live_done)?;
    read_kernel(&mut a, R1, R4, o.signal_live, live_done)?;
    a.stx(Size::DW, FP, e + 24, R1);
    a.bind(live_done);
    output_header(&mut a, maps, e);
    let alive = a.label();
    a.ldx(Size::DW, R1, FP, e + 24);
    a.jmp_imm(Cond::Ne, R1, 0, alive);
    a.map_delete(maps.tracked, KEY);
    a.bind(alive);
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_the_running_kernels_btf() {
        let Ok(b) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return; // no BTF: covered by the live tests' skip
        };
        let btf = Btf::parse(&b).unwrap();
        let o = Offsets::from_btf(&btf).unwrap();
        let maps = Maps {
            tracked: 3,
            want: 4,
            ring: 5,
            counters: 6,
        };
        for p in [
            syscall(&o, &maps, Hook::Enter).unwrap(),
            syscall(&o, &maps, Hook::Exit).unwrap(),
            fork(&o, &maps, 1).unwrap(),
            exit(&o, &maps).unwrap(),
        ] {
            assert!(p.len() < 4096, "{}", p.len());
            assert_eq!(p.last(), Some(&0x95));
        }
    }
}
