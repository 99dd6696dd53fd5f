//! CLOSE_WAIT sockets nobody visibly holds: never dropped, explained.

use super::context::Ctx;
use crate::model::{TcpSocket, WarningKind};

pub fn evidence(ctx: &Ctx, sock: &TcpSocket) -> Vec<String> {
    if sock.inode == 0 {
        return accept_queue(ctx, sock);
    }
    let mut ev = vec![format!(
        "no process visible here has an fd for socket inode {}",
        sock.inode
    )];
    let denied = ctx
        .snap
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::PermissionDenied)
        .count();
    if denied > 0 {
        ev.push(format!(
            "{denied} process(es) could not be read (permission denied): one of them may hold it"
        ));
    }
    ev.push(
        "it may be in flight: sent over a unix socket with SCM_RIGHTS and not yet received".into(),
    );
    ev.push("or held by a process this /proc does not show (another pid namespace), or by the kernel (io_uring fixed file, BPF sockmap)".into());
    ev
}

/// Inode 0 in CLOSE_WAIT: the connection was never accepted.
fn accept_queue(ctx: &Ctx, sock: &TcpSocket) -> Vec<String> {
    let mut ev = vec![format!(
        "it has no inode: it was never accept()ed and waits in the accept queue of the listener on port {}",
        sock.local.port()
    )];
    for l in ctx.listeners.of(sock) {
        let holders = ctx.graph.holders(l.inode);
        let who = if holders.is_empty() {
            "no visible process".to_string()
        } else {
            let pids: Vec<i32> = holders.iter().map(|h| h.pid).collect();
            ctx.names(&pids)
        };
        ev.push(format!(
            "listener {} (held by {who}) has {} connection(s) waiting, backlog {}",
            l.local, l.recv_q, l.send_q
        ));
    }
    ev
}
