//! `--trace`: with the recorded history of each holder's fd, the cause is
//! read, not inferred. Each holder gets its `origin` (the calls that made
//! its copy, with their stacks); when every holder of a socket has one, the
//! finding's cause and blamed copy come from that history (`basis:
//! traced`), and its first evidence line is the decisive fact. Otherwise the
//! inferred verdict stands (`basis: inferred`) and the origins known are
//! still shown. See docs/causes.md. Pure code.

use super::finding::{Blame, Cause, Finding, Line};
use super::fixes;
use super::mitigation::Mitigation;
use crate::model::Pid;
use crate::trace::{is_receive, is_send, Closed, Facts, Frame, Origin, Step, CLOEXEC_CLEARED};
use serde::{Deserialize, Serialize};

/// Where a finding's cause comes from.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// From what the process tree looks like now (the rules of causes.md).
    #[default]
    Inferred,
    /// From the recorded history of every holder's fd (`--trace`).
    Traced,
}

pub fn apply(findings: &mut [Finding], facts: &Facts) {
    for f in findings.iter_mut() {
        if f.holders.is_empty() {
            in_flight(f, facts);
            continue;
        }
        for h in f.holders.iter_mut() {
            h.origin = facts.origins.get(&(h.pid, h.fd)).cloned().map(Box::new);
        }
        if f.holders.iter().any(|h| h.origin.is_none()) {
            continue;
        }
        let closed = facts
            .closed
            .get(&f.socket.inode)
            .map_or(&[][..], |v| v.as_slice());
        let held: Vec<(Pid, i32, &Origin)> = f
            .holders
            .iter()
            .filter_map(|h| Some((h.pid, h.fd, h.origin.as_deref()?)))
            .collect();
        let v = judge(&held, closed);
        f.basis = Basis::Traced;
        // The recorded history decides: no alternative, no hedged fix.
        if v.cause != f.cause || !f.alternatives.is_empty() {
            f.fix = Line::from(fixes::fix(v.cause, false));
        }
        f.alternatives.clear();
        f.cause = v.cause;
        // A copy in a thread's own fd table is closed in that thread.
        f.blamed = v
            .blamed
            .into_iter()
            .map(|b| Blame {
                tid: f
                    .holders
                    .iter()
                    .find(|h| h.pid == b.pid && h.fd == b.fd)
                    .and_then(|h| h.tid),
                ..b
            })
            .collect();
        if let Mitigation::Commands { close, .. } = &mut f.mitigation {
            *close = f.blamed.first().copied();
        }
        f.evidence.insert(0, Line::from(v.fact));
    }
}

/// A CLOSE_WAIT socket nobody holds that was sent with SCM_RIGHTS and never
/// received: the message in a unix socket's queue holds it open. The cause
/// (no visible holder) and its fix stand; the recorded send is the fact.
fn in_flight(f: &mut Finding, facts: &Facts) {
    let Some(o) = facts.in_flight.get(&f.socket.inode) else {
        return;
    };
    let send = o.made_by();
    let made = o
        .steps()
        .next()
        .filter(|s| !is_send(&s.event))
        .map(|m| format!(", made by {}", call_at(m)))
        .unwrap_or_default();
    let mut fact = format!(
        "traced: in flight: {} passed it (its fd {}{made}) and nobody received it: the message \
         waits in a unix socket's queue, holding the connection open",
        call_at(send),
        send.fd,
    );
    let closed = facts
        .closed
        .get(&f.socket.inode)
        .and_then(|v| v.iter().find(|c| c.origin.made_by().pid == send.pid));
    if let Some(c) = closed {
        fact.push_str(&format!(
            "; pid {} {} its own copy {}",
            send.pid,
            ended(c.how),
            later(send.at_ms, c.at_ms)
        ));
    }
    f.basis = Basis::Traced;
    f.evidence.insert(0, Line::from(fact));
}

struct Verdict {
    cause: Cause,
    blamed: Vec<Blame>,
    fact: String,
}

/// "accept4() at server.c:88 in pid 1234"
pub fn call_at(s: &Step) -> String {
    let mut out = format!("{}()", s.event);
    if let Some(f) = top_frame(&s.stack) {
        out.push_str(&format!(" at {}", place(f)));
    }
    out.push_str(&format!(" in pid {}", s.pid));
    out
}

/// The program's own frame: the first of its code (past libc's syscall
/// wrappers, std and library crates), else the first with a source line,
/// else the first named one.
pub fn top_frame(stack: &[Frame]) -> Option<&Frame> {
    stack
        .iter()
        .find(|f| f.is_own())
        .or_else(|| stack.iter().find(|f| f.has_source()))
        .or_else(|| stack.iter().find(|f| f.function.is_some()))
}

/// "server.c:88 (handle)" or "handle (libfoo.so)".
pub fn place(f: &Frame) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => {
            let base = file.rsplit('/').next().unwrap_or(file);
            match &f.function {
                Some(func) => format!("{base}:{line} ({func})"),
                None => format!("{base}:{line}"),
            }
        }
        _ => f.short(),
    }
}

/// How long after `from_ms`: under a second in milliseconds ("4 ms later"),
/// from one second on in seconds to a tenth ("1.0 s later").
fn later(from_ms: u64, to_ms: u64) -> String {
    let d = to_ms.saturating_sub(from_ms);
    if d < 1000 {
        format!("{d} ms later")
    } else {
        format!("{:.1} s later", d as f64 / 1000.0)
    }
}

/// How a copy went: "closed", "dropped by exiting", ...
fn ended(how: &str) -> String {
    match how {
        "close" => "closed".into(),
        "exit" => "dropped by exiting".into(),
        other => format!("dropped by {other}"),
    }
}

fn is_dup(event: &str) -> bool {
    matches!(event, "dup" | "dup2" | "dup3" | "fcntl")
}

fn is_fork(s: &Step) -> bool {
    s.from_pid.is_some() && matches!(s.event.as_str(), "fork" | "clone" | "clone3" | "vfork")
}

fn blame_order(held: &[(Pid, i32, &Origin)], first: &[(Pid, i32)]) -> Vec<Blame> {
    let mut out: Vec<Blame> = first
        .iter()
        .map(|&(pid, fd)| Blame { pid, fd, tid: None })
        .collect();
    for (pid, fd, _) in held {
        let b = Blame {
            pid: *pid,
            fd: *fd,
            tid: None,
        };
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

/// The step that sent (pid, fd) with SCM_RIGHTS in a copy's history, and
/// the receiving step after it.
fn sent_by(o: &Origin, pid: Pid, fd: i32) -> Option<(&Step, &Step)> {
    let steps: Vec<&Step> = o.steps().collect();
    steps.windows(2).find_map(|w| {
        (is_send(&w[0].event) && w[0].pid == pid && w[0].fd == fd && is_receive(&w[1].event))
            .then_some((w[0], w[1]))
    })
}

/// Rule 1: a copy came from another process (SCM_RIGHTS, pidfd_getfd), and
/// the receiver kept it, or the sender kept its own after passing it.
fn passed(held: &[(Pid, i32, &Origin)], closed: &[Closed]) -> Option<Verdict> {
    let receivers: Vec<(Pid, i32)> = held
        .iter()
        .filter(|(_, _, o)| o.received().is_some())
        .map(|(p, fd, _)| (*p, *fd))
        .collect();
    // Senders that still hold what they passed: the receiving copy is held
    // or was closed.
    let copies = held
        .iter()
        .map(|(_, _, o)| (*o, None))
        .chain(closed.iter().map(|c| (&c.origin, Some(c))));
    let copies: Vec<(&Origin, Option<&Closed>)> = copies.collect();
    let senders: Vec<(Pid, i32, &Step, &Step, Option<&Closed>)> = held
        .iter()
        .filter_map(|(pid, fd, _)| {
            copies.iter().find_map(|(o, c)| {
                let (send, recv) = sent_by(o, *pid, *fd)?;
                Some((*pid, *fd, send, recv, *c))
            })
        })
        .collect();
    if let Some((pid, fd, o)) = held
        .iter()
        .find(|(p, fd, _)| receivers.contains(&(*p, *fd)))
    {
        let recv = o.received().unwrap_or(o.made_by());
        let mut fact = format!(
            "traced: pid {pid} got its copy (fd {fd}) by {}",
            call_at(recv)
        );
        // The sender, when its sendmsg() was traced.
        let steps: Vec<&Step> = o.steps().collect();
        let send = steps
            .windows(2)
            .find(|w| std::ptr::eq(w[1], recv) && is_send(&w[0].event))
            .map(|w| w[0]);
        if let Some(send) = send {
            let made = o.steps().next().filter(|s| !is_send(&s.event));
            fact.push_str(&format!(
                ", passed by {} (its fd {}{})",
                call_at(send),
                send.fd,
                made.map_or(String::new(), |m| format!(", made by {}", call_at(m))),
            ));
            let kept = held.iter().any(|(p, f, _)| *p == send.pid && *f == send.fd);
            let dropped = closed
                .iter()
                .find(|c| c.origin.made_by().pid == send.pid && c.origin.made_by().fd == send.fd);
            if kept {
                fact.push_str(&format!(
                    "; pid {} still holds fd {} too",
                    send.pid, send.fd
                ));
            } else if let Some(c) = dropped {
                fact.push_str(&format!(
                    "; pid {} {} its copy {}",
                    send.pid,
                    ended(c.how),
                    later(send.at_ms, c.at_ms)
                ));
            }
        }
        fact.push_str(&format!("; pid {pid} never closed fd {fd}"));
        let first: Vec<(Pid, i32)> = receivers
            .iter()
            .copied()
            .chain(senders.iter().map(|s| (s.0, s.1)))
            .collect();
        return Some(Verdict {
            cause: Cause::PassedFdKept,
            blamed: blame_order(held, &first),
            fact,
        });
    }
    let (pid, fd, send, recv, got) = senders.first().copied()?;
    let o = held.iter().find(|(p, f, _)| (*p, *f) == (pid, fd))?.2;
    let whose = match got {
        Some(c) => format!(
            "which {} its copy {}",
            ended(c.how),
            later(recv.at_ms, c.at_ms)
        ),
        None => "which still holds its copy".into(),
    };
    Some(Verdict {
        cause: Cause::PassedFdKept,
        blamed: blame_order(
            held,
            &senders.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        ),
        fact: format!(
            "traced: fd {fd} of pid {pid} was made by {}; {} passed it to pid {} ({}), {whose}; \
             pid {pid} never closed fd {fd}",
            call_at(o.steps().next().unwrap_or(o.made_by())),
            call_at(send),
            recv.pid,
            call_at(recv),
        ),
    })
}

fn judge(held: &[(Pid, i32, &Origin)], closed: &[Closed]) -> Verdict {
    // 1. Passed to another process, and kept by the receiver or the sender.
    if let Some(v) = passed(held, closed) {
        return v;
    }
    // 2. Carried across execve() above stdio: the new program does not know it.
    let execd: Vec<(Pid, i32)> = held
        .iter()
        .filter(|(_, fd, o)| *fd > 2 && o.crossed_exec())
        .map(|(p, fd, _)| (*p, *fd))
        .collect();
    if let Some((pid, fd, o)) = held.iter().find(|(p, fd, _)| execd.contains(&(*p, *fd))) {
        let made = o.steps().next().unwrap_or(o.made_by());
        let exec = o
            .steps()
            .find(|s| s.event == "execve")
            .unwrap_or(o.made_by());
        let flag = match o.steps().find(|s| s.event == CLOEXEC_CLEARED) {
            Some(c) => format!(
                ", its close-on-exec flag cleared by fcntl(F_SETFD) at {},",
                top_frame(&c.stack).map_or("?".to_string(), place)
            ),
            None => " without O_CLOEXEC".into(),
        };
        return Verdict {
            cause: Cause::InheritedNoCloexec,
            blamed: blame_order(held, &execd),
            fact: format!(
                "traced: fd {fd} of pid {pid} was made by {}{flag} and crossed {}; \
                 the new program never closes it",
                call_at(made),
                call_at(exec),
            ),
        };
    }
    // 3. A duplicate: dup()/dup2()/dup3()/fcntl(F_DUPFD) made it.
    let dups: Vec<(Pid, i32)> = held
        .iter()
        .filter(|(_, _, o)| is_dup(&o.made_by().event))
        .map(|(p, fd, _)| (*p, *fd))
        .collect();
    if let Some((pid, fd, o)) = held.iter().find(|(p, fd, _)| dups.contains(&(*p, *fd))) {
        let from = o
            .step
            .from_fd
            .map_or(String::new(), |f| format!(" from fd {f}"));
        let orig = match o.made_by().from_fd {
            Some(f) if held.iter().any(|(p, h, _)| p == pid && *h == f) => {
                format!("; fd {f} is still open too")
            }
            Some(f) => match closed
                .iter()
                .find(|c| c.origin.made_by().pid == *pid && c.origin.made_by().fd == f)
            {
                Some(c) => format!("; fd {f} was closed {}", later(o.made_by().at_ms, c.at_ms)),
                None => String::new(),
            },
            None => String::new(),
        };
        return Verdict {
            cause: Cause::DupCopyKept,
            blamed: blame_order(held, &dups),
            fact: format!(
                "traced: fd {fd} of pid {pid} was made by {}{from}{orig}; pid {pid} never closed fd {fd}",
                call_at(o.made_by())
            ),
        };
    }
    // 4. The parent kept its copy after a fork handed the connection over:
    //    a child that closed its copy (or still holds it), not one whose
    //    copy only vanished at exec (a spawned command, not a handoff).
    for (pid, fd, o) in held {
        let children: Vec<&Closed> = closed
            .iter()
            .filter(|c| {
                is_fork(c.origin.made_by())
                    && c.origin.made_by().from_pid == Some(*pid)
                    && c.origin.made_by().fd == *fd
                    && !c.how.starts_with("execve")
            })
            .collect();
        let live_children: Vec<Pid> = held
            .iter()
            .filter(|(_, _, c)| is_fork(c.made_by()) && c.made_by().from_pid == Some(*pid))
            .map(|(p, _, _)| *p)
            .collect();
        if children.is_empty() && live_children.is_empty() {
            continue;
        }
        let fork = children.first().map(|c| c.origin.made_by()).or_else(|| {
            held.iter()
                .find(|(p, _, _)| live_children.contains(p))
                .map(|(_, _, c)| c.made_by())
        });
        let Some(fork) = fork else { continue };
        let mut fact = format!(
            "traced: fd {fd} of pid {pid} was made by {}; {}() at {} gave pid {} a copy",
            call_at(o.made_by()),
            fork.event,
            top_frame(&fork.stack).map_or("?".to_string(), place),
            fork.pid,
        );
        match children.first() {
            Some(c) => fact.push_str(&format!(
                ", which it {} {}",
                ended(c.how),
                later(fork.at_ms, c.at_ms)
            )),
            None => fact.push_str(", which it still holds"),
        }
        fact.push_str(&format!("; pid {pid} never closed fd {fd}"));
        return Verdict {
            cause: Cause::ForkParentKept,
            blamed: blame_order(held, &[(*pid, *fd)]),
            fact,
        };
    }
    // 5. One copy, made where it is held (or handed over by a fork whose
    //    parent closed its own): nobody closed it.
    let (pid, fd, o) = held[0];
    let made = o.made_by();
    let via = o
        .steps()
        .next()
        .filter(|s| !std::ptr::eq(*s, made))
        .map(|s| format!(" (made by {})", call_at(s)))
        .unwrap_or_default();
    let connected = o
        .connected()
        .map(|c| format!(", connected by {}", call_at(c)))
        .unwrap_or_default();
    Verdict {
        cause: Cause::NeverClosed,
        blamed: blame_order(held, &[(pid, fd)]),
        fact: format!(
            "traced: fd {fd} of pid {pid} came from {}{via}{connected}, and pid {pid} never closed it",
            call_at(made)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(file: &str, line: u32, func: &str) -> Frame {
        Frame {
            function: Some(func.into()),
            file: Some(file.into()),
            line: Some(line),
            module: Some("/srv/server".into()),
            address: 0x1000,
        }
    }

    fn step(event: &str, pid: Pid, fd: i32, at_ms: u64, line: u32) -> Step {
        Step {
            event: event.into(),
            pid,
            tid: pid,
            fd,
            from_fd: None,
            from_pid: None,
            at_ms,
            stack: vec![
                Frame {
                    function: Some(event.into()),
                    file: None,
                    line: None,
                    module: Some("/lib/libc.so.6".into()),
                    address: 0x7f00,
                },
                frame("/src/server.c", line, "serve"),
            ],
        }
    }

    fn origin(steps: Vec<Step>) -> Origin {
        let mut steps = steps;
        let step = steps.pop().unwrap();
        Origin {
            step,
            earlier: steps,
        }
    }

    /// Pid 10 accepted the connection at fd 4 and forked pid 11, which
    /// closed its copy: the parent's history, and the child's closed copy.
    fn forked_child_closed() -> (Origin, Closed) {
        let parent = origin(vec![step("accept", 10, 4, 100, 50)]);
        let mut fork = step("fork", 11, 4, 101, 60);
        fork.from_pid = Some(10);
        let child = Closed {
            origin: origin(vec![step("accept", 10, 4, 100, 50), fork]),
            at_ms: 105,
            how: "close",
        };
        (parent, child)
    }

    #[test]
    fn a_fork_whose_child_closed_blames_the_parent_with_the_decisive_fact() {
        let (parent, child) = forked_child_closed();
        let v = judge(&[(10, 4, &parent)], &[child]);
        assert_eq!(v.cause, Cause::ForkParentKept);
        assert_eq!(
            v.blamed,
            vec![Blame {
                pid: 10,
                fd: 4,
                tid: None
            }]
        );
        assert_eq!(
            v.fact,
            "traced: fd 4 of pid 10 was made by accept() at server.c:50 (serve) in pid 10; \
             fork() at server.c:60 (serve) gave pid 11 a copy, which it closed 4 ms later; \
             pid 10 never closed fd 4"
        );
    }

    #[test]
    fn a_copy_that_vanished_at_exec_is_a_spawn_not_a_handoff() {
        let parent = origin(vec![step("accept4", 10, 4, 100, 50)]);
        let mut fork = step("clone", 11, 4, 101, 60);
        fork.from_pid = Some(10);
        let spawned = Closed {
            origin: origin(vec![step("accept4", 10, 4, 100, 50), fork]),
            at_ms: 102,
            how: "execve (O_CLOEXEC)",
        };
        let v = judge(&[(10, 4, &parent)], &[spawned]);
        assert_eq!(v.cause, Cause::NeverClosed);
        assert!(v.fact.contains("accept4() at server.c:50"), "{}", v.fact);
    }

    #[test]
    fn exec_and_dup_histories_name_their_causes() {
        let mut fork = step("fork", 11, 4, 101, 60);
        fork.from_pid = Some(10);
        let execd = origin(vec![
            step("accept", 10, 4, 100, 50),
            fork,
            step("execve", 11, 4, 102, 70),
        ]);
        let v = judge(&[(11, 4, &execd)], &[]);
        assert_eq!(v.cause, Cause::InheritedNoCloexec);
        assert!(
            v.fact.contains("crossed execve() at server.c:70"),
            "{}",
            v.fact
        );
        let mut dup = step("dup", 10, 7, 101, 80);
        dup.from_fd = Some(4);
        let dupd = origin(vec![step("accept", 10, 4, 100, 50), dup]);
        let v = judge(&[(10, 7, &dupd)], &[]);
        assert_eq!(v.cause, Cause::DupCopyKept);
        assert!(v.fact.contains("dup() at server.c:80"), "{}", v.fact);
        let never = origin(vec![step("accept", 10, 4, 100, 50)]);
        assert_eq!(judge(&[(10, 4, &never)], &[]).cause, Cause::NeverClosed);
    }

    #[test]
    fn a_passed_fd_blames_the_receiver_or_the_sender_that_kept_it() {
        let mut send = step("sendmsg", 10, 4, 101, 70);
        send.fd = 4;
        let mut recv = step("recvmsg", 20, 7, 102, 90);
        recv.from_pid = Some(10);
        recv.from_fd = Some(4);
        let received = origin(vec![step("accept4", 10, 4, 100, 50), send, recv]);
        let sender_closed = Closed {
            origin: origin(vec![step("accept4", 10, 4, 100, 50)]),
            at_ms: 103,
            how: "close",
        };
        // The receiver kept it.
        let v = judge(&[(20, 7, &received)], std::slice::from_ref(&sender_closed));
        assert_eq!(v.cause, Cause::PassedFdKept);
        assert_eq!(v.blamed[0].pid, 20);
        assert_eq!(
            v.fact,
            "traced: pid 20 got its copy (fd 7) by recvmsg() at server.c:90 (serve) in pid 20, \
             passed by sendmsg() at server.c:70 (serve) in pid 10 (its fd 4, made by accept4() at \
             server.c:50 (serve) in pid 10); pid 10 closed its copy 2 ms later; pid 20 never closed fd 7"
        );
        // The sender kept its copy; the receiver closed.
        let sender = origin(vec![step("accept4", 10, 4, 100, 50)]);
        let receiver_closed = Closed {
            origin: received.clone(),
            at_ms: 110,
            how: "close",
        };
        let v = judge(&[(10, 4, &sender)], &[receiver_closed]);
        assert_eq!(v.cause, Cause::PassedFdKept);
        assert_eq!((v.blamed[0].pid, v.blamed[0].fd), (10, 4));
        assert!(
            v.fact
                .contains("sendmsg() at server.c:70 (serve) in pid 10 passed it to pid 20")
                && v.fact.contains("which closed its copy 8 ms later"),
            "{}",
            v.fact
        );
        // Both kept: the receiver first, then the sender.
        let v = judge(&[(10, 4, &sender), (20, 7, &received)], &[]);
        let blamed: Vec<Pid> = v.blamed.iter().map(|b| b.pid).collect();
        assert_eq!(blamed, [20, 10]);
        assert!(v.fact.contains("pid 10 still holds fd 4 too"), "{}", v.fact);
    }

    #[test]
    fn a_client_socket_names_its_socket_and_connect_lines() {
        let o = origin(vec![
            step("socket", 10, 4, 100, 40),
            step("connect", 10, 4, 101, 41),
        ]);
        assert_eq!(o.made_by().event, "socket");
        let v = judge(&[(10, 4, &o)], &[]);
        assert_eq!(v.cause, Cause::NeverClosed);
        assert_eq!(
            v.fact,
            "traced: fd 4 of pid 10 came from socket() at server.c:40 (serve) in pid 10, \
             connected by connect() at server.c:41 (serve) in pid 10, and pid 10 never closed it"
        );
    }

    #[test]
    fn a_received_fd_handed_on_by_fork_is_judged_by_the_fork_not_the_receipt() {
        let mut send = step("sendmsg", 10, 4, 101, 70);
        send.fd = 4;
        let mut recv = step("recvmsg", 20, 7, 102, 90);
        recv.from_pid = Some(10);
        let mut fork = step("fork", 21, 7, 103, 95);
        fork.from_pid = Some(20);
        let child = origin(vec![step("accept4", 10, 4, 100, 50), send, recv, fork]);
        assert!(child.received().is_none());
        let v = judge(&[(21, 7, &child)], &[]);
        assert_eq!(v.cause, Cause::NeverClosed, "{}", v.fact);
        assert!(
            v.fact.contains("came from fork() at server.c:95"),
            "{}",
            v.fact
        );
    }

    #[test]
    fn a_delay_under_a_second_is_in_ms_from_one_second_on_in_seconds() {
        assert_eq!(later(100, 1099), "999 ms later");
        assert_eq!(later(100, 1100), "1.0 s later");
        assert_eq!(later(100, 2600), "2.5 s later");
    }

    #[test]
    fn a_dup_fact_says_whether_the_original_is_still_open_or_when_it_was_closed() {
        let mut dup = step("dup", 10, 7, 101, 80);
        dup.from_fd = Some(4);
        let dupd = origin(vec![step("accept", 10, 4, 100, 50), dup]);
        let original = origin(vec![step("accept", 10, 4, 100, 50)]);
        // The original is still held by the same process.
        let v = judge(&[(10, 7, &dupd), (10, 4, &original)], &[]);
        assert_eq!(v.cause, Cause::DupCopyKept);
        assert_eq!(
            v.fact,
            "traced: fd 7 of pid 10 was made by dup() at server.c:80 (serve) in pid 10 from fd 4; \
             fd 4 is still open too; pid 10 never closed fd 7"
        );
        // The duplicate first, then the original.
        let blamed: Vec<(Pid, i32)> = v.blamed.iter().map(|b| (b.pid, b.fd)).collect();
        assert_eq!(blamed, [(10, 7), (10, 4)]);
        // The original was closed; another process's fd 4 (a forked child
        // that exited) is not it.
        let mut fork = step("fork", 11, 4, 100, 60);
        fork.from_pid = Some(10);
        let childs = Closed {
            origin: origin(vec![step("accept", 10, 4, 100, 50), fork]),
            at_ms: 300,
            how: "exit",
        };
        let closed = Closed {
            origin: original.clone(),
            at_ms: 1101,
            how: "close",
        };
        let v = judge(&[(10, 7, &dupd)], &[childs, closed]);
        assert_eq!(v.cause, Cause::DupCopyKept);
        assert_eq!(
            v.fact,
            "traced: fd 7 of pid 10 was made by dup() at server.c:80 (serve) in pid 10 from fd 4; \
             fd 4 was closed 1.0 s later; pid 10 never closed fd 7"
        );
        // Neither held nor seen closed (closed before tracing started):
        // nothing said about it.
        let v = judge(&[(10, 7, &dupd)], &[]);
        assert_eq!(
            v.fact,
            "traced: fd 7 of pid 10 was made by dup() at server.c:80 (serve) in pid 10 from fd 4; \
             pid 10 never closed fd 7"
        );
    }

    #[test]
    fn a_forked_worker_that_passed_the_connection_on_leaves_the_parent_blamed_for_the_fork() {
        // Pid 10 accepted fd 4 and forked worker 30, which sent its fd 4 to
        // pid 20 and exited; pid 20 closed what it received. Pid 10 passed
        // nothing: it kept its copy after the fork.
        let mut fork = step("fork", 30, 4, 101, 60);
        fork.from_pid = Some(10);
        let accepted = step("accept4", 10, 4, 100, 50);
        let send = step("sendmsg", 30, 4, 102, 70);
        let mut recv = step("recvmsg", 20, 7, 103, 90);
        recv.from_pid = Some(30);
        recv.from_fd = Some(4);
        let received = Closed {
            origin: origin(vec![accepted.clone(), fork.clone(), send, recv]),
            at_ms: 104,
            how: "close",
        };
        let worker = Closed {
            origin: origin(vec![accepted.clone(), fork]),
            at_ms: 105,
            how: "exit",
        };
        let parent = origin(vec![accepted]);
        let v = judge(&[(10, 4, &parent)], &[received, worker]);
        assert_eq!(v.cause, Cause::ForkParentKept, "{}", v.fact);
        assert_eq!(
            v.blamed,
            [Blame {
                pid: 10,
                fd: 4,
                tid: None
            }]
        );
        assert_eq!(
            v.fact,
            "traced: fd 4 of pid 10 was made by accept4() at server.c:50 (serve) in pid 10; \
             fork() at server.c:60 (serve) gave pid 30 a copy, which it dropped by exiting 4 ms \
             later; pid 10 never closed fd 4"
        );
    }

    #[test]
    fn a_copy_received_from_the_holder_is_no_fork_child_of_it() {
        // Pid 10 sent a dup of its fd 4 (fd 5) to pid 20 and closed the dup;
        // pid 20 received it at fd 4 and closed it. The copy pid 10 holds
        // was neither passed nor duplicated, and no fork handed it over.
        let accepted = step("accept4", 10, 4, 100, 50);
        let mut dup = step("dup", 10, 5, 101, 60);
        dup.from_fd = Some(4);
        let send = step("sendmsg", 10, 5, 102, 70);
        let mut recv = step("recvmsg", 20, 4, 103, 90);
        recv.from_pid = Some(10);
        recv.from_fd = Some(5);
        let dup_closed = Closed {
            origin: origin(vec![accepted.clone(), dup.clone()]),
            at_ms: 102,
            how: "close",
        };
        let received = Closed {
            origin: origin(vec![accepted.clone(), dup, send, recv]),
            at_ms: 104,
            how: "close",
        };
        let held = origin(vec![accepted]);
        let v = judge(&[(10, 4, &held)], &[dup_closed, received]);
        assert_eq!(v.cause, Cause::NeverClosed, "{}", v.fact);
        assert_eq!(
            v.fact,
            "traced: fd 4 of pid 10 came from accept4() at server.c:50 (serve) in pid 10, and \
             pid 10 never closed it"
        );
    }

    #[test]
    fn a_copy_passed_twice_names_the_last_sender() {
        // 10 -> 20 -> 30: pid 30 kept what pid 20 passed it.
        let accepted = step("accept4", 10, 4, 100, 50);
        let send1 = step("sendmsg", 10, 4, 101, 70);
        let mut recv1 = step("recvmsg", 20, 6, 102, 90);
        recv1.from_pid = Some(10);
        recv1.from_fd = Some(4);
        let send2 = step("sendmsg", 20, 6, 103, 71);
        let mut recv2 = step("recvmsg", 30, 8, 104, 91);
        recv2.from_pid = Some(20);
        recv2.from_fd = Some(6);
        let at30 = origin(vec![accepted, send1, recv1, send2, recv2]);
        let v = judge(&[(30, 8, &at30)], &[]);
        assert_eq!(v.cause, Cause::PassedFdKept);
        assert_eq!(
            v.fact,
            "traced: pid 30 got its copy (fd 8) by recvmsg() at server.c:91 (serve) in pid 30, \
             passed by sendmsg() at server.c:71 (serve) in pid 20 (its fd 6, made by accept4() at \
             server.c:50 (serve) in pid 10); pid 30 never closed fd 8"
        );
    }

    #[test]
    fn the_senders_copy_is_told_by_its_pid_and_fd_together() {
        // Pid 10 passed its fd 4; pid 20 received it at fd 4 too and kept
        // it; pid 10 closed its own. Pid 10's forked child (fd 4 too)
        // exited before: not the sender's copy.
        let accepted = step("accept4", 10, 4, 100, 50);
        let send = step("sendmsg", 10, 4, 101, 70);
        let mut recv = step("recvmsg", 20, 4, 102, 90);
        recv.from_pid = Some(10);
        recv.from_fd = Some(4);
        let received = origin(vec![accepted.clone(), send, recv]);
        let mut fork = step("fork", 11, 4, 100, 60);
        fork.from_pid = Some(10);
        let child = Closed {
            origin: origin(vec![accepted.clone(), fork]),
            at_ms: 100,
            how: "exit",
        };
        let sender = Closed {
            origin: origin(vec![accepted]),
            at_ms: 103,
            how: "close",
        };
        let v = judge(&[(20, 4, &received)], &[child, sender]);
        assert_eq!(v.cause, Cause::PassedFdKept);
        assert_eq!(
            v.fact,
            "traced: pid 20 got its copy (fd 4) by recvmsg() at server.c:90 (serve) in pid 20, \
             passed by sendmsg() at server.c:70 (serve) in pid 10 (its fd 4, made by accept4() at \
             server.c:50 (serve) in pid 10); pid 10 closed its copy 2 ms later; pid 20 never \
             closed fd 4"
        );
    }

    // ---------------------------------------------------------- apply

    use super::super::finding::{Alternative, Holder, SocketInfo};
    use super::super::test_host::socket_info;

    const INODE: u64 = 5000;

    fn holder(pid: Pid, fd: i32, tid: Option<Pid>) -> Holder {
        Holder {
            pid,
            ppid: 1,
            comm: "server".into(),
            fd,
            cloexec: Some(false),
            tid,
            origin: None,
        }
    }

    /// An inferred finding, as classify leaves it before `apply`.
    fn inferred(holders: Vec<Holder>, blamed: &[(Pid, i32)], cause: Cause) -> Finding {
        let blamed: Vec<Blame> = blamed
            .iter()
            .map(|&(pid, fd)| Blame {
                pid,
                fd,
                tid: holders
                    .iter()
                    .find(|h| (h.pid, h.fd) == (pid, fd))
                    .and_then(|h| h.tid),
            })
            .collect();
        Finding {
            socket: SocketInfo {
                inode: INODE,
                ..socket_info()
            },
            holders,
            mitigation: Mitigation::Commands {
                close: blamed.first().copied(),
                ns_pid: None,
            },
            blamed,
            cause,
            alternatives: Vec::new(),
            evidence: vec![Line::from("the inferred evidence")],
            fix: Line::from(fixes::fix(cause, false)),
            allowed: None,
            basis: Basis::Inferred,
        }
    }

    fn facts(origins: Vec<((Pid, i32), Origin)>, closed: Vec<Closed>) -> Facts {
        let mut f = Facts::default();
        f.origins.extend(origins);
        if !closed.is_empty() {
            f.closed.insert(INODE, closed);
        }
        f
    }

    fn blamed_of(f: &Finding) -> Vec<(Pid, i32, Option<Pid>)> {
        f.blamed.iter().map(|b| (b.pid, b.fd, b.tid)).collect()
    }

    #[test]
    fn a_traced_cause_replaces_the_inferred_one_with_its_own_fix_and_fact_first() {
        // Inferred never-closed; the history shows a fork whose child closed.
        let (parent, child) = forked_child_closed();
        let mut findings = [inferred(
            vec![holder(10, 4, None)],
            &[(10, 4)],
            Cause::NeverClosed,
        )];
        apply(
            &mut findings,
            &facts(vec![((10, 4), parent.clone())], vec![child]),
        );
        let f = &findings[0];
        assert_eq!(f.basis, Basis::Traced);
        assert_eq!(f.cause, Cause::ForkParentKept);
        assert_eq!(&*f.fix, fixes::fix(Cause::ForkParentKept, false));
        assert!(f.alternatives.is_empty());
        assert_eq!(f.holders[0].origin.as_deref(), Some(&parent));
        assert_eq!(blamed_of(f), [(10, 4, None)]);
        assert_eq!(
            f.evidence.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            [
                "traced: fd 4 of pid 10 was made by accept() at server.c:50 (serve) in pid 10; \
                 fork() at server.c:60 (serve) gave pid 11 a copy, which it closed 4 ms later; \
                 pid 10 never closed fd 4",
                "the inferred evidence",
            ]
        );
    }

    #[test]
    fn a_history_that_agrees_drops_the_alternatives_and_their_hedged_fixes() {
        let never = origin(vec![step("accept4", 10, 4, 100, 50)]);
        let mut f = inferred(vec![holder(10, 4, None)], &[(10, 4)], Cause::NeverClosed);
        f.alternatives = vec![Alternative {
            cause: Cause::ForkParentKept,
            why: "it forks".into(),
        }];
        f.fix = Line::from(fixes::hedged(Cause::NeverClosed, &[Cause::ForkParentKept]));
        let mut findings = [f];
        apply(&mut findings, &facts(vec![((10, 4), never)], vec![]));
        let f = &findings[0];
        assert_eq!((f.basis, f.cause), (Basis::Traced, Cause::NeverClosed));
        assert!(f.alternatives.is_empty());
        assert_eq!(&*f.fix, fixes::fix(Cause::NeverClosed, false));
    }

    #[test]
    fn a_history_that_agrees_with_a_decided_cause_keeps_its_fix() {
        // An inetd handler given the connection on stdin: the inferred rules
        // already decided never-closed, with the stdio handler's own fix.
        let mut fork = step("fork", 20, 4, 101, 60);
        fork.from_pid = Some(10);
        let handler = origin(vec![
            step("accept4", 10, 4, 100, 50),
            fork,
            step("execve", 20, 0, 102, 70),
        ]);
        let mut f = inferred(vec![holder(20, 0, None)], &[(20, 0)], Cause::NeverClosed);
        f.fix = Line::from(fixes::STDIO_HANDLER);
        let mut findings = [f];
        apply(&mut findings, &facts(vec![((20, 0), handler)], vec![]));
        let f = &findings[0];
        assert_eq!((f.basis, f.cause), (Basis::Traced, Cause::NeverClosed));
        assert_eq!(&*f.fix, fixes::STDIO_HANDLER);
    }

    #[test]
    fn a_holder_without_history_leaves_the_inferred_verdict_and_shows_the_origins_known() {
        // Only the child's copy was traced (the parent's was made before
        // tracing started).
        let mut fork = step("fork", 11, 4, 101, 60);
        fork.from_pid = Some(10);
        let child = origin(vec![fork]);
        let before = inferred(
            vec![holder(10, 4, None), holder(11, 4, None)],
            &[(10, 4), (11, 4)],
            Cause::ForkParentKept,
        );
        let mut findings = [before.clone()];
        apply(
            &mut findings,
            &facts(vec![((11, 4), child.clone())], vec![]),
        );
        let f = &findings[0];
        assert_eq!(f.holders[0].origin, None);
        assert_eq!(f.holders[1].origin.as_deref(), Some(&child));
        let mut expected = before;
        expected.holders[1].origin = Some(Box::new(child));
        assert_eq!(*f, expected);
        assert_eq!(f.basis, Basis::Inferred);
    }

    #[test]
    fn a_blamed_copy_in_a_threads_own_table_keeps_its_thread() {
        // Pid 10 passed its fd 7 to pid 20, whose thread 21 (own fd table)
        // received it at fd 7 too; both kept theirs.
        let mut send = step("sendmsg", 10, 7, 101, 70);
        send.fd = 7;
        let mut recv = step("recvmsg", 20, 7, 102, 90);
        recv.tid = 21;
        recv.from_pid = Some(10);
        recv.from_fd = Some(7);
        let sender = origin(vec![step("accept4", 10, 7, 100, 50)]);
        let received = origin(vec![step("accept4", 10, 7, 100, 50), send, recv]);
        let mut findings = [inferred(
            vec![holder(10, 7, None), holder(20, 7, Some(21))],
            &[(10, 7), (20, 7)],
            Cause::PassedFdKept,
        )];
        apply(
            &mut findings,
            &facts(vec![((10, 7), sender), ((20, 7), received)], vec![]),
        );
        let f = &findings[0];
        assert_eq!(f.basis, Basis::Traced);
        // The receiver first, in its thread; then the sender that kept its copy.
        assert_eq!(blamed_of(f), [(20, 7, Some(21)), (10, 7, None)]);
        let Mitigation::Commands { close, .. } = &f.mitigation else {
            panic!("{:?}", f.mitigation)
        };
        assert_eq!(
            *close,
            Some(Blame {
                pid: 20,
                fd: 7,
                tid: Some(21)
            })
        );
    }

    #[test]
    fn a_socket_in_flight_is_traced_to_its_send_and_keeps_its_cause() {
        // The example of causes.md: sent by pid 1234, which closed its own
        // copy; nobody received it.
        let mut send = step("sendmsg", 1234, 6, 101, 75);
        send.stack[1].function = Some("send_fd".into());
        let mut take = step("accept4", 1234, 6, 101, 55);
        take.stack[1].function = Some("take".into());
        let other = Closed {
            origin: origin(vec![step("accept4", 99, 6, 90, 55)]),
            at_ms: 95,
            how: "exit",
        };
        let own = Closed {
            origin: origin(vec![take.clone()]),
            at_ms: 101,
            how: "close",
        };
        let mut fs = Facts::default();
        fs.in_flight.insert(INODE, origin(vec![take, send]));
        fs.closed.insert(INODE, vec![other, own]);
        let mut findings = [inferred(vec![], &[], Cause::NoVisibleHolder)];
        apply(&mut findings, &fs);
        let f = &findings[0];
        assert_eq!((f.basis, f.cause), (Basis::Traced, Cause::NoVisibleHolder));
        assert_eq!(&*f.fix, fixes::fix(Cause::NoVisibleHolder, false));
        assert_eq!(
            &*f.evidence[0],
            "traced: in flight: sendmsg() at server.c:75 (send_fd) in pid 1234 passed it (its fd 6, \
             made by accept4() at server.c:55 (take) in pid 1234) and nobody received it: the \
             message waits in a unix socket's queue, holding the connection open; pid 1234 closed \
             its own copy 0 ms later"
        );
        assert_eq!(&*f.evidence[1], "the inferred evidence");
        // Not recorded in flight: nothing to add.
        let mut findings = [inferred(vec![], &[], Cause::NoVisibleHolder)];
        apply(&mut findings, &Facts::default());
        assert_eq!(findings[0].basis, Basis::Inferred);
        assert_eq!(findings[0].evidence.len(), 1);
    }
}
