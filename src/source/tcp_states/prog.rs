//! The BPF programs run by the kernel's TCP iterator (`iter/tcp`, once per
//! socket of the namespace the iterator was opened in), built from the
//! running kernel's struct offsets. Both write one byte per socket: its
//! state, or for a timewait mini-socket the state it stands for
//! (`tw_substate`: TIME_WAIT, or an orphaned FIN_WAIT2), as sock_diag
//! reports it. The second writes instead, for a CLOSE_WAIT or LISTEN socket,
//! a `RECORD`-byte record of what sock_diag would say of it (below), so that
//! one walk of the kernel's table both counts and lists.
//! Pure code: offsets in, instructions out.

use crate::parse::btf::{Btf, Member};
use crate::parse::ParseResult;
use crate::source::bpf_asm::{
    Asm, Cond, Reg, Size, FP, HELPER_PROBE_READ_KERNEL, R0, R1, R2, R3, R6, R7, R8, R9,
};

const HELPER_JIFFIES64: i32 = 118;
const TCP_CLOSE_WAIT: i32 = 8;
const TCP_LISTEN: i32 = 10;
const AF_INET6: i32 = 10;
/// The kernel's TCP_TIME_WAIT: the state of every timewait mini-socket.
const TCP_TIME_WAIT: i32 = 6;
/// Where the byte is built on the program's stack.
const SLOT: i16 = -8;

/// The struct members the program reads.
pub struct Offsets {
    ctx_meta: i16,
    ctx_sk: i16,
    meta_seq: i16,
    skc_state: i16,
    tw_substate: i32,
}

impl Offsets {
    pub fn from_btf(btf: &Btf) -> ParseResult<Offsets> {
        let [ctx_meta, ctx_sk] = btf.members("bpf_iter__tcp", ["meta", "sk_common"])?;
        let [meta_seq] = btf.members("bpf_iter_meta", ["seq"])?;
        let [skc_state] = btf.members("sock_common", ["skc_state"])?;
        let [tw_substate] = btf.members("inet_timewait_sock", ["tw_substate"])?;
        Ok(Offsets {
            ctx_meta: sized(ctx_meta, 8)?,
            ctx_sk: sized(ctx_sk, 8)?,
            meta_seq: sized(meta_seq, 8)?,
            skc_state: sized(skc_state, 1)?,
            tw_substate: i32::from(sized(tw_substate, 1)?),
        })
    }
}

/// The member's offset, when it has the size the program loads.
fn sized(m: Member, size: u32) -> ParseResult<i16> {
    if m.size != size {
        return Err(format!(
            "a {}-byte member where {size} was expected",
            m.size
        ));
    }
    i16::try_from(m.offset).map_err(|_| format!("member offset {} too large", m.offset))
}

/// A record: its first byte is 0x80 | state (a state byte is below 0x80).
///
/// | at | size | what (as sock_diag's inet_diag_msg and tcp_info give it) |
/// |---|---|---|
/// | 0 | 1 | 0x80 \| state |
/// | 2 | 2 | family |
/// | 4 | 2 | local port, host order (`skc_num`) |
/// | 6 | 2 | remote port, network order (`skc_dport`) |
/// | 8 | 16 | local address (4 bytes for IPv4) |
/// | 24 | 16 | remote address |
/// | 40 | 4 | bound interface |
/// | 44 | 4 | receive queue (LISTEN: accept queue) |
/// | 48 | 4 | send queue (LISTEN: backlog) |
/// | 52 | 4 | uid |
/// | 56 | 8 | inode (`sock_i_ino`: the socket's own inode) |
/// | 64 | 4 | jiffies since the peer's last ACK (`tcpi_last_ack_recv`, before ms) |
/// | 72 | 8 | bytes acked |
pub const RECORD: usize = 80;
pub const RECORD_TAG: u8 = 0x80;

/// What the record program reads beyond `Offsets`.
pub struct RecordOffsets {
    skc_family: i32,
    skc_num: i32,
    skc_dport: i32,
    skc_rcv_saddr: i32,
    skc_daddr: i32,
    skc_v6_rcv_saddr: i32,
    skc_v6_daddr: i32,
    skc_bound_dev_if: i32,
    sk_ack_backlog: i32,
    sk_max_ack_backlog: i32,
    sk_uid: i32,
    sk_socket: i32,
    rcv_nxt: i32,
    copied_seq: i32,
    write_seq: i32,
    snd_una: i32,
    rcv_tstamp: i32,
    bytes_acked: i32,
    /// From a `struct socket` to its inode's `i_ino` (both live in one
    /// `struct socket_alloc`: the kernel's SOCK_INODE).
    socket_to_ino: i32,
}

impl RecordOffsets {
    pub fn from_btf(btf: &Btf) -> ParseResult<RecordOffsets> {
        let [family, num, dport, rcv_saddr, daddr, v6_rcv, v6_d, bound] = btf.members(
            "sock_common",
            [
                "skc_family",
                "skc_num",
                "skc_dport",
                "skc_rcv_saddr",
                "skc_daddr",
                "skc_v6_rcv_saddr",
                "skc_v6_daddr",
                "skc_bound_dev_if",
            ],
        )?;
        let [ack_backlog, max_ack_backlog, uid, socket] = btf.members(
            "sock",
            [
                "sk_ack_backlog",
                "sk_max_ack_backlog",
                "sk_uid",
                "sk_socket",
            ],
        )?;
        let [rcv_nxt, copied_seq, write_seq, snd_una, rcv_tstamp, bytes_acked] = btf.members(
            "tcp_sock",
            [
                "rcv_nxt",
                "copied_seq",
                "write_seq",
                "snd_una",
                "rcv_tstamp",
                "bytes_acked",
            ],
        )?;
        let [alloc_socket, alloc_inode] = btf.members("socket_alloc", ["socket", "vfs_inode"])?;
        let [i_ino] = btf.members("inode", ["i_ino"])?;
        let at = |m: Member, size: u32| sized(m, size).map(i32::from);
        Ok(RecordOffsets {
            skc_family: at(family, 2)?,
            skc_num: at(num, 2)?,
            skc_dport: at(dport, 2)?,
            skc_rcv_saddr: at(rcv_saddr, 4)?,
            skc_daddr: at(daddr, 4)?,
            skc_v6_rcv_saddr: at(v6_rcv, 16)?,
            skc_v6_daddr: at(v6_d, 16)?,
            skc_bound_dev_if: at(bound, 4)?,
            sk_ack_backlog: at(ack_backlog, 4)?,
            sk_max_ack_backlog: at(max_ack_backlog, 4)?,
            sk_uid: at(uid, 4)?,
            sk_socket: at(socket, 8)?,
            rcv_nxt: at(rcv_nxt, 4)?,
            copied_seq: at(copied_seq, 4)?,
            write_seq: at(write_seq, 4)?,
            snd_una: at(snd_una, 4)?,
            rcv_tstamp: at(rcv_tstamp, 4)?,
            bytes_acked: at(bytes_acked, 8)?,
            socket_to_ino: i32::try_from(
                i64::from(alloc_inode.offset) - i64::from(alloc_socket.offset)
                    + i64::from(sized(i_ino, 8)?),
            )
            .map_err(|_| "socket_alloc offsets out of range".to_string())?,
        })
    }
}

/// Where the record is built on the stack, and scratch slots below it.
const REC: i16 = -(RECORD as i16);
const TMP: i16 = REC - 8;
const TMP2: i16 = REC - 16;

/// probe_read_kernel(fp + dst, size, src + off): clobbers r0-r5.
fn read(a: &mut Asm, dst: i16, size: i32, src: Reg, off: i32) {
    a.mov(R1, FP);
    a.add_imm(R1, i32::from(dst));
    a.mov_imm(R2, size);
    a.mov(R3, src);
    a.add_imm(R3, off);
    a.call(HELPER_PROBE_READ_KERNEL);
}

/// The program: a state byte per socket; with `records`, a record instead
/// for each CLOSE_WAIT or LISTEN socket.
pub fn program(o: &Offsets, records: Option<&RecordOffsets>) -> ParseResult<Vec<u64>> {
    let mut a = Asm::default();
    let (write, out) = (a.label(), a.label());
    a.mov(R6, R1);
    a.ldx(Size::DW, R7, R6, o.ctx_sk);
    // No socket: the iteration's end.
    a.jmp_imm(Cond::Eq, R7, 0, out);
    a.ldx(Size::DW, R1, R6, o.ctx_meta);
    a.ldx(Size::DW, R9, R1, o.meta_seq);
    // The state stays in r8, which helper calls keep, for the record.
    a.ldx(Size::B, R8, R7, o.skc_state);
    a.stx(Size::B, FP, SLOT, R8);
    let record = records.map(|_| {
        let record = a.label();
        a.jmp_imm(Cond::Eq, R8, TCP_CLOSE_WAIT, record);
        a.jmp_imm(Cond::Eq, R8, TCP_LISTEN, record);
        record
    });
    a.jmp_imm(Cond::Ne, R8, TCP_TIME_WAIT, write);
    // A timewait mini-socket is no full socket: its substate is read past
    // the sock_common the verifier knows, so through the helper.
    read(&mut a, SLOT, 1, R7, o.tw_substate);
    a.bind(write);
    a.seq_write(R9, SLOT, 1);
    if let (Some(r), Some(record)) = (records, record) {
        a.goto(out);
        a.bind(record);
        write_record(&mut a, r);
    }
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
}

/// A full socket in a kept state (r7, its state in r8): the record, zeroed
/// first (the helper reads every byte of it, and a failed read leaves zeros).
fn write_record(a: &mut Asm, r: &RecordOffsets) {
    let (v4, addresses_done, listen, queues_done, no_socket, rq_done) = (
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
    );
    a.mov_imm(R1, 0);
    for off in (REC..0).step_by(8) {
        a.stx(Size::DW, FP, off, R1);
    }
    a.mov(R1, R8);
    a.add_imm(R1, i32::from(RECORD_TAG));
    a.stx(Size::B, FP, REC, R1);
    read(a, REC + 2, 2, R7, r.skc_family);
    read(a, REC + 4, 2, R7, r.skc_num);
    read(a, REC + 6, 2, R7, r.skc_dport);
    a.ldx(Size::H, R1, FP, REC + 2);
    a.jmp_imm(Cond::Ne, R1, AF_INET6, v4);
    read(a, REC + 8, 16, R7, r.skc_v6_rcv_saddr);
    read(a, REC + 24, 16, R7, r.skc_v6_daddr);
    a.goto(addresses_done);
    a.bind(v4);
    read(a, REC + 8, 4, R7, r.skc_rcv_saddr);
    read(a, REC + 24, 4, R7, r.skc_daddr);
    a.bind(addresses_done);
    read(a, REC + 40, 4, R7, r.skc_bound_dev_if);
    a.jmp_imm(Cond::Eq, R8, TCP_LISTEN, listen);
    // rcv_nxt - copied_seq as an int, left 0 when negative; write_seq - snd_una.
    read(a, TMP, 4, R7, r.rcv_nxt);
    read(a, TMP + 4, 4, R7, r.copied_seq);
    a.ldx(Size::W, R1, FP, TMP);
    a.ldx(Size::W, R2, FP, TMP + 4);
    a.sub(R1, R2);
    a.lsh_imm(R1, 32);
    a.rsh_imm(R1, 32);
    a.jmp_imm(Cond::Gt, R1, i32::MAX, rq_done);
    a.stx(Size::W, FP, REC + 44, R1);
    a.bind(rq_done);
    read(a, TMP, 4, R7, r.write_seq);
    read(a, TMP + 4, 4, R7, r.snd_una);
    a.ldx(Size::W, R1, FP, TMP);
    a.ldx(Size::W, R2, FP, TMP + 4);
    a.sub(R1, R2);
    a.stx(Size::W, FP, REC + 48, R1);
    a.goto(queues_done);
    a.bind(listen);
    read(a, REC + 44, 4, R7, r.sk_ack_backlog);
    read(a, REC + 48, 4, R7, r.sk_max_ack_backlog);
    a.bind(queues_done);
    read(a, REC + 52, 4, R7, r.sk_uid);
    // sock_i_ino: the inode of the socket's own socket_alloc, if it has one.
    read(a, TMP2, 8, R7, r.sk_socket);
    a.ldx(Size::DW, R6, FP, TMP2);
    a.jmp_imm(Cond::Eq, R6, 0, no_socket);
    read(a, REC + 56, 8, R6, r.socket_to_ino);
    a.bind(no_socket);
    // Jiffies since the last ACK, as tcp_info's now - rcv_tstamp (32 bits).
    read(a, TMP, 4, R7, r.rcv_tstamp);
    a.call(HELPER_JIFFIES64);
    a.ldx(Size::W, R1, FP, TMP);
    a.sub(R0, R1);
    a.stx(Size::W, FP, REC + 64, R0);
    read(a, REC + 72, 8, R7, r.bytes_acked);
    a.seq_write(R9, REC, RECORD as i32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_of_another_size_is_refused() {
        let m = Member {
            offset: 16,
            size: 4,
        };
        assert_eq!(sized(m, 4), Ok(16));
        assert!(sized(m, 1).is_err());
        assert!(sized(
            Member {
                offset: 1 << 16,
                size: 1
            },
            1
        )
        .is_err());
    }
}
