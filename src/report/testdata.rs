//! Hand-built reports for the renderers' tests.

use crate::diagnose::*;
use crate::model::{Family, Inode, Pid, TcpState, WarningKind};
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub const HOST_NS: Inode = 4_026_531_840;
pub const POD_NS: Inode = 4_026_532_500;

pub struct Sock {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub netns: Inode,
    pub age_ms: Option<u64>,
    pub recv_q: u32,
    pub holders: Vec<Holder>,
    pub blamed: Vec<Blame>,
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn holder(pid: Pid, ppid: Pid, comm: &str, fd: i32, cloexec: Option<bool>) -> Holder {
    Holder {
        pid,
        ppid,
        comm: comm.into(),
        fd,
        cloexec,
        tid: None,
        origin: None,
    }
}

pub fn sock(local: &str, remote: &str, holders: Vec<Holder>, blamed: &[(Pid, i32)]) -> Sock {
    Sock {
        local: addr(local),
        remote: addr(remote),
        netns: HOST_NS,
        age_ms: Some(60_000),
        recv_q: 0,
        holders,
        blamed: blamed
            .iter()
            .map(|&(pid, fd)| Blame { pid, fd, tid: None })
            .collect(),
    }
}

pub struct Builder {
    report: Report,
    next_inode: Inode,
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            report: Report {
                schema_version: SCHEMA_VERSION,
                tool: Tool {
                    name: "cwleak".into(),
                    version: "0.1.0".into(),
                },
                host: Host {
                    hostname: Some("web-1".into()),
                    kernel: Some("6.8.0-45-generic".into()),
                    taken_at_ms: 1_700_000_000_123,
                },
                summary: Summary::default(),
                groups: Vec::new(),
                findings: Vec::new(),
                processes: Vec::new(),
                scan: ScanInfo {
                    proc_root: "/proc".into(),
                    live: true,
                    processes: 812,
                    fds: 40_210,
                    socket_fds: 5_300,
                    tcp_sockets: 6_100,
                    states_read: crate::model::TcpState::ALL.to_vec(),
                    namespaces: vec![
                        NamespaceInfo {
                            inode: HOST_NS,
                            via_pid: Some(1),
                            method: "sock_diag".into(),
                            sockets: 6000,
                        },
                        NamespaceInfo {
                            inode: POD_NS,
                            via_pid: Some(7000),
                            method: "proc".into(),
                            sockets: 100,
                        },
                    ],
                    duration_ms: 231,
                    settle_ms: 1000,
                    scope: crate::diagnose::Scope::everything(),
                    unreadable: Vec::new(),
                    incomplete: Vec::new(),
                },
                check: None,
                trace: None,
            },
            next_inode: 100_000,
        }
    }

    pub fn process(&mut self, pid: Pid, ppid: Pid, comm: &str) -> &mut ProcessInfo {
        self.report.processes.push(ProcessInfo {
            pid,
            ppid,
            comm: comm.into(),
            exe: Some(format!("/usr/bin/{comm}")),
            cmdline: None,
            uid: 1000,
            cgroup: Some("/system.slice/api.service".into()),
            netns: Some(HOST_NS),
            ns_pid: None,
            execd: Some(true),
            threads: 1,
            fd_count: 10,
            fd_limit: Some(1024),
            close_wait_held: 0,
            close_wait_blamed: 0,
        });
        let last = self.report.processes.len() - 1;
        &mut self.report.processes[last]
    }

    #[allow(clippy::too_many_arguments)]
    pub fn group(
        &mut self,
        pid: Option<Pid>,
        comm: Option<&str>,
        cause: Cause,
        evidence: &[&str],
        fix: &str,
        mitigation: &str,
        socks: Vec<Sock>,
    ) {
        let mut indexes = Vec::new();
        let mut fds = Vec::new();
        let mut ports: BTreeMap<u16, usize> = BTreeMap::new();
        let mut oldest = None;
        let mut unread = 0;
        for s in socks {
            let inode = self.next_inode;
            self.next_inode += 1;
            fds.extend(s.blamed.iter().filter(|b| Some(b.pid) == pid).map(|b| b.fd));
            *ports.entry(s.local.port()).or_default() += 1;
            oldest = oldest.max(s.age_ms);
            unread += u64::from(s.recv_q);
            indexes.push(self.report.findings.len());
            self.report.findings.push(Finding {
                socket: SocketInfo {
                    inode,
                    netns: s.netns,
                    family: if s.local.is_ipv4() {
                        Family::Ipv4
                    } else {
                        Family::Ipv6
                    },
                    local: s.local,
                    remote: s.remote,
                    state: TcpState::CloseWait,
                    recv_q: s.recv_q,
                    send_q: 0,
                    close_wait_ms: s.age_ms,
                },
                holders: s.holders,
                blamed: s.blamed,
                cause,
                alternatives: Vec::new(),
                evidence: evidence.iter().map(|e| (*e).into()).collect(),
                fix: fix.into(),
                mitigation: mitigation.into(),
                allowed: None,
                basis: Default::default(),
            });
        }
        fds.sort_unstable();
        let mut local_ports: Vec<(u16, usize)> = ports.into_iter().collect();
        local_ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.report.groups.push(Group {
            pid,
            comm: comm.map(str::to_string),
            cause,
            alternatives: Vec::new(),
            sockets: indexes.len(),
            fds,
            local_ports,
            oldest_close_wait_ms: oldest,
            unread_bytes: unread,
            evidence: evidence.iter().map(|e| (*e).into()).collect(),
            fix: fix.into(),
            mitigation: mitigation.into(),
            findings: indexes,
        });
    }

    pub fn unreadable(
        &mut self,
        pid: Option<Pid>,
        path: Option<&str>,
        kind: WarningKind,
        message: &str,
    ) {
        self.report.scan.unreadable.push(Unreadable {
            pid,
            path: path.map(str::to_string),
            kind,
            message: message.into(),
        });
    }

    pub fn transient(&mut self, n: usize) {
        self.report.summary.transient = n;
    }

    pub fn build(mut self) -> Report {
        let r = &mut self.report;
        r.groups.sort_by_key(|g| std::cmp::Reverse(g.sockets));
        let mut by_cause = BTreeMap::new();
        for f in &r.findings {
            *by_cause.entry(f.cause).or_default() += 1;
        }
        let mut blamed: Vec<Pid> = r.groups.iter().filter_map(|g| g.pid).collect();
        blamed.sort_unstable();
        blamed.dedup();
        for p in &mut r.processes {
            p.close_wait_held = r
                .findings
                .iter()
                .filter(|f| f.holders.iter().any(|h| h.pid == p.pid))
                .count();
            p.close_wait_blamed = r
                .findings
                .iter()
                .filter(|f| f.blamed.iter().any(|b| b.pid == p.pid))
                .count();
            p.fd_count = p.fd_count.max(p.close_wait_held as u32 + 10);
        }
        let mut by_state = BTreeMap::new();
        by_state.insert(TcpState::Established, 900);
        by_state.insert(TcpState::Listen, 12);
        by_state.insert(TcpState::TimeWait, 150);
        by_state.insert(TcpState::CloseWait, r.findings.len() + r.summary.transient);
        r.summary = Summary {
            leaked: r.findings.len(),
            transient: r.summary.transient,
            still_sending: r.summary.still_sending,
            processes_blamed: blamed.len(),
            by_cause,
            by_state,
        };
        self.report
    }
}

/// No leak at all: 3 transient CLOSE_WAIT sockets, nothing unreadable.
/// pid 10 (leakyd) blamed for fork-parent-kept sockets to remote ports
/// `ports`, each socket's inode its remote port: the same socket keeps the
/// same key from one sample to the next (growth tracking).
pub fn leaking_to_ports(ports: &[u16]) -> Report {
    let mut b = Builder::new();
    let socks: Vec<_> = ports
        .iter()
        .map(|p| {
            sock(
                "10.0.0.1:8080",
                &format!("10.0.0.9:{p}"),
                vec![],
                &[(10, 4)],
            )
        })
        .collect();
    if !socks.is_empty() {
        b.process(10, 1, "leakyd");
        b.group(
            Some(10),
            Some("leakyd"),
            Cause::ForkParentKept,
            &[],
            "f",
            "m",
            socks,
        );
    }
    let mut r = b.build();
    for f in &mut r.findings {
        f.socket.inode = u64::from(f.socket.remote.port());
    }
    r
}

pub fn clean() -> Report {
    let mut b = Builder::new();
    b.transient(3);
    b.build()
}

/// Every cause, a 5000-socket group, a container, unreadable processes.
pub fn realistic() -> Report {
    let mut b = Builder::new();
    b.process(1, 0, "systemd").cgroup = Some("/init.scope".into());
    b.process(4242, 1, "python3").fd_limit = Some(65_536);
    for child in 4250..4256 {
        let p = b.process(child, 4242, "python3");
        p.execd = Some(false);
    }
    b.process(3100, 1, "java").exe = Some("/usr/lib/jvm/java-17/bin/java".into());
    b.process(5000, 1, "node");
    b.process(5100, 5000, "sleep");
    b.process(6000, 1, "haproxy");
    {
        let p = b.process(7000, 6990, "envoy");
        p.cgroup = Some("/kubepods/burstable/pod1234/abcdef".into());
        p.netns = Some(POD_NS);
        p.ns_pid = Some(12);
        p.uid = 101;
    }
    b.process(6990, 1, "containerd-shim");

    let socks = (0..5000)
        .map(|i: i32| {
            let fd = 7 + i;
            let mut holders = vec![holder(4242, 1, "python3", fd, Some(false))];
            if i < 6 {
                holders.push(holder(4250 + i, 4242, "python3", 4, Some(false)));
            }
            let mut s = sock(
                "10.0.0.2:8080",
                &format!("10.0.{}.{}:{}", 1 + i % 3, 10 + i % 200, 30_000 + i),
                holders,
                &[(4242, fd)],
            );
            s.age_ms = Some(if i == 0 { 750_000 } else { 30_000 });
            s
        })
        .collect();
    b.group(
        Some(4242),
        Some("python3"),
        Cause::ForkParentKept,
        &[
            "pid 4242 forks a child per connection (6 children share its memory layout) and keeps its copy of every \
             accepted socket",
            "the children closed or exited; only the parent's copies keep the sockets open",
        ],
        "close the accepted socket in the parent right after fork() (the child owns it now)",
        "restart api.service, or close the fds in the parent: gdb -p 4242 -batch -ex 'call (int)close(7)'",
        socks,
    );
    let socks = (0..3)
        .map(|i| {
            let mut s = sock(
                &format!("10.0.0.2:{}", 41_000 + i),
                "10.0.9.9:5432",
                vec![holder(3100, 1, "java", 40 + i, Some(true))],
                &[(3100, 40 + i)],
            );
            s.recv_q = 40;
            s.age_ms = None;
            s
        })
        .collect();
    b.group(
        Some(3100),
        Some("java"),
        Cause::NeverClosed,
        &["the peer closed; pid 3100 is the only holder and has 120 unread bytes"],
        "close the connection when a read returns 0 (EOF), and on every error path",
        "restart the service that runs pid 3100",
        socks,
    );
    let socks = (0..2)
        .map(|i| {
            sock(
                "[::1]:3000",
                &format!("[::1]:{}", 50_000 + i),
                vec![
                    holder(5000, 1, "node", 20 + i, Some(false)),
                    holder(5100, 5000, "sleep", 20 + i, Some(false)),
                ],
                &[(5100, 20 + i)],
            )
        })
        .collect();
    b.group(
        Some(5100),
        Some("sleep"),
        Cause::InheritedNoCloexec,
        &["pid 5100 (sleep) exec'd from node (5000) and inherited fds 20-21, which lack O_CLOEXEC"],
        "open sockets with SOCK_CLOEXEC (accept4(..., SOCK_CLOEXEC)) so children that exec do not inherit them",
        "kill 5100 if it is safe to stop it",
        socks,
    );
    b.group(
        Some(6000),
        Some("haproxy"),
        Cause::DupCopyKept,
        &["pid 6000 holds the socket twice (fds 9 and 15); fd 15 is a dup() that was not closed"],
        "close the dup()ed fd when the original is closed",
        "restart haproxy (pid 6000)",
        vec![sock(
            "10.0.0.2:443",
            "198.51.100.7:55000",
            vec![
                holder(6000, 1, "haproxy", 9, Some(true)),
                holder(6000, 1, "haproxy", 15, Some(true)),
            ],
            &[(6000, 15)],
        )],
    );
    let mut s = sock(
        "10.244.1.5:9901",
        "10.244.1.1:60000",
        vec![holder(7000, 6990, "envoy", 33, None)],
        &[(7000, 33)],
    );
    s.netns = POD_NS;
    b.group(
        Some(7000),
        Some("envoy"),
        Cause::PassedFdKept,
        &["the socket was received over a unix socket (SCM_RIGHTS) and the sender's copy is gone"],
        "close the fd after handing it over (sender) or once done with it (receiver)",
        "kubectl delete pod on the node's pod1234, or restart envoy",
        vec![s],
    );
    let socks = (0..2)
        .map(|i| {
            let mut s = sock(
                "10.0.0.2:9000",
                &format!("10.0.5.5:{}", 40_000 + i),
                Vec::new(),
                &[],
            );
            s.age_ms = Some(5_000);
            s
        })
        .collect();
    b.group(
        None,
        None,
        Cause::NoVisibleHolder,
        &[
            "no process cwleak could read holds these sockets",
            "1 process could not be read (permission denied); run as root to see every holder",
        ],
        "find the holder first: run cwleak as root",
        "sudo cwleak",
        socks,
    );
    b.unreadable(
        Some(77),
        Some("/proc/77/fd"),
        WarningKind::PermissionDenied,
        "permission denied",
    );
    b.unreadable(
        Some(78),
        Some("/proc/78/fd"),
        WarningKind::Vanished,
        "process exited",
    );
    b.unreadable(
        None,
        Some("/proc/4026532600/net/tcp6"),
        WarningKind::NetTable,
        "no such file or directory",
    );
    b.transient(4);
    b.build()
}
