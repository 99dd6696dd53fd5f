//! What the kernel itself counts for a namespace: the TCP line of
//! net/sockstat and the TcpExt counters of net/netstat, read through a
//! member process (`PID/net/...` under the root), or for a namespace no
//! process sits in, from a thread inside it (`thread-self/net/...`).

use super::enter::in_netns;
use super::root::ProcRoot;
use super::SourceError;
use crate::model::{KernelCounts, NetNs, Pid};
use crate::parse::sockstat;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The kernel's TCP counts and TcpExt counters of one namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub kernel: KernelCounts,
    pub counters: BTreeMap<String, u64>,
}

/// Where a namespace's net files are.
#[derive(Debug, Clone)]
pub enum Place<'a> {
    /// `base` (PID or PID/task/TID) under the root.
    Member { pid: Pid, base: &'a Path },
    /// A namespace file to enter (live only).
    File(&'a Path),
}

pub fn read(root: &ProcRoot, place: &Place, netns: u64) -> Result<Counts, SourceError> {
    match place {
        Place::Member { pid, base } => read_under(root, Some(*pid), base),
        Place::File(file) => {
            let root = root.clone();
            in_netns(file, move || {
                read_under(&root, None, Path::new("thread-self"))
            })
            .map_err(|message| SourceError::Netlink { netns, message })?
        }
    }
}

/// Read a namespace again, as a look recorded it (for counters that move
/// between two reads).
pub fn reread(root: &ProcRoot, ns: &NetNs) -> Result<Counts, SourceError> {
    let file = ns.file.as_ref().map(PathBuf::from);
    let base = ns.via_pid.map(|p| PathBuf::from(p.to_string()));
    let place = match (&file, &base, ns.via_pid) {
        (Some(f), _, _) => Place::File(f),
        (None, Some(b), Some(pid)) => Place::Member { pid, base: b },
        _ => {
            return Err(SourceError::Netlink {
                netns: ns.inode,
                message: "no process or file to read the namespace through".into(),
            })
        }
    };
    read(root, &place, ns.inode)
}

fn read_under(root: &ProcRoot, pid: Option<Pid>, base: &Path) -> Result<Counts, SourceError> {
    let rel = base.join("net/sockstat");
    let text = root.read_string(pid, &rel)?;
    let kernel =
        sockstat::sockstat(&text).map_err(|m| SourceError::malformed(pid, root.join(&rel), m))?;
    let rel = base.join("net/netstat");
    let text = root.read_string(pid, &rel)?;
    let counters =
        sockstat::tcp_ext(&text).map_err(|m| SourceError::malformed(pid, root.join(&rel), m))?;
    Ok(Counts { kernel, counters })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_members_files_through_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("42/net");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(
            net.join("sockstat"),
            "sockets: used 9\nTCP: inuse 3 orphan 1 tw 7 alloc 5 mem 2\n",
        )
        .unwrap();
        std::fs::write(
            net.join("netstat"),
            "TcpExt: ListenOverflows TW\nTcpExt: 4 7\n",
        )
        .unwrap();
        let root = ProcRoot::new(dir.path());
        let base = PathBuf::from("42");
        let c = read(
            &root,
            &Place::Member {
                pid: 42,
                base: &base,
            },
            1,
        )
        .unwrap();
        assert_eq!((c.kernel.tw, c.kernel.orphans, c.kernel.inuse), (7, 1, 3));
        assert_eq!(c.counters["ListenOverflows"], 4);
        let ns = NetNs {
            inode: 1,
            via_pid: Some(42),
            ..NetNs::default()
        };
        assert_eq!(reread(&root, &ns).unwrap(), c);
        // Neither a process nor a file: an error, not a guess.
        let lost = NetNs {
            inode: 1,
            ..NetNs::default()
        };
        assert!(reread(&root, &lost).is_err());
        // A member without the files (an older recorded tree).
        let gone = PathBuf::from("43");
        assert!(read(
            &root,
            &Place::Member {
                pid: 43,
                base: &gone
            },
            1
        )
        .is_err());
    }
}
