//! Plain data read from the kernel: processes, their socket fds, and the TCP
//! tables of every network namespace. Everything here is serde so a snapshot
//! can be written and read back; nothing here touches the OS.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

pub type Pid = i32;
pub type Inode = u64;

/// Sets and maps keyed by inodes and pids: kernel-assigned integers, not
/// attacker-chosen strings, so a fast non-DoS-resistant hash is the right one
/// (a 200k-socket host looks up every socket fd several times).
pub type InodeSet = rustc_hash::FxHashSet<Inode>;
pub type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// One look at the machine, as the source read it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub meta: Meta,
    pub processes: Vec<Process>,
    pub namespaces: Vec<NetNs>,
    pub sockets: Vec<TcpSocket>,
    pub warnings: Vec<Warning>,
    pub stats: ScanStats,
    /// The second look of the settle window, when one was taken.
    pub settle: Option<Settle>,
}

/// What the settle window's second look found.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Settle {
    pub window_ms: u64,
    /// CLOSE_WAIT sockets of the first look that were gone (closed) by the second.
    pub transient: Vec<SocketKey>,
    /// CLOSE_WAIT sockets still there whose owner kept sending in between:
    /// more bytes acked, or a send queue that drained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_sending: Vec<SocketKey>,
}

/// A socket's identity across looks: inodes alone are not enough, since every
/// connection still in an accept queue has inode 0.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct SocketKey {
    pub netns: Inode,
    pub inode: Inode,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl SocketKey {
    /// 64 bits that stand for the key from one look to the next (a tenth of
    /// its size, with 40,000 sockets kept between looks): SipHash with fixed
    /// keys, the same digest for the same socket in every look; two sockets
    /// of one host colliding in 64 bits is not a concern.
    pub fn digest(&self) -> u64 {
        digest(self)
    }
}

/// SipHash with fixed keys: the same 64 bits for the same value in every look.
pub fn digest(v: &impl std::hash::Hash) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub hostname: Option<String>,
    pub kernel: Option<String>,
    /// Milliseconds since the Unix epoch when the look started.
    pub taken_at_ms: u64,
    /// The proc root every read went through ("/proc" when live).
    pub proc_root: String,
    /// True when read from a running kernel (settle re-checks are possible).
    pub live: bool,
    /// Clock ticks per second, to turn `start_time` into seconds.
    pub clk_tck: u64,
    /// Seconds since boot when the look started, when known.
    pub uptime_s: Option<f64>,
    /// The network namespace cwleak itself ran in (live scans only).
    pub netns: Option<Inode>,
    /// The TCP states the tables were read for; None: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<TcpState>>,
}

/// A thread group (what users call a process): one fd table, one holder.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Process {
    pub pid: Pid,
    pub ppid: Pid,
    pub comm: String,
    /// Real uid.
    pub uid: u32,
    /// Start time in clock ticks since boot (stat field 22).
    pub start_time: u64,
    /// Target of /proc/PID/exe, when readable.
    pub exe: Option<String>,
    /// Inode of /proc/PID/ns/net.
    pub netns: Option<Inode>,
    /// Unified (v2) cgroup path, or the first v1 path.
    pub cgroup: Option<String>,
    /// Pid inside the innermost pid namespace, when it differs (containers).
    pub ns_pid: Option<Pid>,
    /// Process state letter from stat (R, S, Z, T, ...).
    pub state: char,
    pub threads: u32,
    /// Memory layout from stat: identical to the parent's after fork, new after exec.
    pub layout: Option<Layout>,
    pub fork_signs: ForkSigns,
    /// Another process whose fd table this one shares (CLONE_FILES, proven by kcmp).
    pub shares_fd_table_with: Option<Pid>,
    /// Thread whose fd table was read when the group leader had already exited.
    pub fd_table_tid: Option<Pid>,
    /// Full command line, secrets masked; only when asked for (`--cmdline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Number of fds open (all kinds) and the soft RLIMIT_NOFILE, when read.
    pub fd_count: u32,
    pub fd_limit: Option<u64>,
    pub sockets: Vec<SocketFd>,
    /// Socket fds left out of `sockets` by a scan that read only CLOSE_WAIT
    /// and LISTEN (source/prune.rs): they explain nothing, but still count
    /// as "this process holds other sockets".
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other_sockets: u32,
}

/// Addresses from stat that fork copies and exec replaces.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Layout {
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    pub arg_start: u64,
}

/// Traces a process leaves when it has forked children.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ForkSigns {
    /// Minor faults of children it has waited for (stat cminflt): > 0 once it reaped one.
    pub reaped_child_faults: u64,
    /// SIGCHLD is ignored (auto-reap) or caught (a reaper handler).
    pub sigchld_handled: bool,
    /// SIGCHLD is caught: a handler this program installed (exec resets
    /// handlers; an ignored SIGCHLD and the reaped-children counts survive it).
    #[serde(default)]
    pub sigchld_caught: bool,
}

/// One fd of a process that points at a socket.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SocketFd {
    pub fd: i32,
    pub inode: Inode,
    /// O_CLOEXEC from fdinfo; read only for sockets that matter.
    pub cloexec: Option<bool>,
    /// The thread whose own fd table (unshare(CLONE_FILES)) holds this fd;
    /// None for the process's table, the one /proc/PID/fd shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<Pid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetNs {
    pub inode: Inode,
    /// Process whose view of the namespace was used to read its tables.
    pub via_pid: Option<Pid>,
    /// How the table was read: "sock_diag" or "proc".
    pub method: String,
    pub sockets: usize,
    /// TCP settings of this namespace (net.ipv4.tcp_*, net.core.somaxconn), when read.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sysctls: std::collections::BTreeMap<String, String>,
    /// The TCP line of the namespace's /proc/net/sockstat, when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelCounts>,
    /// TcpExt counters of the namespace's /proc/net/netstat, when read.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub counters: std::collections::BTreeMap<String, u64>,
    /// The namespace file read when no process sits in the namespace (a
    /// bind mount such as /run/netns/NAME); `via_pid` is then None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Sockets of this namespace the table read counted, by state, but kept
    /// no record of (`serve` keeps records of CLOSE_WAIT and LISTEN only, and
    /// counts the rest); included in `sockets`. Empty when every socket read
    /// has a record. Not saved: a capture keeps a record of every socket.
    #[serde(skip)]
    pub unkept: std::collections::BTreeMap<TcpState, usize>,
}

/// What the kernel counts for TCP (the `TCP:` line of /proc/net/sockstat,
/// `sockstat_seq_show` in net/ipv4/proc.c). `inuse` and `tw` belong to the
/// namespace; `orphans`, `alloc` and `mem_pages` are host-wide sums the
/// kernel prints the same in every namespace.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KernelCounts {
    /// TCP sockets in the namespace's hash tables (not TIME_WAIT, not
    /// request sockets).
    pub inuse: u64,
    /// Orphans, host-wide: closed by their application, still finishing.
    pub orphans: u64,
    /// TIME_WAIT mini-sockets of the namespace (TIME_WAIT, and orphaned
    /// FIN_WAIT2 handed to the timewait machinery).
    pub tw: u64,
    /// TCP sockets allocated, host-wide.
    pub alloc: u64,
    /// Pages of TCP buffer memory, host-wide (what tcp_mem limits).
    pub mem_pages: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// TCP states, spelled as the kernel spells them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    #[serde(rename = "ESTABLISHED")]
    Established,
    #[serde(rename = "SYN_SENT")]
    SynSent,
    #[serde(rename = "SYN_RECV")]
    SynRecv,
    #[serde(rename = "FIN_WAIT1")]
    FinWait1,
    #[serde(rename = "FIN_WAIT2")]
    FinWait2,
    #[serde(rename = "TIME_WAIT")]
    TimeWait,
    #[serde(rename = "CLOSE")]
    Close,
    #[serde(rename = "CLOSE_WAIT")]
    CloseWait,
    #[serde(rename = "LAST_ACK")]
    LastAck,
    #[serde(rename = "LISTEN")]
    Listen,
    #[serde(rename = "CLOSING")]
    Closing,
    #[serde(rename = "NEW_SYN_RECV")]
    NewSynRecv,
}

impl TcpState {
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The kernel's numbering (include/net/tcp_states.h).
    pub fn from_kernel(n: u8) -> Option<TcpState> {
        Self::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }

    pub fn kernel_number(self) -> u8 {
        self as u8 + 1
    }

    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
            TcpState::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

/// One row of a TCP table (sock_diag or /proc/net/tcp{,6}).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TcpSocket {
    /// 0 for sockets without a file: TIME_WAIT, orphans, and connections not yet accepted.
    pub inode: Inode,
    pub netns: Inode,
    pub family: Family,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// LISTEN: connections waiting in the accept queue; otherwise unread bytes.
    pub recv_q: u32,
    /// LISTEN: the backlog; otherwise unacknowledged bytes.
    pub send_q: u32,
    pub uid: u32,
    /// Lower bound of the time since the peer's last ACK (sock_diag tcp_info); None from /proc.
    pub last_ack_ms: Option<u64>,
    /// Bytes the peer acknowledged (tcp_info tcpi_bytes_acked); None from /proc
    /// and on kernels too old to report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_acked: Option<u64>,
    /// A timewait mini-socket (its timer is the timewait timer): every
    /// TIME_WAIT, and an orphaned FIN_WAIT2 the kernel handed to the timewait
    /// machinery (tcp_time_wait(sk, TCP_FIN_WAIT2, ...)). Those count against
    /// tcp_max_tw_buckets, not tcp_max_orphans.
    #[serde(default, skip_serializing_if = "is_false")]
    pub timewait: bool,
    /// The interface the socket is bound to (SO_BINDTODEVICE; 0: none), as
    /// sock_diag reports it; None from /proc. Only the live re-check uses it
    /// (an exact lookup must name it to find a bound socket); never saved.
    #[serde(skip)]
    pub bound_if: Option<u32>,
}

impl TcpSocket {
    pub fn key(&self) -> SocketKey {
        SocketKey {
            netns: self.netns,
            inode: self.inode,
            local: self.local,
            remote: self.remote,
        }
    }
}

/// Something the scan could not read, or read only in part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Warning {
    pub pid: Option<Pid>,
    pub path: Option<String>,
    pub kind: WarningKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum WarningKind {
    /// EACCES/EPERM: the fds of this process are unknown.
    PermissionDenied,
    /// The process exited while it was being read; it held nothing anymore.
    Vanished,
    /// The file was there but its text did not parse.
    Malformed,
    /// A network table could not be read.
    NetTable,
    /// Any other I/O error.
    Io,
    /// A read given up on because it did not finish in time.
    TimedOut,
    /// A whole part of the machine this look could not see: processes the
    /// proc root hides (hidepid), a namespace whose TCP table was not read.
    /// A look with one cannot support "no leak".
    Incomplete,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScanStats {
    pub processes: usize,
    pub fds: usize,
    pub socket_fds: usize,
    pub namespaces: usize,
    pub tcp_sockets: usize,
    pub duration_ms: u64,
}

/// The sockets worth explaining: CLOSE_WAIT sockets with a file, and the
/// listeners of their local ports (they tell who accepted the connection).
pub fn interesting_inodes(sockets: &[TcpSocket]) -> InodeSet {
    let cw_ports: rustc_hash::FxHashSet<(Inode, u16)> = sockets
        .iter()
        .filter(|s| s.state == TcpState::CloseWait)
        .map(|s| (s.netns, s.local.port()))
        .collect();
    let wanted = |s: &&TcpSocket| {
        s.inode != 0
            && (s.state == TcpState::CloseWait
                || (s.state == TcpState::Listen && cw_ports.contains(&(s.netns, s.local.port()))))
    };
    // Sized first: tens of thousands of inodes would otherwise be hashed
    // again at every doubling of the table.
    let mut set = InodeSet::with_capacity_and_hasher(
        sockets.iter().filter(wanted).count(),
        Default::default(),
    );
    set.extend(sockets.iter().filter(wanted).map(|s| s.inode));
    set
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
