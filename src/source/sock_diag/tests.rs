//! Against the real kernel, on loopback only. Other tests (and other programs) open
//! sockets at the same time, so every check looks only at its own inodes.

use super::*;
use crate::model::Family;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Arbitrary marker: the dump must copy the namespace inode it is given into every row.
const NETNS: Inode = 4242;

fn inode_of(fd: impl AsFd) -> Inode {
    nix::sys::stat::fstat(fd).unwrap().st_ino
}

fn close_wait(with_info: bool) -> DumpRequest {
    DumpRequest::only(&[TcpState::CloseWait], with_info)
}

fn find(socks: &[TcpSocket], inode: Inode) -> Option<&TcpSocket> {
    socks.iter().find(|s| s.inode == inode)
}

/// Every dumped socket has a record of the same socket (inode, addresses)
/// that says the same of it, field by field; its last ACK's age at most
/// `younger_ms` below the dump's and at most 1 s above it.
fn same_records(kept: &[TcpSocket], dumped: &[TcpSocket], younger_ms: u64) -> Result<(), String> {
    let key = |s: &TcpSocket| (s.inode, s.local, s.remote);
    let fields = |s: &TcpSocket| {
        (
            s.inode,
            s.netns,
            s.family,
            s.state,
            s.recv_q,
            s.send_q,
            s.uid,
            s.bytes_acked,
            s.timewait,
            s.bound_if,
        )
    };
    for d in dumped {
        let k = kept
            .iter()
            .find(|k| key(k) == key(d))
            .ok_or_else(|| format!("no record of {d:?}"))?;
        assert_eq!(fields(k), fields(d), "{k:?}\n{d:?}");
        let (a, b) = (k.last_ack_ms.unwrap_or(0), d.last_ack_ms.unwrap_or(0));
        assert!(
            a + younger_ms >= b && a <= b + 1000,
            "last ACK {a} ms against {b} ms: {k:?}"
        );
    }
    Ok(())
}

/// A server-side socket in CLOSE_WAIT: the client connected, then closed its end.
struct ClosedByPeer {
    listener: TcpListener,
    accepted: TcpStream,
    inode: Inode,
}

fn close_wait_pair(listener: TcpListener, connect_to: SocketAddr) -> ClosedByPeer {
    let client = TcpStream::connect(connect_to).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    drop(client);
    // read() returning 0 means the FIN has arrived: the accepted socket is in CLOSE_WAIT.
    accepted
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(accepted.read(&mut [0u8; 1]).unwrap(), 0);
    let inode = inode_of(&accepted);
    ClosedByPeer {
        listener,
        accepted,
        inode,
    }
}

fn loopback_pair(bind: &str) -> Option<ClosedByPeer> {
    let listener = TcpListener::bind(bind).ok()?;
    let addr = listener.local_addr().unwrap();
    Some(close_wait_pair(listener, addr))
}

/// Checks the dumped row against what the accepted socket itself says.
fn assert_matches(found: &TcpSocket, pair: &ClosedByPeer, family: Family) {
    assert_eq!(found.state, TcpState::CloseWait);
    assert_eq!(found.family, family);
    assert_eq!(found.local, pair.accepted.local_addr().unwrap());
    assert_eq!(found.remote, pair.accepted.peer_addr().unwrap());
    assert_eq!(found.netns, NETNS);
    assert_eq!(found.uid, euid());
    assert_eq!((found.recv_q, found.send_q), (0, 0));
}

#[test]
fn ipv4_close_wait_is_found_by_inode() {
    let made = std::time::Instant::now();
    let pair = loopback_pair("127.0.0.1:0").unwrap();

    // The peer's last ACK came with its FIN; let it age so that a wrong tcp_info
    // offset (rto ~200000, mss 65483, last_ack_sent always 0) cannot pass.
    thread::sleep(Duration::from_millis(250));
    let socks = dump_current(NETNS, &close_wait(true)).unwrap().sockets;
    let lived = made.elapsed().as_millis();
    let found = find(&socks, pair.inode).expect("accepted socket in the CLOSE_WAIT dump");
    assert_matches(found, &pair, Family::Ipv4);
    let last_ack = found.last_ack_ms.expect("tcp_info was asked for");
    // At least the 250 ms it aged; at most the pair's whole life (plus a
    // jiffy or two of rounding), as this process's clock measured it.
    assert!(
        last_ack >= 200 && u128::from(last_ack) <= lived + 20,
        "last_ack_ms {last_ack}, the pair lived {lived} ms"
    );
    assert!(socks.iter().all(|s| s.state == TcpState::CloseWait));

    let socks = dump_current(NETNS, &close_wait(false)).unwrap().sockets;
    assert_eq!(find(&socks, pair.inode).unwrap().last_ack_ms, None);
}

#[test]
fn ipv6_close_wait_is_found_by_inode() {
    let Some(pair) = loopback_pair("[::1]:0") else {
        crate::skip::skip(
            "sock_diag::ipv6_close_wait_is_found_by_inode",
            "no IPv6 loopback here",
        );
        return;
    };
    let socks = dump_current(NETNS, &close_wait(true)).unwrap().sockets;
    let found = find(&socks, pair.inode).expect("accepted socket in the CLOSE_WAIT dump");
    assert_matches(found, &pair, Family::Ipv6);
    assert_eq!(found.local.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert!(found.last_ack_ms.is_some());
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A [::] listener that accepts IPv4 too, whatever net.ipv6.bindv6only says.
/// (Raw libc: the crate's nix build has no "net" feature for socket addresses.)
fn dual_stack_listener() -> Option<TcpListener> {
    use nix::sys::socket::{listen, socket, Backlog};
    let fd = socket(
        AddressFamily::Inet6,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    let off: libc::c_int = 0;
    // SAFETY: sockaddr_in6 is plain old data; all-zero is [::]:0.
    let mut any: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    any.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    // SAFETY: both calls read a live value of exactly the size passed.
    let ok = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw const off).cast(),
            std::mem::size_of_val(&off) as libc::socklen_t,
        ) == 0
            && libc::bind(
                fd.as_raw_fd(),
                (&raw const any).cast(),
                std::mem::size_of_val(&any) as libc::socklen_t,
            ) == 0
    };
    if !ok {
        return None;
    }
    listen(&fd, Backlog::new(8).ok()?).ok()?;
    Some(TcpListener::from(fd))
}

#[test]
fn dual_stack_socket_is_ipv6_with_mapped_addresses() {
    let Some(listener) = dual_stack_listener() else {
        crate::skip::skip(
            "sock_diag::dual_stack_socket_is_ipv6_with_mapped_addresses",
            "no IPv6 here",
        );
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let pair = close_wait_pair(listener, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));

    let socks = dump_current(NETNS, &close_wait(true)).unwrap().sockets;
    let found = find(&socks, pair.inode).expect("accepted socket in the CLOSE_WAIT dump");
    assert_matches(found, &pair, Family::Ipv6);
    let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
    assert_eq!(found.local, SocketAddr::from((mapped, port)));
    assert_eq!(found.remote.ip(), IpAddr::V6(mapped));
}

#[test]
fn state_filter_keeps_listen_out_of_close_wait_dump() {
    let pair = loopback_pair("127.0.0.1:0").unwrap();
    let listen_inode = inode_of(&pair.listener);

    let all = dump_current(NETNS, &DumpRequest::all()).unwrap().sockets;
    let listening = find(&all, listen_inode).expect("listener in the all-states dump");
    assert_eq!(listening.state, TcpState::Listen);
    assert_eq!(listening.local, pair.listener.local_addr().unwrap());
    assert_eq!(
        listening.remote,
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    );
    assert_eq!(
        find(&all, pair.inode).map(|s| s.state),
        Some(TcpState::CloseWait)
    );

    let cw = dump_current(NETNS, &close_wait(false)).unwrap().sockets;
    assert!(
        find(&cw, listen_inode).is_none(),
        "LISTEN socket in a CLOSE_WAIT-only dump"
    );
    assert!(find(&cw, pair.inode).is_some());
}

/// The one-walk request (both families) and the per-family v2 requests see
/// the same sockets, with the same fields.
#[test]
fn one_walk_for_both_families_matches_one_dump_per_family() {
    let v4 = loopback_pair("127.0.0.1:0").unwrap();
    let v6 = loopback_pair("[::1]:0");
    let listen_inode = inode_of(&v4.listener);
    let req = DumpRequest::only(&[TcpState::CloseWait, TcpState::Listen], true);
    let both = dump_tables(Tables::Both, NETNS, &req, INITIAL_SOCKETS)
        .map_err(String::from)
        .unwrap()
        .sockets;
    let split = dump_families(NETNS, &req, INITIAL_SOCKETS).unwrap().sockets;
    let mut ours = vec![v4.inode, listen_inode];
    ours.extend(v6.iter().flat_map(|p| [p.inode, inode_of(&p.listener)]));
    for inode in ours {
        let (a, b) = (find(&both, inode), find(&split, inode));
        let (a, b) = (
            a.expect("in the one-walk dump"),
            b.expect("in a family dump"),
        );
        assert_eq!(
            (a.family, a.local, a.remote, a.state, a.netns, a.uid),
            (b.family, b.local, b.remote, b.state, b.netns, b.uid)
        );
        assert_eq!(a.last_ack_ms.is_some(), b.last_ack_ms.is_some());
    }
    assert_matches(find(&both, v4.inode).unwrap(), &v4, Family::Ipv4);
    if let Some(p) = &v6 {
        assert_matches(find(&both, p.inode).unwrap(), p, Family::Ipv6);
    }
}

#[test]
fn request_masks_use_kernel_state_numbers() {
    assert_eq!(close_wait(false).states, 1 << 8);
    assert_eq!(DumpRequest::all().states, 0x1ffe);
    assert!(!DumpRequest::all().with_info);
}

#[test]
fn dump_in_own_netns_matches_dump_current() {
    let pair = loopback_pair("127.0.0.1:0").unwrap();
    let ns = Path::new("/proc/self/ns/net");
    let inside = dump_in_netns(ns, NETNS, &close_wait(true)).unwrap().sockets;
    let here = dump_current(NETNS, &close_wait(true)).unwrap().sockets;
    let (a, b) = (
        find(&inside, pair.inode).unwrap(),
        find(&here, pair.inode).unwrap(),
    );
    assert_eq!(
        (a.local, a.remote, a.state, a.netns),
        (b.local, b.remote, b.state, b.netns)
    );
    assert!(a.last_ack_ms.is_some());
}

/// Sets IFF_UP on "lo" of the calling thread's network namespace.
fn loopback_up() -> Result<(), String> {
    use nix::sys::socket::socket;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: both ioctls read and write one ifreq, which outlives the calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(format!("SIOCGIFFLAGS: {}", Errno::last()));
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(format!("SIOCSIFFLAGS: {}", Errno::last()));
        }
    }
    Ok(())
}

/// What the namespace thread reports once its CLOSE_WAIT socket exists.
struct Remote {
    ns_file: PathBuf,
    ns_inode: Inode,
    inode: Inode,
    local: SocketAddr,
    peer: SocketAddr,
    /// The same over [::1], when the namespace has IPv6: proves the IPv6 dump,
    /// which runs on a thread of its own, happens inside the namespace too.
    inode6: Option<Inode>,
}

/// Runs on its own thread: a new network namespace with a CLOSE_WAIT socket, kept
/// until `done` says so (or its sender is dropped, when the test fails).
fn hold_socket_in_new_netns(ready: mpsc::Sender<Result<Remote, String>>, done: mpsc::Receiver<()>) {
    type Held = (ClosedByPeer, Option<ClosedByPeer>);
    let setup = || -> Result<(Remote, Held), String> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        loopback_up()?;
        let ns_file = PathBuf::from(format!("/proc/self/task/{}/ns/net", nix::unistd::gettid()));
        let ns_inode = std::fs::metadata(&ns_file)
            .map_err(|e| e.to_string())?
            .ino();
        let pair = loopback_pair("127.0.0.1:0").ok_or("bind 127.0.0.1 in the new namespace")?;
        let local = pair.accepted.local_addr().map_err(|e| e.to_string())?;
        let peer = pair.accepted.peer_addr().map_err(|e| e.to_string())?;
        let pair6 = loopback_pair("[::1]:0");
        let remote = Remote {
            ns_file,
            ns_inode,
            inode: pair.inode,
            local,
            peer,
            inode6: pair6.as_ref().map(|p| p.inode),
        };
        Ok((remote, (pair, pair6)))
    };
    match setup() {
        Ok((remote, pair)) => {
            let _ = ready.send(Ok(remote));
            let _ = done.recv();
            drop(pair);
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

#[test]
fn dump_in_netns_sees_another_namespace() {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = thread::spawn(move || hold_socket_in_new_netns(ready_tx, done_rx));
    let remote = match ready_rx.recv() {
        Ok(Ok(remote)) => remote,
        Ok(Err(e)) if e.starts_with("unshare: EPERM") => {
            crate::skip::skip(
                "sock_diag::dump_in_netns_sees_another_namespace",
                &format!("cannot create a network namespace ({e})"),
            );
            return;
        }
        Ok(Err(e)) => panic!("namespace setup failed: {e}"),
        Err(_) => panic!("namespace thread died: {:?}", holder.join().err()),
    };

    let inside = dump_in_netns(&remote.ns_file, remote.ns_inode, &close_wait(true));
    let here = dump_current(NETNS, &close_wait(false));
    let wanted = [Wanted {
        local: remote.local,
        remote: remote.peer,
        bound_if: 0,
    }];
    let looked_up_inside = lookup(Some(&remote.ns_file), remote.ns_inode, &wanted, true);
    let looked_up_here = lookup(None, NETNS, &wanted, true);
    // Release the namespace before asserting, so a failure still cleans up.
    drop(done_tx);
    holder.join().unwrap();

    let inside = inside.unwrap().sockets;
    let found = find(&inside, remote.inode).expect("socket in its own namespace's dump");
    assert_eq!(found.netns, remote.ns_inode);
    assert_eq!(found.local, remote.local);
    assert_eq!(found.state, TcpState::CloseWait);
    let here = here.unwrap().sockets;
    assert!(
        find(&here, remote.inode).is_none(),
        "socket leaked into our namespace"
    );
    // A lookup by its addresses finds it in its namespace only (the same
    // addresses mean nothing in ours).
    let [Some(found)] = &looked_up_inside.unwrap()[..] else {
        panic!("the lookup inside its namespace did not find the socket");
    };
    assert_eq!((found.inode, found.netns), (remote.inode, remote.ns_inode));
    assert_eq!(found.state, TcpState::CloseWait);
    assert!(
        looked_up_here
            .unwrap()
            .iter()
            .all(|s| s.as_ref().map(|s| s.inode) != Some(remote.inode)),
        "the lookup in our namespace found the other namespace's socket"
    );
    match remote.inode6 {
        Some(inode6) => {
            let found = find(&inside, inode6).expect("IPv6 socket in its namespace's dump");
            assert_eq!((found.family, found.netns), (Family::Ipv6, remote.ns_inode));
            assert!(
                find(&here, inode6).is_none(),
                "IPv6 socket leaked into our namespace"
            );
        }
        None => crate::skip::skip(
            "sock_diag::dump_in_netns_sees_another_namespace (its IPv6 part)",
            "no [::1] in the new namespace",
        ),
    }
    // The caller's thread never left its namespace.
    let ours = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    assert_ne!(ours, remote.ns_inode);
}

#[test]
fn dump_in_netns_reports_open_and_setns_failures() {
    let err = dump_in_netns(Path::new("/nonexistent/ns/net"), 7, &DumpRequest::all()).unwrap_err();
    let SourceError::Netlink { netns, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*netns, 7);
    assert!(
        message.starts_with("open /nonexistent/ns/net: "),
        "{message}"
    );

    // A namespace file of another kind: setns(CLONE_NEWNET) refuses it.
    let err = dump_in_netns(Path::new("/proc/self/ns/uts"), 7, &DumpRequest::all()).unwrap_err();
    assert!(
        err.to_string()
            .contains("setns /proc/self/ns/uts: Invalid argument"),
        "{err}"
    );
}

/// A synthetic SOCK_DIAG_BY_FAMILY payload for 10.0.0.1:80 <- 10.0.0.2:5000 in CLOSE_WAIT.
fn diag_msg(tcp_info_len: Option<usize>) -> Vec<u8> {
    let mut m = vec![0u8; 72];
    m[0] = libc::AF_INET as u8;
    m[1] = TcpState::CloseWait.kernel_number();
    m[4..6].copy_from_slice(&80u16.to_be_bytes());
    m[6..8].copy_from_slice(&5000u16.to_be_bytes());
    m[8..12].copy_from_slice(&[10, 0, 0, 1]);
    m[24..28].copy_from_slice(&[10, 0, 0, 2]);
    m[56..60].copy_from_slice(&3u32.to_ne_bytes());
    m[60..64].copy_from_slice(&4u32.to_ne_bytes());
    m[64..68].copy_from_slice(&1000u32.to_ne_bytes());
    m[68..72].copy_from_slice(&123_456u32.to_ne_bytes());
    // An unrelated attribute first (INET_DIAG_SHUTDOWN, 1 byte, padded), as the kernel sends.
    m.extend_from_slice(&5u16.to_ne_bytes());
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    if let Some(len) = tcp_info_len {
        m.extend_from_slice(&((4 + len) as u16).to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        let mut info = vec![0u8; len];
        if len >= 60 {
            info[56..60].copy_from_slice(&777u32.to_ne_bytes());
        }
        m.extend_from_slice(&info);
    }
    m
}

#[test]
fn parses_inet_diag_msg_fields() {
    let s = wire::parse_socket(&diag_msg(Some(232)), 9, true)
        .unwrap()
        .unwrap();
    assert_eq!(s.local, "10.0.0.1:80".parse().unwrap());
    assert_eq!(s.remote, "10.0.0.2:5000".parse().unwrap());
    assert_eq!((s.family, s.state), (Family::Ipv4, TcpState::CloseWait));
    assert_eq!(
        (s.recv_q, s.send_q, s.uid, s.inode, s.netns),
        (3, 4, 1000, 123_456, 9)
    );
    assert_eq!(s.last_ack_ms, Some(777));
    // Not asked for: not read even when present.
    let s = wire::parse_socket(&diag_msg(Some(232)), 9, false)
        .unwrap()
        .unwrap();
    assert_eq!(s.last_ack_ms, None);
}

#[test]
fn short_or_missing_tcp_info_gives_no_last_ack() {
    for info in [None, Some(0), Some(56), Some(59)] {
        let s = wire::parse_socket(&diag_msg(info), 9, true)
            .unwrap()
            .unwrap();
        assert_eq!(s.last_ack_ms, None, "tcp_info of {info:?} bytes");
    }
    assert_eq!(
        wire::parse_socket(&diag_msg(Some(60)), 9, true)
            .unwrap()
            .unwrap()
            .last_ack_ms,
        Some(777)
    );
}

#[test]
fn rejects_short_messages_and_skips_unknown_states() {
    assert!(wire::parse_socket(&[0u8; 71], 9, false).is_err());
    let mut m = diag_msg(None);
    m[1] = 0;
    assert!(wire::parse_socket(&m, 9, false).unwrap().is_none());
    m[1] = 13;
    assert!(wire::parse_socket(&m, 9, false).unwrap().is_none());
}

/// A request's nlmsghdr: (nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq).
fn header(r: &[u8]) -> (u32, u16, u16, u32) {
    (
        u32::from_ne_bytes(r[0..4].try_into().unwrap()),
        u16::from_ne_bytes(r[4..6].try_into().unwrap()),
        u16::from_ne_bytes(r[6..8].try_into().unwrap()),
        u32::from_ne_bytes(r[8..12].try_into().unwrap()),
    )
}

#[test]
fn request_layout_matches_inet_diag_req_v2() {
    let r = wire::dump_request(libc::AF_INET6 as u8, 1 << 8, true, 77);
    assert_eq!(r.len(), 72);
    // SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP.
    assert_eq!(header(&r), (72, 20, 0x301, 77));
    assert_eq!(&r[16..20], &[libc::AF_INET6 as u8, 6, 2, 0]);
    assert_eq!(u32::from_ne_bytes(r[20..24].try_into().unwrap()), 1 << 8);
    assert!(r[24..].iter().all(|&b| b == 0));
}

#[test]
fn both_families_request_matches_inet_diag_req() {
    let r = wire::dump_request_both(1 << 8 | 1 << 10, true, 78);
    assert_eq!(r.len(), 76);
    // TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP.
    assert_eq!(header(&r), (76, 18, 0x301, 78));
    // family, src_len, dst_len, ext (INET_DIAG_INFO), then a zero sockid.
    assert_eq!(&r[16..20], &[libc::AF_INET as u8, 0, 0, 2]);
    assert!(r[20..68].iter().all(|&b| b == 0));
    assert_eq!(
        u32::from_ne_bytes(r[68..72].try_into().unwrap()),
        1 << 8 | 1 << 10
    );
    assert_eq!(&r[72..76], &[0, 0, 0, 0]);
}

#[test]
fn malformed_netlink_length_is_an_error() {
    let mut d = [0u8; 20];
    d[0..4].copy_from_slice(&200u32.to_ne_bytes());
    let mut it = wire::Messages::new(&d);
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
}

/// Opens `pairs` loopback connections (one in five with its client shut down, so
/// the server side sits in CLOSE_WAIT), like the benchmark's load (examples/loadgen.rs).
fn make_load(pairs: usize) -> Vec<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::with_capacity(2 * pairs);
    for i in 0..pairs {
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        if i % 5 == 0 {
            client.shutdown(Shutdown::Write).unwrap();
        }
        held.extend([client, server]);
    }
    held
}

/// Connections per holder process: two fds each, under a 20000-fd RLIMIT_NOFILE,
/// and well under the ~28k ephemeral ports towards one listener.
const PAIRS_PER_HOLDER: usize = 9000;

/// Not a test: the load holder `timing_full_dump` runs in child processes, since one
/// process may not have enough fds. Holds CWLEAK_BENCH_HOLD pairs until stdin closes.
#[test]
#[ignore = "helper process of timing_full_dump"]
fn bench_load_holder() {
    let Ok(pairs) = std::env::var("CWLEAK_BENCH_HOLD") else {
        return;
    };
    let _load = make_load(pairs.parse().unwrap());
    println!("ready");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Child processes holding the load; killed on drop, even when the timing panics.
struct Holders(Vec<std::process::Child>);

impl Drop for Holders {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_holders(pairs: usize) -> Holders {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut holders = Holders(Vec::new());
    let mut left = pairs;
    while left > 0 {
        let n = left.min(PAIRS_PER_HOLDER);
        left -= n;
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "--nocapture",
                "source::sock_diag::tests::bench_load_holder",
            ])
            .env("CWLEAK_BENCH_HOLD", n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        holders.0.push(child);
    }
    for child in &mut holders.0 {
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        assert!(
            out.lines().any(|l| l.is_ok_and(|l| l == "ready")),
            "load holder failed"
        );
    }
    holders
}

/// Run by hand; prints, asserts nothing about time. CWLEAK_BENCH_PAIRS=100000 adds
/// 100k loopback connections (200k sockets, 20k of them in CLOSE_WAIT) first:
/// CWLEAK_BENCH_PAIRS=100000 cargo test --release --lib source::sock_diag::tests::timing -- --ignored --nocapture
#[test]
#[ignore = "timing, run by hand with --ignored --nocapture"]
fn timing_full_dump() {
    let pairs = std::env::var("CWLEAK_BENCH_PAIRS").map_or(0, |v| v.parse().unwrap());
    let t = Instant::now();
    let _holders = spawn_holders(pairs);
    println!("opened {pairs} loopback pairs in {:?}", t.elapsed());
    let with_info = DumpRequest {
        with_info: true,
        ..DumpRequest::all()
    };
    for (label, req) in [
        ("all states", DumpRequest::all()),
        ("all states + tcp_info", with_info),
        ("CLOSE_WAIT only", close_wait(false)),
        ("CLOSE_WAIT only + tcp_info", close_wait(true)),
    ] {
        let mut best = Duration::MAX;
        let mut n = 0;
        for _ in 0..5 {
            let t = Instant::now();
            n = dump_current(NETNS, &req).unwrap().sockets.len();
            best = best.min(t.elapsed());
        }
        println!("{label}: {n} sockets, best of 5: {best:?}");
    }
}

/// (inode, state, local, remote) of every record, sorted.
fn records(socks: &[TcpSocket]) -> Vec<(Inode, TcpState, SocketAddr, SocketAddr)> {
    let mut v: Vec<_> = socks
        .iter()
        .map(|s| (s.inode, s.state, s.local, s.remote))
        .collect();
    v.sort();
    v
}

/// A counting request gives what a full dump gives: the same records for
/// the kept states, and for every other state as many sockets, counted.
/// In a namespace of its own, where no other program opens sockets meanwhile;
/// the /proc files are held to the same.
#[test]
fn a_counting_dump_keeps_the_leak_states_and_counts_the_rest() {
    if !crate::source::running_as_root() {
        crate::skip::skip(
            "sock_diag::a_counting_dump_keeps_the_leak_states_and_counts_the_rest",
            "needs root for a network namespace of its own",
        );
        return;
    }
    let worker = thread::spawn(|| -> Result<(), String> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        loopback_up()?;
        // CLOSE_WAIT + its listener + the peer's orphaned FIN_WAIT2, and an
        // ESTABLISHED pair (two sockets) on another listener.
        let cw = loopback_pair("127.0.0.1:0").ok_or("bind in the new namespace")?;
        let other = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let _client = TcpStream::connect(other.local_addr().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let _server = other.accept().map_err(|e| e.to_string())?;
        // A TIME_WAIT: this end closes first, then the other.
        let gone = TcpStream::connect(other.local_addr().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let (gone_too, _) = other.accept().map_err(|e| e.to_string())?;
        drop(gone);
        drop(gone_too);
        let keep = [TcpState::CloseWait, TcpState::Listen];
        // The closing peer moves through states (FIN_WAIT1, then FIN_WAIT2,
        // where it stays for tcp_fin_timeout) on its own time, and a busy
        // machine can land that move between two dumps: wait until it has
        // arrived, then compare a counting dump with the full dumps taken
        // just before and just after it, once those two agree.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = dump_current(NETNS, &DumpRequest::all()).map_err(|e| e.to_string())?;
            let has = |state| now.sockets.iter().any(|s| s.state == state);
            if has(TcpState::FinWait2) && has(TcpState::TimeWait) && !has(TcpState::LastAck) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the peers never reached FIN_WAIT2 and TIME_WAIT: {:?}",
                    records(&now.sockets)
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
        let counting = DumpRequest::counting(&keep, true);
        let (full, counted, by_messages, by_iterator) = loop {
            let before = dump_current(NETNS, &DumpRequest::all()).map_err(|e| e.to_string())?;
            // As a look counts: the kernel's TCP iterator where it runs.
            let counted = dump_current(NETNS, &counting).map_err(|e| e.to_string())?;
            // Where it does not: a message per socket.
            let by_messages = super::dump_messages(NETNS, &counting, INITIAL_SOCKETS)?;
            let by_iterator = crate::source::tcp_states::count_here();
            let after = dump_current(NETNS, &DumpRequest::all()).map_err(|e| e.to_string())?;
            if records(&before.sockets) == records(&after.sockets) || Instant::now() > deadline {
                break (before, counted, by_messages, by_iterator);
            }
            thread::sleep(Duration::from_millis(10));
        };
        assert!(full.unkept.counts().is_empty());
        let (kept, rest): (Vec<TcpSocket>, Vec<TcpSocket>) = full
            .sockets
            .into_iter()
            .partition(|s| keep.contains(&s.state));
        let mut want = Tally::default();
        for s in &rest {
            want.add(s.state);
        }
        assert_eq!(records(&counted.sockets), records(&kept));
        assert_eq!(counted.unkept, want);
        assert_eq!(records(&by_messages.sockets), records(&kept));
        assert_eq!(by_messages.unkept, want);
        // The iterator counts every state, the kept ones too.
        let mut every = want;
        for s in &kept {
            every.add(s.state);
        }
        assert_eq!(by_iterator?, every);
        assert_eq!(want.counts().get(&TcpState::Established), Some(&2));
        // The orphaned peer is a timewait socket standing for FIN_WAIT2.
        assert_eq!(want.counts().get(&TcpState::FinWait2), Some(&1));
        assert_eq!(want.counts().get(&TcpState::TimeWait), Some(&1));
        assert_eq!(kept.len(), 3, "{kept:?}");
        // The same from the /proc files of this thread's namespace.
        let root = crate::source::ProcRoot::new("/proc");
        let member = crate::source::tables::NsMember {
            netns: NETNS,
            pid: std::process::id() as crate::model::Pid,
            base: PathBuf::from("thread-self"),
            file: None,
        };
        let mut warnings = Vec::new();
        let read = crate::source::tables::read_namespace(
            &root,
            true,
            crate::source::TableMethod::Proc,
            &member,
            &DumpRequest::counting(&keep, false),
            &mut warnings,
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(records(&read.sockets), records(&kept));
        assert_eq!(read.namespace.unkept, want.counts());
        assert_eq!(read.namespace.sockets, kept.len() + rest.len());
        // Without a CLOSE_WAIT socket, where the iterator counts (as it did
        // above), no record is worth a dump: the counts alone, the
        // listeners' among them.
        drop(cw);
        let deadline = Instant::now() + Duration::from_secs(10);
        let (full, counted) = loop {
            let before = dump_current(NETNS, &DumpRequest::all()).map_err(|e| e.to_string())?;
            let counted = dump_current(NETNS, &counting).map_err(|e| e.to_string())?;
            let after = dump_current(NETNS, &DumpRequest::all()).map_err(|e| e.to_string())?;
            let gone = |d: &Dumped| {
                d.sockets
                    .iter()
                    .all(|s| !matches!(s.state, TcpState::CloseWait | TcpState::LastAck))
            };
            if gone(&before) && records(&before.sockets) == records(&after.sockets) {
                break (before, counted);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the CLOSE_WAIT socket never went: {:?}",
                    records(&after.sockets)
                ));
            }
            thread::sleep(Duration::from_millis(10));
        };
        let mut every = Tally::default();
        for s in &full.sockets {
            every.add(s.state);
        }
        assert!(
            counted.sockets.is_empty(),
            "{:?}",
            records(&counted.sockets)
        );
        assert_eq!(counted.unkept, every);
        assert_eq!(every.counts().get(&TcpState::Listen), Some(&1));
        Ok(())
    });
    match worker.join() {
        Ok(r) => r.unwrap(),
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// The addresses of `pair`'s accepted socket, as a lookup names them.
fn wanted_of(pair: &ClosedByPeer) -> Wanted {
    Wanted {
        local: pair.accepted.local_addr().unwrap(),
        remote: pair.accepted.peer_addr().unwrap(),
        bound_if: 0,
    }
}

#[test]
fn a_lookup_answers_each_socket_as_a_dump_sees_it() {
    // More than a few datagrams' worth of lookups, so batches follow each other.
    let pairs: Vec<ClosedByPeer> = (0..3 * LOOKUP_BATCH + 5)
        .map(|_| loopback_pair("127.0.0.1:0").unwrap())
        .collect();
    let v6 = loopback_pair("[::1]:0");
    let mapped = dual_stack_listener().map(|l| {
        let port = l.local_addr().unwrap().port();
        close_wait_pair(l, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    });
    // A socket that was in CLOSE_WAIT and is now closed on both sides: its
    // addresses name nothing any more.
    let gone = loopback_pair("127.0.0.1:0").unwrap();
    let gone_wanted = wanted_of(&gone);
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dump_current(NETNS, &DumpRequest::all())
        .unwrap()
        .sockets
        .iter()
        .any(|s| s.local == gone_wanted.local && s.remote == gone_wanted.remote)
    {
        assert!(
            Instant::now() < deadline,
            "the closed pair never left the table"
        );
        thread::sleep(Duration::from_millis(10));
    }

    let live: Vec<&ClosedByPeer> = pairs.iter().chain(&v6).chain(&mapped).collect();
    let mut wanted: Vec<Wanted> = live.iter().map(|p| wanted_of(p)).collect();
    wanted.push(gone_wanted);
    let answers = lookup(None, NETNS, &wanted, true).unwrap();
    let dump = dump_current(NETNS, &close_wait(true)).unwrap().sockets;

    assert_eq!(answers.len(), wanted.len());
    for (pair, answer) in live.iter().zip(&answers) {
        let found = answer
            .as_ref()
            .expect("a socket in CLOSE_WAIT is found by its addresses");
        let dumped = find(&dump, pair.inode).expect("and the dump has it");
        assert_eq!(found.inode, pair.inode);
        assert_eq!(
            (found.state, found.local, found.remote, found.family),
            (dumped.state, dumped.local, dumped.remote, dumped.family)
        );
        assert_eq!(found.bound_if, Some(0));
        assert!(found.last_ack_ms.is_some(), "tcp_info was asked for");
    }
    if let Some(m) = &mapped {
        let found = answers[pairs.len() + usize::from(v6.is_some())]
            .as_ref()
            .unwrap();
        assert_eq!(found.inode, m.inode);
        assert_eq!(found.family, Family::Ipv6, "a v4-mapped pair stays IPv6");
    }
    assert!(
        answers.last().unwrap().is_none(),
        "a closed socket is not found"
    );
}

#[test]
fn exact_request_layout_matches_inet_diag_req_v2() {
    let local: SocketAddr = "127.0.0.2:443".parse().unwrap();
    let remote: SocketAddr = "10.1.2.3:50000".parse().unwrap();
    let r = wire::exact_request(local, remote, 7, true, 9);
    // SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST only: one socket, no dump.
    assert_eq!(header(&r), (72, 20, 0x1, 9));
    assert_eq!(&r[16..20], &[libc::AF_INET as u8, 6, 2, 0]);
    // inet_diag_sockid: ports big-endian, then src (ours), dst (the peer's).
    assert_eq!(&r[24..28], &[0x01, 0xbb, 0xc3, 0x50]);
    assert_eq!(&r[28..32], &[127, 0, 0, 2]);
    assert!(r[32..44].iter().all(|&b| b == 0));
    assert_eq!(&r[44..48], &[10, 1, 2, 3]);
    assert_eq!(u32::from_ne_bytes(r[60..64].try_into().unwrap()), 7);
    // INET_DIAG_NOCOOKIE in both halves.
    assert!(r[64..72].iter().all(|&b| b == 0xff));
    let v6 = wire::exact_request(
        "[::1]:1".parse().unwrap(),
        "[::2]:2".parse().unwrap(),
        0,
        false,
        1,
    );
    assert_eq!((v6[16], v6[18]), (libc::AF_INET6 as u8, 0));
    assert_eq!(v6[43], 1);
    assert_eq!(v6[59], 2);
}

#[test]
fn a_socket_bound_to_a_device_is_found_only_under_that_device() {
    if !crate::skip::is_root() {
        crate::skip::skip(
            "sock_diag::a_socket_bound_to_a_device_is_found_only_under_that_device",
            "SO_BINDTODEVICE needs CAP_NET_RAW",
        );
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // The accepted socket inherits the listener's device.
    socket::setsockopt(
        &listener,
        sockopt::BindToDevice,
        &std::ffi::OsString::from("lo"),
    )
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let pair = close_wait_pair(listener, addr);
    let dumped = dump_current(NETNS, &close_wait(false)).unwrap().sockets;
    let bound_if = find(&dumped, pair.inode).unwrap().bound_if.unwrap();
    let lo: u32 = std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(bound_if, lo, "the dump names the device");
    let unbound = lookup(None, NETNS, &[wanted_of(&pair)], false).unwrap();
    assert!(
        unbound[0].is_none(),
        "without its device the lookup misses it"
    );
    let bound = Wanted {
        bound_if,
        ..wanted_of(&pair)
    };
    let found = lookup(None, NETNS, &[bound], false).unwrap();
    assert_eq!(found[0].as_ref().map(|s| s.inode), Some(pair.inode));
}

/// The TCP iterator's records of CLOSE_WAIT and LISTEN sockets say what a
/// sock_diag dump with tcp_info says of them, field by field: IPv4 and IPv6,
/// unread bytes, a listener with a connection in its accept queue. In a
/// namespace of its own.
#[test]
fn the_iterators_records_are_what_sock_diag_says() {
    let test = "sock_diag::the_iterators_records_are_what_sock_diag_says";
    if !crate::source::running_as_root() {
        crate::skip::skip(test, "needs root for the iterator and a namespace");
        return;
    }
    let worker = thread::spawn(|| -> Result<(), String> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        loopback_up()?;
        let v4 = loopback_pair("127.0.0.1:0").ok_or("bind 127.0.0.1")?;
        let v6 = loopback_pair("[::1]:0").ok_or("bind ::1")?;
        // Unread bytes before the FIN: recv_q counts them and the FIN.
        let unread_listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let mut client =
            TcpStream::connect(unread_listener.local_addr().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut client, b"12345").map_err(|e| e.to_string())?;
        let (unread, _) = unread_listener.accept().map_err(|e| e.to_string())?;
        drop(client);
        // A connection left in the listener's accept queue.
        let _queued = TcpStream::connect(unread_listener.local_addr().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let want = |s: &TcpSocket| (s.inode, s.local, s.remote);
        let deadline = Instant::now() + Duration::from_secs(10);
        let (dumped, pass) = loop {
            let dumped = dump_messages(
                NETNS,
                &DumpRequest::only(&crate::source::TableStates::LEAKS, true),
                INITIAL_SOCKETS,
            )?;
            let pass = crate::source::tcp_states::read_here(NETNS, Some(0))?;
            let mut a: Vec<_> = dumped.sockets.iter().map(want).collect();
            let mut b: Vec<_> = pass.kept.iter().flatten().map(want).collect();
            a.sort();
            b.sort();
            let unread_in = dumped
                .sockets
                .iter()
                .any(|s| s.recv_q == 6 && s.state == TcpState::CloseWait);
            if (a == b && unread_in) || Instant::now() > deadline {
                break (dumped.sockets, pass);
            }
            thread::sleep(Duration::from_millis(10));
        };
        let kept = pass.kept.ok_or("the iterator wrote no records")?;
        assert_eq!(kept.len(), dumped.len(), "{kept:?}\n{dumped:?}");
        assert_eq!(
            kept.len(),
            6,
            "3 CLOSE_WAIT sockets and 3 listeners: {kept:?}"
        );
        // The iterator ran after the dump: its age is as long or longer,
        // by the time between them and a tick's rounding.
        same_records(&kept, &dumped, 20)?;
        // The same through the helper, as a kernel without bpf_rdonly_cast
        // reads them (this one, where it has it, ran plain loads above).
        let helper = crate::source::tcp_states::read_here_by_helper(NETNS, Some(0))?;
        let helper = helper.kept.ok_or("the helper's program wrote no records")?;
        same_records(&helper, &dumped, 20)?;
        let ino = |s: &TcpStream| {
            std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))
                .map(|m| m.ino())
                .unwrap_or(0)
        };
        for (pair, family) in [(&v4, Family::Ipv4), (&v6, Family::Ipv6)] {
            let k = find(&kept, pair.inode).ok_or("the accepted socket has a record")?;
            assert_matches(k, pair, family);
        }
        let k = find(&kept, ino(&unread)).ok_or("the unread socket has a record")?;
        assert_eq!(k.recv_q, 6, "5 bytes and the FIN: {k:?}");
        let l = kept
            .iter()
            .find(|s| {
                s.state == TcpState::Listen && s.local == unread_listener.local_addr().unwrap()
            })
            .ok_or("the listener has a record")?;
        assert_eq!(l.recv_q, 1, "one connection in its accept queue: {l:?}");
        assert!(l.send_q > 0, "its backlog: {l:?}");
        Ok(())
    });
    match worker.join() {
        Ok(r) => r.unwrap(),
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// What `serve` reads of the followed sockets is what dumps of the same
/// namespace say: every state counted as a dump of every state counts it
/// (timewait sockets standing for TIME_WAIT and for an orphaned FIN_WAIT2
/// among them), and the same CLOSE_WAIT and LISTEN records, field by field;
/// for sockets there before the namespace's first walk and for sockets
/// made, half-closed and closed after it. In a namespace of its own.
#[test]
fn the_followed_sockets_are_what_dumps_say() {
    let test = "sock_diag::the_followed_sockets_are_what_dumps_say";
    if !crate::source::running_as_root() {
        crate::skip::skip(test, "needs root for BPF and a namespace");
        return;
    }
    let worker = thread::spawn(|| -> Result<(), String> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        loopback_up()?;
        let ns = std::fs::metadata("/proc/thread-self/ns/net")
            .map_err(|e| e.to_string())?
            .ino();
        let s = |e: std::io::Error| e.to_string();
        // Before the namespace's first walk: a CLOSE_WAIT socket (its client
        // closed: an orphaned FIN_WAIT2, a timewait socket), a connection.
        let before = loopback_pair("127.0.0.1:0").ok_or("bind 127.0.0.1")?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(s)?;
        let client = TcpStream::connect(listener.local_addr().map_err(s)?).map_err(s)?;
        let (server, _) = listener.accept().map_err(s)?;
        // The first look starts following; this namespace's first read walks it.
        drop(crate::source::tcp_states::begin_look(|_| None));
        let first = crate::source::tcp_states::read_here(ns, Some(0))?;
        assert!(!first.followed, "a namespace's first read walks it");
        // After it: an IPv6 CLOSE_WAIT socket, the first one closed (its
        // client becomes TIME_WAIT), the connection half-closed (FIN_WAIT2
        // held, CLOSE_WAIT), unread bytes before a FIN.
        let after = loopback_pair("[::1]:0").ok_or("bind ::1")?;
        drop(before.accepted);
        client.shutdown(Shutdown::Write).map_err(s)?;
        let mut writer = TcpStream::connect(listener.local_addr().map_err(s)?).map_err(s)?;
        std::io::Write::write_all(&mut writer, b"12345").map_err(s)?;
        let (unread, _) = listener.accept().map_err(s)?;
        drop(writer);
        let key = |s: &TcpSocket| (s.inode, s.local, s.remote);
        let deadline = Instant::now() + Duration::from_secs(10);
        let (pass, counted, leaks) = loop {
            let look = crate::source::tcp_states::begin_look(|_| Some(8));
            let pass = crate::source::tcp_states::read_here(ns, Some(0))?;
            drop(look);
            let all = dump_messages(ns, &DumpRequest::all(), 64)?;
            let mut counted = Tally::default();
            for s in &all.sockets {
                counted.add(s.state);
            }
            let leaks = dump_messages(
                ns,
                &DumpRequest::only(&crate::source::TableStates::LEAKS, true),
                64,
            )?
            .sockets;
            let mut a: Vec<_> = leaks.iter().map(key).collect();
            let mut b: Vec<_> = pass.kept.iter().flatten().map(key).collect();
            a.sort();
            b.sort();
            let settled = counted.get(TcpState::TimeWait) == 1
                && counted.get(TcpState::LastAck) == 0
                && counted.get(TcpState::FinWait1) == 0
                && leaks.iter().any(|s| s.recv_q == 6);
            if (settled && a == b && pass.counts.counts() == counted.counts())
                || Instant::now() > deadline
            {
                break (pass, counted, leaks);
            }
            thread::sleep(Duration::from_millis(10));
        };
        assert!(pass.followed, "read from the followed sockets");
        assert_eq!(pass.counts.counts(), counted.counts());
        // The orphaned FIN_WAIT2s of the IPv6 pair's client and of the
        // writer, the held one of the half-closed connection; the first
        // pair's client in TIME_WAIT.
        assert_eq!(counted.get(TcpState::FinWait2), 3, "{:?}", counted.counts());
        assert_eq!(counted.get(TcpState::TimeWait), 1, "{:?}", counted.counts());
        // CLOSE_WAIT: the IPv6 pair's, the half-closed one's, the unread one.
        assert_eq!(
            counted.get(TcpState::CloseWait),
            3,
            "{:?}",
            counted.counts()
        );
        let kept = pass.kept.ok_or("records")?;
        assert_eq!(kept.len(), leaks.len(), "{kept:?}\n{leaks:?}");
        assert!(kept.iter().all(|k| k.netns == ns), "{kept:?}");
        // The pass ran before the dumps: its ages may be younger by the time
        // between them.
        same_records(&kept, &leaks, 1000)?;
        let k = find(&kept, after.inode).ok_or("the IPv6 socket has a record")?;
        assert_eq!((k.family, k.state), (Family::Ipv6, TcpState::CloseWait));
        assert!(find(&kept, before.inode).is_none(), "closed: no record");
        assert_eq!(
            find(&kept, inode_of(&unread)).map(|k| k.recv_q),
            Some(6),
            "5 bytes and the FIN"
        );
        drop((after, listener, client, server, unread));
        Ok(())
    });
    match worker.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e}"),
        Err(p) => std::panic::resume_unwind(p),
    }
}
