//! Network namespaces no process sits in: `ip netns add NAME` bind-mounts
//! one at /run/netns/NAME, and a namespace file can be kept open or mounted
//! anywhere. The fd walk finds namespaces through their processes only, so
//! these are looked up by path: every file of a directory of named
//! namespaces, and each path given (`--netns PATH`).

use crate::model::Inode;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where `ip netns` keeps named namespaces.
pub const NAMED_DIR: &str = "/run/netns";

/// (inode, path) of each network namespace file in `dir` and in `given`, in
/// that order, each inode once. A file that is not a namespace file (an
/// unmounted placeholder, a regular file) is skipped.
pub fn discover(dir: Option<&Path>, given: &[PathBuf]) -> Vec<(Inode, PathBuf)> {
    let mut paths: Vec<PathBuf> = dir
        .and_then(|d| std::fs::read_dir(d).ok())
        .map(|entries| {
            let mut v: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    paths.extend(given.iter().cloned());
    let mut out: Vec<(Inode, PathBuf)> = Vec::new();
    for p in paths {
        if let Some(ino) = netns_inode(&p) {
            if !out.iter().any(|(i, _)| *i == ino) {
                out.push((ino, p));
            }
        }
    }
    out
}

/// The inode of a network namespace file, None for anything else.
fn netns_inode(path: &Path) -> Option<Inode> {
    let fs = nix::sys::statfs::statfs(path).ok()?;
    // NSFS_MAGIC (linux/magic.h): the filesystem of namespace files.
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return None;
    }
    let f = std::fs::File::open(path).ok()?;
    // A namespace file of another kind (mnt, ipc, ...) is nsfs too: ask its
    // type (NS_GET_NSTYPE, Linux 4.11); an older kernel cannot tell, and a
    // wrong one then fails later, at setns, as a warning.
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
    let kind = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
    if kind >= 0 && kind != libc::CLONE_NEWNET {
        return None;
    }
    Some(f.metadata().ok()?.ino())
}

/// linux/nsfs.h: _IO(0xb7, 0x3).
const NS_GET_NSTYPE: libc::Ioctl = 0xb703;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_namespace_files_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("placeholder"), "").unwrap();
        let own = PathBuf::from("/proc/self/ns/net");
        let Some(ino) = netns_inode(&own) else {
            // No nsfs here (a restricted sandbox): nothing to compare with.
            return;
        };
        let mnt = PathBuf::from("/proc/self/ns/mnt");
        let found = discover(Some(dir.path()), &[own.clone(), mnt, own.clone()]);
        assert_eq!(
            found,
            vec![(ino, own)],
            "one net namespace, the mnt one left out"
        );
        assert!(discover(Some(&dir.path().join("missing")), &[]).is_empty());
    }
}
