//! Details kept between looks (`watch`, `serve`): what a process's status,
//! exe, cgroup and limits said when last read, reused while it is the same
//! process (pid, start time and name: an exec changes the name) and the
//! reading is younger than `KEPT_FOR`. On a busy host these are three files
//! and a readlink per holder at every look, thousands in all, for values
//! that change once in a process's life if ever (setuid, a cgroup move,
//! prlimit); a change is seen within `KEPT_FOR`.
//!
//! Where the signing program reads each process's facts (`task_files::Facts`:
//! its uid, cgroup, fd limit and exec count are among them), a reading
//! stands while they are the ones it was made under, up to `VOUCHED_FOR`:
//! a change those fields show is seen at the next look, not within a
//! minute, and an unchanged process is not read again every minute.

use super::details::ProcFiles;
use super::walk::Walked;
use crate::model::{FastMap, Pid};
use crate::parse::proc_files::StatusInfo;
use std::time::{Duration, Instant};

/// How long a reading stands for the process.
pub const KEPT_FOR: Duration = Duration::from_secs(60);
/// How long a reading stands while the process's facts are unchanged (what
/// the facts do not show, a new exe through prctl, is seen within it).
pub const VOUCHED_FOR: Duration = Duration::from_secs(600);

/// The readings, by pid.
#[derive(Debug)]
pub struct Kept {
    max_age: Duration,
    by_pid: FastMap<Pid, Reading>,
    /// This look's facts' digests, by pid (`vouch`).
    facts: FastMap<Pid, u64>,
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
    /// The process's facts' digest when it was read.
    facts: Option<u64>,
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
            facts: FastMap::default(),
        }
    }

    /// This look's facts (digests by pid; empty where none were read).
    pub fn vouch(&mut self, facts: FastMap<Pid, u64>) {
        self.facts = facts;
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
        let pid = w.process.pid;
        let r = self.by_pid.get(&pid)?;
        let same = r.start_time == w.process.start_time && r.comm == w.process.comm;
        let age = now.saturating_duration_since(r.at);
        let vouched = !self.max_age.is_zero()
            && age < VOUCHED_FOR
            && r.facts.is_some()
            && r.facts == self.facts.get(&pid).copied();
        (same && (age < self.max_age || vouched)).then_some(r)
    }

    /// Keep what a fresh read of `w`'s files said, if every file was read.
    pub fn reading(&self, w: &Walked, files: &ProcFiles, at: Instant) -> Option<Reading> {
        let whole = files.whole()?;
        Some(Reading {
            start_time: w.process.start_time,
            comm: w.process.comm.clone(),
            at,
            status: whole.status.clone(),
            exe: whole.exe.clone(),
            cgroup: whole.cgroup.clone(),
            fd_limit: whole.fd_limit,
            facts: self.facts.get(&w.process.pid).copied(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Process;

    fn process() -> Walked {
        Walked {
            process: Process {
                pid: 5,
                start_time: 9,
                comm: "server".into(),
                ..Process::default()
            },
            base: "5".into(),
        }
    }

    fn facts(digest: Option<u64>) -> FastMap<Pid, u64> {
        digest.map(|d| (5, d)).into_iter().collect()
    }

    /// Read under facts 77: past KEPT_FOR it stands while the facts are
    /// still 77, up to VOUCHED_FOR; other facts, or none, and it is read
    /// again; a reader that keeps nothing never reuses it.
    #[test]
    fn a_reading_stands_while_its_facts_do() {
        let w = process();
        let files = ProcFiles::kept(
            StatusInfo {
                uid: 0,
                ns_pid: None,
            },
            Some("/usr/bin/server".into()),
            None,
            Some(1024),
        );
        let t0 = Instant::now();
        let read = |max_age| {
            let mut k = Kept::new(max_age);
            k.vouch(facts(Some(77)));
            let r = k.reading(&w, &files, t0).unwrap();
            k.update(vec![(5, r)], |_| true);
            k
        };
        let mut k = read(KEPT_FOR);
        let later = t0 + KEPT_FOR + Duration::from_secs(1);
        assert!(k.get(&w, t0).is_some());
        assert!(k.get(&w, later).is_some(), "vouched for by the same facts");
        assert!(
            k.get(&w, t0 + VOUCHED_FOR).is_none(),
            "not past VOUCHED_FOR"
        );
        k.vouch(facts(Some(78)));
        assert!(k.get(&w, later).is_none(), "other facts");
        assert!(k.get(&w, t0).is_some(), "young: stands as before");
        k.vouch(facts(None));
        assert!(k.get(&w, later).is_none(), "no facts this look");
        let mut never = read(Duration::ZERO);
        never.vouch(facts(Some(77)));
        assert!(never.get(&w, t0).is_none());
    }
}
