//! The rules: for one CLOSE_WAIT socket and its holders, whose copy is the
//! forgotten one and which mechanism made it. See docs/causes.md.

use super::context::{Ctx, LoneOwnerText, Memo};
use super::finding::{Alternative, Blame, Cause, Line};
use crate::graph::HeldBy;
use crate::model::{Pid, TcpSocket};

/// How one holder came to hold its copy.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// Accepted it (holds the listener), or made it (outgoing connection).
    Owner,
    /// Got it from an owner through fork alone (a worker handed the connection): its own to close.
    Handler,
    /// Handed it as stdin/stdout/stderr across exec by the owner `from`
    /// that accepted it (inetd, CGI, socat EXEC): its own to close.
    StdioHandler { from: Pid },
    /// Holds it on stdio only, across an exec below a handler, or re-parented
    /// away from the owners: a job that inherited a handler's stdio.
    StdioJob { exec_pid: Pid },
    /// Inherited across exec only because the fd lacked O_CLOEXEC.
    ExecInherited { exec_pid: Pid },
    /// Every copy it holds has FD_CLOEXEC, so none crossed its exec, and it
    /// does not hold the listener: it received or took the fd after its exec.
    CopiedAfterExec,
    /// No ancestry links it to the owners: the fd was passed to it.
    Passed,
}

pub struct Verdict {
    pub cause: Cause,
    pub blamed: Vec<Blame>,
    pub evidence: Vec<Line>,
    /// Causes one look cannot rule out; empty when the evidence decides.
    pub alternatives: Vec<Alternative>,
    /// A fix worded for this case, instead of the cause's usual one.
    pub fix: Option<&'static str>,
}

/// Judge a socket that has at least one holder.
pub fn judge(ctx: &Ctx, memo: &mut Memo, sock: &TcpSocket, holders: &[HeldBy]) -> Verdict {
    let pids = distinct_pids(holders);
    let owned = memo.owners(ctx, sock);
    let owners = &owned.pids;
    let mut evidence = owned.evidence.clone();
    let roots: Vec<Pid> = pids
        .iter()
        .copied()
        .filter(|h| !pids.iter().any(|o| o != h && ctx.graph.is_ancestor(*o, *h)))
        .collect();
    let creator = (owners.is_empty()).then(|| ctx.oldest(&roots)).flatten();
    let roles: Vec<(Pid, Role)> = pids
        .iter()
        .map(|p| {
            let fds = fds_of(holders, *p);
            (*p, ctx.role(*p, &fds, owners, creator, holders, sock))
        })
        .collect();
    let role_of = |pid: Pid| {
        roles
            .iter()
            .find(|(p, _)| *p == pid)
            .map_or(Role::Owner, |(_, r)| r.clone())
    };

    let passed: Vec<Pid> = pids
        .iter()
        .copied()
        .filter(|p| match role_of(*p) {
            Role::Passed => roots.contains(p),
            Role::CopiedAfterExec => true,
            _ => false,
        })
        .collect();
    if !passed.is_empty() {
        for r in &passed {
            let line = if role_of(*r) == Role::CopiedAfterExec {
                format!(
                    "{} runs another program than the process it got its other fds from, yet its copy has FD_CLOEXEC: no copy with that flag crosses an exec, and it does not hold the listener: it received the fd after its exec (SCM_RIGHTS) or took it (pidfd_getfd)",
                    ctx.name(*r)
                )
            } else {
                ctx.passed_evidence(*r, owners, creator)
            };
            evidence.push(memo.line(&line));
        }
        let rest: Vec<Pid> = pids
            .iter()
            .copied()
            .filter(|p| !passed.contains(p))
            .collect();
        return verdict(Cause::PassedFdKept, holders, &[&passed, &rest], evidence);
    }

    let inherited: Vec<Pid> = pids
        .iter()
        .copied()
        .filter(|p| {
            matches!(
                role_of(*p),
                Role::ExecInherited { .. } | Role::StdioJob { .. }
            )
        })
        .collect();
    if !inherited.is_empty() {
        let mut alternatives = Vec::new();
        let mut stdio_jobs = 0;
        for p in &inherited {
            match role_of(*p) {
                Role::ExecInherited { exec_pid } => {
                    for line in ctx.exec_evidence(*p, exec_pid, holders) {
                        evidence.push(memo.line(&line));
                    }
                    if let Some(why) = handed_on_purpose(ctx, *p, holders, owners, sock) {
                        alternatives.push(Alternative {
                            cause: Cause::NeverClosed,
                            why: memo.line(&why),
                        });
                    }
                }
                Role::StdioJob { exec_pid } => {
                    stdio_jobs += 1;
                    evidence
                        .push(memo.line(&ctx.stdio_job_evidence(*p, exec_pid, holders, owners)));
                }
                _ => {}
            }
        }
        let rest: Vec<Pid> = roots
            .iter()
            .copied()
            .filter(|p| !inherited.contains(p))
            .collect();
        if !rest.is_empty() {
            evidence.push(memo.fmt(format_args!(
                "the owner {} still holds its copy too",
                ctx.names(&rest)
            )));
        }
        alternatives.dedup();
        alternatives.truncate(1);
        let mut v = verdict(
            Cause::InheritedNoCloexec,
            holders,
            &[&inherited, &rest],
            evidence,
        );
        v.alternatives = alternatives;
        if stdio_jobs == inherited.len() {
            v.fix = Some(super::fixes::STDIO_JOB);
        }
        return v;
    }

    // Every root is an owner or a handler; the first root decides, the others
    // (rare: two unrelated owners) are blamed after it.
    let mut best: Option<RootVerdict> = None;
    let mut blamed_order: Vec<Pid> = Vec::new();
    for r in &roots {
        let below: Vec<Pid> = pids
            .iter()
            .copied()
            .filter(|p| p != r && ctx.graph.is_ancestor(*r, *p))
            .collect();
        let fds = fds_of(holders, *r);
        let role = role_of(*r);
        let mut alternatives = Vec::new();
        let mut fix = None;
        let cause = if !below.is_empty() {
            evidence.push(memo.fmt(format_args!(
                "{} forked and kept its copy; {} still hold(s) the child's copy",
                ctx.name(*r),
                ctx.names(&below)
            )));
            Cause::ForkParentKept
        } else if fds.iter().all(|fd| *fd <= 2)
            && (fds.len() > 1 || matches!(role, Role::StdioHandler { .. }))
        {
            // dup2() onto stdio is how a handler is given a connection, not a
            // forgotten copy: one use of it, never closed.
            evidence.push(memo.line(&ctx.stdio_evidence(*r, &fds, &role, owners)));
            fix = Some(super::fixes::STDIO_HANDLER);
            Cause::NeverClosed
        } else if fds.len() > 1 {
            evidence.push(memo.fmt(format_args!(
                "{} holds the socket at {} fds ({}): dup()/dup2()/F_DUPFD made extra references and close() drops only one",
                ctx.name(*r),
                fds.len(),
                join_fds(&fds)
            )));
            Cause::DupCopyKept
        } else if owners.contains(r)
            || (role == Role::Owner && !owners.is_empty() && ctx.holds_listener_of(*r, sock))
        {
            // Depends on the owner alone: thousands of its connections share it.
            let v = memo.lone_owner(*r, || lone_owner(ctx, *r));
            evidence.extend(v.evidence.iter().cloned());
            alternatives = v.alternatives;
            v.cause
        } else {
            evidence.push(memo.line(&never_closed_evidence(ctx, *r, owners)));
            Cause::NeverClosed
        };
        blamed_order.push(*r);
        if best
            .as_ref()
            .is_none_or(|(c, ..)| precedence(cause) < precedence(*c))
        {
            best = Some((cause, vec![*r], alternatives, fix));
        }
    }
    let (cause, first, alternatives, fix) =
        best.unwrap_or((Cause::NeverClosed, Vec::new(), Vec::new(), None));
    let rest: Vec<Pid> = blamed_order
        .into_iter()
        .filter(|p| !first.contains(p))
        .collect();
    let mut v = verdict(cause, holders, &[&first, &rest], evidence);
    v.alternatives = alternatives;
    v.fix = fix;
    v
}

/// A root's cause, the root, the alternatives and a worded fix.
type RootVerdict = (Cause, Vec<Pid>, Vec<Alternative>, Option<&'static str>);

/// An exec'd holder at fd 3 that the owner that started it no longer holds:
/// socket activation with Accept=yes hands each connection over as fd 3
/// (LISTEN_FDS=1) on purpose, which looks the same from outside.
fn handed_on_purpose(
    ctx: &Ctx,
    pid: Pid,
    holders: &[HeldBy],
    owners: &[Pid],
    sock: &TcpSocket,
) -> Option<String> {
    let fds = fds_of(holders, pid);
    let parent = ctx.graph.parent(pid)?;
    let owner_closed = !holders.iter().any(|h| owners.contains(&h.pid));
    if ctx.holds_listener_of(pid, sock) {
        return Some(format!(
            "{} holds the listener too: if it was handed the listener on purpose (socket activation, LISTEN_FDS) and accepted this connection itself with accept() without SOCK_CLOEXEC, it is its own copy and it never closed it; whether its parent ever accepted (strace -f -e trace=accept,accept4) tells them apart",
            ctx.name(pid)
        ));
    }
    (fds == [3] && owners.contains(&parent) && owner_closed).then(|| {
        format!(
            "{} was started by {}, which accepted the connection and closed its own copy, and holds it at fd 3: if it was handed over on purpose (socket activation with Accept=yes passes it as fd 3 with LISTEN_FDS=1), it is its own copy and it never closed it; LISTEN_PID={} in its environment (/proc/{}/environ) tells them apart",
            ctx.name(pid),
            ctx.name(parent),
            pid,
            pid
        )
    })
}

/// An owner holding a connection at one fd, no descendant holding it: it
/// forks (its children closed their copies or exited) or it never closed it.
fn lone_owner(ctx: &Ctx, r: Pid) -> LoneOwnerText {
    let ev = ctx.fork_evidence(r);
    let name = ctx.name(r);
    if !ev.decisive.is_empty() {
        return LoneOwnerText {
            cause: Cause::ForkParentKept,
            evidence: vec![format!(
                "{name} accepted the connection and forks per connection now: {}; the child given this one has closed its copy or exited",
                ev.decisive.join("; ")
            )],
            alternatives: Vec::new(),
        };
    }
    if !ev.own.is_empty() {
        return LoneOwnerText {
            cause: Cause::ForkParentKept,
            evidence: vec![format!(
                "{name} accepted the connection and forks: {}; no live child holds a connection of it now",
                ev.own.join("; ")
            )],
            alternatives: vec![(
                Cause::NeverClosed,
                format!(
                    "if {name} never handed this connection to a child (its children ran other work), it never closed it; a live forked child holding one of its connections, or `strace -f -e trace=accept4,fork,clone -p {r}` while a client connects and closes, tells them apart"
                ),
            )],
        };
    }
    let mut evidence = vec![format!(
        "{name} accepted it itself, shows no live sign of forking, and never called close()"
    )];
    evidence.extend(ev.inherited.iter().cloned());
    evidence.extend(ev.weak.iter().cloned());
    let alternatives = if ev.inherited.is_empty() {
        Vec::new()
    } else {
        vec![(
            Cause::ForkParentKept,
            format!(
                "if {name} forks a child per connection and every child has exited, the parent kept its copy; a live forked child holding one of its connections, or `strace -f -e trace=accept4,fork,clone -p {r}` while a client connects and closes, tells them apart"
            ),
        )]
    };
    LoneOwnerText {
        cause: Cause::NeverClosed,
        evidence,
        alternatives,
    }
}

fn never_closed_evidence(ctx: &Ctx, r: Pid, owners: &[Pid]) -> String {
    if owners.contains(&r) {
        format!(
            "{} accepted it itself, shows no sign of forking, and never called close()",
            ctx.name(r)
        )
    } else if owners.is_empty() {
        format!("{} made this connection (no process listens on its local port) and never called close()", ctx.name(r))
    } else {
        format!(
            "{} was handed the connection by {} and never called close()",
            ctx.name(r),
            ctx.names(owners)
        )
    }
}

/// Lower wins when roots disagree: the mechanism whose fix removes the leak.
fn precedence(c: Cause) -> u8 {
    match c {
        Cause::PassedFdKept => 0,
        Cause::InheritedNoCloexec => 1,
        Cause::ForkParentKept => 2,
        Cause::DupCopyKept => 3,
        Cause::NeverClosed => 4,
        Cause::NoVisibleHolder => 5,
    }
}

/// Blame every fd of the listed pids, tiers in order, each pid once.
fn verdict(cause: Cause, holders: &[HeldBy], tiers: &[&[Pid]], evidence: Vec<Line>) -> Verdict {
    let mut blamed = Vec::new();
    for pid in tiers.iter().flat_map(|t| t.iter()) {
        for h in holders.iter().filter(|h| h.pid == *pid) {
            let b = Blame {
                pid: *pid,
                fd: h.fd,
                tid: h.tid,
            };
            if !blamed.contains(&b) {
                blamed.push(b);
            }
        }
    }
    Verdict {
        cause,
        blamed,
        evidence,
        alternatives: Vec::new(),
        fix: None,
    }
}

pub fn distinct_pids(holders: &[HeldBy]) -> Vec<Pid> {
    let mut pids: Vec<Pid> = holders.iter().map(|h| h.pid).collect();
    pids.dedup();
    pids
}

pub fn fds_of(holders: &[HeldBy], pid: Pid) -> Vec<i32> {
    holders
        .iter()
        .filter(|h| h.pid == pid)
        .map(|h| h.fd)
        .collect()
}

pub fn join_fds(fds: &[i32]) -> String {
    fds.iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
