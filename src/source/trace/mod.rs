//! `--trace`: the kernel reports, event by event, every call by which the
//! processes in scope make, copy or drop a socket fd, with the user stack of
//! the call. Raw tracepoints (`sys_enter`, `sys_exit`, `sched_process_fork`,
//! `sched_process_exit`): no kprobes, no tracefs, no compiler; the programs
//! are assembled at run time from the kernel's BTF (`prog.rs`).
//!
//! Filtering is in the kernel: a hash map of tracked tgids (the wrapped
//! command, its descendants as they fork, and `--pid` roots). Records go
//! through a ring buffer of fixed size; what does not fit is counted and
//! reported. A thread here drains the ring, unwinds each stack while the
//! process's memory map can still be read, and replays the events into fd
//! tables (`crate::trace::Replay`), which keep nothing for sockets once
//! every traced copy is closed.

pub(crate) mod bpf;
mod prog;
mod record;
mod ring;
mod symbols;
mod unwind;

use crate::model::{FastMap, Inode, Pid, Snapshot};
use crate::parse::btf::Btf;
use crate::trace::{Act, Call, Closed, Event, Origin, Replay, TraceInfo};
use prog::{Hook, Maps, WANT, WANT_ARG0, WANT_DUPFD_ONLY, WANT_INODE, WANT_RIGHTS, WANT_STACK};
use record::{Raw, RegOffsets, KIND_ENTER, KIND_EXIT, KIND_FORK, KIND_RIGHTS, KIND_TASK_EXIT};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
/// 16 MiB: about 1,900 records with stacks in flight between two drains.
const RING_SIZE: usize = 16 << 20;
const MAX_TRACKED: u32 = 8192;
const SOCKFS_MAGIC: u32 = 0x534f_434b;
const SOCK_CLOEXEC: u64 = 0o2_000_000;
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;
const F_DUPFD_CLOEXEC: u64 = 1030;
const F_SETFD: u64 = 2;
const FD_CLOEXEC: u64 = 1;
const EINPROGRESS: i64 = 115;
const CLONE_VFORK: u64 = 0x4000;
const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;

/// x86_64 syscall numbers.
mod nr {
    pub const CLOSE: u32 = 3;
    pub const DUP: u32 = 32;
    pub const DUP2: u32 = 33;
    pub const SOCKET: u32 = 41;
    pub const CONNECT: u32 = 42;
    pub const SENDMSG: u32 = 46;
    pub const RECVMSG: u32 = 47;
    pub const ACCEPT: u32 = 43;
    pub const CLONE: u32 = 56;
    pub const FORK: u32 = 57;
    pub const VFORK: u32 = 58;
    pub const EXECVE: u32 = 59;
    pub const FCNTL: u32 = 72;
    pub const ACCEPT4: u32 = 288;
    pub const DUP3: u32 = 292;
    pub const RECVMMSG: u32 = 299;
    pub const SENDMMSG: u32 = 307;
    pub const EXECVEAT: u32 = 322;
    pub const CLONE3: u32 = 435;
    pub const CLOSE_RANGE: u32 = 436;
    pub const PIDFD_GETFD: u32 = 438;
}

/// What each syscall records: flags at entry (bits 0-7) and exit (8-15).
fn wanted() -> Vec<(u32, u32)> {
    let exit = |f: u32| f << 8;
    let made = exit(WANT | WANT_INODE | WANT_STACK);
    vec![
        (nr::CLOSE, WANT | WANT_INODE),
        (nr::CLOSE_RANGE, WANT),
        (nr::SOCKET, made),
        (nr::ACCEPT, made),
        (nr::ACCEPT4, made),
        (nr::DUP, made),
        (nr::DUP2, made),
        (nr::DUP3, made),
        (nr::PIDFD_GETFD, made),
        (
            nr::FCNTL,
            exit(WANT | WANT_INODE | WANT_STACK | WANT_DUPFD_ONLY),
        ),
        (nr::CLONE, exit(WANT | WANT_STACK)),
        (nr::CLONE3, exit(WANT | WANT_STACK)),
        (nr::FORK, exit(WANT | WANT_STACK)),
        (nr::VFORK, exit(WANT | WANT_STACK)),
        (
            nr::CONNECT,
            exit(WANT | WANT_INODE | WANT_STACK | WANT_ARG0),
        ),
        (nr::SENDMSG, WANT | WANT_STACK | WANT_RIGHTS),
        (nr::SENDMMSG, WANT | WANT_STACK | WANT_RIGHTS),
        (nr::RECVMSG, exit(WANT | WANT_STACK | WANT_RIGHTS)),
        (nr::RECVMMSG, exit(WANT | WANT_STACK | WANT_RIGHTS)),
        (nr::EXECVE, WANT | WANT_STACK | exit(WANT)),
        (nr::EXECVEAT, WANT | WANT_STACK | exit(WANT)),
    ]
}

/// The socket fds the KIND_RIGHTS records before a sendmsg/recvmsg record
/// carried, by thread (the records of one call come in a row).
#[derive(Default)]
struct Rights(FastMap<Pid, Vec<(i32, Inode)>>);

impl Rights {
    fn take(&mut self, tid: Pid) -> Vec<(i32, Inode)> {
        self.0.remove(&tid).unwrap_or_default()
    }
}

/// Turn a record into what it did to the fd tables (None: nothing).
/// `rights`: the fds the preceding KIND_RIGHTS records of its thread carried.
fn decode(r: &Raw, rights: &mut Rights) -> Option<Act> {
    let fd = i32::try_from(r.ret).ok();
    if r.kind == KIND_RIGHTS {
        // Only sockets are followed; a record of a call whose own record
        // was lost is dropped with it, when the next call's records start.
        let fds = rights.0.entry(r.tid).or_default();
        if r.first_right() {
            fds.clear();
        }
        if r.magic == SOCKFS_MAGIC {
            fds.push((fd?, r.inode));
        }
        return None;
    }
    match (r.kind, r.nr) {
        (KIND_ENTER, nr::SENDMSG | nr::SENDMMSG) => {
            let fds = rights.take(r.tid);
            let call = if r.nr == nr::SENDMSG {
                Call::Sendmsg
            } else {
                Call::Sendmmsg
            };
            return (!fds.is_empty()).then_some(Act::Sent { fds, call });
        }
        (KIND_EXIT, nr::CONNECT) => {
            // A non-blocking connect is under way at -EINPROGRESS.
            let ok = r.ret == 0 || r.ret == -EINPROGRESS;
            return (ok && r.magic == SOCKFS_MAGIC).then_some(Act::Connect {
                fd: i32::try_from(r.args[0]).ok()?,
                inode: r.inode,
            });
        }
        (KIND_EXIT, nr::FCNTL) if r.args[1] == F_SETFD => {
            return (r.ret == 0).then_some(Act::SetCloexec {
                fd: i32::try_from(r.args[0]).ok()?,
                on: r.args[2] & FD_CLOEXEC != 0,
            });
        }
        (KIND_EXIT, nr::RECVMSG | nr::RECVMMSG) => {
            let fds = rights.take(r.tid);
            let (call, flags) = if r.nr == nr::RECVMSG {
                (Call::Recvmsg, r.args[2])
            } else {
                (Call::Recvmmsg, r.args[3])
            };
            return (!fds.is_empty()).then_some(Act::Received {
                fds,
                cloexec: flags & MSG_CMSG_CLOEXEC != 0,
                call,
            });
        }
        _ => {}
    }
    match r.kind {
        KIND_FORK => Some(Act::Fork {
            child: fd?,
            shared_table: r.inode == 1,
        }),
        KIND_TASK_EXIT => Some(Act::Exit { last: r.ret == 0 }),
        KIND_ENTER => match r.nr {
            nr::CLOSE => Some(Act::Close {
                fd: i32::try_from(r.args[0]).ok()?,
            }),
            nr::CLOSE_RANGE => Some(Act::CloseRange {
                first: u32::try_from(r.args[0]).ok()?,
                last: u32::try_from(r.args[1]).unwrap_or(u32::MAX),
                cloexec_only: r.args[2] & CLOSE_RANGE_CLOEXEC != 0,
            }),
            nr::EXECVE | nr::EXECVEAT => Some(Act::ExecStart),
            _ => None,
        },
        KIND_EXIT => {
            let call = match r.nr {
                nr::EXECVE | nr::EXECVEAT => return Some(Act::ExecDone { ok: r.ret == 0 }),
                nr::CLONE | nr::CLONE3 | nr::FORK | nr::VFORK => {
                    // glibc's fork() is clone() without CLONE_VFORK;
                    // posix_spawn is a vfork-style clone.
                    let call = match r.nr {
                        nr::CLONE if r.args[0] & CLONE_VFORK != 0 => "vfork",
                        nr::CLONE3 => "clone3",
                        nr::VFORK => "vfork",
                        _ => "fork",
                    };
                    return (r.ret > 0).then_some(Act::ForkReturned { child: fd?, call });
                }
                nr::SOCKET => (Call::Socket, None, r.args[1] & SOCK_CLOEXEC != 0),
                nr::ACCEPT => (Call::Accept, None, false),
                nr::ACCEPT4 => (Call::Accept4, None, r.args[3] & SOCK_CLOEXEC != 0),
                nr::DUP => (Call::Dup, Some(r.args[0]), false),
                nr::DUP2 => (Call::Dup2, Some(r.args[0]), false),
                nr::DUP3 => (Call::Dup3, Some(r.args[0]), r.args[2] & SOCK_CLOEXEC != 0),
                nr::FCNTL => (
                    Call::FcntlDupfd,
                    Some(r.args[0]),
                    r.args[1] == F_DUPFD_CLOEXEC,
                ),
                nr::PIDFD_GETFD => (Call::PidfdGetfd, Some(r.args[1]), true),
                _ => return None,
            };
            let (call, from, cloexec) = call;
            let fd = fd.filter(|f| *f >= 0)?;
            let from_fd = from.and_then(|f| i32::try_from(f).ok());
            // dup2(fd, fd) makes nothing; only sockets are followed.
            if r.magic != SOCKFS_MAGIC || (call.is_dup() && from_fd == Some(fd)) {
                return None;
            }
            Some(Act::NewFd {
                fd,
                inode: r.inode,
                cloexec,
                call,
                from_fd,
            })
        }
        _ => None,
    }
}

/// The loaded, attached programs and the thread draining their records.
/// What it recorded can be asked while it runs (`watch`) or at the end
/// (`check`).
pub struct Tracer {
    links: Vec<OwnedFd>,
    tracked: OwnedFd,
    counters: OwnedFd,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Consumer>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Kept across questions: a frame is looked up once.
    symbols: symbols::Symbols,
}

struct Consumer {
    replay: Replay,
    unwinding: unwind::Unwinding,
    rights: Rights,
}

/// The clock of BPF timestamps (CLOCK_MONOTONIC) to Unix time.
fn clock_offset_ns() -> u64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec we pass.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64)
    };
    now(libc::CLOCK_REALTIME).saturating_sub(now(libc::CLOCK_MONOTONIC))
}

impl Tracer {
    /// Load and attach the programs. Children `spawner` forks from now on
    /// (the wrapped command of `check`) are tracked, and their descendants;
    /// without one, only what `track` adds. The error is one line saying
    /// why tracing cannot run here.
    pub fn start(spawner: Option<Pid>) -> Result<Tracer, String> {
        if !cfg!(target_arch = "x86_64") {
            return Err("only x86_64 is supported".into());
        }
        let blob =
            std::fs::read(BTF_PATH).map_err(|e| format!("no kernel BTF ({BTF_PATH}: {e})"))?;
        let btf = Btf::parse(&blob).map_err(|e| format!("{BTF_PATH}: {e}"))?;
        let offsets = prog::Offsets::from_btf(&btf)?;
        drop(btf);
        drop(blob);
        let err = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| {
                let hint = if e.raw_os_error() == Some(libc::EPERM) {
                    " (needs root, or CAP_BPF and CAP_PERFMON)"
                } else {
                    ""
                };
                format!("{what}: {e}{hint}")
            }
        };
        let tracked = bpf::map_create(bpf::MAP_HASH, 4, 4, MAX_TRACKED, "cwleak_pids")
            .map_err(err("creating the pid map"))?;
        let want = bpf::map_create(bpf::MAP_ARRAY, 4, 4, prog::SYSCALLS, "cwleak_want")
            .map_err(err("creating the syscall map"))?;
        let counters = bpf::map_create(bpf::MAP_ARRAY, 4, 8, 2, "cwleak_drops")
            .map_err(err("creating the counters"))?;
        let ring = bpf::map_create(bpf::MAP_RINGBUF, 0, 0, RING_SIZE as u32, "cwleak_ring")
            .map_err(err("creating the ring buffer"))?;
        for (n, flags) in wanted() {
            bpf::map_update(&want, &n.to_ne_bytes(), &flags.to_ne_bytes())
                .map_err(err("filling the syscall map"))?;
        }
        let maps = Maps {
            tracked: tracked.as_raw_fd(),
            want: want.as_raw_fd(),
            ring: ring.as_raw_fd(),
            counters: counters.as_raw_fd(),
        };
        // No spawner: a tgid no process has.
        let spawner = spawner.unwrap_or(-1);
        let programs = [
            ("sys_enter", prog::syscall(&offsets, &maps, Hook::Enter)?),
            ("sys_exit", prog::syscall(&offsets, &maps, Hook::Exit)?),
            ("sched_process_fork", prog::fork(&offsets, &maps, spawner)?),
            ("sched_process_exit", prog::exit(&offsets, &maps)?),
        ];
        let mut links = Vec::new();
        for (tp, insns) in &programs {
            let p = bpf::load(insns, "cwleak_trace")
                .map_err(err(&format!("loading the {tp} program")))?;
            links.push(bpf::attach(&p, tp).map_err(err(&format!("attaching to {tp}")))?);
        }
        drop(want);
        let ring = ring::Ring::new(ring, RING_SIZE).map_err(err("mapping the ring buffer"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Consumer {
            replay: Replay::default(),
            unwinding: unwind::Unwinding::default(),
            rights: Rights::default(),
        }));
        let thread = {
            let stop = stop.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("cwleak-trace".into())
                .spawn(move || consume(ring, offsets.regs, &stop, &shared))
                .map_err(|e| format!("starting the trace thread: {e}"))?
        };
        Ok(Tracer {
            links,
            tracked,
            counters,
            stop,
            shared,
            thread: Some(thread),
            symbols: symbols::Symbols::default(),
        })
    }

    /// Follow an already running process (and its future children); what
    /// it holds already has no recorded origin. Failing when the pid map
    /// is full.
    pub fn track(&self, pid: Pid) -> std::io::Result<()> {
        bpf::map_update(&self.tracked, &pid.to_ne_bytes(), &1u32.to_ne_bytes())
    }

    fn counter(&self, i: u32) -> u64 {
        let mut v = [0u8; 8];
        match bpf::map_lookup(&self.counters, &i.to_ne_bytes(), &mut v) {
            Ok(()) => u64::from_ne_bytes(v),
            Err(_) => 0,
        }
    }

    /// The replay, locked. A consumer that panicked left its state as it
    /// was: still usable.
    fn consumer(&self) -> std::sync::MutexGuard<'_, Consumer> {
        match self.shared.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Stop recording and take the last records.
    fn stop(&mut self) {
        self.links.clear();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }

    /// Stop, and give the origins of every socket fd the snapshot shows
    /// (`check`: after the command's look).
    pub fn finish(mut self, snap: &Snapshot) -> crate::trace::Facts {
        self.stop();
        let mut keys = socket_fds(snap, |_| true);
        keys.extend(close_wait_fds(snap).into_iter().filter(|k| k.1 < 0));
        self.facts(&keys)
    }

    /// What is recorded so far about `keys` (pid, fd, socket): the origin
    /// of each, and the closed copies of each socket, symbolized. Tracing
    /// goes on.
    pub fn facts(&mut self, keys: &[(Pid, i32, Inode)]) -> crate::trace::Facts {
        let dropped_events = self.counter(0);
        let untracked_processes = self.counter(1);
        // Symbolize with the lock released: the first lookup in a binary
        // parses its debug info, and the ring must keep draining meanwhile.
        let stacks = self.consumer().replay.stacks_of(keys);
        self.symbols.prepare(&stacks);
        drop(stacks);
        let c = self.consumer();
        let info = TraceInfo {
            active: true,
            unavailable: None,
            events: c.replay.events,
            dropped_events,
            untracked_processes,
            truncated_stacks: c.unwinding.truncated,
            untracked_passes: c.replay.in_flight_dropped,
        };
        let symbols = &self.symbols;
        let mut sym = |st: &[crate::trace::RawFrame]| symbols.frames(st);
        let mut origins: FastMap<(Pid, i32), Origin> = FastMap::default();
        let mut closed: FastMap<Inode, Vec<Closed>> = FastMap::default();
        let mut in_flight: FastMap<Inode, Origin> = FastMap::default();
        for &(pid, fd, inode) in keys {
            if let std::collections::hash_map::Entry::Vacant(v) = in_flight.entry(inode) {
                if let Some(o) = c.replay.in_flight(inode, &mut sym) {
                    v.insert(o);
                }
            }
            if let std::collections::hash_map::Entry::Vacant(v) = closed.entry(inode) {
                let cl = c.replay.closed(inode, &mut sym);
                if !cl.is_empty() {
                    v.insert(cl);
                }
            }
            // fd -1: a socket nobody holds (what is in flight, closed).
            if fd >= 0 {
                if let Some(o) = c.replay.origin(pid, fd, inode, &mut sym) {
                    origins.insert((pid, fd), o);
                }
            }
        }
        crate::trace::Facts {
            info,
            origins,
            closed,
            in_flight,
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes already added to the kernel's pid map, by (pid, start time).
#[derive(Default)]
pub struct Followed(rustc_hash::FxHashSet<(Pid, u64)>);

impl Tracer {
    /// Follow, from now on, every process of `snap` that holds a TCP socket
    /// `keep` accepts and is not followed yet (and its future children).
    /// A process that does not fit in the pid map is tried again next time.
    /// Returns how many were added.
    pub fn follow_holders(
        &self,
        followed: &mut Followed,
        snap: &Snapshot,
        keep: impl Fn(&crate::model::TcpSocket) -> bool,
    ) -> usize {
        let mut added = 0;
        let wanted: rustc_hash::FxHashSet<Inode> = snap
            .sockets
            .iter()
            .filter(|s| s.inode != 0 && keep(s))
            .map(|s| s.inode)
            .collect();
        for p in &snap.processes {
            let key = (p.pid, p.start_time);
            if followed.0.contains(&key) || !p.sockets.iter().any(|s| wanted.contains(&s.inode)) {
                continue;
            }
            if self.track(p.pid).is_ok() {
                followed.0.insert(key);
                added += 1;
            }
        }
        // Forget processes gone, so the set stays the size of the host.
        if followed.0.len() > snap.processes.len().saturating_mul(2) {
            let alive: rustc_hash::FxHashSet<(Pid, u64)> = snap
                .processes
                .iter()
                .map(|p| (p.pid, p.start_time))
                .collect();
            followed.0.retain(|k| alive.contains(k));
        }
        added
    }
}

/// (pid, fd, socket) of every socket fd of the snapshot's processes whose
/// socket `keep` says.
pub fn socket_fds(snap: &Snapshot, keep: impl Fn(Inode) -> bool) -> Vec<(Pid, i32, Inode)> {
    snap.processes
        .iter()
        .flat_map(|p| p.sockets.iter().map(move |s| (p.pid, s.fd, s.inode)))
        .filter(|(_, _, inode)| keep(*inode))
        .collect()
}

/// (pid, fd, socket) of every fd holding a CLOSE_WAIT socket of the
/// snapshot: what `watch` and `scan` ask origins for.
/// Each CLOSE_WAIT socket also once as (0, -1, socket): one nobody holds
/// may be in flight over a unix socket.
pub fn close_wait_fds(snap: &Snapshot) -> Vec<(Pid, i32, Inode)> {
    let leaked: rustc_hash::FxHashSet<Inode> = snap
        .sockets
        .iter()
        .filter(|s| s.state == crate::model::TcpState::CloseWait && s.inode != 0)
        .map(|s| s.inode)
        .collect();
    let mut keys = socket_fds(snap, |i| leaked.contains(&i));
    keys.extend(leaked.iter().map(|i| (0, -1, *i)));
    keys
}

/// A trace that could not run, and why.
pub fn unavailable(why: String) -> crate::trace::Facts {
    crate::trace::Facts {
        info: TraceInfo {
            unavailable: Some(why),
            ..TraceInfo::default()
        },
        ..Default::default()
    }
}

fn consume(mut ring: ring::Ring, regs: RegOffsets, stop: &AtomicBool, shared: &Mutex<Consumer>) {
    let offset = clock_offset_ns();
    loop {
        // Read the flag first: records committed before it was set are
        // drained below, in this pass.
        let last = stop.load(Ordering::SeqCst);
        let n = {
            let mut c = match shared.lock() {
                Ok(c) => c,
                Err(poisoned) => poisoned.into_inner(),
            };
            ring.drain(|bytes| {
                if let Some(raw) = Raw::parse(bytes, &regs) {
                    handle(&mut c, &raw, offset);
                }
            })
        };
        if last {
            break;
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn handle(c: &mut Consumer, r: &Raw, offset: u64) {
    let Some(act) = decode(r, &mut c.rights) else {
        return;
    };
    match &act {
        Act::Fork {
            child,
            shared_table: _,
        } => c.unwinding.fork(r.tgid, *child),
        Act::ExecDone { ok: true } => c.unwinding.forget(r.tgid),
        _ => {}
    }
    let stack = if r.stack.is_empty() {
        Vec::new()
    } else {
        c.unwinding.unwind(r.tgid, r.ip, r.sp, r.bp, &r.stack)
    };
    if let Act::Exit { last: true } = act {
        c.unwinding.forget(r.tgid);
    }
    c.replay.apply(Event {
        time_ns: r.time_ns.saturating_add(offset),
        pid: r.tgid,
        tid: r.tid,
        act,
        stack,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: u32, nr: u32, ret: i64, args: [u64; 4]) -> Raw {
        Raw {
            time_ns: 1,
            tgid: 10,
            tid: 10,
            nr,
            kind,
            ret,
            inode: 77,
            magic: SOCKFS_MAGIC,
            args,
            ip: 0,
            sp: 0,
            bp: 0,
            stack: Vec::new(),
            tail: 0,
        }
    }

    #[test]
    fn decodes_the_calls_that_make_and_drop_fds() {
        let a = decode(
            &raw(KIND_EXIT, nr::ACCEPT4, 5, [3, 0, 0, SOCK_CLOEXEC]),
            &mut Rights::default(),
        );
        assert!(matches!(
            a,
            Some(Act::NewFd {
                fd: 5,
                inode: 77,
                cloexec: true,
                call: Call::Accept4,
                from_fd: None
            })
        ));
        let d = decode(
            &raw(KIND_EXIT, nr::DUP2, 9, [4, 9, 0, 0]),
            &mut Rights::default(),
        );
        assert!(matches!(
            d,
            Some(Act::NewFd {
                fd: 9,
                from_fd: Some(4),
                ..
            })
        ));
        // dup2(fd, fd), failed calls and non-sockets make nothing.
        assert!(decode(
            &raw(KIND_EXIT, nr::DUP2, 4, [4, 4, 0, 0]),
            &mut Rights::default()
        )
        .is_none());
        assert!(decode(
            &raw(KIND_EXIT, nr::ACCEPT, -11, [3, 0, 0, 0]),
            &mut Rights::default()
        )
        .is_none());
        let mut file = raw(KIND_EXIT, nr::DUP, 6, [1, 0, 0, 0]);
        file.magic = 0xef53;
        assert!(decode(&file, &mut Rights::default()).is_none());
        assert!(matches!(
            decode(
                &raw(KIND_ENTER, nr::CLOSE, 0, [5, 0, 0, 0]),
                &mut Rights::default()
            ),
            Some(Act::Close { fd: 5 })
        ));
        assert!(matches!(
            decode(
                &raw(KIND_ENTER, nr::CLOSE_RANGE, 0, [3, u32::MAX as u64, 4, 0]),
                &mut Rights::default()
            ),
            Some(Act::CloseRange {
                first: 3,
                cloexec_only: true,
                ..
            })
        ));
        assert!(matches!(
            decode(
                &raw(KIND_EXIT, nr::CLONE, 42, [0; 4]),
                &mut Rights::default()
            ),
            Some(Act::ForkReturned {
                child: 42,
                call: "fork"
            })
        ));
        assert!(decode(
            &raw(KIND_EXIT, nr::CLONE, 0, [0; 4]),
            &mut Rights::default()
        )
        .is_none());
        assert!(matches!(
            decode(
                &raw(KIND_EXIT, nr::EXECVE, 0, [0; 4]),
                &mut Rights::default()
            ),
            Some(Act::ExecDone { ok: true })
        ));
        let mut fork = raw(KIND_FORK, 0, 11, [0; 4]);
        fork.inode = 1;
        assert!(matches!(
            decode(&fork, &mut Rights::default()),
            Some(Act::Fork {
                child: 11,
                shared_table: true
            })
        ));
    }

    #[test]
    fn scm_rights_records_make_the_send_and_the_receipt() {
        let mut rights = Rights::default();
        let right = |fd: i64, inode: u64, later: u32, magic: u32| {
            let mut r = raw(KIND_RIGHTS, nr::RECVMSG, fd, [0; 4]);
            r.inode = inode;
            r.tail = later;
            r.magic = magic;
            r
        };
        assert!(decode(&right(6, 500, 0, SOCKFS_MAGIC), &mut rights).is_none());
        // A pipe passed along is not followed.
        assert!(decode(&right(7, 501, 1, 0x5049_5045), &mut rights).is_none());
        assert!(decode(&right(8, 502, 1, SOCKFS_MAGIC), &mut rights).is_none());
        let recv = decode(
            &raw(KIND_EXIT, nr::RECVMSG, 1, [3, 0, MSG_CMSG_CLOEXEC, 0]),
            &mut rights,
        );
        assert_eq!(
            recv,
            Some(Act::Received {
                fds: vec![(6, 500), (8, 502)],
                cloexec: true,
                call: Call::Recvmsg
            })
        );
        // Consumed: the next recvmsg without records carried nothing.
        assert!(decode(&raw(KIND_EXIT, nr::RECVMSG, 1, [0; 4]), &mut rights).is_none());
        // Records of a call whose own record was lost are not carried over.
        decode(&right(4, 600, 0, SOCKFS_MAGIC), &mut rights);
        decode(&right(5, 601, 0, SOCKFS_MAGIC), &mut rights);
        let sent = decode(&raw(KIND_ENTER, nr::SENDMMSG, 0, [0; 4]), &mut rights);
        assert_eq!(
            sent,
            Some(Act::Sent {
                fds: vec![(5, 601)],
                call: Call::Sendmmsg
            })
        );
    }

    #[test]
    fn connect_and_f_setfd_are_decoded() {
        let mut rights = Rights::default();
        let c = decode(
            &raw(KIND_EXIT, nr::CONNECT, -EINPROGRESS, [5, 0, 0, 0]),
            &mut rights,
        );
        assert_eq!(c, Some(Act::Connect { fd: 5, inode: 77 }));
        // A refused connect connects nothing.
        assert!(decode(
            &raw(KIND_EXIT, nr::CONNECT, -111, [5, 0, 0, 0]),
            &mut rights
        )
        .is_none());
        let set = decode(
            &raw(KIND_EXIT, nr::FCNTL, 0, [5, F_SETFD, 0, 0]),
            &mut rights,
        );
        assert_eq!(set, Some(Act::SetCloexec { fd: 5, on: false }));
        let set = decode(
            &raw(KIND_EXIT, nr::FCNTL, 0, [5, F_SETFD, FD_CLOEXEC, 0]),
            &mut rights,
        );
        assert_eq!(set, Some(Act::SetCloexec { fd: 5, on: true }));
    }
}
