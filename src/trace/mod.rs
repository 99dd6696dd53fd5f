//! Recorded history of socket references (`--trace`): the events the kernel
//! reported, replayed into per-process fd tables so that every fd still
//! open at the end knows the chain of calls that made it (created by
//! accept4() in pid 10, copied by fork() into pid 11, carried across execve()
//! in pid 11...), and every socket knows what happened to its other copies.
//! Pure code: the events come from `source::trace`, the symbolized frames
//! from a function the caller passes in.

mod replay;

pub use replay::Replay;

use crate::model::{Inode, Pid};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One user-space frame as recorded: its address, and where that is in
/// which file (found from the process's memory map when the event came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub addr: u64,
    pub module: Option<Arc<str>>,
    pub file_offset: u64,
}

/// The call that made a new fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Socket,
    Accept,
    Accept4,
    Dup,
    Dup2,
    Dup3,
    FcntlDupfd,
    PidfdGetfd,
    Recvmsg,
    Recvmmsg,
    Sendmsg,
    Sendmmsg,
}

impl Call {
    pub fn name(self) -> &'static str {
        match self {
            Call::Socket => "socket",
            Call::Accept => "accept",
            Call::Accept4 => "accept4",
            Call::Dup => "dup",
            Call::Dup2 => "dup2",
            Call::Dup3 => "dup3",
            Call::FcntlDupfd => "fcntl",
            Call::PidfdGetfd => "pidfd_getfd",
            Call::Recvmsg => "recvmsg",
            Call::Recvmmsg => "recvmmsg",
            Call::Sendmsg => "sendmsg",
            Call::Sendmmsg => "sendmmsg",
        }
    }

    pub fn is_dup(self) -> bool {
        matches!(self, Call::Dup | Call::Dup2 | Call::Dup3 | Call::FcntlDupfd)
    }
}

/// What a recorded event did to the fd tables.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// A new fd that refers to a socket.
    NewFd {
        fd: i32,
        inode: Inode,
        cloexec: bool,
        call: Call,
        /// dup*/fcntl: the fd it copies; pidfd_getfd: the fd in the other process.
        from_fd: Option<i32>,
    },
    /// sendmsg/sendmmsg passed these (fd, socket) with SCM_RIGHTS.
    Sent {
        fds: Vec<(i32, Inode)>,
        call: Call,
    },
    /// recvmsg/recvmmsg installed these (fd, socket) from SCM_RIGHTS
    /// (close-on-exec with MSG_CMSG_CLOEXEC).
    Received {
        fds: Vec<(i32, Inode)>,
        cloexec: bool,
        call: Call,
    },
    /// connect() on the socket at `fd` (done, or under way when
    /// non-blocking).
    Connect {
        fd: i32,
        inode: Inode,
    },
    /// fcntl(fd, F_SETFD): close-on-exec set or cleared.
    SetCloexec {
        fd: i32,
        on: bool,
    },
    Close {
        fd: i32,
    },
    /// close_range(first, last, flags); with CLOSE_RANGE_CLOEXEC the fds
    /// are only marked close-on-exec.
    CloseRange {
        first: u32,
        last: u32,
        cloexec_only: bool,
    },
    /// A new process (sched_process_fork): its table is a copy of the
    /// parent's, or the parent's own with CLONE_FILES.
    Fork {
        child: Pid,
        shared_table: bool,
    },
    /// The parent's fork/clone returned `child`: the call and its stack.
    ForkReturned {
        child: Pid,
        call: &'static str,
    },
    /// execve() entered (its stack is the call site).
    ExecStart,
    /// execve() returned: 0 when the new program runs.
    ExecDone {
        ok: bool,
    },
    /// A thread exited; `last`: the whole process is gone.
    Exit {
        last: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unix time in nanoseconds.
    pub time_ns: u64,
    pub pid: Pid,
    pub tid: Pid,
    pub act: Act,
    pub stack: Vec<RawFrame>,
}

/// A frame of a symbolized stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Frame {
    /// The function, demangled; null when the binary has no symbol for it.
    pub function: Option<String>,
    /// Source file and line (DWARF debug info), when the binary has them.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The binary or library the address is in.
    pub module: Option<String>,
    pub address: u64,
}

impl Frame {
    /// "accept_loop (server.c:42)", "accept (libc.so.6)", or the address.
    pub fn short(&self) -> String {
        let name = self.function.as_deref().unwrap_or("??");
        match (&self.file, self.line, &self.module) {
            (Some(f), Some(l), _) => {
                let base = f.rsplit('/').next().unwrap_or(f);
                format!("{name} ({base}:{l})")
            }
            (_, _, Some(m)) if self.function.is_some() => {
                format!("{name} ({})", m.rsplit('/').next().unwrap_or(m))
            }
            _ => format!("{name} {:#x}", self.address),
        }
    }

    pub fn has_source(&self) -> bool {
        self.file.is_some() && self.line.is_some()
    }

    /// Code of the program itself: a source line outside the Rust standard
    /// library and the crates a build downloads (whose wrappers, like
    /// nix::unistd::fork, are not the line to fix).
    pub fn is_own(&self) -> bool {
        self.has_source()
            && self.file.as_deref().is_some_and(|f| {
                !f.starts_with("/rustc/")
                    && !f.contains("/.cargo/registry/")
                    && !f.contains("/.cargo/git/")
            })
    }
}

/// One step of how a copy came to be.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// The system call: accept4, socket, connect, dup2, fcntl, fork, clone,
    /// execve, ... (`connect` marks the socket's connection; it makes no copy).
    pub event: String,
    pub pid: Pid,
    pub tid: Pid,
    /// The fd the copy has in `pid` after this step.
    pub fd: i32,
    /// dup/fcntl: the fd copied; pidfd_getfd: the fd in the other process;
    /// recvmsg: the sender's fd (when its sendmsg was traced).
    pub from_fd: Option<i32>,
    /// fork: the parent; recvmsg: the sender (when traced).
    pub from_pid: Option<Pid>,
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// The user-space stack of the call, innermost first.
    pub stack: Vec<Frame>,
}

/// How one holder's fd came to be: the last step made this copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Origin {
    #[serde(flatten)]
    pub step: Step,
    /// The steps before it, oldest first (the socket's creation first).
    pub earlier: Vec<Step>,
}

impl Origin {
    /// Every step, oldest first.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.earlier.iter().chain(std::iter::once(&self.step))
    }

    /// This copy itself came from another process (received with
    /// SCM_RIGHTS, taken with pidfd_getfd()), not from a fork or dup of
    /// one that did: its receiving step.
    pub fn received(&self) -> Option<&Step> {
        Some(self.made_by()).filter(|s| is_receive(&s.event))
    }

    /// The step that made this copy: the last one, past a `connect` (which
    /// connects the socket, and makes no copy).
    pub fn made_by(&self) -> &Step {
        self.steps()
            .filter(|s| !matches!(s.event.as_str(), "connect" | CLOEXEC_CLEARED))
            .last()
            .unwrap_or(&self.step)
    }

    /// The connect() of the socket, when it was traced.
    pub fn connected(&self) -> Option<&Step> {
        self.steps().find(|s| s.event == "connect")
    }

    pub fn crossed_exec(&self) -> bool {
        self.steps().any(|s| s.event == "execve")
    }
}

/// The step of fcntl(fd, F_SETFD) clearing close-on-exec.
pub const CLOEXEC_CLEARED: &str = "fcntl_setfd";

pub fn is_receive(event: &str) -> bool {
    matches!(event, "recvmsg" | "recvmmsg" | "pidfd_getfd")
}

pub fn is_send(event: &str) -> bool {
    matches!(event, "sendmsg" | "sendmmsg")
}

/// A socket whose holders `watch --trace` and `scan --trace-for` follow:
/// in the scope's ports (local or remote) and network namespaces, when it
/// names any. (A `--pid` scope is followed by its roots instead.)
pub fn followed_socket(scope: &crate::diagnose::Scope, s: &crate::model::TcpSocket) -> bool {
    let port = (scope.ports.is_empty() && scope.local_ports.is_empty())
        || scope.ports.contains(&s.local.port())
        || scope.ports.contains(&s.remote.port())
        || scope.local_ports.contains(&s.local.port());
    port && (scope.netns.is_empty() || scope.netns.contains(&s.netns))
}

/// A copy of a socket that was closed while tracing.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub origin: Origin,
    pub at_ms: u64,
    /// close, close_range, exit, execve (O_CLOEXEC)
    pub how: &'static str,
}

/// What tracing recorded, for the report: whether it ran, and what it lost.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TraceInfo {
    /// True when the kernel recorded events for the processes in scope.
    pub active: bool,
    /// Why tracing could not run (no root, no BTF, ...); None when it ran.
    pub unavailable: Option<String>,
    pub events: u64,
    /// Records lost because the ring buffer was full: histories may have gaps.
    pub dropped_events: u64,
    /// Processes not followed because the pid map was full.
    pub untracked_processes: u64,
    /// Stacks that could not be unwound past their first frame.
    pub truncated_stacks: u64,
    /// Sockets sent with SCM_RIGHTS whose history was not kept, because as
    /// many sends were already waiting to be received: their receipt has
    /// no origin.
    #[serde(default)]
    pub untracked_passes: u64,
}

impl TraceInfo {
    /// "trace: 120 events recorded, none lost", what was lost, or why
    /// nothing was recorded.
    pub fn summary(&self) -> String {
        if let Some(why) = &self.unavailable {
            return format!("trace: not recorded: {why}");
        }
        let mut s = format!("trace: {} events recorded", self.events);
        let mut lost = Vec::new();
        if self.dropped_events > 0 {
            lost.push(format!("{} lost (ring buffer full)", self.dropped_events));
        }
        if self.untracked_processes > 0 {
            lost.push(format!(
                "{} processes not followed (pid map full)",
                self.untracked_processes
            ));
        }
        if self.untracked_passes > 0 {
            lost.push(format!(
                "{} passed fds not followed (too many in flight)",
                self.untracked_passes
            ));
        }
        if lost.is_empty() {
            s.push_str(", none lost");
        } else {
            s.push_str(&format!(
                "; {}: some origins may be missing",
                lost.join(", ")
            ));
        }
        s
    }
}

/// What a finished trace knows about the sockets of one look: the origin of
/// each (pid, fd) it saw made, and the closed copies of each socket.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub info: TraceInfo,
    pub origins: crate::model::FastMap<(Pid, i32), Origin>,
    pub closed: crate::model::FastMap<Inode, Vec<Closed>>,
    /// Sockets sent with SCM_RIGHTS and not received: the sender's history,
    /// ending with its sendmsg.
    pub in_flight: crate::model::FastMap<Inode, Origin>,
}
