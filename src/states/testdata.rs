//! Hand-built snapshots for the unit tests of `states` and `tuning`.

use crate::model::*;
use std::collections::BTreeMap;

pub const HOST: Inode = 4_026_531_840;
pub const POD: Inode = 4_026_532_500;

pub fn sock(netns: Inode, state: TcpState, inode: Inode, local: &str, remote: &str) -> TcpSocket {
    let local: std::net::SocketAddr = local.parse().unwrap();
    TcpSocket {
        inode,
        netns,
        family: if local.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        },
        local,
        remote: remote.parse().unwrap(),
        state,
        recv_q: 0,
        send_q: 0,
        uid: 0,
        last_ack_ms: None,
        bytes_acked: None,
        // As the kernel reports them: every TIME_WAIT is a timewait mini-socket.
        timewait: state == TcpState::TimeWait,
        bound_if: None,
    }
}

pub fn listener(netns: Inode, inode: Inode, local: &str, queued: u32, backlog: u32) -> TcpSocket {
    TcpSocket {
        recv_q: queued,
        send_q: backlog,
        ..sock(netns, TcpState::Listen, inode, local, "0.0.0.0:0")
    }
}

pub fn process(pid: Pid, ppid: Pid, comm: &str, netns: Option<Inode>, inodes: &[Inode]) -> Process {
    Process {
        pid,
        ppid,
        comm: comm.into(),
        netns,
        sockets: inodes
            .iter()
            .enumerate()
            .map(|(i, &inode)| SocketFd {
                fd: i as i32 + 3,
                inode,
                cloexec: None,
                tid: None,
            })
            .collect(),
        ..Process::default()
    }
}

pub fn namespace(inode: Inode, via_pid: Option<Pid>, sysctls: &[(&str, &str)]) -> NetNs {
    NetNs {
        inode,
        via_pid,
        method: "sock_diag".into(),
        sockets: 0,
        sysctls: sysctls
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..NetNs::default()
    }
}

/// A web server on the host (nginx, pid 100, listening on :443 with 2
/// connections queued) that closed first on two clients (TIME_WAIT, local
/// :443) and talks to a database (one ESTABLISHED, one TIME_WAIT to
/// 10.0.0.9:5432); two orphans; one CLOSE_WAIT. In a pod: a worker (pid 200)
/// with an ESTABLISHED connection to the host, and a socket in a namespace
/// no process was seen in.
pub fn web() -> Snapshot {
    use TcpState::*;
    let mut s = Snapshot {
        meta: Meta {
            hostname: Some("web1".into()),
            kernel: Some("6.8.0".into()),
            taken_at_ms: 1_700_000_000_000,
            proc_root: "/proc".into(),
            live: true,
            netns: Some(HOST),
            ..Meta::default()
        },
        processes: vec![
            process(1, 0, "systemd", Some(HOST), &[]),
            process(100, 1, "nginx", Some(HOST), &[10, 11, 12, 13]),
            process(101, 100, "nginx", Some(HOST), &[10, 12]),
            process(200, 1, "worker", Some(POD), &[20]),
        ],
        namespaces: vec![
            namespace(
                HOST,
                Some(100),
                &[("net.ipv4.ip_local_port_range", "32768 60999")],
            ),
            namespace(POD, Some(200), &[]),
        ],
        ..Snapshot::default()
    };
    s.sockets = vec![
        listener(HOST, 10, "0.0.0.0:443", 2, 10),
        sock(HOST, Established, 0, "10.0.0.1:443", "10.0.0.7:50001"),
        sock(HOST, Established, 0, "10.0.0.1:443", "10.0.0.7:50002"),
        sock(HOST, Established, 11, "10.0.0.1:40001", "10.0.0.9:5432"),
        sock(HOST, TimeWait, 0, "10.0.0.1:443", "10.0.0.7:50003"),
        sock(HOST, TimeWait, 0, "10.0.0.1:443", "[::ffff:10.0.0.8]:50004"),
        sock(HOST, TimeWait, 0, "10.0.0.1:40002", "10.0.0.9:5432"),
        sock(HOST, FinWait1, 0, "10.0.0.1:443", "10.0.0.7:50005"),
        sock(HOST, FinWait2, 0, "10.0.0.1:443", "10.0.0.7:50006"),
        sock(HOST, CloseWait, 12, "10.0.0.1:443", "10.0.0.7:50007"),
        sock(HOST, SynRecv, 0, "10.0.0.1:443", "10.0.0.7:50008"),
        sock(HOST, Established, 13, "127.0.0.1:41000", "127.0.0.1:9000"),
        sock(POD, Established, 20, "10.1.0.2:45000", "10.0.0.1:443"),
        sock(POD, Established, 99, "10.1.0.2:45001", "10.0.0.1:443"),
        sock(4_026_533_000, TimeWait, 0, "10.2.0.2:46000", "10.0.0.1:443"),
    ];
    s.stats.processes = s.processes.len();
    s.stats.tcp_sockets = s.sockets.len();
    s.warnings = vec![Warning {
        pid: Some(300),
        path: Some("/proc/300/fd".into()),
        kind: WarningKind::PermissionDenied,
        message: "cannot read /proc/300/fd: Permission denied".into(),
    }];
    s
}

/// Settings and counts that make every rule of `cwleak sysctl` speak: the
/// host (tw_recycle on, 90 TIME_WAIT of 100 buckets, 9 of 10 ports to one
/// database, a full accept queue, SYN_RECV near a small backlog without
/// syncookies, 6 orphans of 10, a CLOSE_WAIT, tuned fin_timeout and
/// tw_reuse) and a pod with default values and nothing queued.
pub fn tuned() -> Snapshot {
    use TcpState::*;
    let host = [
        ("net.ipv4.tcp_tw_recycle", "1"),
        ("net.ipv4.tcp_max_tw_buckets", "100"),
        ("net.ipv4.ip_local_port_range", "40000 40009"),
        ("net.ipv4.tcp_tw_reuse", "0"),
        ("net.ipv4.tcp_fin_timeout", "30"),
        ("net.ipv4.tcp_max_orphans", "10"),
        ("net.core.somaxconn", "5"),
        ("net.ipv4.tcp_syncookies", "0"),
        ("net.ipv4.tcp_max_syn_backlog", "8"),
        ("net.ipv4.tcp_mem", "10 20 30"),
        ("net.ipv4.tcp_wmem", "4096 16384 4194304"),
    ];
    let pod = [
        ("net.ipv4.tcp_max_tw_buckets", "100"),
        ("net.ipv4.ip_local_port_range", "32768 60999"),
        ("net.ipv4.tcp_tw_reuse", "2"),
        ("net.ipv4.tcp_fin_timeout", "60"),
        ("net.core.somaxconn", "4096"),
        ("net.ipv4.tcp_syncookies", "1"),
        ("net.ipv4.tcp_max_syn_backlog", "512"),
    ];
    let mut s = web();
    s.namespaces = vec![
        namespace(HOST, Some(100), &host),
        namespace(POD, None, &pod),
    ];
    s.sockets = vec![
        listener(HOST, 10, "0.0.0.0:443", 5, 5),
        sock(HOST, CloseWait, 12, "10.0.0.1:443", "10.0.0.7:50007"),
        sock(POD, Established, 20, "10.1.0.2:443", "10.0.0.1:50000"),
    ];
    for i in 0..9u16 {
        s.sockets.push(sock(
            HOST,
            TimeWait,
            0,
            &format!("10.0.0.1:{}", 40000 + i),
            "10.0.0.9:5432",
        ));
    }
    for i in 0..81u16 {
        s.sockets.push(sock(
            HOST,
            TimeWait,
            0,
            "10.0.0.1:443",
            &format!("10.0.0.7:{}", 50100 + i),
        ));
    }
    for i in 0..4u16 {
        s.sockets.push(sock(
            HOST,
            SynRecv,
            0,
            "10.0.0.1:443",
            &format!("10.0.0.8:{}", 50200 + i),
        ));
    }
    for i in 0..6u16 {
        s.sockets.push(sock(
            HOST,
            FinWait1,
            0,
            "10.0.0.1:443",
            &format!("10.0.0.6:{}", 50300 + i),
        ));
    }
    s.namespaces[0].kernel = Some(KernelCounts {
        inuse: 8,
        orphans: 6,
        tw: 90,
        alloc: 20,
        mem_pages: 25,
    });
    s.namespaces[0].counters = TUNED_COUNTERS.iter().map(|c| (c.to_string(), 1)).collect();
    s
}

/// The overflow counters of the tuned host.
const TUNED_COUNTERS: [&str; 9] = [
    "TCPTimeWaitOverflow",
    "ListenOverflows",
    "ListenDrops",
    "TCPReqQFullDrop",
    "TCPReqQFullDoCookies",
    "SyncookiesSent",
    "TCPAbortOnMemory",
    "TCPMemoryPressures",
    "TWRecycled",
];

/// What the tuned host's look does not hold: every overflow counter moved
/// by 3 in a 1 s window, and configuration files with a line this kernel
/// lacks and a value not in effect.
pub fn tuned_extra() -> crate::tuning::report::Extra {
    use crate::source::sysctl_conf::ConfSetting;
    let conf = |key: &str, value: &str, running: Option<&str>| ConfSetting {
        key: key.into(),
        value: value.into(),
        file: "/etc/sysctl.d/90-tuning.conf".into(),
        line: 1,
        optional: false,
        running: running.map(String::from),
    };
    crate::tuning::report::Extra {
        window_ms: 1000,
        later: [(
            HOST,
            TUNED_COUNTERS.iter().map(|c| (c.to_string(), 4)).collect(),
        )]
        .into(),
        earlier: Default::default(),
        conf: vec![
            conf("net.ipv4.tcp_tw_recycle", "1", None),
            conf("net.ipv4.tcp_fin_timeout", "15", Some("30")),
        ],
    }
}
