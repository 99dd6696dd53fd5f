//! The bytes of a sock_diag TCP dump: the one request we send and the messages the
//! kernel sends back. Offsets come from the stable UAPI headers linux/netlink.h,
//! linux/inet_diag.h and linux/tcp.h. Everything here borrows the receive buffer;
//! nothing allocates except the `TcpSocket` handed back to the caller.

use crate::model::{Family, Inode, TcpSocket, TcpState};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// sizeof(struct nlmsghdr).
const NLMSG_HDRLEN: usize = 16;
/// sizeof(struct inet_diag_req_v2): family, protocol, ext, pad, states, 48-byte sockid.
const REQ_V2_LEN: usize = 56;
/// sizeof(struct inet_diag_req), the original request: family, src_len, dst_len,
/// ext, 48-byte sockid, states, dbs.
const REQ_V1_LEN: usize = 60;
/// sizeof(struct inet_diag_msg); attributes follow it (already 4-byte aligned).
const DIAG_MSG_LEN: usize = 72;

pub(super) const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
pub(super) const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
/// linux/sock_diag.h: the request and reply type of every sock_diag dump.
pub(super) const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// linux/inet_diag.h: the original TCP dump request, and the type of its replies.
pub(super) const TCPDIAG_GETSOCK: u16 = 18;
/// The dump changed under the kernel's feet (a table was resized or reordered).
pub(super) const NLM_F_DUMP_INTR: u16 = libc::NLM_F_DUMP_INTR as u16;
const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;

/// linux/inet_diag.h: attribute carrying struct tcp_info.
const INET_DIAG_INFO: u16 = 2;
/// nla_type carries two flag bits (nested, net byte order) above the type.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// struct tcp_info: 8 u8 fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked,
/// lost, retrans, fackets, last_data_sent, last_ack_sent, last_data_recv, last_ack_recv:
/// 8 + 12 * 4 = 56.
const TCPI_LAST_ACK_RECV: usize = 56;
/// ... then u32 pmtu .. total_retrans (12 of them, to 104), u64 pacing_rate,
/// max_pacing_rate, bytes_acked (Linux 4.1+).
const TCPI_BYTES_ACKED: usize = 120;

/// The dump request for one address family: nlmsghdr + inet_diag_req_v2, all-zero sockid.
pub(super) fn dump_request(
    family: u8,
    states: u32,
    with_info: bool,
    seq: u32,
) -> [u8; NLMSG_HDRLEN + REQ_V2_LEN] {
    let mut m = [0u8; NLMSG_HDRLEN + REQ_V2_LEN];
    dump_header(&mut m, SOCK_DIAG_BY_FAMILY, seq);
    m[16] = family;
    m[17] = libc::IPPROTO_TCP as u8;
    m[18] = ext_bits(with_info);
    m[20..24].copy_from_slice(&states.to_ne_bytes());
    m
}

/// A request for one socket by its addresses (inet_diag_get_exact): the
/// kernel looks it up in its hash, walking nothing, and answers with one
/// SOCK_DIAG_BY_FAMILY reply, or an NLMSG_ERROR (ENOENT: no such socket).
/// A v4-mapped IPv6 pair is found too (inet_diag_find_one_icsk looks it up
/// as IPv4). `bound_if` must be the socket's own (0 for most): a socket bound
/// to a device is only found when the lookup names that device.
pub(super) fn exact_request(
    local: SocketAddr,
    remote: SocketAddr,
    bound_if: u32,
    with_info: bool,
    seq: u32,
) -> [u8; NLMSG_HDRLEN + REQ_V2_LEN] {
    let mut m = [0u8; NLMSG_HDRLEN + REQ_V2_LEN];
    dump_header(&mut m, SOCK_DIAG_BY_FAMILY, seq);
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[16] = match local {
        SocketAddr::V4(_) => libc::AF_INET as u8,
        SocketAddr::V6(_) => libc::AF_INET6 as u8,
    };
    m[17] = libc::IPPROTO_TCP as u8;
    m[18] = ext_bits(with_info);
    m[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    // inet_diag_sockid: sport, dport (big-endian), src[16], dst[16], if, cookie[2].
    m[24..26].copy_from_slice(&local.port().to_be_bytes());
    m[26..28].copy_from_slice(&remote.port().to_be_bytes());
    put_addr(&mut m[28..44], local);
    put_addr(&mut m[44..60], remote);
    m[60..64].copy_from_slice(&bound_if.to_ne_bytes());
    // INET_DIAG_NOCOOKIE: any socket with these addresses (the reply's inode
    // says whether it is the one asked about).
    m[64..72].fill(0xff);
    m
}

fn put_addr(to: &mut [u8], addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => to[..4].copy_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => to.copy_from_slice(&a.ip().octets()),
    }
}

/// The original request (TCPDIAG_GETSOCK + struct inet_diag_req): the kernel
/// answers it with both address families in one walk of its tables (the
/// compat path sets sdiag_family to AF_UNSPEC), where inet_diag_req_v2 takes
/// one walk per family. Replies are inet_diag_msg, as for v2.
pub(super) fn dump_request_both(
    states: u32,
    with_info: bool,
    seq: u32,
) -> [u8; NLMSG_HDRLEN + REQ_V1_LEN] {
    let mut m = [0u8; NLMSG_HDRLEN + REQ_V1_LEN];
    dump_header(&mut m, TCPDIAG_GETSOCK, seq);
    // idiag_family is ignored by the dump; AF_INET is what ss sends.
    m[16] = libc::AF_INET as u8;
    m[19] = ext_bits(with_info);
    // After the 48-byte sockid: idiag_states, then idiag_dbs (0).
    m[68..72].copy_from_slice(&states.to_ne_bytes());
    m
}

/// The nlmsghdr of a dump request filling all of `m`; nlmsg_pid stays 0
/// (the kernel fills in our port id).
fn dump_header(m: &mut [u8], kind: u16, seq: u32) {
    let len = u32::try_from(m.len()).unwrap_or(u32::MAX);
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
}

/// idiag_ext: bit (n - 1) asks for attribute n.
fn ext_bits(with_info: bool) -> u8 {
    if with_info {
        1 << (INET_DIAG_INFO - 1)
    } else {
        0
    }
}

/// One netlink message inside a received datagram.
pub(super) struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Walks the netlink messages packed into one datagram (NLMSG_OK / NLMSG_NEXT).
pub(super) struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(datagram: &'a [u8]) -> Self {
        Messages { rest: datagram }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let len = u32_at(self.rest, 0).map_or(0, |l| l as usize);
        if len < NLMSG_HDRLEN || len > self.rest.len() {
            let err = format!(
                "malformed netlink message: length {len} with {} bytes left in the datagram",
                self.rest.len()
            );
            self.rest = &[];
            return Some(Err(err));
        }
        let msg = Message {
            kind: u16_at(self.rest, 4).unwrap_or(0),
            flags: u16_at(self.rest, 6).unwrap_or(0),
            seq: u32_at(self.rest, 8).unwrap_or(0),
            payload: &self.rest[NLMSG_HDRLEN..len],
        };
        self.rest = self.rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    }
}

/// The errno in an NLMSG_ERROR (struct nlmsgerr) or NLMSG_DONE payload, positive; 0 = none.
pub(super) fn errno_of(payload: &[u8]) -> i32 {
    u32_at(payload, 0).map_or(0, |e| (e as i32).saturating_neg())
}

/// The state of one SOCK_DIAG_BY_FAMILY reply, without reading the rest:
/// None for a state or family this program does not know (as `parse_socket`).
pub(super) fn state_of(payload: &[u8]) -> Result<Option<TcpState>, String> {
    let Some(msg) = payload.get(..DIAG_MSG_LEN) else {
        return Err(format!(
            "inet_diag_msg of {} bytes, expected at least {DIAG_MSG_LEN}",
            payload.len()
        ));
    };
    let known = matches!(i32::from(msg[0]), libc::AF_INET | libc::AF_INET6);
    Ok(TcpState::from_kernel(msg[1]).filter(|_| known))
}

/// One SOCK_DIAG_BY_FAMILY reply (struct inet_diag_msg + attributes) as a TcpSocket.
/// Ok(None) for a state or family this program does not know.
pub(super) fn parse_socket(
    payload: &[u8],
    netns: Inode,
    with_info: bool,
) -> Result<Option<TcpSocket>, String> {
    let Some(msg) = payload.get(..DIAG_MSG_LEN) else {
        return Err(format!(
            "inet_diag_msg of {} bytes, expected at least {DIAG_MSG_LEN}",
            payload.len()
        ));
    };
    let Some(state) = TcpState::from_kernel(msg[1]) else {
        return Ok(None);
    };
    let Some((family, local, remote)) = addresses(msg) else {
        return Ok(None);
    };
    let field = |off| u32_at(msg, off).unwrap_or(0);
    let info = if with_info {
        tcp_info(&payload[DIAG_MSG_LEN..])
    } else {
        None
    };
    let last_ack_ms = info
        .and_then(|i| u32_at(i, TCPI_LAST_ACK_RECV))
        .map(u64::from);
    let bytes_acked = info.and_then(|i| u64_at(i, TCPI_BYTES_ACKED));
    Ok(Some(TcpSocket {
        inode: u64::from(field(68)),
        netns,
        family,
        local,
        remote,
        state,
        recv_q: field(56),
        send_q: field(60),
        uid: field(64),
        last_ack_ms,
        bytes_acked,
        // idiag_timer 3: the timewait timer (inet_diag_msg_common_fill /
        // inet_twsk_diag_fill in net/ipv4/inet_diag.c).
        timewait: msg[2] == 3,
        // sockid's idiag_if: sk_bound_dev_if.
        bound_if: Some(field(40)),
    }))
}

/// inet_diag_sockid at offset 4: sport, dport (big-endian), src[16], dst[16].
/// Addresses are already in network order, so their bytes are used as they are.
fn addresses(msg: &[u8]) -> Option<(Family, SocketAddr, SocketAddr)> {
    let sport = u16::from_be_bytes([msg[4], msg[5]]);
    let dport = u16::from_be_bytes([msg[6], msg[7]]);
    let src: [u8; 16] = msg.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = msg.get(24..40)?.try_into().ok()?;
    match i32::from(msg[0]) {
        libc::AF_INET => {
            let v4 = |a: [u8; 16], port| {
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::new(a[0], a[1], a[2], a[3]),
                    port,
                ))
            };
            Some((Family::Ipv4, v4(src, sport), v4(dst, dport)))
        }
        // v4-mapped peers of dual-stack sockets stay IPv6 (::ffff:a.b.c.d), as the kernel
        // reports them. Scope id stays 0 to match what /proc/net/tcp6 can tell.
        libc::AF_INET6 => {
            let v6 = |a: [u8; 16], port| {
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, 0, 0))
            };
            Some((Family::Ipv6, v6(src, sport), v6(dst, dport)))
        }
        _ => None,
    }
}

/// The INET_DIAG_INFO attribute (struct tcp_info), if present (TIME_WAIT
/// and NEW_SYN_RECV mini-sockets carry no tcp_info at all); its fields are
/// read only where it is long enough.
fn tcp_info(mut attrs: &[u8]) -> Option<&[u8]> {
    while let (Some(len), Some(kind)) = (u16_at(attrs, 0), u16_at(attrs, 2)) {
        let len = usize::from(len);
        let value = attrs.get(4..len)?;
        if kind & NLA_TYPE_MASK == INET_DIAG_INFO {
            return Some(value);
        }
        attrs = attrs.get(align4(len)..)?;
    }
    None
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
