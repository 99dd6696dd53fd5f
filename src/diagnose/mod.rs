//! From a snapshot to findings: who holds each CLOSE_WAIT socket, whose copy is
//! the forgotten one, why, and the fix. Pure code: no OS access.

mod addr;
mod classify;
mod context;
pub mod coverage;
pub mod escaped;
pub mod finding;
mod fixes;
mod group;
mod listeners;
pub mod mitigation;
pub mod origin;
pub mod scope;
pub mod tally;
#[cfg(test)]
mod test_host;
mod unheld;

pub use finding::*;
pub use mitigation::Mitigation;
pub use scope::Scope;
pub use tally::{tally, Tally};

use crate::model::{FastMap, Pid, Snapshot, SocketKey, TcpSocket, TcpState};
use context::{Ctx, Memo};
use std::collections::{BTreeMap, HashSet};

/// Diagnose every CLOSE_WAIT socket of `snap` that falls in `scope`.
pub fn diagnose(snap: &Snapshot, scope: &Scope) -> Report {
    diagnose_traced(snap, scope, None)
}

/// The same, with what `--trace` recorded: causes read from the history
/// where every holder's copy was seen made (`origin.rs`).
pub fn diagnose_traced(
    snap: &Snapshot,
    scope: &Scope,
    trace: Option<&crate::trace::Facts>,
) -> Report {
    let ctx = Ctx::of(snap);
    let resolved = scope::Resolved::new(scope, snap, &ctx.graph);
    let Picked {
        todo,
        by_state,
        transient: n_transient,
        sending: n_sending,
    } = pick(&ctx, &resolved);
    let mut findings = judge_all(&ctx, &todo);
    drop(todo);
    if let Some(facts) = trace {
        origin::apply(&mut findings, facts);
    }
    add_shared_evidence(&ctx, &mut findings);
    let groups = group::groups(&ctx, &mut findings);
    let processes = group::processes(&ctx, &findings);
    Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool::this(),
        host: Host::of(&snap.meta),
        summary: Summary {
            still_sending: n_sending,
            ..summary(&findings, &groups, n_transient, by_state)
        },
        groups,
        findings,
        processes,
        scan: ScanInfo {
            incomplete: coverage::gaps(snap, scope, &resolved),
            ..scan_info(snap, scope)
        },
        check: None,
        trace: trace.map(|t| t.info.clone()),
    }
}

/// The CLOSE_WAIT sockets in scope to judge, and the counts the summary
/// gives of the others: by state, closed within the settle window, still
/// sending.
struct Picked<'s> {
    todo: Vec<&'s TcpSocket>,
    by_state: BTreeMap<TcpState, usize>,
    transient: usize,
    sending: usize,
}

fn pick<'s>(ctx: &Ctx<'s>, resolved: &scope::Resolved) -> Picked<'s> {
    let snap = ctx.snap;
    let transient: rustc_hash::FxHashSet<SocketKey> = snap
        .settle
        .as_ref()
        .map(|s| s.transient.iter().copied().collect())
        .unwrap_or_default();
    let sending: rustc_hash::FxHashSet<SocketKey> = snap
        .settle
        .as_ref()
        .map(|s| s.still_sending.iter().copied().collect())
        .unwrap_or_default();
    let mut picked = Picked {
        todo: Vec::new(),
        by_state: BTreeMap::new(),
        transient: 0,
        sending: 0,
    };
    for s in &snap.sockets {
        if !resolved.socket_in(s, &unheld_listeners(ctx, s)) {
            continue;
        }
        *picked.by_state.entry(s.state).or_default() += 1;
        if s.state != TcpState::CloseWait {
            continue;
        }
        if transient.contains(&s.key()) {
            picked.transient += 1;
            continue;
        }
        if sending.contains(&s.key()) {
            picked.sending += 1;
            continue;
        }
        picked.todo.push(s);
    }
    for n in snap.namespaces.iter().filter(|n| !n.unkept.is_empty()) {
        if resolved.whole_namespace_in(n.inode) {
            for (state, count) in &n.unkept {
                *picked.by_state.entry(*state).or_default() += count;
            }
        }
    }
    picked
}

/// Listeners an unheld CLOSE_WAIT socket waits on (they place it in a pid scope).
fn unheld_listeners(ctx: &Ctx, s: &TcpSocket) -> Vec<crate::model::Inode> {
    if s.state != TcpState::CloseWait || (s.inode != 0 && ctx.graph.is_held(s.inode)) {
        return Vec::new();
    }
    ctx.listeners.of(s).iter().map(|l| l.inode).collect()
}

/// Sockets are judged independently: spread them over the cores. Each
/// thread fills its own chunks of the result, so findings are never held twice.
fn judge_all(ctx: &Ctx, todo: &[&TcpSocket]) -> Vec<Finding> {
    if todo.len() < 512 {
        let mut memo = Memo::default();
        return todo
            .iter()
            .map(|s| judge_socket(ctx, s, &mut memo))
            .collect();
    }
    let mut slots: Vec<Option<Finding>> = Vec::new();
    slots.resize_with(todo.len(), || None);
    crate::par::spread_mut(&mut slots, 256, 0, |chunks| {
        let mut memo = Memo::default();
        for (at, out) in chunks {
            for (s, slot) in todo[at..].iter().zip(out) {
                *slot = Some(judge_socket(ctx, s, &mut memo));
            }
        }
    });
    // Every slot is filled; map_while (unlike flatten) lets collect reuse
    // the slots' allocation in place (Option<Finding> is a Finding's size).
    slots.into_iter().map_while(|f| f).collect()
}

/// What a tally counts of a socket's finding: its first blamed process and
/// its cause, by the same rules as `judge_socket` (the same calls), without
/// the rest of the finding (evidence and fix lines, holders, mitigation):
/// `serve` and `watch` judge tens of thousands of sockets a look to count them.
fn judge_blame(ctx: &Ctx, s: &TcpSocket, memo: &mut Memo) -> (Option<crate::model::Pid>, Cause) {
    let holders = holders_of(ctx, s);
    if holders.is_empty() {
        return (None, Cause::NoVisibleHolder);
    }
    let v = classify::judge(ctx, memo, s, holders);
    (v.blamed.first().map(|b| b.pid), v.cause)
}

/// Who holds the socket (inode 0, a connection not accepted yet: nobody).
fn holders_of<'a>(ctx: &'a Ctx, s: &TcpSocket) -> &'a [crate::graph::HeldBy] {
    if s.inode == 0 {
        &[]
    } else {
        ctx.graph.holders(s.inode)
    }
}

fn judge_socket(ctx: &Ctx, s: &TcpSocket, memo: &mut Memo) -> Finding {
    let holders = holders_of(ctx, s);
    let (cause, blamed, mut evidence, alternatives, fix) = if holders.is_empty() {
        let evidence = unheld::evidence(ctx, s);
        let lines = evidence.iter().map(|l| memo.line(l)).collect();
        (Cause::NoVisibleHolder, Vec::new(), lines, Vec::new(), None)
    } else {
        let mut v = classify::judge(ctx, memo, s, holders);
        // Kept for the whole report, one per socket: no spare room.
        v.blamed.shrink_to_fit();
        (v.cause, v.blamed, v.evidence, v.alternatives, v.fix)
    };
    let fix = match (fix, alternatives.is_empty()) {
        (Some(f), _) => memo.line(f),
        (None, true) => memo.line(fixes::fix(cause, s.inode == 0)),
        (None, false) => {
            let alts: Vec<Cause> = alternatives.iter().map(|a| a.cause).collect();
            memo.line(&fixes::hedged(cause, &alts))
        }
    };
    // Two lines come here and one later (add_shared_evidence): room for them now.
    evidence.reserve_exact(3);
    evidence.push(receive_queue_evidence(s.recv_q, memo));
    if let Some(ms) = s.last_ack_ms {
        evidence.push(memo.fmt(format_args!(
            "no ACK from the peer for {}: in CLOSE_WAIT at least that long",
            group::duration(ms)
        )));
    }
    let ns_pid = holders
        .first()
        .map(|h| h.pid)
        .filter(|_| !in_own_netns(ctx, s));
    Finding {
        socket: SocketInfo {
            inode: s.inode,
            netns: s.netns,
            family: s.family,
            local: s.local,
            remote: s.remote,
            state: s.state,
            recv_q: s.recv_q,
            send_q: s.send_q,
            close_wait_ms: s.last_ack_ms,
        },
        holders: holders
            .iter()
            .map(|h| {
                let p = ctx.graph.process(h.pid);
                Holder {
                    pid: h.pid,
                    ppid: p.map_or(0, |p| p.ppid),
                    comm: memo.line(p.map_or("", |p| p.comm.as_str())),
                    fd: h.fd,
                    cloexec: h.cloexec,
                    tid: h.tid,
                    origin: None,
                }
            })
            .collect(),
        fix,
        alternatives,
        mitigation: Mitigation::Commands {
            close: blamed.first().copied(),
            ns_pid,
        },
        blamed,
        cause,
        evidence,
        allowed: None,
        basis: origin::Basis::Inferred,
    }
}

/// In CLOSE_WAIT the receive queue counts the peer's FIN as one byte until a
/// read() returns 0 (end of stream), so it tells whether anyone read the EOF.
fn receive_queue_evidence(recv_q: u32, memo: &mut Memo) -> Line {
    match recv_q {
        0 => memo.line("a holder read the end of stream (read() returned 0): the peer's close was seen, yet this copy stays open"),
        1 => memo.line("the peer's FIN is unread: no holder has read from the socket since the peer closed"),
        n => memo.fmt(format_args!("{} bytes unread before the peer's FIN: the program stopped reading", n - 1)),
    }
}

/// Sockets of another namespace than cwleak's own need nsenter for `ss -K`.
fn in_own_netns(ctx: &Ctx, s: &TcpSocket) -> bool {
    ctx.snap.meta.netns.is_none_or(|ns| ns == s.netns)
}

/// Per blamed process: how many CLOSE_WAIT sockets, and how close to its fd limit.
fn add_shared_evidence(ctx: &Ctx, findings: &mut [Finding]) {
    let mut counts: FastMap<Pid, usize> = FastMap::default();
    for f in findings.iter() {
        if let Some(b) = f.blamed.first() {
            *counts.entry(b.pid).or_default() += 1;
        }
    }
    let mut lines: FastMap<Pid, Line> = FastMap::default();
    for f in findings.iter_mut() {
        let Some(b) = f.blamed.first() else { continue };
        let Some(p) = ctx.graph.process(b.pid) else {
            continue;
        };
        let line = lines.entry(b.pid).or_insert_with(|| {
            let n = counts.get(&b.pid).copied().unwrap_or(0);
            let mut line = format!(
                "{} is blamed for {n} CLOSE_WAIT socket(s) in scope",
                ctx.name(b.pid)
            );
            // Only worth saying when the fd limit is in sight.
            if let Some(limit) = p.fd_limit.filter(|l| u64::from(p.fd_count) * 2 >= *l) {
                line.push_str(&format!(
                    "; {} of its {limit} fds are open: accept() fails with EMFILE at the limit",
                    p.fd_count
                ));
            }
            Line::from(line)
        });
        f.evidence.push(line.clone());
    }
}

fn summary(
    findings: &[Finding],
    groups: &[Group],
    transient: usize,
    by_state: BTreeMap<TcpState, usize>,
) -> Summary {
    let mut by_cause = BTreeMap::new();
    for f in findings {
        *by_cause.entry(f.cause).or_default() += 1;
    }
    let blamed: HashSet<Pid> = groups.iter().filter_map(|g| g.pid).collect();
    Summary {
        leaked: findings.len(),
        transient,
        still_sending: 0,
        processes_blamed: blamed.len(),
        by_cause,
        by_state,
    }
}

fn scan_info(snap: &Snapshot, scope: &Scope) -> ScanInfo {
    ScanInfo {
        proc_root: snap.meta.proc_root.clone(),
        live: snap.meta.live,
        processes: snap.stats.processes,
        fds: snap.stats.fds,
        socket_fds: snap.stats.socket_fds,
        tcp_sockets: snap.stats.tcp_sockets,
        states_read: snap
            .meta
            .states
            .clone()
            .unwrap_or_else(|| TcpState::ALL.to_vec()),
        namespaces: snap
            .namespaces
            .iter()
            .map(|n| NamespaceInfo {
                inode: n.inode,
                via_pid: n.via_pid,
                method: n.method.clone(),
                sockets: n.sockets,
            })
            .collect(),
        duration_ms: snap.stats.duration_ms,
        settle_ms: snap.settle.as_ref().map_or(0, |s| s.window_ms),
        scope: scope.clone(),
        unreadable: Unreadable::all(&snap.warnings),
        incomplete: Vec::new(),
    }
}
