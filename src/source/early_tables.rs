//! The namespaces' tables read while the task_file iterator reads the fd
//! tables: each keeps a core busy in the kernel, and neither needs the other.
//! Which namespaces hold sockets is only known from the fd tables, so every
//! namespace a process sits in is read here; the look then keeps the reads
//! of the namespaces it would have read anyway and drops the others.

use super::root::ProcRoot;
use super::sock_diag::DumpRequest;
use super::tables::{self, NsMember, TableMethod};
use crate::model::{FastMap, Inode, Pid, Warning};
use crate::parse::link::bracket_inode;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// One namespace read ahead: its table, the warnings of the read, and the
/// process it was read through.
pub type EarlyRead = (tables::TableRead, Vec<Warning>, NsMember);

/// Reads waiting to be taken by the look, by namespace, and each process's
/// namespace as this pass found it (the walk need not read it again).
#[derive(Default)]
pub struct Early {
    reads: Mutex<FastMap<Inode, EarlyRead>>,
    pub netns_of: FastMap<Pid, Inode>,
    /// A namespace found whose read came back incomplete.
    missed: bool,
}

impl Early {
    /// Every namespace found was read, and none has a CLOSE_WAIT socket.
    pub fn no_close_wait(&self) -> bool {
        let Ok(reads) = self.reads.lock() else {
            return false;
        };
        !self.missed
            && !reads.is_empty()
            && reads.values().all(|(t, _, _)| {
                t.sockets
                    .iter()
                    .all(|s| s.state != crate::model::TcpState::CloseWait)
            })
    }

    /// CLOSE_WAIT sockets in the namespaces read so far.
    pub fn close_wait_count(&self) -> usize {
        self.reads.lock().map_or(0, |reads| {
            reads
                .values()
                .flat_map(|(t, _, _)| &t.sockets)
                .filter(|s| s.state == crate::model::TcpState::CloseWait)
                .count()
        })
    }

    /// The read of `netns`, once: a second ask gets None.
    pub fn take(&self, netns: Inode) -> Option<EarlyRead> {
        // A poisoned lock means a reading thread panicked: read again.
        self.reads.lock().ok()?.remove(&netns)
    }
}

/// Every namespace a process of `pids` sits in (of `only`, when given), read
/// through its lowest pid. A read that came back incomplete is not kept: the
/// look reads that namespace again, through the members it knows then.
/// A process's namespace is read from /proc unless `known` has it (the
/// signing program read it this look).
pub fn read(
    root: &ProcRoot,
    pids: &[Pid],
    known: &FastMap<Pid, Inode>,
    only: &[Inode],
    method: TableMethod,
    req: &DumpRequest,
    threads: usize,
) -> Early {
    let mut netns_of = FastMap::default();
    // The lowest pid of each namespace, a user process when there is one:
    // `via_pid` names it, and a kernel thread (no exe) would puzzle a reader.
    let mut first: BTreeMap<Inode, (Pid, bool)> = BTreeMap::new();
    for &pid in pids {
        // A zombie leader has no namespace to show: the walk finds its
        // thread's, and the look reads that namespace itself.
        let netns = match known.get(&pid) {
            Some(&n) => n,
            None => {
                let rel = PathBuf::from(format!("{pid}/ns/net"));
                let Ok(link) = root.read_link(Some(pid), &rel) else {
                    continue;
                };
                let Some(netns) = bracket_inode(&link, b"net") else {
                    continue;
                };
                netns
            }
        };
        netns_of.insert(pid, netns);
        if !only.is_empty() && !only.contains(&netns) {
            continue;
        }
        if first.get(&netns).is_some_and(|&(_, user)| user) {
            continue;
        }
        let user = root
            .read_link(Some(pid), &PathBuf::from(format!("{pid}/exe")))
            .is_ok();
        let e = first.entry(netns).or_insert((pid, user));
        if user && !e.1 {
            *e = (pid, user);
        }
    }
    let members: Vec<NsMember> = first
        .into_iter()
        .map(|(netns, (pid, _))| NsMember {
            netns,
            pid,
            base: PathBuf::from(pid.to_string()),
            file: None,
        })
        .collect();
    let reads = crate::par::spread(&members, threads, |ms| {
        ms.filter_map(|m| {
            let mut warnings = Vec::new();
            let (t, complete, member) =
                tables::read_namespace_via(root, true, method, [m.clone()], req, &mut warnings)?;
            complete.then_some((t, warnings, member))
        })
        .collect::<Vec<_>>()
    });
    let read: FastMap<Inode, EarlyRead> = reads
        .into_iter()
        .flatten()
        .map(|r| (r.2.netns, r))
        .collect();
    Early {
        missed: read.len() != members.len(),
        reads: Mutex::new(read),
        netns_of,
    }
}
