//! The rules: for one CLOSE_WAIT socket and its holders, whose copy is the
//! forgotten one and which mechanism made it. See docs/causes.md.

use super::context::{Ctx, Memo};
use super::finding::{Blame, Cause, Line};
use crate::graph::HeldBy;
use crate::model::{Pid, TcpSocket};

/// How one holder came to hold its copy.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// Accepted it (holds the listener), or made it (outgoing connection).
    Owner,
    /// Got it from an owner through fork alone (a worker handed the connection),
    /// or as its stdin/stdout across exec (inetd, CGI): its own to close.
    Handler,
    /// Inherited across exec only because the fd lacked O_CLOEXEC.
    ExecInherited { exec_pid: Pid },
    /// No ancestry links it to the owners: the fd was passed to it.
    Passed,
}

pub struct Verdict {
    pub cause: Cause,
    pub blamed: Vec<Blame>,
    pub evidence: Vec<Line>,
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
    let role_of = |pid: Pid| {
        ctx.role(
            pid,
            fds_of(holders, pid),
            owners,
            creator,
            holders,
            sock.inode,
        )
    };

    let passed: Vec<Pid> = roots
        .iter()
        .copied()
        .filter(|r| role_of(*r) == Role::Passed)
        .collect();
    if !passed.is_empty() {
        for r in &passed {
            let line = ctx.passed_evidence(*r, owners, creator);
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
        .filter(|p| matches!(role_of(*p), Role::ExecInherited { .. }))
        .collect();
    if !inherited.is_empty() {
        for p in &inherited {
            if let Role::ExecInherited { exec_pid } = role_of(*p) {
                for line in ctx.exec_evidence(*p, exec_pid, holders) {
                    evidence.push(memo.line(&line));
                }
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
        return verdict(
            Cause::InheritedNoCloexec,
            holders,
            &[&inherited, &rest],
            evidence,
        );
    }

    // Every root is an owner or a handler; the first root decides, the others
    // (rare: two unrelated owners) are blamed after it.
    let mut best: Option<(Cause, Vec<Pid>)> = None;
    let mut blamed_order: Vec<Pid> = Vec::new();
    for r in &roots {
        let below: Vec<Pid> = pids
            .iter()
            .copied()
            .filter(|p| p != r && ctx.graph.is_ancestor(*r, *p))
            .collect();
        let n_fds = fds_of(holders, *r).len();
        let cause = if !below.is_empty() {
            evidence.push(memo.fmt(format_args!(
                "{} forked and kept its copy; {} still hold(s) the child's copy",
                ctx.name(*r),
                ctx.names(&below)
            )));
            Cause::ForkParentKept
        } else if n_fds > 1 {
            evidence.push(memo.fmt(format_args!(
                "{} holds the socket at {} fds ({}): dup()/dup2()/F_DUPFD made extra references and close() drops only one",
                ctx.name(*r),
                n_fds,
                join_fds(&fds_of(holders, *r))
            )));
            Cause::DupCopyKept
        } else if owners.contains(r) {
            // Depends on the owner alone: thousands of its connections share it.
            let (cause, line) = memo.lone_owner(*r, || lone_owner(ctx, *r, owners));
            evidence.push(line);
            cause
        } else {
            evidence.push(memo.line(&never_closed_evidence(ctx, *r, owners)));
            Cause::NeverClosed
        };
        blamed_order.push(*r);
        if best
            .as_ref()
            .is_none_or(|(c, _)| precedence(cause) < precedence(*c))
        {
            best = Some((cause, vec![*r]));
        }
    }
    let (cause, first) = best.unwrap_or((Cause::NeverClosed, Vec::new()));
    let rest: Vec<Pid> = blamed_order
        .into_iter()
        .filter(|p| !first.contains(p))
        .collect();
    verdict(cause, holders, &[&first, &rest], evidence)
}

/// An owner holding a connection at one fd, no descendant holding it: it
/// forks (its children closed their copies) or it never closed it.
fn lone_owner(ctx: &Ctx, r: Pid, owners: &[Pid]) -> (Cause, String) {
    let signs = ctx.fork_signs(r);
    if signs.is_empty() {
        return (Cause::NeverClosed, never_closed_evidence(ctx, r, owners));
    }
    (
        Cause::ForkParentKept,
        format!(
            "{} accepted the connection and forks: {}; its children have closed their copies or exited",
            ctx.name(r),
            signs.join("; ")
        ),
    )
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
        for fd in fds_of(holders, *pid) {
            let b = Blame { pid: *pid, fd };
            if !blamed.contains(&b) {
                blamed.push(b);
            }
        }
    }
    Verdict {
        cause,
        blamed,
        evidence,
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
