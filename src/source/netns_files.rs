//! Network namespaces no process sits in: `ip netns add NAME` bind-mounts
//! one at /run/netns/NAME, and a namespace file can be kept open or mounted
//! anywhere. The fd walk finds namespaces through their processes only, so
//! these are looked up by path: every file of a directory of named
//! namespaces, and each path given (`--netns PATH`).

use crate::model::Inode;
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
    // A namespace file of another kind (ipc, mnt, ...) is nsfs too: only a
    // net one can be entered with CLONE_NEWNET, which the reader checks; the
    // name ip netns gives is ours to trust no further than that.
    Some(std::fs::metadata(path).ok()?.ino())
}

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
        let found = discover(Some(dir.path()), &[own.clone(), own.clone()]);
        assert_eq!(found, vec![(ino, own)]);
        assert!(discover(Some(&dir.path().join("missing")), &[]).is_empty());
    }
}
