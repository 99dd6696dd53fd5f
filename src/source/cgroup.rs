//! Where the cgroup v2 hierarchy is mounted, so `--cgroup` accepts both the
//! path /proc/PID/cgroup shows and the path under the mount, and a cgroup
//! that does not exist is an error instead of an empty, passing check.

use super::root::ProcRoot;
use std::path::{Path, PathBuf};

/// The cgroup2 mount point in cwleak's view, from `self/mountinfo` under the root.
pub fn cgroup2_mount(root: &ProcRoot) -> Option<PathBuf> {
    let text = root.read_string(None, Path::new("self/mountinfo")).ok()?;
    mount_of(&text, "cgroup2").map(PathBuf::from)
}

/// Whether cgroup `path` (as /proc/PID/cgroup names it) exists; None when
/// there is no cgroup2 hierarchy to look in (cgroup v1, a recorded tree).
pub fn cgroup_exists(root: &ProcRoot, path: &str) -> Option<bool> {
    let mount = cgroup2_mount(root)?;
    Some(mount.join(path.trim_start_matches('/')).is_dir())
}

/// The first mount point of filesystem type `fstype` in mountinfo text.
/// Fields: id parent dev root MOUNT_POINT options [optional...] - FSTYPE source super-options.
fn mount_of(mountinfo: &str, fstype: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == fstype)
            .then(|| unescape(left.split_whitespace().nth(4)?))?
    })
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let code: String = chars.by_ref().take(3).collect();
        out.push(char::from(u8::from_str_radix(&code, 8).ok()?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
26 28 0:24 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1623008k,mode=755
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
31 24 0:27 / /mnt/with\\040space rw - cgroup2 none rw
";

    #[test]
    fn finds_the_cgroup2_mount() {
        assert_eq!(
            mount_of(MOUNTINFO, "cgroup2").as_deref(),
            Some("/sys/fs/cgroup")
        );
        assert_eq!(mount_of(MOUNTINFO, "proc").as_deref(), Some("/proc"));
        assert_eq!(mount_of(MOUNTINFO, "btrfs"), None);
        assert_eq!(mount_of("garbage\n", "cgroup2"), None);
        assert_eq!(
            unescape("/mnt/with\\040space").as_deref(),
            Some("/mnt/with space")
        );
    }
}
