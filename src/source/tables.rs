//! Phase two: the TCP tables, once per network namespace, through sock_diag
//! when live (fast, kernel-side state filter, tcp_info) or /proc/PID/net/tcp{,6}
//! of one member (fixture trees, and the fallback).

use super::root::ProcRoot;
use super::sock_diag::{self, DumpRequest, Dumped};
use super::SourceError;
use crate::model::{
    Family, Inode, NetNs, Pid, SocketKey, TcpSocket, TcpState, Warning, WarningKind,
};
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

/// Where a namespace's tables can be read from: one member process, or a
/// namespace file when no process sits in it.
#[derive(Debug, Clone)]
pub struct NsMember {
    pub netns: Inode,
    /// 0 with `file`.
    pub pid: Pid,
    /// `PID` or `PID/task/TID` under the root.
    pub base: PathBuf,
    /// A namespace file (/run/netns/NAME) to enter: no process sits in it.
    pub file: Option<PathBuf>,
}

impl NsMember {
    pub fn file(netns: Inode, file: PathBuf) -> NsMember {
        NsMember {
            netns,
            pid: 0,
            base: PathBuf::new(),
            file: Some(file),
        }
    }

    /// The namespace file to setns() into.
    pub fn ns_file(&self, root: &ProcRoot) -> PathBuf {
        match &self.file {
            Some(f) => f.clone(),
            None => root.join(self.base.join("ns/net")),
        }
    }

    /// Where its kernel counters are read.
    pub fn place(&self) -> super::kernel_counts::Place<'_> {
        match &self.file {
            Some(f) => super::kernel_counts::Place::File(f),
            None => super::kernel_counts::Place::Member {
                pid: self.pid,
                base: &self.base,
            },
        }
    }
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
    if let Some(file) = &member.file {
        return read_by_file(root, live, method, member, file, req, warnings);
    }
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
                    warnings.push(unread(Some(member.pid), member.netns));
                    return finish(member, "sock_diag", Dumped::default());
                }
                warnings.push(w);
            }
        }
    }
    let sockets = read_proc_files(
        root,
        Some(member.pid),
        &member.base,
        member.netns,
        req,
        warnings,
    );
    finish(member, "proc", sockets)
}

/// Read a namespace's table through the first of `candidates` that is still
/// there: the member chosen at the walk may exit before its namespace is
/// dumped (on a busy host, within the settle window), and a namespace is not
/// unreadable because one of its processes went away. The candidates after
/// the first are only drawn when the one before is gone. Returns the table,
/// whether it was read, and the member read through.
pub fn read_namespace_via(
    root: &ProcRoot,
    live: bool,
    method: TableMethod,
    candidates: impl IntoIterator<Item = NsMember>,
    req: &DumpRequest,
    warnings: &mut Vec<Warning>,
) -> Option<(TableRead, bool, NsMember)> {
    let mut candidates = candidates.into_iter().peekable();
    while let Some(member) = candidates.next() {
        let mut w = Vec::new();
        let t = read_namespace(root, live, method, &member, req, &mut w);
        let read = !w.iter().any(|w| w.kind == WarningKind::Incomplete);
        // Gone, or dying: a zombie keeps its /proc directory but no tables.
        let gone = member.file.is_none()
            && (w.iter().any(|w| w.kind == WarningKind::Vanished)
                || !root.join(member.pid.to_string()).exists());
        if read || !gone || candidates.peek().is_none() {
            warnings.extend(w);
            return Some((t, read, member));
        }
    }
    None
}

/// A namespace no process sits in: a sock_diag dump from inside it, or its
/// /proc files read by a thread inside it (`thread-self/net/tcp`).
fn read_by_file(
    root: &ProcRoot,
    live: bool,
    method: TableMethod,
    member: &NsMember,
    file: &Path,
    req: &DumpRequest,
    warnings: &mut Vec<Warning>,
) -> TableRead {
    if !live {
        return finish(member, "proc", Dumped::default());
    }
    if method != TableMethod::Proc {
        match sock_diag::dump_in_netns(file, member.netns, req) {
            Ok(sockets) => return finish(member, "sock_diag", sockets),
            Err(e) if method == TableMethod::SockDiag => {
                warnings.push(e.to_warning());
                return finish(member, "sock_diag", Dumped::default());
            }
            Err(e) => {
                let mut w = e.to_warning();
                w.message.push_str("; read thread-self/net/tcp{,6} instead");
                warnings.push(w);
            }
        }
    }
    let (root2, netns, req2) = (root.clone(), member.netns, *req);
    let read = move || {
        let mut w = Vec::new();
        let s = read_proc_files(&root2, None, Path::new("thread-self"), netns, &req2, &mut w);
        (s, w)
    };
    match super::enter::in_netns(file, read) {
        Ok((sockets, w)) => {
            warnings.extend(w);
            finish(member, "proc", sockets)
        }
        Err(message) => {
            warnings.push(SourceError::Netlink { netns, message }.to_warning());
            finish(member, "proc", Dumped::default())
        }
    }
}

/// `base/net/tcp` and `base/net/tcp6` under the root.
fn read_proc_files(
    root: &ProcRoot,
    pid: Option<Pid>,
    base: &Path,
    netns: Inode,
    req: &DumpRequest,
    warnings: &mut Vec<Warning>,
) -> Dumped {
    let mut out = Dumped::default();
    let mut read_ipv4 = false;
    for (file, family) in [("net/tcp", Family::Ipv4), ("net/tcp6", Family::Ipv6)] {
        let rel = base.join(file);
        match root.read_string(pid, &rel) {
            Ok(text) => {
                read_ipv4 |= family == Family::Ipv4;
                let (rows, errors) = net_tcp::parse_table(&text, family, netns);
                for s in rows.into_iter().filter(|s| wanted(req, s.state)) {
                    if req.keeps(s.state) {
                        out.sockets.push(s);
                    } else {
                        out.unkept.add(s.state);
                    }
                }
                for e in errors.into_iter().take(5) {
                    warnings.push(SourceError::malformed(pid, root.join(&rel), e).to_warning());
                }
            }
            // No IPv6 in this kernel or namespace: nothing to read, nothing lost.
            Err(e)
                if family == Family::Ipv6
                    && e.is_vanished()
                    && root.join(base.join("net/tcp")).exists() => {}
            Err(e) => warnings.push(e.to_warning()),
        }
    }
    if !read_ipv4 {
        warnings.push(unread(pid, netns));
    }
    out
}

/// No table at all for a namespace: none of its sockets can have been seen.
fn unread(pid: Option<Pid>, netns: Inode) -> Warning {
    Warning {
        pid,
        path: None,
        kind: crate::model::WarningKind::Incomplete,
        message: format!(
            "no TCP table was read for network namespace {netns}: its sockets are unknown"
        ),
    }
}

/// The /proc files hold every state; keep what a sock_diag dump would have returned.
fn wanted(req: &DumpRequest, state: TcpState) -> bool {
    req.states & (1u32 << state.kernel_number()) != 0
}

fn finish(member: &NsMember, method: &str, read: Dumped) -> TableRead {
    let Dumped { sockets, unkept } = read;
    TableRead {
        namespace: NetNs {
            inode: member.netns,
            via_pid: member.file.is_none().then_some(member.pid),
            method: method.to_string(),
            sockets: sockets.len() + unkept.total(),
            sysctls: Default::default(),
            kernel: None,
            counters: Default::default(),
            file: member.file.as_ref().map(|f| f.display().to_string()),
            unkept: unkept.counts(),
        },
        sockets,
    }
}

fn dump_diag(root: &ProcRoot, member: &NsMember, req: &DumpRequest) -> Result<Dumped, SourceError> {
    let dump = |r: &DumpRequest| {
        if own_netns(root) == Some(member.netns) {
            sock_diag::dump_current(member.netns, r)
        } else {
            sock_diag::dump_in_netns(&member.ns_file(root), member.netns, r)
        }
    };
    let mut read = dump(req)?;
    let sockets = &mut read.sockets;
    // tcp_info for every socket would multiply the dump's size; a second,
    // kernel-filtered dump fetches it for the CLOSE_WAIT ones only.
    let cw = |s: &TcpSocket| s.state == TcpState::CloseWait;
    if !req.with_info && req.keeps(TcpState::CloseWait) && sockets.iter().any(cw) {
        let aged = dump(&DumpRequest::only(&[TcpState::CloseWait], true))?;
        let ages: HashMap<SocketKey, Option<u64>> = aged
            .sockets
            .iter()
            .map(|s| (s.key(), s.last_ack_ms))
            .collect();
        for s in sockets.iter_mut().filter(|s| cw(s)) {
            s.last_ack_ms = ages.get(&s.key()).copied().flatten();
        }
    }
    Ok(read)
}

/// Look these sockets up by their addresses in `member`'s namespace (see
/// `sock_diag::lookup`): no walk of the kernel's table.
pub fn lookup_in(
    root: &ProcRoot,
    member: &NsMember,
    wanted: &[sock_diag::Wanted],
    with_info: bool,
) -> Result<Vec<Option<TcpSocket>>, SourceError> {
    if member.file.is_none() && own_netns(root) == Some(member.netns) {
        sock_diag::lookup(None, member.netns, wanted, with_info)
    } else {
        sock_diag::lookup(Some(&member.ns_file(root)), member.netns, wanted, with_info)
    }
}

/// The namespace cwleak itself runs in (no setns needed for it).
pub fn own_netns(root: &ProcRoot) -> Option<Inode> {
    let target = root.read_link(None, Path::new("thread-self/ns/net")).ok()?;
    link::bracket_inode(&target, b"net")
}
