//! TCP tables through NETLINK_SOCK_DIAG, optionally inside another network namespace.
//!
//! The netlink messages are parsed by hand (`wire`) rather than with
//! netlink-packet-sock-diag: that crate copies every INET_DIAG_INFO and every unknown
//! attribute into its own `Vec` (one or more heap allocations per socket, 200k sockets
//! on a busy host) and hands tcp_info back as raw bytes anyway. The format is four
//! fixed C structs, so a borrowing parser over one reused receive buffer is both
//! shorter and as fast as the benchmark's C floor (bench/floor/floor.c).

mod wire;

#[cfg(test)]
mod tests;

use super::SourceError;
use crate::model::{Inode, TcpSocket, TcpState};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::socket::{
    self, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::thread;

/// Bitmask of kernel TCP states (bit n = kernel state number n, see TcpState::kernel_number).
#[derive(Debug, Clone, Copy)]
pub struct DumpRequest {
    pub states: u32,
    /// Ask for tcp_info too (fills `last_ack_ms`); makes each reply a few times larger.
    pub with_info: bool,
    /// Of `states`, those whose sockets become records; the others are only
    /// counted (`Dumped::unkept`), which costs no allocation per socket.
    pub keep: u32,
}

impl DumpRequest {
    /// Every TCP state, without tcp_info.
    pub fn all() -> Self {
        Self::only(&TcpState::ALL, false)
    }

    /// Only these states: the kernel skips the others, which is what makes it fast.
    pub fn only(states: &[TcpState], with_info: bool) -> Self {
        let states = mask(states);
        DumpRequest {
            states,
            with_info,
            keep: states,
        }
    }

    /// Every state counted, records only for `keep`. With tcp_info, the
    /// kernel fills it for every socket, but one walk of its table replaces
    /// a second, info-only dump of the kept states. Where the kernel's TCP
    /// iterator counts, a namespace without a CLOSE_WAIT socket gets no
    /// records at all: the kept states are there to explain CLOSE_WAIT
    /// sockets (their listeners), and its counts are all a look needs of it.
    pub fn counting(keep: &[TcpState], with_info: bool) -> Self {
        DumpRequest {
            keep: mask(keep),
            with_info,
            ..Self::all()
        }
    }

    /// Whether sockets in `state` become records.
    pub fn keeps(&self, state: TcpState) -> bool {
        self.keep & (1 << state.kernel_number()) != 0
    }
}

fn mask(states: &[TcpState]) -> u32 {
    states.iter().fold(0u32, |m, s| m | 1 << s.kernel_number())
}

/// What one dump gave: a record per socket in a kept state, and how many
/// sockets of each other state it counted.
#[derive(Debug, Default)]
pub struct Dumped {
    pub sockets: Vec<TcpSocket>,
    pub unkept: Tally,
}

/// Sockets counted without a record, by state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally([usize; TcpState::ALL.len()]);

impl Tally {
    pub fn add(&mut self, state: TcpState) {
        self.add_n(state, 1);
    }

    pub fn get(&self, state: TcpState) -> usize {
        self.0
            .get(usize::from(state.kernel_number()) - 1)
            .copied()
            .unwrap_or(0)
    }

    pub fn set(&mut self, state: TcpState, count: usize) {
        if let Some(n) = self.0.get_mut(usize::from(state.kernel_number()) - 1) {
            *n = count;
        }
    }

    pub fn add_n(&mut self, state: TcpState, count: usize) {
        if let Some(n) = self.0.get_mut(usize::from(state.kernel_number()) - 1) {
            *n += count;
        }
    }

    fn merge(&mut self, other: &Tally) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// The counts of the states in `mask` (bit n: kernel state n).
    pub fn only(&self, mask: u32) -> Tally {
        let mut out = Tally::default();
        for (state, (o, n)) in TcpState::ALL.iter().zip(out.0.iter_mut().zip(self.0)) {
            if mask & (1 << state.kernel_number()) != 0 {
                *o = n;
            }
        }
        out
    }

    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }

    /// The states with at least one socket.
    pub fn counts(&self) -> std::collections::BTreeMap<TcpState, usize> {
        TcpState::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (*s, n))
            .collect()
    }
}

/// Dump the TCP sockets of the calling thread's current network namespace.
pub fn dump_current(netns: Inode, req: &DumpRequest) -> Result<Dumped, SourceError> {
    dump_here(netns, req).map_err(|message| SourceError::Netlink { netns, message })
}

/// Dump inside the namespace of `ns_file` (e.g. /proc/1234/ns/net), from a
/// thread of its own (`in_netns`).
pub fn dump_in_netns(
    ns_file: &Path,
    netns: Inode,
    req: &DumpRequest,
) -> Result<Dumped, SourceError> {
    let req = *req;
    in_netns(ns_file, netns, move || dump_here(netns, &req))
}

/// One socket to look up by its addresses (`lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The interface it is bound to, as its dump said (0: none).
    pub bound_if: u32,
}

/// The sockets with these addresses now, one answer per `wanted` in order
/// (None: no such socket), each found by a lookup in the kernel's hash
/// instead of a walk of the whole table: for a few sockets on a host with
/// many, a walk costs thousands of times more. With `ns_file`, in that
/// namespace (`in_netns`); without, in the calling thread's.
pub fn lookup(
    ns_file: Option<&Path>,
    netns: Inode,
    wanted: &[Wanted],
    with_info: bool,
) -> Result<Vec<Option<TcpSocket>>, SourceError> {
    let run = move || {
        let mut nl = DiagSocket::open()?;
        let mut out = Vec::with_capacity(wanted.len());
        for batch in wanted.chunks(LOOKUP_BATCH) {
            nl.lookup_batch(netns, batch, with_info, &mut out)?;
        }
        Ok(out)
    };
    match ns_file {
        Some(file) => thread::scope(|scope| {
            // A scoped thread may borrow `wanted`; the namespace is entered in it.
            let file = file.to_path_buf();
            let entered = thread::Builder::new()
                .name("cwleak-netns".into())
                .spawn_scoped(scope, move || {
                    let ns =
                        File::open(&file).map_err(|e| format!("open {}: {e}", file.display()))?;
                    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                        .map_err(|e| format!("setns {}: {}", file.display(), e.desc()))?;
                    run()
                });
            match entered {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err("namespace thread panicked".into())),
                Err(e) => Err(format!("spawn namespace thread: {e}")),
            }
        }),
        None => run(),
    }
    .map_err(|message| SourceError::Netlink { netns, message })
}

/// Run `f` on a short-lived thread inside the namespace of `ns_file`:
/// setns(CLONE_NEWNET) affects only that thread, and a netlink socket belongs
/// to the namespace of the thread that opens it, so the caller's thread never
/// changes namespace. Needs CAP_SYS_ADMIN (setns), as root has.
fn in_netns<T: Send + 'static>(
    ns_file: &Path,
    netns: Inode,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, SourceError> {
    let fail = |message| SourceError::Netlink { netns, message };
    // Opened here so that a vanished process fails before any thread is spawned.
    let ns = File::open(ns_file).map_err(|e| fail(format!("open {}: {e}", ns_file.display())))?;
    let path = ns_file.display().to_string();
    let worker = thread::Builder::new()
        .name("cwleak-netns".into())
        .spawn(move || {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {path}: {}", e.desc()))?;
            drop(ns);
            f()
        })
        .map_err(|e| fail(format!("spawn namespace thread: {e}")))?;
    match worker.join() {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(fail("namespace thread panicked".into())),
    }
}

/// A whole dump may be interrupted by concurrent table changes (NLM_F_DUMP_INTR);
/// this many tries per address family before giving up.
const MAX_ATTEMPTS: u32 = 3;
/// The kernel caps each dump datagram at about 32 KiB; the rest is headroom, and
/// MSG_TRUNC tells us if a future kernel ever sends more.
const RECV_BUF: usize = 256 << 10;
const SOCKET_RCVBUF: usize = 1 << 20;
/// Growth is amortized anyway; this only skips the first few reallocations.
const INITIAL_SOCKETS: usize = 1024;
/// Lookups sent in one datagram. The kernel answers them all before the send
/// returns, each reply queued on our socket (with tcp_info about 1 KiB, 2 with
/// the kernel's overhead); a reply that does not fit the receive buffer is
/// dropped, so a batch stays well under the smallest buffer an unprivileged
/// caller gets (net.core.rmem_max, 208 KiB by default).
const LOOKUP_BATCH: usize = 48;

/// Which sockets one dump asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tables {
    /// IPv4 and IPv6 in one walk (the original TCPDIAG_GETSOCK request).
    Both,
    /// One family (SOCK_DIAG_BY_FAMILY with inet_diag_req_v2).
    Family(i32),
}

impl Tables {
    fn name(self) -> &'static str {
        match self {
            Tables::Both => "TCP",
            Tables::Family(libc::AF_INET) => "IPv4",
            Tables::Family(_) => "IPv6",
        }
    }
}

/// The TCP sockets of the calling thread's network namespace.
///
/// Every dump walks the whole established hash table (one table for all
/// namespaces: 200k sockets of other namespaces cost as much as our own), and
/// a v2 request keeps only one family per walk. The original request keeps
/// both, so one walk does: half the kernel time of two v2 dumps. Kernels that
/// refuse it get the two v2 dumps, side by side.
fn dump_here(netns: Inode, req: &DumpRequest) -> Result<Dumped, String> {
    // Every state counted, records of a few: the kernel's TCP iterator
    // counts, and writes the records of the CLOSE_WAIT and LISTEN sockets
    // where it can; otherwise the dump carries the kept states only.
    if req.keep != req.states {
        if let Ok(pass) = super::tcp_states::read_here(netns, room_for(netns)) {
            let counted = pass.counts;
            let close_wait = 1 << TcpState::CloseWait.kernel_number();
            if req.keep & close_wait != 0 && counted.only(close_wait).total() == 0 {
                // Nothing to explain: no dump, no walk of the kernel's table.
                return Ok(Dumped {
                    sockets: Vec::new(),
                    unkept: counted.only(req.states),
                });
            }
            // The iterator's records are what the dump would give: no
            // second walk of the kernel's table.
            if let Some(records) = pass
                .kept
                .filter(|_| req.keep == mask(&super::TableStates::LEAKS) && req.with_info)
            {
                remember_kept(netns, records.len());
                return Ok(Dumped {
                    sockets: records,
                    unkept: counted.only(req.states & !req.keep),
                });
            }
            let kept = DumpRequest {
                states: req.keep,
                ..*req
            };
            // Room for the records counted, and for a few more that came
            // since: no reallocation of a vector of 40,000 records (the
            // old and new buffers both held at its peak).
            let n = counted.only(req.keep).total();
            let mut out = dump_messages(netns, &kept, n + n / 32 + 16)?;
            out.unkept = counted.only(req.states & !req.keep);
            remember_kept(netns, out.sockets.len());
            return Ok(out);
        }
    }
    dump_messages(netns, req, INITIAL_SOCKETS)
}

/// The sockets of the calling thread's namespace in `states`, counted by a
/// dump that keeps none (the kernel skips the other states).
pub fn count_here(netns: Inode, states: &[TcpState]) -> Result<Tally, String> {
    let req = DumpRequest {
        keep: 0,
        ..DumpRequest::only(states, false)
    };
    dump_messages(netns, &req, 0).map(|d| d.unkept)
}

/// How many records each namespace's last look kept: room for as many (and
/// a few more) in the iterator's next pass. A namespace seen for the first
/// time has none: its records are dumped, into a vector of the size the
/// iterator counted, once.
static KEPT_BEFORE: std::sync::Mutex<Option<crate::model::FastMap<Inode, usize>>> =
    std::sync::Mutex::new(None);

pub fn room_for(netns: Inode) -> Option<usize> {
    let n = KEPT_BEFORE
        .lock()
        .ok()
        .and_then(|m| m.as_ref()?.get(&netns).copied())?;
    Some(n + n / 32 + 16)
}

fn remember_kept(netns: Inode, n: usize) {
    if let Ok(mut m) = KEPT_BEFORE.lock() {
        let m = m.get_or_insert_with(Default::default);
        // Namespaces come and go on a container host: the hints of gone
        // ones are dropped now and then (a hint is only a capacity).
        if m.len() >= 4096 && !m.contains_key(&netns) {
            m.clear();
        }
        m.insert(netns, n);
    }
}

/// A dump whose every socket comes as a message, with room for `expected`
/// records to begin with.
fn dump_messages(netns: Inode, req: &DumpRequest, expected: usize) -> Result<Dumped, String> {
    match dump_tables(Tables::Both, netns, req, expected) {
        Ok(v) => Ok(v),
        Err(DumpError::Refused(_)) => dump_families(netns, req, expected),
        Err(DumpError::Other(e)) => Err(e),
    }
}

/// Both v2 dumps, IPv4 and IPv6 on two threads. A spawned thread starts in the
/// namespace of the thread that spawns it, which is what makes this right
/// inside `dump_in_netns` too.
fn dump_families(netns: Inode, req: &DumpRequest, expected: usize) -> Result<Dumped, String> {
    let family = |f, n| dump_tables(Tables::Family(f), netns, req, n).map_err(String::from);
    thread::scope(|scope| {
        let ipv6 = thread::Builder::new()
            .name("cwleak-diag6".into())
            .spawn_scoped(scope, || family(libc::AF_INET6, INITIAL_SOCKETS));
        let v4 = family(libc::AF_INET, expected);
        // Joined before any error is returned, so no thread outlives a failed dump.
        let v6 = match ipv6 {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err("IPv6 dump thread panicked".into())),
            // No thread to spare: walk again on this one.
            Err(_) => family(libc::AF_INET6, INITIAL_SOCKETS),
        };
        let mut out = v4?;
        let v6 = v6?;
        out.sockets.extend(v6.sockets);
        out.unkept.merge(&v6.unkept);
        Ok(out)
    })
}

/// How one netlink dump ended.
enum Outcome {
    Complete,
    /// NLM_F_DUMP_INTR was set on some message: the result may miss or repeat sockets.
    Interrupted,
    /// The kernel answered with this errno instead of (or in the middle of) the dump.
    Failed(Errno),
}

enum DumpError {
    /// The kernel refused the request itself (another request may do).
    Refused(String),
    Other(String),
}

impl From<DumpError> for String {
    fn from(e: DumpError) -> String {
        match e {
            DumpError::Refused(m) | DumpError::Other(m) => m,
        }
    }
}

/// One dump on a netlink socket of its own; interrupted dumps are retried from scratch.
fn dump_tables(
    which: Tables,
    netns: Inode,
    req: &DumpRequest,
    expected: usize,
) -> Result<Dumped, DumpError> {
    let name = which.name();
    let mut nl = DiagSocket::open().map_err(DumpError::Other)?;
    let mut out = Dumped {
        sockets: Vec::with_capacity(expected),
        unkept: Tally::default(),
    };
    for _ in 0..MAX_ATTEMPTS {
        out.sockets.clear();
        out.unkept = Tally::default();
        let outcome = nl
            .dump(which, netns, req, &mut out)
            .map_err(|e| DumpError::Other(format!("{name} dump: {e}")))?;
        match outcome {
            Outcome::Complete => return Ok(out),
            Outcome::Interrupted => continue,
            // No IPv6 in this kernel or namespace: the IPv4 table is the whole table.
            Outcome::Failed(Errno::ENOENT | Errno::EAFNOSUPPORT | Errno::EPROTONOSUPPORT)
                if which == Tables::Family(libc::AF_INET6) =>
            {
                return Ok(Dumped::default())
            }
            Outcome::Failed(errno) if which == Tables::Both => {
                return Err(DumpError::Refused(format!(
                    "{name} dump failed in the kernel: {}",
                    errno.desc()
                )))
            }
            Outcome::Failed(Errno::ENOENT) => {
                return Err(DumpError::Other(format!(
                    "{name} dump: no sock_diag handler for TCP (tcp_diag module missing?)"
                )))
            }
            Outcome::Failed(errno) => {
                return Err(DumpError::Other(format!(
                    "{name} dump failed in the kernel: {}",
                    errno.desc()
                )))
            }
        }
    }
    Err(DumpError::Other(format!(
        "{name} dump interrupted {MAX_ATTEMPTS} times in a row (the socket table kept changing)"
    )))
}

/// A NETLINK_SOCK_DIAG socket of the namespace it was opened in, with its receive buffer.
struct DiagSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl DiagSocket {
    fn open() -> Result<Self, String> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )
        .map_err(|e| format!("socket(NETLINK_SOCK_DIAG): {}", e.desc()))?;
        // Only a hint: a dump never drops data when the buffer is small, the kernel just
        // waits for the next recv. FORCE (CAP_NET_ADMIN) can pass net.core.rmem_max.
        if socket::setsockopt(&fd, sockopt::RcvBufForce, &SOCKET_RCVBUF).is_err() {
            let _ = socket::setsockopt(&fd, sockopt::RcvBuf, &SOCKET_RCVBUF);
        }
        Ok(DiagSocket {
            fd,
            buf: vec![0; RECV_BUF],
            seq: 0,
        })
    }

    /// One full netlink dump, appended to `out`.
    fn dump(
        &mut self,
        which: Tables,
        netns: Inode,
        req: &DumpRequest,
        out: &mut Dumped,
    ) -> Result<Outcome, String> {
        // A fresh sequence number per dump, so nothing left over from an abandoned
        // dump can be mistaken for this one.
        self.seq = self.seq.wrapping_add(1);
        let (states, info, seq) = (req.states, req.with_info, self.seq);
        match which {
            Tables::Both => self.send(&wire::dump_request_both(states, info, seq))?,
            Tables::Family(f) => self.send(&wire::dump_request(f as u8, states, info, seq))?,
        }
        let mut interrupted = false;
        loop {
            let n = self.recv()?;
            for msg in wire::Messages::new(&self.buf[..n]) {
                let msg = msg?;
                if msg.seq != self.seq {
                    continue;
                }
                interrupted |= msg.flags & wire::NLM_F_DUMP_INTR != 0;
                match msg.kind {
                    // Replies carry the request's type.
                    wire::SOCK_DIAG_BY_FAMILY | wire::TCPDIAG_GETSOCK => {
                        match wire::state_of(msg.payload)? {
                            Some(state) if !req.keeps(state) => out.unkept.add(state),
                            Some(_) => {
                                if let Some(sock) =
                                    wire::parse_socket(msg.payload, netns, req.with_info)?
                                {
                                    out.sockets.push(sock);
                                }
                            }
                            None => {}
                        }
                    }
                    // DONE carries an errno too when a dump fails half-way.
                    wire::NLMSG_DONE | wire::NLMSG_ERROR => {
                        let errno = wire::errno_of(msg.payload);
                        return Ok(match errno {
                            // A plain ACK cannot come before DONE in a dump; treat it as the end.
                            0 if interrupted => Outcome::Interrupted,
                            0 => Outcome::Complete,
                            e => Outcome::Failed(Errno::from_raw(e)),
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// One datagram of exact lookups (sequence numbers in a row, one per
    /// socket), then every answer, appended to `out` in the order asked.
    fn lookup_batch(
        &mut self,
        netns: Inode,
        batch: &[Wanted],
        with_info: bool,
        out: &mut Vec<Option<TcpSocket>>,
    ) -> Result<(), String> {
        let first = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(batch.len() * 72);
        for (i, w) in batch.iter().enumerate() {
            let seq = first.wrapping_add(i as u32);
            msg.extend_from_slice(&wire::exact_request(
                w.local, w.remote, w.bound_if, with_info, seq,
            ));
        }
        self.seq = first.wrapping_add(batch.len() as u32);
        self.send(&msg)?;
        let mut answers: Vec<Option<Option<TcpSocket>>> = vec![None; batch.len()];
        let mut left = batch.len();
        while left > 0 {
            // Every answer was queued before send returned: waiting could only
            // mean one was dropped (a full receive buffer), so never wait.
            let n = self.recv_now()?.ok_or_else(|| {
                format!(
                    "{left} of {} socket lookups unanswered (receive buffer full?)",
                    batch.len()
                )
            })?;
            for m in wire::Messages::new(&self.buf[..n]) {
                let m = m?;
                let i = m.seq.wrapping_sub(first) as usize;
                let Some(slot) = answers.get_mut(i).filter(|a| a.is_none()) else {
                    continue;
                };
                *slot = Some(match m.kind {
                    wire::SOCK_DIAG_BY_FAMILY => wire::parse_socket(m.payload, netns, with_info)?,
                    wire::NLMSG_ERROR => match wire::errno_of(m.payload) {
                        libc::ENOENT => None,
                        0 => continue,
                        e => {
                            return Err(format!(
                                "socket lookup failed in the kernel: {}",
                                Errno::from_raw(e).desc()
                            ))
                        }
                    },
                    _ => continue,
                });
                left -= 1;
            }
        }
        out.extend(answers.into_iter().map(Option::flatten));
        Ok(())
    }

    /// Like `recv`, but None instead of waiting when nothing is queued.
    fn recv_now(&mut self) -> Result<Option<usize>, String> {
        loop {
            let flags = MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT;
            match socket::recv(self.fd.as_raw_fd(), &mut self.buf, flags) {
                Ok(n) if n > self.buf.len() => {
                    return Err(format!(
                        "netlink datagram of {n} bytes exceeds the {} byte buffer",
                        self.buf.len()
                    ))
                }
                Ok(n) => return Ok(Some(n)),
                Err(Errno::EAGAIN) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(format!("recv: {}", e.desc())),
            }
        }
    }

    fn send(&self, msg: &[u8]) -> Result<(), String> {
        let kernel = NetlinkAddr::new(0, 0);
        loop {
            match socket::sendto(self.fd.as_raw_fd(), msg, &kernel, MsgFlags::empty()) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(format!("send: {}", e.desc())),
            }
        }
    }

    /// Receives one datagram into `buf`; returns its length.
    fn recv(&mut self) -> Result<usize, String> {
        loop {
            // MSG_TRUNC makes netlink return the datagram's real length, so a datagram
            // larger than the buffer is an error instead of silently lost sockets.
            match socket::recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC) {
                Ok(0) => {
                    return Err("netlink socket returned end of stream before NLMSG_DONE".into())
                }
                Ok(n) if n > self.buf.len() => {
                    return Err(format!(
                        "netlink datagram of {n} bytes exceeds the {} byte buffer",
                        self.buf.len()
                    ))
                }
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(format!("recv: {}", e.desc())),
            }
        }
    }
}
