//! Details kept between looks (`watch`, `serve`): what a process's status,
//! exe, cgroup and limits said when last read, reused while it is the same
//! process (pid, start time and name: an exec changes the name) and the
//! reading is younger than `KEPT_FOR`. On a busy host these are three files
//! and a readlink per holder at every look, thousands in all, for values
//! that change once in a process's life if ever (setuid, a cgroup move,
//! prlimit); a change is seen within `KEPT_FOR`.

use super::details::ProcFiles;
use super::walk::Walked;
use crate::model::{FastMap, Pid};
use crate::parse::proc_files::StatusInfo;
use std::time::{Duration, Instant};

/// How long a reading stands for the process.
pub const KEPT_FOR: Duration = Duration::from_secs(60);

/// The readings, by pid.
#[derive(Debug)]
pub struct Kept {
    max_age: Duration,
    by_pid: FastMap<Pid, Reading>,
}

/// One process's files as read at `at`: every one of them read whole.
#[derive(Debug, Clone)]
pub struct Reading {
    start_time: u64,
    comm: String,
    at: Instant,
    status: StatusInfo,
    exe: Option<String>,
    cgroup: Option<String>,
    fd_limit: Option<u64>,
}

impl Default for Kept {
    fn default() -> Self {
        Kept::new(KEPT_FOR)
    }
}

impl Kept {
    /// Readings stand for `max_age` (zero: never reused).
    pub fn new(max_age: Duration) -> Self {
        Kept {
            max_age,
            by_pid: FastMap::default(),
        }
    }

    /// The files of `w` as last read, when that reading still stands for
    /// it. Its namespace is not kept (a process can setns): the caller
    /// reads it.
    pub fn get(&self, w: &Walked, now: Instant) -> Option<ProcFiles> {
        let r = self.standing(w, now)?;
        Some(ProcFiles::kept(
            r.status.clone(),
            r.exe.clone(),
            r.cgroup.clone(),
            r.fd_limit,
        ))
    }

    /// The reading of `w`, when it still stands for it.
    pub fn standing(&self, w: &Walked, now: Instant) -> Option<&Reading> {
        let r = self.by_pid.get(&w.process.pid)?;
        let same = r.start_time == w.process.start_time && r.comm == w.process.comm;
        (same && now.saturating_duration_since(r.at) < self.max_age).then_some(r)
    }

    /// Keep what a fresh read of `w`'s files said, if every file was read.
    pub fn reading(w: &Walked, files: &ProcFiles, at: Instant) -> Option<Reading> {
        let whole = files.whole()?;
        Some(Reading {
            start_time: w.process.start_time,
            comm: w.process.comm.clone(),
            at,
            status: whole.status.clone(),
            exe: whole.exe.clone(),
            cgroup: whole.cgroup.clone(),
            fd_limit: whole.fd_limit,
        })
    }

    /// This look's readings in, and out those of processes it did not
    /// read (gone, or no longer of interest): the map stays the size of
    /// one look's holders.
    pub fn update(&mut self, fresh: Vec<(Pid, Reading)>, looked_at: impl Fn(Pid) -> bool) {
        self.by_pid.retain(|pid, _| looked_at(*pid));
        self.by_pid.extend(fresh);
    }
}
