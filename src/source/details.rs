//! Phase three: details read only for the processes that matter (holders of
//! sockets of interest and their ancestors): uid, exe, cgroup, fd limit, and
//! the cloexec flag of the fds that matter.

use super::flags::FlagPolicy;
use super::root::ProcRoot;
use super::walk::Walked;
use crate::model::Warning;
use crate::parse::{fdinfo, proc_files};
use std::path::Path;

/// Fill in the details of one process; `flags` selects the fds whose fdinfo to read.
pub fn read_details(
    root: &ProcRoot,
    w: &mut Walked,
    flags: &FlagPolicy,
    warnings: &mut Vec<Warning>,
) {
    let pid = w.process.pid;
    let proc_dir = Path::new(&pid.to_string()).to_path_buf();
    let mut buf = Vec::new();
    // A process that exits now has still been seen; missing details are not worth a warning.
    let mut note = |e: super::SourceError| {
        if !e.is_vanished() {
            warnings.push(e.to_warning());
        }
    };
    match root.read_into(Some(pid), &w.base.join("status"), &mut buf) {
        Ok(()) => match proc_files::status(&buf) {
            Ok(s) => {
                w.process.uid = s.uid;
                w.process.ns_pid = s.ns_pid;
            }
            Err(m) => note(super::SourceError::malformed(
                Some(pid),
                root.join(w.base.join("status")),
                m,
            )),
        },
        Err(e) => note(e),
    }
    // Walked processes without sockets skipped ns/net; ancestors are named in reports.
    if w.process.netns.is_none() {
        if let Ok(t) = root.read_link(Some(pid), &w.base.join("ns/net")) {
            w.process.netns = crate::parse::link::bracket_inode(&t, b"net");
        }
    }
    match root.read_link(Some(pid), &proc_dir.join("exe")) {
        Ok(t) => w.process.exe = Some(exe_name(&t)),
        // Kernel threads have no exe; permission errors leave it unknown.
        Err(_) => w.process.exe = None,
    }
    if let Ok(text) = root.read_string(Some(pid), &proc_dir.join("cgroup")) {
        w.process.cgroup = proc_files::cgroup(&text);
    }
    if let Ok(text) = root.read_string(Some(pid), &proc_dir.join("limits")) {
        w.process.fd_limit = proc_files::max_open_files(&text);
    }
    let fds = flags.wanted(&w.process);
    for s in w.process.sockets.iter_mut().filter(|s| fds.contains(&s.fd)) {
        let rel = w.base.join(format!("fdinfo/{}", s.fd));
        match root.read_string(Some(pid), &rel) {
            Ok(text) => match fdinfo::cloexec(&text) {
                Ok(c) => s.cloexec = Some(c),
                Err(m) => note(super::SourceError::malformed(Some(pid), root.join(&rel), m)),
            },
            Err(e) => note(e),
        }
    }
}

/// The exe link as text; the kernel appends " (deleted)" after an upgrade.
fn exe_name(target: &[u8]) -> String {
    String::from_utf8_lossy(target).into_owned()
}
