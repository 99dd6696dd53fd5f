//! Events in, fd tables out: each socket fd of each traced process keeps the
//! chain of steps that made it; each socket keeps what became of its other
//! copies while one of them is still open (and nothing once all are closed).

use super::{Act, Closed, Event, Frame, Origin, RawFrame, Step};
use crate::model::{FastMap, Inode, Pid};
use std::sync::{Arc, OnceLock};

#[derive(Debug)]
struct StepRec {
    event: &'static str,
    pid: Pid,
    tid: Pid,
    time_ns: u64,
    from_fd: Option<i32>,
    from_pid: Option<Pid>,
    /// Known at the step, or later for a fork (when the parent's call returns).
    stack: OnceLock<(&'static str, Vec<RawFrame>)>,
}

/// (step, fd after it), oldest first.
type Chain = Vec<(Arc<StepRec>, i32)>;

/// Copies sent and never received (the receiver is not traced, or the
/// message is never read) are forgotten beyond this many.
const MAX_IN_FLIGHT: usize = 4096;

#[derive(Debug, Clone)]
struct Entry {
    inode: Inode,
    cloexec: bool,
    chain: Chain,
}

#[derive(Default)]
struct Table {
    fds: FastMap<i32, Entry>,
    /// The execve() entered by this process, waiting for its result.
    exec: Option<Arc<StepRec>>,
}

#[derive(Default)]
pub struct Replay {
    tables: FastMap<Pid, Table>,
    /// Processes sharing another's table (CLONE_FILES).
    alias: FastMap<Pid, Pid>,
    /// Fork steps whose parent's call has not returned yet, by child.
    forks: FastMap<Pid, Arc<StepRec>>,
    /// Per socket: the histories of copies sent with SCM_RIGHTS and not yet
    /// received, oldest first (each counts as a live copy: the message holds
    /// a reference). At most MAX_IN_FLIGHT in all.
    in_flight: FastMap<Inode, std::collections::VecDeque<Chain>>,
    in_flight_count: usize,
    /// Sends not kept because MAX_IN_FLIGHT were waiting.
    pub in_flight_dropped: u64,
    /// Per socket: live traced copies, and the copies closed meanwhile.
    live: FastMap<Inode, usize>,
    closed: FastMap<Inode, Vec<(Entry, u64, &'static str)>>,
    pub events: u64,
}

impl Replay {
    fn table(&mut self, pid: Pid) -> &mut Table {
        let pid = self.alias.get(&pid).copied().unwrap_or(pid);
        self.tables.entry(pid).or_default()
    }

    pub fn apply(&mut self, e: Event) {
        self.events += 1;
        let step = |event: &'static str, from_fd, from_pid, stack: Vec<RawFrame>| {
            let rec = StepRec {
                event,
                pid: e.pid,
                tid: e.tid,
                time_ns: e.time_ns,
                from_fd,
                from_pid,
                stack: OnceLock::new(),
            };
            if !stack.is_empty() {
                let _ = rec.stack.set((event, stack));
            }
            Arc::new(rec)
        };
        match e.act {
            Act::NewFd {
                fd,
                inode,
                cloexec,
                call,
                from_fd,
            } => {
                // The copy of a tracked fd keeps its history before the dup.
                let mut chain = match (call.is_dup(), from_fd) {
                    (true, Some(from)) => self
                        .table(e.pid)
                        .fds
                        .get(&from)
                        .filter(|s| s.inode == inode)
                        .map(|s| s.chain.clone())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                chain.push((step(call.name(), from_fd, None, e.stack), fd));
                self.end(e.pid, fd, e.time_ns, "close");
                self.table(e.pid).fds.insert(
                    fd,
                    Entry {
                        inode,
                        cloexec,
                        chain,
                    },
                );
                *self.live.entry(inode).or_default() += 1;
            }
            Act::Sent { fds, call } => {
                let sent = step(call.name(), None, None, e.stack);
                for (fd, inode) in fds {
                    if self.in_flight_count >= MAX_IN_FLIGHT {
                        self.in_flight_dropped += 1;
                        continue;
                    }
                    let mut chain = self
                        .table(e.pid)
                        .fds
                        .get(&fd)
                        .filter(|s| s.inode == inode)
                        .map(|s| s.chain.clone())
                        .unwrap_or_default();
                    chain.push((sent.clone(), fd));
                    self.in_flight.entry(inode).or_default().push_back(chain);
                    self.in_flight_count += 1;
                    *self.live.entry(inode).or_default() += 1;
                }
            }
            Act::Received { fds, cloexec, call } => {
                let stack = (!e.stack.is_empty()).then(|| (call.name(), e.stack));
                for (fd, inode) in fds {
                    let mut chain = Vec::new();
                    if let Some(q) = self.in_flight.get_mut(&inode) {
                        if let Some(c) = q.pop_front() {
                            chain = c;
                            self.in_flight_count -= 1;
                            if let Some(n) = self.live.get_mut(&inode) {
                                *n = n.saturating_sub(1);
                            }
                        }
                        if q.is_empty() {
                            self.in_flight.remove(&inode);
                        }
                    }
                    let sender = chain.last().map(|(rec, fd)| (rec.pid, *fd));
                    let rec = StepRec {
                        event: call.name(),
                        pid: e.pid,
                        tid: e.tid,
                        time_ns: e.time_ns,
                        from_fd: sender.map(|s| s.1),
                        from_pid: sender.map(|s| s.0),
                        stack: OnceLock::new(),
                    };
                    if let Some(st) = &stack {
                        let _ = rec.stack.set(st.clone());
                    }
                    chain.push((Arc::new(rec), fd));
                    self.end(e.pid, fd, e.time_ns, "close");
                    self.table(e.pid).fds.insert(
                        fd,
                        Entry {
                            inode,
                            cloexec,
                            chain,
                        },
                    );
                    *self.live.entry(inode).or_default() += 1;
                }
            }
            Act::Connect { fd, inode } => {
                // Only on a socket whose making was traced: one made before
                // has no history (and its close-on-exec flag is unknown).
                let connect = step("connect", None, None, e.stack);
                if let Some(s) = self
                    .table(e.pid)
                    .fds
                    .get_mut(&fd)
                    .filter(|s| s.inode == inode)
                {
                    s.chain.push((connect, fd));
                }
            }
            Act::SetCloexec { fd, on } => {
                if let Some(s) = self.table(e.pid).fds.get_mut(&fd) {
                    // Cleared: why the copy may cross an exec, worth a step.
                    if s.cloexec && !on {
                        s.chain
                            .push((step(super::CLOEXEC_CLEARED, None, None, e.stack), fd));
                    }
                    s.cloexec = on;
                }
            }
            Act::Close { fd } => self.end(e.pid, fd, e.time_ns, "close"),
            Act::CloseRange {
                first,
                last,
                cloexec_only,
            } => {
                let in_range = |fd: &i32| u32::try_from(*fd).is_ok_and(|f| f >= first && f <= last);
                let t = self.table(e.pid);
                let fds: Vec<i32> = t.fds.keys().copied().filter(in_range).collect();
                for fd in fds {
                    if cloexec_only {
                        if let Some(s) = self.table(e.pid).fds.get_mut(&fd) {
                            s.cloexec = true;
                        }
                    } else {
                        self.end(e.pid, fd, e.time_ns, "close_range");
                    }
                }
            }
            Act::Fork {
                child,
                shared_table,
            } => {
                let parent = self.alias.get(&e.pid).copied().unwrap_or(e.pid);
                if shared_table {
                    self.alias.insert(child, parent);
                    return;
                }
                // The step names the child: the process that has the copy.
                let fork = Arc::new(StepRec {
                    event: "fork",
                    pid: child,
                    tid: e.tid,
                    time_ns: e.time_ns,
                    from_fd: None,
                    from_pid: Some(e.pid),
                    stack: OnceLock::new(),
                });
                let copies: Vec<(i32, Entry)> = self
                    .table(parent)
                    .fds
                    .iter()
                    .map(|(fd, s)| {
                        let mut s = s.clone();
                        s.chain.push((fork.clone(), *fd));
                        (*fd, s)
                    })
                    .collect();
                for (_, s) in &copies {
                    *self.live.entry(s.inode).or_default() += 1;
                }
                let t = self.table(child);
                t.fds = copies.into_iter().collect();
                self.forks.insert(child, fork);
            }
            Act::ForkReturned { child, call } => {
                if let Some(f) = self.forks.remove(&child) {
                    let _ = f.stack.set((call, e.stack));
                }
            }
            Act::ExecStart => {
                self.table(e.pid).exec = Some(step("execve", None, None, e.stack));
            }
            Act::ExecDone { ok } => {
                let exec = self.table(e.pid).exec.take();
                if !ok {
                    return;
                }
                let exec = exec.unwrap_or_else(|| step("execve", None, None, Vec::new()));
                let fds: Vec<(i32, bool)> = self
                    .table(e.pid)
                    .fds
                    .iter()
                    .map(|(fd, s)| (*fd, s.cloexec))
                    .collect();
                for (fd, cloexec) in fds {
                    if cloexec {
                        self.end(e.pid, fd, e.time_ns, "execve (O_CLOEXEC)");
                    } else if let Some(s) = self.table(e.pid).fds.get_mut(&fd) {
                        s.chain.push((exec.clone(), fd));
                    }
                }
            }
            Act::Exit { last } => {
                if !last {
                    return;
                }
                if self.alias.remove(&e.pid).is_some() {
                    return;
                }
                let fds: Vec<i32> = self.table(e.pid).fds.keys().copied().collect();
                for fd in fds {
                    self.end(e.pid, fd, e.time_ns, "exit");
                }
                self.tables.remove(&e.pid);
                self.forks.remove(&e.pid);
            }
        }
    }

    /// The copy at (pid, fd) is gone: remembered while the socket has
    /// another live copy, so a finding can say what became of it.
    fn end(&mut self, pid: Pid, fd: i32, time_ns: u64, how: &'static str) {
        let Some(s) = self.table(pid).fds.remove(&fd) else {
            return;
        };
        let inode = s.inode;
        let left = match self.live.get_mut(&inode) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.live.remove(&inode);
            self.closed.remove(&inode);
        } else {
            self.closed
                .entry(inode)
                .or_default()
                .push((s, time_ns, how));
        }
    }

    /// How the fd `fd` of `pid` came to refer to `inode`, when traced.
    pub fn origin(
        &self,
        pid: Pid,
        fd: i32,
        inode: Inode,
        sym: &mut dyn FnMut(&[RawFrame]) -> Vec<Frame>,
    ) -> Option<Origin> {
        let pid = self.alias.get(&pid).copied().unwrap_or(pid);
        let s = self.tables.get(&pid)?.fds.get(&fd)?;
        (s.inode == inode).then(|| origin(s, sym))
    }

    /// The copies of `inode` closed while tracing, oldest first.
    pub fn closed(
        &self,
        inode: Inode,
        sym: &mut dyn FnMut(&[RawFrame]) -> Vec<Frame>,
    ) -> Vec<Closed> {
        self.closed
            .get(&inode)
            .map(|v| {
                v.iter()
                    .map(|(s, t, how)| Closed {
                        origin: origin(s, sym),
                        at_ms: t / 1_000_000,
                        how,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The history of the oldest copy of `inode` sent with SCM_RIGHTS and
    /// not received yet (the message holds the socket open).
    pub fn in_flight(
        &self,
        inode: Inode,
        sym: &mut dyn FnMut(&[RawFrame]) -> Vec<Frame>,
    ) -> Option<Origin> {
        let chain = self.in_flight.get(&inode)?.front()?;
        Some(origin_of(chain, sym))
    }

    /// Every raw stack the origins of `keys` will symbolize (to do it in one pass).
    pub fn stacks_of(&self, keys: &[(Pid, i32, Inode)]) -> Vec<Vec<RawFrame>> {
        let mut out = Vec::new();
        let mut push = |c: &Chain| {
            for (rec, _) in c {
                if let Some((_, st)) = rec.stack.get() {
                    out.push(st.clone());
                }
            }
        };
        for (pid, fd, inode) in keys {
            if let Some(c) = self.in_flight.get(inode).and_then(|q| q.front()) {
                push(c);
            }
            let pid = self.alias.get(pid).copied().unwrap_or(*pid);
            if let Some(s) = self.tables.get(&pid).and_then(|t| t.fds.get(fd)) {
                push(&s.chain);
            }
            for (s, _, _) in self.closed.get(inode).into_iter().flatten() {
                push(&s.chain);
            }
        }
        out
    }
}

fn origin(s: &Entry, sym: &mut dyn FnMut(&[RawFrame]) -> Vec<Frame>) -> Origin {
    origin_of(&s.chain, sym)
}

fn origin_of(chain: &Chain, sym: &mut dyn FnMut(&[RawFrame]) -> Vec<Frame>) -> Origin {
    let mut steps: Vec<Step> = chain
        .iter()
        .map(|(rec, fd)| {
            let (event, stack) = match rec.stack.get() {
                Some((call, st)) => (*call, sym(st)),
                None => (rec.event, Vec::new()),
            };
            Step {
                event: event.to_string(),
                pid: rec.pid,
                tid: rec.tid,
                fd: *fd,
                from_fd: rec.from_fd,
                from_pid: rec.from_pid,
                at_ms: rec.time_ns / 1_000_000,
                stack,
            }
        })
        .collect();
    let step = steps.pop().unwrap_or_else(|| Step {
        event: "unknown".into(),
        pid: 0,
        tid: 0,
        fd: -1,
        from_fd: None,
        from_pid: None,
        at_ms: 0,
        stack: Vec::new(),
    });
    Origin {
        step,
        earlier: steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Call;

    fn ev(t: u64, pid: Pid, act: Act) -> Event {
        Event {
            time_ns: t * 1_000_000,
            pid,
            tid: pid,
            act,
            stack: vec![RawFrame {
                addr: t,
                module: None,
                file_offset: t,
            }],
        }
    }

    fn no_sym(st: &[RawFrame]) -> Vec<Frame> {
        st.iter()
            .map(|f| Frame {
                function: None,
                file: None,
                line: None,
                module: None,
                address: f.addr,
            })
            .collect()
    }

    fn accept(t: u64, pid: Pid, fd: i32, inode: Inode, cloexec: bool) -> Event {
        ev(
            t,
            pid,
            Act::NewFd {
                fd,
                inode,
                cloexec,
                call: Call::Accept4,
                from_fd: None,
            },
        )
    }

    #[test]
    fn fork_copies_and_the_childs_close_is_remembered() {
        let mut r = Replay::default();
        r.apply(accept(1, 10, 4, 99, false));
        r.apply(ev(
            2,
            10,
            Act::Fork {
                child: 11,
                shared_table: false,
            },
        ));
        r.apply(ev(
            3,
            10,
            Act::ForkReturned {
                child: 11,
                call: "clone",
            },
        ));
        r.apply(ev(6, 11, Act::Close { fd: 4 }));
        let o = r.origin(10, 4, 99, &mut no_sym).unwrap();
        assert_eq!(o.step.event, "accept4");
        assert!(o.earlier.is_empty());
        let closed = r.closed(99, &mut no_sym);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].at_ms, 6);
        assert_eq!(closed[0].origin.step.event, "clone");
        assert_eq!(closed[0].origin.step.pid, 11);
        assert_eq!(closed[0].origin.step.stack[0].address, 3);
        // The parent closes too: nothing is kept for the socket.
        r.apply(ev(7, 10, Act::Close { fd: 4 }));
        assert!(r.closed(99, &mut no_sym).is_empty());
        assert!(r.origin(10, 4, 99, &mut no_sym).is_none());
    }

    #[test]
    fn exec_keeps_only_fds_without_cloexec() {
        let mut r = Replay::default();
        r.apply(accept(1, 10, 4, 99, false));
        r.apply(accept(1, 10, 5, 98, true));
        r.apply(ev(
            2,
            10,
            Act::Fork {
                child: 11,
                shared_table: false,
            },
        ));
        r.apply(ev(3, 11, Act::ExecStart));
        r.apply(ev(4, 11, Act::ExecDone { ok: true }));
        let o = r.origin(11, 4, 99, &mut no_sym).unwrap();
        assert!(o.crossed_exec());
        assert_eq!(o.earlier.len(), 2);
        assert_eq!(o.earlier[0].event, "accept4");
        assert!(r.origin(11, 5, 98, &mut no_sym).is_none());
        let closed = r.closed(98, &mut no_sym);
        assert_eq!(closed[0].how, "execve (O_CLOEXEC)");
    }

    #[test]
    fn dup_keeps_the_history_of_the_fd_it_copies() {
        let mut r = Replay::default();
        r.apply(accept(1, 10, 4, 99, false));
        r.apply(ev(
            2,
            10,
            Act::NewFd {
                fd: 7,
                inode: 99,
                cloexec: false,
                call: Call::Dup,
                from_fd: Some(4),
            },
        ));
        r.apply(ev(3, 10, Act::Exit { last: true }));
        assert!(r.origin(10, 7, 99, &mut no_sym).is_none());
        let mut r2 = Replay::default();
        r2.apply(accept(1, 10, 4, 99, false));
        r2.apply(ev(
            2,
            10,
            Act::NewFd {
                fd: 7,
                inode: 99,
                cloexec: false,
                call: Call::Dup,
                from_fd: Some(4),
            },
        ));
        let o = r2.origin(10, 7, 99, &mut no_sym).unwrap();
        assert_eq!((o.step.event.as_str(), o.step.from_fd), ("dup", Some(4)));
        assert_eq!(o.earlier[0].event, "accept4");
        // A stale fd number (reused for another socket) is not this socket's.
        assert!(r2.origin(10, 7, 12345, &mut no_sym).is_none());
    }

    #[test]
    fn a_passed_fd_carries_the_senders_history_and_the_sender_close_is_kept() {
        let mut r = Replay::default();
        r.apply(accept(1, 10, 4, 99, true));
        r.apply(ev(
            2,
            10,
            Act::Sent {
                fds: vec![(4, 99)],
                call: Call::Sendmsg,
            },
        ));
        // The sender closes before the receiver reads: the message still
        // holds the socket, so the sender's close is remembered.
        r.apply(ev(3, 10, Act::Close { fd: 4 }));
        let flying = r.in_flight(99, &mut no_sym).unwrap();
        assert_eq!(
            (flying.step.event.as_str(), flying.step.pid),
            ("sendmsg", 10)
        );
        r.apply(ev(
            4,
            20,
            Act::Received {
                fds: vec![(7, 99)],
                cloexec: false,
                call: Call::Recvmsg,
            },
        ));
        assert!(r.in_flight(99, &mut no_sym).is_none());
        let o = r.origin(20, 7, 99, &mut no_sym).unwrap();
        assert_eq!(o.step.event, "recvmsg");
        assert_eq!((o.step.from_pid, o.step.from_fd), (Some(10), Some(4)));
        let earlier: Vec<&str> = o.earlier.iter().map(|s| s.event.as_str()).collect();
        assert_eq!(earlier, ["accept4", "sendmsg"]);
        let closed = r.closed(99, &mut no_sym);
        assert_eq!((closed.len(), closed[0].at_ms), (1, 3));
        // A receipt with no traced send starts the history there.
        r.apply(ev(
            5,
            20,
            Act::Received {
                fds: vec![(8, 55)],
                cloexec: true,
                call: Call::Recvmmsg,
            },
        ));
        let o = r.origin(20, 8, 55, &mut no_sym).unwrap();
        assert!(o.earlier.is_empty() && o.step.from_pid.is_none());
        assert_eq!(r.in_flight_count, 0);
    }

    #[test]
    fn a_cleared_cloexec_flag_lets_the_copy_cross_exec_and_connect_is_a_step() {
        let mut r = Replay::default();
        r.apply(accept(1, 10, 4, 99, true));
        r.apply(ev(2, 10, Act::SetCloexec { fd: 4, on: false }));
        r.apply(ev(3, 10, Act::Connect { fd: 4, inode: 99 }));
        // A connect on a socket made before tracing starts no history.
        r.apply(ev(3, 10, Act::Connect { fd: 8, inode: 5 }));
        assert!(r.origin(10, 8, 5, &mut no_sym).is_none());
        r.apply(ev(
            4,
            10,
            Act::Fork {
                child: 11,
                shared_table: false,
            },
        ));
        r.apply(ev(5, 11, Act::ExecStart));
        r.apply(ev(6, 11, Act::ExecDone { ok: true }));
        let o = r.origin(11, 4, 99, &mut no_sym).unwrap();
        let steps: Vec<&str> = o.steps().map(|s| s.event.as_str()).collect();
        assert_eq!(
            steps,
            ["accept4", "fcntl_setfd", "connect", "fork", "execve"]
        );
        assert_eq!(o.connected().map(|s| s.at_ms), Some(3));
        // Set again: the next exec drops it.
        r.apply(ev(7, 10, Act::SetCloexec { fd: 4, on: true }));
        r.apply(ev(8, 10, Act::ExecStart));
        r.apply(ev(9, 10, Act::ExecDone { ok: true }));
        assert!(r.origin(10, 4, 99, &mut no_sym).is_none());
    }

    #[test]
    fn sends_beyond_the_in_flight_cap_are_counted_not_kept() {
        let mut r = Replay::default();
        let fds: Vec<(i32, Inode)> = (0..MAX_IN_FLIGHT as u64 + 3)
            .map(|i| (4, 1000 + i))
            .collect();
        r.apply(ev(
            1,
            10,
            Act::Sent {
                fds,
                call: Call::Sendmmsg,
            },
        ));
        assert_eq!((r.in_flight_count, r.in_flight_dropped), (MAX_IN_FLIGHT, 3));
        assert!(r
            .in_flight(1000 + MAX_IN_FLIGHT as u64, &mut no_sym)
            .is_none());
    }
}
