//! Phase three: details read only for the processes that matter (holders of
//! sockets of interest and their ancestors): uid, exe, cgroup, fd limit, and
//! the cloexec flag of the fds that matter.
//!
//! The per-process files do not depend on the TCP tables, so they can be read
//! ahead while the kernel dumps them (`read_ahead`); only the fdinfo of the
//! fds that matter waits for the tables.

use super::flags::FlagPolicy;
use super::root::ProcRoot;
use super::walk::Walked;
use crate::model::{FastMap, Pid, Warning};
use crate::parse::{fdinfo, proc_files};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// What a process's own files say about it, read before it is applied.
#[derive(Debug, Default)]
pub struct ProcFiles {
    status: Option<proc_files::StatusInfo>,
    netns: Option<crate::model::Inode>,
    exe: Option<String>,
    /// Outer None: the file could not be read (what the process had stays).
    cgroup: Option<Option<String>>,
    fd_limit: Option<Option<u64>>,
    warnings: Vec<Warning>,
}

/// Every file of a process read (`ProcFiles::whole`).
pub struct Whole<'a> {
    pub status: &'a proc_files::StatusInfo,
    pub exe: &'a Option<String>,
    pub cgroup: &'a Option<String>,
    pub fd_limit: Option<u64>,
}

/// Read status, exe, cgroup and limits of one walked process.
pub fn read_files(root: &ProcRoot, w: &Walked, buf: &mut Vec<u8>) -> ProcFiles {
    let pid = w.process.pid;
    let proc_dir = Path::new(&pid.to_string()).to_path_buf();
    let mut out = ProcFiles::default();
    // A process that exits now has still been seen; missing details are not worth a warning.
    let mut note = |e: super::SourceError| {
        if !e.is_vanished() {
            out.warnings.push(e.to_warning());
        }
    };
    match root.read_into(Some(pid), &w.base.join("status"), buf) {
        Ok(()) => match proc_files::status(buf) {
            Ok(s) => out.status = Some(s),
            Err(m) => note(super::SourceError::malformed(
                Some(pid),
                root.join(w.base.join("status")),
                m,
            )),
        },
        Err(e) => note(e),
    }
    out.netns = netns_if_unknown(root, w);
    // Kernel threads have no exe; permission errors leave it unknown.
    if let Ok(t) = root.read_link(Some(pid), &proc_dir.join("exe")) {
        out.exe = Some(exe_name(&t));
    }
    // A cgroup directory's name is any bytes: shown lossily, never dropped.
    if root
        .read_into(Some(pid), &proc_dir.join("cgroup"), buf)
        .is_ok()
    {
        out.cgroup = Some(proc_files::cgroup(&String::from_utf8_lossy(buf)));
    }
    if let Ok(text) = root.read_string(Some(pid), &proc_dir.join("limits")) {
        out.fd_limit = Some(proc_files::max_open_files(&text));
    }
    out
}

/// Walked processes without sockets skipped ns/net; ancestors are named in reports.
fn netns_if_unknown(root: &ProcRoot, w: &Walked) -> Option<crate::model::Inode> {
    if w.process.netns.is_some() {
        return None;
    }
    let t = root
        .read_link(Some(w.process.pid), &w.base.join("ns/net"))
        .ok()?;
    crate::parse::link::bracket_inode(&t, b"net")
}

impl ProcFiles {
    /// Files read at an earlier look (`details_kept`).
    pub fn kept(
        status: proc_files::StatusInfo,
        exe: Option<String>,
        cgroup: Option<String>,
        fd_limit: Option<u64>,
    ) -> ProcFiles {
        ProcFiles {
            status: Some(status),
            netns: None,
            exe,
            cgroup: Some(cgroup),
            fd_limit: Some(fd_limit),
            warnings: Vec::new(),
        }
    }

    /// The namespace, which is never kept: read now if the walk did not.
    pub fn with_netns(mut self, root: &ProcRoot, w: &Walked) -> ProcFiles {
        self.netns = netns_if_unknown(root, w);
        self
    }

    /// Status, exe, cgroup and fd limit, when every file was read without
    /// a warning (a kernel thread has no exe: that is read too).
    pub fn whole(&self) -> Option<Whole<'_>> {
        if !self.warnings.is_empty() {
            return None;
        }
        Some(Whole {
            status: self.status.as_ref()?,
            exe: &self.exe,
            cgroup: self.cgroup.as_ref()?,
            fd_limit: self.fd_limit?,
        })
    }

    pub fn apply(self, w: &mut Walked, warnings: &mut Vec<Warning>) {
        if let Some(s) = self.status {
            w.process.uid = s.uid;
            w.process.ns_pid = s.ns_pid;
        }
        if self.netns.is_some() {
            w.process.netns = self.netns;
        }
        w.process.exe = self.exe;
        if let Some(c) = self.cgroup {
            w.process.cgroup = c;
        }
        if let Some(l) = self.fd_limit {
            w.process.fd_limit = l;
        }
        warnings.extend(self.warnings);
    }
}

/// Read the files of socket holders, in walk order, until `stop` is set: the
/// work of one otherwise idle core while the kernel dumps its tables. What is
/// read for a process that turns out not to matter is dropped unused; so is
/// a process whose details an earlier look keeps.
pub fn read_ahead(
    root: &ProcRoot,
    walked: &[Walked],
    kept: Option<&super::details_kept::Kept>,
    stop: &AtomicBool,
) -> FastMap<Pid, ProcFiles> {
    let mut out = FastMap::default();
    let mut buf = Vec::new();
    let now = std::time::Instant::now();
    let unkept = |w: &&Walked| kept.is_none_or(|k| k.standing(w, now).is_none());
    for w in walked
        .iter()
        .filter(|w| !w.process.sockets.is_empty())
        .filter(unkept)
    {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        out.insert(w.process.pid, read_files(root, w, &mut buf));
    }
    out
}

/// The cloexec flag of the fds `flags` selects, where the look does not
/// know it yet (a reused process whose close-on-exec bits did not move
/// keeps the flags last read).
pub fn read_flags(
    root: &ProcRoot,
    w: &mut Walked,
    flags: &FlagPolicy,
    warnings: &mut Vec<Warning>,
) {
    let pid = w.process.pid;
    if w.process.sockets.iter().all(|s| s.cloexec.is_some()) {
        return;
    }
    let fds = flags.wanted(&w.process);
    for s in w
        .process
        .sockets
        .iter_mut()
        .filter(|s| s.cloexec.is_none() && fds.contains(&s.fd))
    {
        let rel = match s.tid {
            Some(tid) => PathBuf::from(format!("{pid}/task/{tid}/fdinfo/{}", s.fd)),
            None => w.base.join(format!("fdinfo/{}", s.fd)),
        };
        match root.read_string(Some(pid), &rel) {
            Ok(text) => match fdinfo::cloexec(&text) {
                Ok(c) => s.cloexec = Some(c),
                Err(m) => warnings.push(
                    super::SourceError::malformed(Some(pid), root.join(&rel), m).to_warning(),
                ),
            },
            Err(e) if e.is_vanished() => {}
            Err(e) => warnings.push(e.to_warning()),
        }
    }
}

/// The exe link as text; the kernel appends " (deleted)" after an upgrade.
fn exe_name(target: &[u8]) -> String {
    String::from_utf8_lossy(target).into_owned()
}
