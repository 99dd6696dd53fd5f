//! Per-process text files: stat, status, cgroup, limits. Stat goes through
//! procfs-core's parser; of status, two lines are wanted out of about sixty,
//! so they are picked out directly (procfs would parse and store every field,
//! for each of thousands of processes).

use super::ParseResult;
use crate::model::{ForkSigns, Layout, Pid};
use procfs::FromRead;

const SIGCHLD_BIT: u64 = 1 << (libc::SIGCHLD - 1);

/// What we keep from /proc/PID/stat.
#[derive(Debug, Clone, PartialEq)]
pub struct StatLine {
    pub pid: Pid,
    pub comm: String,
    pub state: char,
    pub ppid: Pid,
    pub start_time: u64,
    pub threads: u32,
    pub layout: Option<Layout>,
    pub fork_signs: ForkSigns,
}

pub fn stat(text: &[u8]) -> ParseResult<StatLine> {
    let s = procfs::process::Stat::from_read(text).map_err(|e| e.to_string())?;
    // Without ptrace access the kernel shows the layout fields as 0.
    let layout = (s.startcode != 0 || s.startstack != 0).then(|| Layout {
        start_code: s.startcode,
        end_code: s.endcode,
        start_stack: s.startstack,
        arg_start: s.arg_start.unwrap_or(0),
    });
    Ok(StatLine {
        pid: s.pid,
        comm: s.comm,
        state: s.state,
        ppid: s.ppid,
        start_time: s.starttime,
        threads: u32::try_from(s.num_threads).unwrap_or(0),
        layout,
        fork_signs: ForkSigns {
            reaped_child_faults: s.cminflt,
            sigchld_handled: (s.sigignore | s.sigcatch) & SIGCHLD_BIT != 0,
            sigchld_caught: s.sigcatch & SIGCHLD_BIT != 0,
        },
    })
}

/// What we keep from /proc/PID/status.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusInfo {
    pub uid: u32,
    /// Innermost pid, when the process lives in a nested pid namespace.
    pub ns_pid: Option<Pid>,
}

/// Bytes, not text: the Name line is whatever the process chose
/// (prctl(PR_SET_NAME) takes any bytes), and must not cost us the Uid line.
pub fn status(text: &[u8]) -> ParseResult<StatusInfo> {
    let field = |name: &[u8]| {
        text.split(|b| *b == b'\n')
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(b":"))
            .map(|v| {
                v.split(u8::is_ascii_whitespace)
                    .filter(|w| !w.is_empty())
                    .map(|w| std::str::from_utf8(w).unwrap_or("\u{fffd}"))
            })
    };
    // Uid: real, effective, saved, filesystem.
    let uid = field(b"Uid")
        .and_then(|mut v| v.next()?.parse().ok())
        .ok_or("status: no Uid line")?;
    // NSpid: the pid in each pid namespace, outermost first (kernels >= 4.1).
    let ns_pid = match field(b"NSpid") {
        Some(v) => {
            let pids = v
                .map(str::parse::<Pid>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("status: NSpid: {e}"))?;
            pids.last().copied().filter(|_| pids.len() > 1)
        }
        None => None,
    };
    Ok(StatusInfo { uid, ns_pid })
}

/// The cgroup that names a unit or container: the v2 path if present, else the
/// first v1 path that is not the root.
pub fn cgroup(text: &str) -> Option<String> {
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(h), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if h == "0" {
            return Some(path.to_string());
        }
        if v1.is_none() && path != "/" {
            v1 = Some(path.to_string());
        }
    }
    v1
}

/// The soft limit of open files from /proc/PID/limits (None when unlimited or absent).
pub fn max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from /proc/self/stat of a python3 process on Linux 6.18 that had
    // installed a SIGCHLD handler, forked once and reaped the child.
    const STAT: &[u8] = b"7447 (python3) R 7445 7445 1048 0 -1 4194304 2935 6744 14 2 6 6 4 4 20 0 1 0 49193 16965632 3352 18446744073709551615 94097246982144 94097246982485 140726916447312 0 0 0 0 16781312 65538 0 0 0 17 0 0 0 0 0 0 94097246993840 94097246994456 94097696100352 140726916450399 140726916450601 140726916450601 140726916452303 0\n";

    #[test]
    fn stat_keeps_tree_layout_and_fork_signs() {
        let s = stat(STAT).unwrap();
        assert_eq!((s.pid, s.ppid, s.state), (7447, 7445, 'R'));
        assert_eq!(s.comm, "python3");
        assert_eq!(s.start_time, 49193);
        assert_eq!(s.fork_signs.reaped_child_faults, 6744);
        // sigcatch 65538 = SIGINT | SIGCHLD.
        assert!(s.fork_signs.sigchld_handled);
        let l = s.layout.unwrap();
        assert_eq!(l.start_code, 94097246982144);
        assert_eq!(l.arg_start, 140726916450399);
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let line = b"42 (a) b) S 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let s = stat(line).unwrap();
        assert_eq!(s.comm, "a) b");
        assert_eq!(s.layout, None);
    }

    #[test]
    fn stat_rejects_garbage() {
        assert!(stat(b"not a stat line").is_err());
    }

    #[test]
    fn cgroup_prefers_v2() {
        assert_eq!(
            cgroup("0::/system.slice/nginx.service\n").as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(
            cgroup("12:pids:/\n3:cpu,cpuacct:/docker/abc\n").as_deref(),
            Some("/docker/abc")
        );
        assert_eq!(cgroup(""), None);
    }

    #[test]
    fn open_files_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(text), Some(1024));
        assert_eq!(
            max_open_files("Max open files  unlimited unlimited files\n"),
            None
        );
    }

    #[test]
    fn status_takes_the_real_uid_and_the_innermost_pid() {
        let host = "Name:\tnginx\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t812\nUid:\t33\t0\t0\t0\nGid:\t33\t33\t33\t33\nNSpid:\t812\n";
        assert_eq!(
            status(host.as_bytes()),
            Ok(StatusInfo {
                uid: 33,
                ns_pid: None
            })
        );
        let pod = "Name:\tapp\nUid:\t1000\t1000\t1000\t1000\nNSpid:\t41234\t7\t1\n";
        assert_eq!(status(pod.as_bytes()).map(|s| s.ns_pid), Ok(Some(1)));
        // Old kernels have no NSpid line.
        assert_eq!(status(b"Uid:\t0\t0\t0\t0\n").map(|s| s.ns_pid), Ok(None));
        assert!(status(b"Name:\tx\n").is_err());
        // A name that is not UTF-8 is data; the uid is still read.
        let hostile = b"Name:\t\xff\xfe\x1b[2J\xe2\x80\xae\nUid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(status(hostile).map(|s| s.uid), Ok(1000));
        assert!(status(b"Uid:\tx\nNSpid:\t1\n").is_err());
        assert!(status(b"Uid:\t1\nNSpid:\t1\tz\n").is_err());
    }
}
