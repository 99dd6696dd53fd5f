//! Hand-built snapshots for the diagnosis's unit tests: processes with a
//! program and a memory layout, sockets on 127.0.0.1 in one namespace, and
//! the fds that hold them. The rules' tests (classify_tests.rs) and the
//! groups' tests (group.rs) build their hosts with it; the findings' and the
//! origins' tests take one finding's socket from `socket_info`.

use crate::diagnose::finding::SocketInfo;
use crate::diagnose::{diagnose, Finding, Report, Scope};
use crate::model::{Family, Inode, Layout, Pid, Process, Snapshot, SocketFd, TcpSocket, TcpState};

/// The port of `B::socket`'s sockets.
pub const PORT: u16 = 8080;

pub struct B {
    pub snap: Snapshot,
    inode: Inode,
    remote: u16,
}

impl B {
    pub fn new() -> Self {
        let mut b = B {
            snap: Snapshot::default(),
            inode: 1000,
            remote: 40000,
        };
        // An init-like process every tree hangs from.
        b.proc(1, 0, "init", "/sbin/init", 1);
        b
    }

    /// A process running `exe` with memory layout `layout` (same value as
    /// its parent's: a fork; another: an exec).
    pub fn proc(
        &mut self,
        pid: Pid,
        ppid: Pid,
        comm: &str,
        exe: &str,
        layout: u64,
    ) -> &mut Process {
        self.snap.processes.push(Process {
            pid,
            ppid,
            comm: comm.into(),
            start_time: pid as u64,
            exe: Some(exe.into()),
            netns: Some(1),
            state: 'S',
            threads: 1,
            layout: Some(Layout {
                start_code: layout,
                end_code: layout + 1,
                start_stack: layout + 2,
                arg_start: layout + 3,
            }),
            ..Process::default()
        });
        self.snap.processes.last_mut().unwrap()
    }

    pub fn get(&mut self, pid: Pid) -> &mut Process {
        self.snap
            .processes
            .iter_mut()
            .find(|p| p.pid == pid)
            .unwrap()
    }

    /// A socket on `PORT`.
    pub fn socket(&mut self, state: TcpState) -> Inode {
        self.socket_on(PORT, state)
    }

    pub fn socket_on(&mut self, port: u16, state: TcpState) -> Inode {
        self.inode += 1;
        self.remote += 1;
        let remote = if state == TcpState::Listen {
            "0.0.0.0:0".parse().unwrap()
        } else {
            format!("127.0.0.1:{}", self.remote).parse().unwrap()
        };
        self.snap.sockets.push(TcpSocket {
            inode: self.inode,
            netns: 1,
            family: Family::Ipv4,
            local: format!("127.0.0.1:{port}").parse().unwrap(),
            remote,
            state,
            recv_q: 0,
            send_q: 0,
            uid: 0,
            last_ack_ms: None,
            bytes_acked: None,
            timewait: false,
            bound_if: None,
        });
        self.inode
    }

    /// The table's record of socket `inode`.
    pub fn sock(&mut self, inode: Inode) -> &mut TcpSocket {
        self.snap
            .sockets
            .iter_mut()
            .find(|s| s.inode == inode)
            .unwrap()
    }

    pub fn listener(&mut self) -> Inode {
        self.socket(TcpState::Listen)
    }

    pub fn conn(&mut self) -> Inode {
        self.socket(TcpState::CloseWait)
    }

    pub fn hold(&mut self, pid: Pid, fd: i32, inode: Inode, cloexec: Option<bool>) -> &mut Self {
        self.get(pid).sockets.push(SocketFd {
            fd,
            inode,
            cloexec,
            tid: None,
        });
        self
    }

    pub fn report(&self) -> Report {
        diagnose(&self.snap, &Scope::default())
    }

    pub fn finding(&self, inode: Inode) -> Finding {
        self.report()
            .findings
            .into_iter()
            .find(|f| f.socket.inode == inode)
            .unwrap_or_else(|| panic!("no finding for {inode}"))
    }
}

/// A finding's socket: 127.0.0.1:8080 from 127.0.0.1:40000, inode 5000, in
/// CLOSE_WAIT for a minute with one byte (the FIN) unread.
pub fn socket_info() -> SocketInfo {
    SocketInfo {
        inode: 5000,
        netns: 4_026_531_840,
        family: Family::Ipv4,
        local: "127.0.0.1:8080".parse().unwrap(),
        remote: "127.0.0.1:40000".parse().unwrap(),
        state: TcpState::CloseWait,
        recv_q: 1,
        send_q: 0,
        close_wait_ms: Some(60_000),
    }
}
