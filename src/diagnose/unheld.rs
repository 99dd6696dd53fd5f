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

#[cfg(test)]
mod tests {
    use crate::diagnose::{diagnose, Cause, Scope};
    use crate::model::{Family, Snapshot, TcpSocket, TcpState, Warning, WarningKind};

    fn warning(pid: i32, kind: WarningKind) -> Warning {
        Warning {
            pid: Some(pid),
            path: Some(format!("/proc/{pid}/fd")),
            kind,
            message: "test".into(),
        }
    }

    /// The evidence of a socket nobody visibly holds, with these warnings.
    fn evidence(warnings: Vec<Warning>) -> Vec<String> {
        let snap = Snapshot {
            sockets: vec![TcpSocket {
                inode: 4242,
                netns: 1,
                family: Family::Ipv4,
                local: "127.0.0.1:8080".parse().unwrap(),
                remote: "127.0.0.1:40000".parse().unwrap(),
                state: TcpState::CloseWait,
                recv_q: 0,
                send_q: 0,
                uid: 0,
                last_ack_ms: None,
                bytes_acked: None,
                timewait: false,
                bound_if: None,
            }],
            warnings,
            ..Snapshot::default()
        };
        let r = diagnose(&snap, &Scope::everything());
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].cause, Cause::NoVisibleHolder);
        r.findings[0]
            .evidence
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// docs/causes.md, no-visible-holder: processes that could not be read
    /// are named as where the holder may be; other warnings are not.
    #[test]
    fn processes_that_could_not_be_read_are_counted_and_nothing_else() {
        let ev = evidence(vec![
            warning(10, WarningKind::PermissionDenied),
            warning(11, WarningKind::Vanished),
            warning(12, WarningKind::PermissionDenied),
        ]);
        assert!(
            ev.iter().any(|e| e.starts_with(
                "2 process(es) could not be read (permission denied): one of them may hold it"
            )),
            "{ev:?}"
        );
        let ev = evidence(vec![warning(11, WarningKind::Vanished)]);
        assert!(
            !ev.iter().any(|e| e.contains("could not be read")),
            "{ev:?}"
        );
    }
}
