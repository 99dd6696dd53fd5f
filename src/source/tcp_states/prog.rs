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
use crate::source::bpf_asm::{Asm, Cond, Reg, Size, FP, R0, R1, R2, R3, R4, R6, R7, R8, R9};

const HELPER_JIFFIES64: i32 = 118;
const TCP_CLOSE: i32 = 7;
const TCP_NEW_SYN_RECV: i32 = 12;
const IPPROTO_TCP: i32 = 6;
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

/// BTF ids for reading a socket's fields with plain loads: the
/// bpf_rdonly_cast kfunc makes an address a typed pointer that a program
/// may load from (a load that faults reads 0, as a failed helper read
/// leaves 0): one instruction per field where bpf_probe_read_kernel costs
/// a call and a copy, tens of thousands of times a look.
#[derive(Debug, Clone, Copy)]
pub struct Typed {
    cast: u32,
    tcp_sock: u32,
    socket_alloc: u32,
}

/// What the record program reads beyond `Offsets`.
#[derive(Debug, Clone)]
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
    /// The part of sock_common that holds the addresses, ports, family and
    /// bound interface (from an 8-byte boundary; at most `COMMON` bytes):
    /// read in one helper call instead of one per member.
    common_at: i32,
    common_len: i32,
    /// Plain loads where the kernel has bpf_rdonly_cast (and every field
    /// is at an offset a load instruction holds); helper reads otherwise.
    typed: Option<Typed>,
}

/// Room on the stack for the part of sock_common a record copies.
const COMMON: i32 = 128;

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
        let common = [family, num, dport, rcv_saddr, daddr, v6_rcv, v6_d, bound];
        let first = common.iter().map(|m| m.offset).min().unwrap_or(0) / 8 * 8;
        let end = common.iter().map(|m| m.offset + m.size).max().unwrap_or(0);
        let common_len = i32::try_from(end - first).unwrap_or(i32::MAX);
        if common_len > COMMON {
            return Err(format!("sock_common's members span {common_len} bytes"));
        }
        let common_at = i32::try_from(first).map_err(|_| "sock_common too large".to_string())?;
        let fields = [
            ack_backlog,
            max_ack_backlog,
            uid,
            socket,
            rcv_nxt,
            copied_seq,
            write_seq,
            snd_una,
            rcv_tstamp,
            bytes_acked,
        ];
        let in_reach = fields.iter().all(|m| m.offset + m.size <= i16::MAX as u32)
            && alloc_inode.offset + i_ino.offset + 8 <= i16::MAX as u32;
        // The struct socket a sock points to must be where its
        // socket_alloc starts: the cast is to the socket_alloc.
        let typed = (in_reach && alloc_socket.offset == 0)
            .then(|| {
                Some(Typed {
                    cast: btf.func_id("bpf_rdonly_cast")?,
                    tcp_sock: btf.struct_id("tcp_sock")?,
                    socket_alloc: btf.struct_id("socket_alloc")?,
                })
            })
            .flatten();
        Ok(RecordOffsets {
            typed,
            common_at,
            common_len,
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

    /// The same, read through the helper (a kernel that refused the
    /// program with plain loads).
    pub fn with_helper_reads(&self) -> Option<RecordOffsets> {
        self.typed.map(|_| RecordOffsets {
            typed: None,
            ..self.clone()
        })
    }
}

/// `reg` = bpf_rdonly_cast(reg, type id): a typed pointer. Clobbers r0-r5.
fn cast(a: &mut Asm, t: &Typed, reg: Reg, type_id: u32) {
    a.mov(R1, reg);
    a.mov_imm(R2, type_id as i32);
    a.call_kfunc(t.cast);
    a.mov(reg, R0);
}

/// The `size`-byte field at `src + off` into `fp + dst`: a plain load when
/// `src` is typed, the helper otherwise. Clobbers r0-r5.
fn field(a: &mut Asm, typed: bool, dst: i16, size: i32, src: Reg, off: i32) {
    let s = u32::try_from(size).ok().and_then(Size::of_bytes);
    match (s, i16::try_from(off)) {
        (Some(s), Ok(off)) if typed => {
            a.ldx(s, R1, src, off);
            a.stx(s, FP, dst, R1);
        }
        // The helper takes any address, typed or not.
        _ => a.probe_read(dst, size, src, off),
    }
}

/// Where the record is built on the stack, and scratch slots below it.
const REC: i16 = -(RECORD as i16);
const TMP: i16 = REC - 8;
const TMP2: i16 = REC - 16;
/// The followed set's key (a socket's address) and value (namespace, state).
const KEY: i16 = REC - 24;
const VAL: i16 = REC - 32;
/// The namespace of the socket a pass is at.
const NS: i16 = REC - 44;
/// The copy of sock_common's start (`COMMON` bytes).
const SC: i16 = REC - 72 - COMMON as i16;

/// The program: a state byte per socket; with `records`, a record instead
/// for each CLOSE_WAIT or LISTEN socket.
pub fn program(
    o: &Offsets,
    records: Option<&RecordOffsets>,
    follow: Option<(&FollowOffsets, &FollowMaps)>,
) -> ParseResult<Vec<u64>> {
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
    if let Some((f, maps)) = follow {
        // A full socket goes into the followed set as the walk finds it:
        // the walk holds the socket's lock, and so does every state change,
        // so the map ends up with each socket's state of now whichever of
        // the two came first.
        let skip = a.label();
        a.jmp_imm(Cond::Eq, R8, TCP_TIME_WAIT, skip);
        a.jmp_imm(Cond::Eq, R8, TCP_NEW_SYN_RECV, skip);
        follow_set(&mut a, f, maps, R7, R8);
        a.bind(skip);
    }
    let record = records.map(|_| {
        let record = a.label();
        a.jmp_imm(Cond::Eq, R8, TCP_CLOSE_WAIT, record);
        a.jmp_imm(Cond::Eq, R8, TCP_LISTEN, record);
        record
    });
    a.jmp_imm(Cond::Ne, R8, TCP_TIME_WAIT, write);
    // A timewait mini-socket is no full socket: its substate is read past
    // the sock_common the verifier knows, so through the helper.
    a.probe_read(SLOT, 1, R7, o.tw_substate);
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

/// The namespace inode of the socket at `sk` into the u32 at `fp + dst`.
fn netns_into(a: &mut Asm, f: &FollowOffsets, sk: Reg, dst: i16) {
    a.probe_read(TMP2, 8, sk, f.skc_net);
    a.ldx(Size::DW, R3, FP, TMP2);
    a.probe_read(dst, 4, R3, f.net_inum);
}

/// `map[fp + KEY] = fp + VAL`; an entry the map cannot take is counted in
/// `lost` (what is followed is then incomplete).
fn update_or_lose(a: &mut Asm, map: i32, lost: i32) {
    let done = a.label();
    a.map_update(map, KEY, VAL, 0);
    a.jmp_imm(Cond::Eq, R0, 0, done);
    lose(a, lost);
    a.bind(done);
}

/// `lost[0] += 1`: what is followed is incomplete.
fn lose(a: &mut Asm, lost: i32) {
    let done = a.label();
    a.st_imm(Size::W, FP, IDX, 0);
    a.map_lookup(lost, IDX);
    a.jmp_imm(Cond::Eq, R0, 0, done);
    a.mov_imm(R1, 1);
    a.atomic_add64(R0, 0, R1);
    a.bind(done);
}

/// `counts[fp + CKEY] += delta`, the entry made first if need be; a full
/// map counts in `lost` (the counts are then wrong, and not used).
fn count(a: &mut Asm, counts: i32, lost: i32, delta: i32) {
    let (add, done, full) = (a.label(), a.label(), a.label());
    a.map_lookup(counts, CKEY);
    a.jmp_imm(Cond::Ne, R0, 0, add);
    a.st_imm(Size::DW, FP, CVAL, 0);
    a.map_update(counts, CKEY, CVAL, BPF_NOEXIST);
    a.map_lookup(counts, CKEY);
    a.jmp_imm(Cond::Eq, R0, 0, full);
    a.bind(add);
    a.mov_imm(R1, delta);
    a.atomic_add64(R0, 0, R1);
    a.goto(done);
    a.bind(full);
    lose(a, lost);
    a.bind(done);
}

/// The socket at `sk` is now in `state` (not CLOSE): its entry (namespace,
/// state) replaces the one it had, the count of the old one goes down and
/// of the new one up, and it is among the kept sockets if CLOSE_WAIT or
/// LISTEN. Both callers hold the socket's lock, so no other change of the
/// same socket comes between the read of its entry and the write.
fn follow_set(a: &mut Asm, f: &FollowOffsets, maps: &FollowMaps, sk: Reg, state: Reg) {
    let (fresh, kept, not_kept, done) = (a.label(), a.label(), a.label(), a.label());
    a.stx(Size::DW, FP, KEY, sk);
    a.map_lookup(maps.socks, KEY);
    a.jmp_imm(Cond::Eq, R0, 0, fresh);
    // The entry is (namespace, state): the count's key.
    a.ldx(Size::DW, R1, R0, 0);
    a.stx(Size::DW, FP, CKEY, R1);
    count(a, maps.counts, maps.lost, -1);
    a.bind(fresh);
    a.stx(Size::W, FP, VAL + 4, state);
    netns_into(a, f, sk, VAL);
    update_or_lose(a, maps.socks, maps.lost);
    a.ldx(Size::DW, R1, FP, VAL);
    a.stx(Size::DW, FP, CKEY, R1);
    count(a, maps.counts, maps.lost, 1);
    a.jmp_imm(Cond::Eq, state, TCP_CLOSE_WAIT, kept);
    a.jmp_imm(Cond::Eq, state, TCP_LISTEN, kept);
    a.goto(not_kept);
    a.bind(kept);
    update_or_lose(a, maps.kept, maps.lost);
    a.goto(done);
    a.bind(not_kept);
    a.map_delete(maps.kept, KEY);
    a.bind(done);
}

/// The socket at `fp + KEY` closed: it leaves both maps and its count.
fn follow_close(a: &mut Asm, maps: &FollowMaps) {
    let gone = a.label();
    a.map_lookup(maps.socks, KEY);
    a.jmp_imm(Cond::Eq, R0, 0, gone);
    a.ldx(Size::DW, R1, R0, 0);
    a.stx(Size::DW, FP, CKEY, R1);
    count(a, maps.counts, maps.lost, -1);
    a.map_delete(maps.socks, KEY);
    a.map_delete(maps.kept, KEY);
    a.bind(gone);
}

/// The maps the following programs share: `socks` (every followed socket's
/// address to its namespace inode and state, u32 each), `kept` (the same,
/// for the CLOSE_WAIT and LISTEN ones only), `counts` ((namespace, state)
/// to how many, i64) and `lost` (entries a full map could not take, u64).
pub struct FollowMaps {
    pub socks: i32,
    pub kept: i32,
    pub counts: i32,
    pub lost: i32,
}

/// What following states reads beside the records: a socket's namespace
/// and protocol, a listener's count of request sockets.
pub struct FollowOffsets {
    skc_net: i32,
    net_inum: i32,
    sk_protocol: i32,
    skc_state: i32,
    qlen: i32,
}

impl FollowOffsets {
    pub fn from_btf(btf: &Btf) -> ParseResult<FollowOffsets> {
        let [skc_net, skc_state] = btf.members("sock_common", ["skc_net", "skc_state"])?;
        let [net_ns] = btf.members("net", ["ns"])?;
        let [inum] = btf.members("ns_common", ["inum"])?;
        let [protocol] = btf.members("sock", ["sk_protocol"])?;
        let [accept_queue] = btf.members("inet_connection_sock", ["icsk_accept_queue"])?;
        let [qlen] = btf.members("request_sock_queue", ["qlen"])?;
        let at = |m: Member, size: u32| sized(m, size).map(i32::from);
        Ok(FollowOffsets {
            skc_net: at(skc_net, 8)?,
            net_inum: at(net_ns, net_ns.size)? + at(inum, 4)?,
            sk_protocol: at(protocol, 2)?,
            skc_state: at(skc_state, 1)?,
            qlen: at(accept_queue, accept_queue.size)? + at(qlen, 4)?,
        })
    }
}

/// The program at the `inet_sock_set_state` tracepoint (raw: its
/// arguments are the socket, the old state and the new one): a TCP socket
/// that closes leaves what is followed, any other change puts it there
/// with its new state and namespace (`follow_set`).
pub fn state_change_program(f: &FollowOffsets, maps: &FollowMaps) -> ParseResult<Vec<u64>> {
    let mut a = Asm::default();
    let (keep, out) = (a.label(), a.label());
    a.ldx(Size::DW, R6, R1, 0);
    a.ldx(Size::DW, R7, R1, 16);
    a.st_imm(Size::DW, FP, TMP, 0);
    a.probe_read(TMP, 2, R6, f.sk_protocol);
    a.ldx(Size::H, R1, FP, TMP);
    a.jmp_imm(Cond::Ne, R1, IPPROTO_TCP, out);
    a.jmp_imm(Cond::Ne, R7, TCP_CLOSE, keep);
    a.stx(Size::DW, FP, KEY, R6);
    follow_close(&mut a, maps);
    a.goto(out);
    a.bind(keep);
    follow_set(&mut a, f, maps, R6, R7);
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    a.finish()
}

/// The maps of a look's pass over the kept sockets: `kept` (read), `out`
/// (an array of `RECORD`s, `out_room` of them, written) and `out_len` (its
/// next free slot, u64 at index 0; past `out_room`, records were dropped).
pub struct PassMaps {
    pub kept: i32,
    pub out: i32,
    pub out_len: i32,
    pub out_room: u32,
}

const CKEY: i16 = REC - 56;
const CVAL: i16 = REC - 64;
const IDX: i16 = REC - 68;
const HELPER_FOR_EACH_MAP_ELEM: i32 = 164;
const BPF_NOEXIST: i32 = 1;

/// A look's pass, run on demand (a raw tracepoint program under
/// BPF_PROG_TEST_RUN): bpf_for_each_map_elem over the kept sockets, the
/// record of each put in `out`. The callback's first instruction is the
/// second value returned.
pub fn pass_program(
    r: &RecordOffsets,
    f: &FollowOffsets,
    maps: &PassMaps,
) -> ParseResult<(Vec<u64>, u32)> {
    let mut a = Asm::default();
    let callback = a.label();
    a.ld_map(R1, maps.kept);
    a.ld_func(R2, callback);
    a.mov_imm(R3, 0);
    a.mov_imm(R4, 0);
    a.call(HELPER_FOR_EACH_MAP_ELEM);
    a.mov_imm(R0, 0);
    a.exit();

    a.bind(callback);
    let out = a.label();
    a.ldx(Size::DW, R7, R2, 0);
    a.ldx(Size::W, R8, R3, 4);
    a.ldx(Size::W, R6, R3, 0);
    a.stx(Size::W, FP, NS, R6);
    if let Some(t) = &r.typed {
        cast(&mut a, t, R7, t.tcp_sock);
    }
    // Still that socket: one closed since the map was read is skipped.
    a.st_imm(Size::DW, FP, TMP, 0);
    field(&mut a, r.typed.is_some(), TMP, 1, R7, f.skc_state);
    a.ldx(Size::B, R1, FP, TMP);
    a.jmp_reg(Cond::Ne, R1, R8, out);
    fill_record(&mut a, r, Some(f));
    // The next slot of `out`; past its room, the record is dropped (the
    // count says so).
    a.st_imm(Size::W, FP, IDX, 0);
    a.map_lookup(maps.out_len, IDX);
    a.jmp_imm(Cond::Eq, R0, 0, out);
    a.mov_imm(R1, 1);
    a.atomic_fetch_add64(R0, 0, R1);
    a.jmp_imm(Cond::Ge, R1, maps.out_room as i32, out);
    a.stx(Size::W, FP, IDX, R1);
    a.map_lookup(maps.out, IDX);
    a.jmp_imm(Cond::Eq, R0, 0, out);
    // The slot is the program's to write: stored, not copied by a helper.
    for off in (0..RECORD as i16).step_by(8) {
        a.ldx(Size::DW, R1, FP, REC + off);
        a.stx(Size::DW, R0, off, R1);
    }
    a.bind(out);
    a.mov_imm(R0, 0);
    a.exit();
    let at = a.at(callback).ok_or("the callback is not bound")?;
    let at = u32::try_from(at).map_err(|_| "program too long")?;
    Ok((a.finish()?, at))
}

/// A full socket in a kept state (r7, its state in r8): the record, zeroed
/// first (the helper reads every byte of it, and a failed read leaves zeros).
fn write_record(a: &mut Asm, r: &RecordOffsets) {
    if let Some(t) = &r.typed {
        cast(a, t, R7, t.tcp_sock);
    }
    fill_record(a, r, None);
    a.seq_write(R9, REC, RECORD as i32);
}

/// The record of the socket at r7 (its state in r8) built at `fp + REC`;
/// with `follow`, its namespace (from `fp + NS`) and a listener's request
/// sockets in it too. With `r.typed`, r7 is a typed pointer (`cast`) and
/// fields are plain loads. Clobbers r0-r6.
fn fill_record(a: &mut Asm, r: &RecordOffsets, follow: Option<&FollowOffsets>) {
    let typed = r.typed.is_some();
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
    // sock_common's addresses, ports, family and interface: loaded from
    // the socket when typed, else read in one helper call and copied from
    // that copy into the record.
    if !typed {
        a.probe_read(SC, r.common_len, R7, r.common_at);
    }
    let copy = |a: &mut Asm, size: Size, member: i32, to: i16| {
        // The member's place in the copy: its offset past `common_at`
        // (under COMMON, checked when the offsets were read); in the
        // socket, the member's own (under COMMON too).
        if typed {
            a.ldx(size, R1, R7, member as i16);
        } else {
            a.ldx(size, R1, FP, SC + (member - r.common_at) as i16);
        }
        a.stx(size, FP, to, R1);
    };
    copy(a, Size::H, r.skc_family, REC + 2);
    copy(a, Size::H, r.skc_num, REC + 4);
    copy(a, Size::H, r.skc_dport, REC + 6);
    a.ldx(Size::H, R1, FP, REC + 2);
    a.jmp_imm(Cond::Ne, R1, AF_INET6, v4);
    for half in [0, 8] {
        copy(
            a,
            Size::DW,
            r.skc_v6_rcv_saddr + half,
            REC + 8 + half as i16,
        );
        copy(a, Size::DW, r.skc_v6_daddr + half, REC + 24 + half as i16);
    }
    a.goto(addresses_done);
    a.bind(v4);
    copy(a, Size::W, r.skc_rcv_saddr, REC + 8);
    copy(a, Size::W, r.skc_daddr, REC + 24);
    a.bind(addresses_done);
    copy(a, Size::W, r.skc_bound_dev_if, REC + 40);
    a.jmp_imm(Cond::Eq, R8, TCP_LISTEN, listen);
    // rcv_nxt - copied_seq as an int, left 0 when negative; write_seq - snd_una.
    field(a, typed, TMP, 4, R7, r.rcv_nxt);
    field(a, typed, TMP + 4, 4, R7, r.copied_seq);
    a.ldx(Size::W, R1, FP, TMP);
    a.ldx(Size::W, R2, FP, TMP + 4);
    a.sub(R1, R2);
    a.lsh_imm(R1, 32);
    a.rsh_imm(R1, 32);
    a.jmp_imm(Cond::Gt, R1, i32::MAX, rq_done);
    a.stx(Size::W, FP, REC + 44, R1);
    a.bind(rq_done);
    field(a, typed, TMP, 4, R7, r.write_seq);
    field(a, typed, TMP + 4, 4, R7, r.snd_una);
    a.ldx(Size::W, R1, FP, TMP);
    a.ldx(Size::W, R2, FP, TMP + 4);
    a.sub(R1, R2);
    a.stx(Size::W, FP, REC + 48, R1);
    a.goto(queues_done);
    a.bind(listen);
    field(a, typed, REC + 44, 4, R7, r.sk_ack_backlog);
    field(a, typed, REC + 48, 4, R7, r.sk_max_ack_backlog);
    a.bind(queues_done);
    field(a, typed, REC + 52, 4, R7, r.sk_uid);
    // sock_i_ino: the inode of the socket's own socket_alloc, if it has one.
    field(a, typed, TMP2, 8, R7, r.sk_socket);
    a.ldx(Size::DW, R6, FP, TMP2);
    a.jmp_imm(Cond::Eq, R6, 0, no_socket);
    if let Some(t) = &r.typed {
        cast(a, t, R6, t.socket_alloc);
    }
    field(a, typed, REC + 56, 8, R6, r.socket_to_ino);
    a.bind(no_socket);
    // Jiffies since the last ACK, as tcp_info's now - rcv_tstamp (32 bits).
    field(a, typed, TMP, 4, R7, r.rcv_tstamp);
    a.call(HELPER_JIFFIES64);
    a.ldx(Size::W, R1, FP, TMP);
    a.sub(R0, R1);
    a.stx(Size::W, FP, REC + 64, R0);
    field(a, typed, REC + 72, 8, R7, r.bytes_acked);
    if let Some(f) = follow {
        // The map's pass covers every namespace: the record says whose.
        let not_listen = a.label();
        a.ldx(Size::W, R1, FP, NS);
        a.stx(Size::W, FP, REC + 68, R1);
        // A listener's request sockets (SYN_RECV): its last ACK is 0 anyway.
        a.jmp_imm(Cond::Ne, R8, TCP_LISTEN, not_listen);
        field(a, typed, REC + 64, 4, R7, f.qlen);
        a.bind(not_listen);
    }
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
