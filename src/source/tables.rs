//! Phase two: the TCP tables, once per network namespace, through sock_diag
//! when live (fast, kernel-side state filter, tcp_info) or /proc/PID/net/tcp{,6}
//! of one member (fixture trees, and the fallback).

use super::root::ProcRoot;
use super::sock_diag::{self, DumpRequest};
use super::SourceError;
use crate::model::{Family, Inode, NetNs, Pid, SocketKey, TcpSocket, TcpState, Warning};
use crate::parse::{link, net_tcp};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableMethod {
    /// sock_diag when live, /proc files otherwise or when sock_diag fails.
    #[default]
    Auto,
    Proc,
    SockDiag,
}

/// Where a namespace's tables can be read from: one member process.
#[derive(Debug, Clone)]
pub struct NsMember {
    pub netns: Inode,
    pub pid: Pid,
    /// `PID` or `PID/task/TID` under the root.
    pub base: PathBuf,
}

pub struct TableRead {
    pub sockets: Vec<TcpSocket>,
    pub namespace: NetNs,
}

/// Read one namespace's table. Failures become warnings; a namespace whose
/// table cannot be read at all is still listed (with 0 sockets).
pub fn read_namespace(
    root: &ProcRoot,
    live: bool,
    method: TableMethod,
    member: &NsMember,
    req: &DumpRequest,
    warnings: &mut Vec<Warning>,
) -> TableRead {
    let use_diag = live && method != TableMethod::Proc;
    if use_diag {
        match dump_diag(root, member, req) {
            Ok(sockets) => return finish(member, "sock_diag", sockets),
            Err(e) => {
                let mut w = e.to_warning();
                if method == TableMethod::Auto {
                    w.message.push_str("; read /proc/PID/net/tcp{,6} instead");
                } else {
                    warnings.push(w);
                    warnings.push(unread(member));
                    return finish(member, "sock_diag", Vec::new());
                }
                warnings.push(w);
            }
        }
    }
    let mut sockets = Vec::new();
    let mut read_ipv4 = false;
    for (file, family) in [("net/tcp", Family::Ipv4), ("net/tcp6", Family::Ipv6)] {
        let rel = member.base.join(file);
        match root.read_string(Some(member.pid), &rel) {
            Ok(text) => {
                read_ipv4 |= family == Family::Ipv4;
                let (rows, errors) = net_tcp::parse_table(&text, family, member.netns);
                sockets.extend(rows.into_iter().filter(|s| wanted(req, s.state)));
                for e in errors.into_iter().take(5) {
                    warnings.push(
                        SourceError::malformed(Some(member.pid), root.join(&rel), e).to_warning(),
                    );
                }
            }
            // No IPv6 in this kernel or namespace: nothing to read, nothing lost.
            Err(e)
                if family == Family::Ipv6
                    && e.is_vanished()
                    && root.join(member.base.join("net/tcp")).exists() => {}
            Err(e) => warnings.push(e.to_warning()),
        }
    }
    if !read_ipv4 {
        warnings.push(unread(member));
    }
    finish(member, "proc", sockets)
}

/// No table at all for a namespace: none of its sockets can have been seen.
fn unread(member: &NsMember) -> Warning {
    Warning {
        pid: Some(member.pid),
        path: None,
        kind: crate::model::WarningKind::Incomplete,
        message: format!(
            "no TCP table was read for network namespace {}: its sockets are unknown",
            member.netns
        ),
    }
}

/// The /proc files hold every state; keep what a sock_diag dump would have returned.
fn wanted(req: &DumpRequest, state: TcpState) -> bool {
    req.states & (1u32 << state.kernel_number()) != 0
}

fn finish(member: &NsMember, method: &str, sockets: Vec<TcpSocket>) -> TableRead {
    TableRead {
        namespace: NetNs {
            inode: member.netns,
            via_pid: Some(member.pid),
            method: method.to_string(),
            sockets: sockets.len(),
            sysctls: Default::default(),
        },
        sockets,
    }
}

fn dump_diag(
    root: &ProcRoot,
    member: &NsMember,
    req: &DumpRequest,
) -> Result<Vec<TcpSocket>, SourceError> {
    let dump = |r: &DumpRequest| {
        if own_netns(root) == Some(member.netns) {
            sock_diag::dump_current(member.netns, r)
        } else {
            sock_diag::dump_in_netns(&root.join(member.base.join("ns/net")), member.netns, r)
        }
    };
    let mut sockets = dump(req)?;
    // tcp_info for every socket would multiply the dump's size; a second,
    // kernel-filtered dump fetches it for the CLOSE_WAIT ones only.
    let cw = |s: &TcpSocket| s.state == TcpState::CloseWait;
    if !req.with_info && wanted(req, TcpState::CloseWait) && sockets.iter().any(cw) {
        let aged = dump(&DumpRequest::only(&[TcpState::CloseWait], true))?;
        let ages: HashMap<SocketKey, Option<u64>> =
            aged.iter().map(|s| (s.key(), s.last_ack_ms)).collect();
        for s in sockets.iter_mut().filter(|s| cw(s)) {
            s.last_ack_ms = ages.get(&s.key()).copied().flatten();
        }
    }
    Ok(sockets)
}

/// The namespace cwleak itself runs in (no setns needed for it).
pub fn own_netns(root: &ProcRoot) -> Option<Inode> {
    let target = root.read_link(None, Path::new("thread-self/ns/net")).ok()?;
    link::bracket_inode(&target, b"net")
}
