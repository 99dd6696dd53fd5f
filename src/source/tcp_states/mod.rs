//! Every TCP socket of a namespace counted by state by the kernel's TCP BPF
//! iterator (`iter/tcp`), one byte per socket, instead of a sock_diag
//! message per socket, and in the same walk a record of each CLOSE_WAIT and
//! LISTEN socket with what a sock_diag dump with tcp_info says of it
//! (addresses, queues, uid, inode, the time since the peer's last ACK,
//! bytes acked). `serve` publishes a count of every state at every look and
//! needs records of those two states: through sock_diag that was one walk
//! of the kernel's socket hash to count and a second to list, or a message
//! for each of 200,000 sockets; now it is one walk. A namespace seen for the
//! first time is still dumped once, into a vector of the size counted, so
//! that the records' vector is sized from then on.
//!
//! Used only where it runs: root with BPF allowed and a kernel with BTF and
//! the TCP iterator (5.9+); elsewhere the dump counts, as before. A kernel
//! whose BTF lacks a member the records need, or that refuses the longer
//! program, gets the counting one and the dump.

mod follow;
mod prog;

pub use follow::begin_look;

use super::bpf_iter;
use super::kernel_btf::with_kernel_btf;
use super::sock_diag::Tally;
use crate::model::{Family, Inode, TcpSocket, TcpState};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

/// The program attached to the iterator, made once per process, and
/// whether it writes records. A refusal is kept too: it comes from
/// privileges or the kernel, which do not change between looks, and trying
/// again would parse the BTF at every look.
static LINK: OnceLock<Result<(OwnedFd, bool), String>> = OnceLock::new();

fn attached() -> Result<&'static (OwnedFd, bool), String> {
    LINK.get_or_init(attach).as_ref().map_err(Clone::clone)
}

/// The program with records where the kernel's BTF names every member it
/// reads and the kernel takes it; the counting one otherwise.
fn attach() -> Result<(OwnedFd, bool), String> {
    let (o, records, func) = offsets()?;
    let load = |insns: &[u64]| load_iter(insns, func);
    // The kernel may refuse the longer program: then count without records.
    if let Some(r) = &records {
        if let Ok(link) = with_reads(r, |r| load(&prog::program(&o, Some(r), None)?)) {
            return Ok((link, true));
        }
    }
    load(&prog::program(&o, None, None)?).map(|link| (link, false))
}

/// What the programs read, from the kernel's BTF, and the iterator's id.
fn offsets() -> Result<(prog::Offsets, Option<prog::RecordOffsets>, u32), String> {
    with_kernel_btf(|btf| {
        let func = btf
            .func_id("bpf_iter_tcp")
            .ok_or("no TCP iterator in this kernel")?;
        let o = prog::Offsets::from_btf(btf)?;
        Ok((o, prog::RecordOffsets::from_btf(btf).ok(), func))
    })
}

fn load_iter(insns: &[u64], func: u32) -> Result<OwnedFd, String> {
    bpf_iter::attach(insns, func, "cwleak_states").map(|(_, link)| link)
}

/// One pass of the program that reads fields through the helper, as on a
/// kernel without bpf_rdonly_cast, whatever this one allows.
#[cfg(test)]
pub fn read_here_by_helper(netns: Inode, room: Option<usize>) -> Result<Pass, String> {
    let (o, records, func) = offsets()?;
    let r = records.ok_or("no record offsets in this kernel's BTF")?;
    let r = r.with_helper_reads().unwrap_or(r);
    let link = load_iter(&prog::program(&o, Some(&r), None)?, func)?;
    read_through(&link, true, netns, room)
}

/// What `build` makes of `r`, or, if that fails (a kernel that refuses
/// plain loads from a cast pointer), of `r` read through the helper.
fn with_reads<T>(
    r: &prog::RecordOffsets,
    build: impl Fn(&prog::RecordOffsets) -> Result<T, String>,
) -> Result<T, String> {
    build(r).or_else(|why| match r.with_helper_reads() {
        Some(helper) => build(&helper),
        None => Err(why),
    })
}

/// What one pass of the iterator gave: every socket counted by state, and,
/// where the program writes them, a record of each CLOSE_WAIT and LISTEN
/// socket (None: the sock_diag dump is still needed for those).
#[derive(Debug, Default)]
pub struct Pass {
    pub counts: Tally,
    pub kept: Option<Vec<TcpSocket>>,
    /// Read from the followed sockets (`follow`), not by a walk: what the
    /// tests hold to be so.
    #[cfg_attr(not(test), allow(dead_code))]
    pub followed: bool,
}

/// Every TCP socket of the calling thread's network namespace, by state
/// (the iterator reads the namespace of whoever opens it), and the records
/// of its CLOSE_WAIT and LISTEN sockets where the program writes them and
/// `room` says how many to expect (None: only counted, so that a vector of
/// 40,000 records is never grown by doubling, its old and new buffers held
/// at once).
pub fn read_here(netns: Inode, room: Option<usize>) -> Result<Pass, String> {
    if let Some(pass) = follow::read_here(netns, room) {
        return pass;
    }
    let (link, with_records) = attached()?;
    read_through(link, *with_records, netns, room)
}

/// One pass of the iterator behind `link` in the calling thread's namespace.
fn read_through(
    link: &OwnedFd,
    with_records: bool,
    netns: Inode,
    room: Option<usize>,
) -> Result<Pass, String> {
    let iter = bpf_iter::iterate(link).map_err(|e| format!("opening the iterator: {e}"))?;
    let mut pass = Pass {
        counts: Tally::default(),
        kept: room.filter(|_| with_records).map(Vec::with_capacity),
        followed: false,
    };
    let tick_ns = tick_ns();
    bpf_iter::stream(std::fs::File::from(iter), prog::RECORD, |out| {
        parse(out, netns, tick_ns, &mut pass)
    })
    .map_err(|e| format!("reading the iterator: {e}"))?;
    Ok(pass)
}

/// Every whole item of `out` folded into `pass`; returns the bytes used (a
/// record cut by the end of a read waits for the next).
fn parse(out: &[u8], netns: Inode, tick_ns: u64, pass: &mut Pass) -> usize {
    let mut at = 0;
    while let Some(&b) = out.get(at) {
        if b & prog::RECORD_TAG == 0 {
            parse_counted(b, pass);
            at += 1;
            continue;
        }
        let Some(rec) = out.get(at..at + prog::RECORD) else {
            break;
        };
        if let Some(s) = socket_of(rec, netns, tick_ns) {
            pass.counts.add(s.state);
            if let Some(kept) = pass.kept.as_mut() {
                kept.push(s);
            }
        }
        at += prog::RECORD;
    }
    at
}

/// A socket counted, not kept: its state byte.
fn parse_counted(b: u8, pass: &mut Pass) {
    if let Some(state) = state_of(b) {
        pass.counts.add(state);
    }
}

/// A record as the socket sock_diag would describe (`prog::RECORD`).
fn socket_of(r: &[u8], netns: Inode, tick_ns: u64) -> Option<TcpSocket> {
    let u16_at = |i: usize| u16::from_ne_bytes([r[i], r[i + 1]]);
    let u32_at = |i: usize| u32::from_ne_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&r[i..i + 8]);
        u64::from_ne_bytes(b)
    };
    let state = TcpState::from_kernel(r[0] & !prog::RECORD_TAG)?;
    let sport = u16_at(4);
    let dport = u16::from_be_bytes([r[6], r[7]]);
    let (family, local, remote) = match i32::from(u16_at(2)) {
        libc::AF_INET => {
            let v4 = |i: usize, port| {
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::new(r[i], r[i + 1], r[i + 2], r[i + 3]),
                    port,
                ))
            };
            (Family::Ipv4, v4(8, sport), v4(24, dport))
        }
        libc::AF_INET6 => {
            let v6 = |i: usize, port| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&r[i..i + 16]);
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, 0, 0))
            };
            (Family::Ipv6, v6(8, sport), v6(24, dport))
        }
        _ => return None,
    };
    Some(TcpSocket {
        inode: u64_at(56),
        netns,
        family,
        local,
        remote,
        state,
        recv_q: u32_at(44),
        send_q: u32_at(48),
        uid: u32_at(52),
        // A listener's tcp_info stops after its queues (tcp_get_info): the
        // rest is zeros.
        last_ack_ms: Some(if state == TcpState::Listen {
            0
        } else {
            jiffies_to_ms(u64::from(u32_at(64)), tick_ns)
        }),
        bytes_acked: Some(if state == TcpState::Listen {
            0
        } else {
            u64_at(72)
        }),
        timewait: false,
        bound_if: Some(u32_at(40)),
    })
}

/// The kernel's tick (1/HZ) in ns: the resolution of its coarse clocks.
fn tick_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes one timespec through a valid pointer.
    let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } == 0;
    match u64::try_from(ts.tv_nsec) {
        Ok(ns) if ok && ts.tv_sec == 0 && ns > 0 => ns,
        // HZ=250, the most common: off by a factor only if the call fails.
        _ => 4_000_000,
    }
}

/// jiffies_to_msecs: rounded up, as the kernel does for HZ that do not
/// divide 1000.
fn jiffies_to_ms(j: u64, tick_ns: u64) -> u64 {
    (j * tick_ns).div_ceil(1_000_000)
}

/// Every TCP socket of the calling thread's network namespace, by state.
#[cfg(test)]
pub fn count_here() -> Result<Tally, String> {
    read_here(0, None).map(|p| p.counts)
}

/// A state byte as sock_diag would report the socket.
fn state_of(b: u8) -> Option<TcpState> {
    match TcpState::from_kernel(b) {
        // A request socket (a connection's SYN answered, its ACK not yet
        // in): sock_diag reports it as SYN_RECV.
        Some(TcpState::NewSynRecv) => Some(TcpState::SynRecv),
        // 0: the timewait substate could not be read (the helper zeroes its
        // output on a fault); the socket is a timewait one all the same.
        None if b == 0 => Some(TcpState::TimeWait),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_bytes_are_read_as_sock_diag_reports_them() {
        assert_eq!(state_of(1), Some(TcpState::Established));
        assert_eq!(state_of(8), Some(TcpState::CloseWait));
        assert_eq!(state_of(10), Some(TcpState::Listen));
        assert_eq!(state_of(12), Some(TcpState::SynRecv));
        assert_eq!(state_of(0), Some(TcpState::TimeWait));
        assert_eq!(state_of(13), None);
    }
}
