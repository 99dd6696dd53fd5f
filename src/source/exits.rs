//! When the processes a check is scoped to exit. A pidfd becomes readable the
//! moment its process exits, so a thread polling the pidfds records the exit
//! time as it happens, not when someone next looks. Live only: pidfds name
//! processes of cwleak's own pid namespace, not of a recorded tree.

use super::root::ProcRoot;
use crate::model::Pid;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the watcher picks up newly watched processes and its stop
/// flag; an exit is seen at once by the kernel's wake-up, not after this.
const POLL: Duration = Duration::from_millis(20);

/// A process by identity: a pid alone may be reused after an exit.
pub type Identity = (Pid, u64);

struct Watched {
    id: Identity,
    fd: OwnedFd,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    watched: Mutex<Vec<Watched>>,
    /// Exit times, milliseconds since the epoch.
    exits: Mutex<HashMap<Identity, u64>>,
}

/// Watches processes for exit until dropped.
pub struct ExitWatch {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ExitWatch {
    pub fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("cwleak-exits".into())
            .spawn(move || watch_loop(&s))
            .ok();
        ExitWatch { shared, thread }
    }

    /// Watch `pid`, whose stat start time is `start_time`. False when it
    /// cannot be watched (no pidfd support, already gone, or the pid now
    /// names another process): its exit time will be unknown.
    pub fn watch(&self, root: &ProcRoot, pid: Pid, start_time: u64) -> bool {
        let id = (pid, start_time);
        let mut watched = self
            .shared
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if watched.iter().any(|w| w.id == id) {
            return true;
        }
        let Some(fd) = pidfd_open(pid) else {
            return false;
        };
        // The pidfd is for whatever has this pid now: make sure it is still
        // the process we were told about, not a successor.
        let same = super::process_stat(root, pid)
            .ok()
            .flatten()
            .is_some_and(|s| s.start_time == start_time);
        if same {
            watched.push(Watched { id, fd });
        }
        same
    }

    /// When the process exited (ms since the epoch), if it did while watched.
    pub fn exited_at(&self, pid: Pid, start_time: u64) -> Option<u64> {
        let id = (pid, start_time);
        // An exit the thread has not picked up yet (it only just happened,
        // or the watch only just began): its time is now, within a poll.
        let pending = self
            .shared
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|w| w.id == id)
            .is_some_and(|w| readable(&w.fd));
        let mut exits = self
            .shared
            .exits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pending {
            exits.entry(id).or_insert_with(now_ms);
        }
        exits.get(&id).copied()
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch_loop(s: &Shared) {
    while !s.stop.load(Ordering::Relaxed) {
        let mut fds: Vec<libc::pollfd> = s
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|w| libc::pollfd {
                fd: w.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if fds.is_empty() {
            std::thread::sleep(POLL);
            continue;
        }
        let timeout = i32::try_from(POLL.as_millis()).unwrap_or(100);
        let n = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
        // SAFETY: `fds` is a valid array of `n` pollfds. The fds stay open
        // meanwhile: only this thread removes (and so closes) them.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout) };
        if r <= 0 {
            continue;
        }
        let now = now_ms();
        let gone: Vec<i32> = fds
            .iter()
            .filter(|p| p.revents != 0)
            .map(|p| p.fd)
            .collect();
        let mut watched = s.watched.lock().unwrap_or_else(PoisonError::into_inner);
        let mut exits = s.exits.lock().unwrap_or_else(PoisonError::into_inner);
        watched.retain(|w| {
            let exited = gone.contains(&w.fd.as_raw_fd());
            if exited {
                // exited_at may have recorded it first, as it happened.
                exits.entry(w.id).or_insert(now);
            }
            !exited
        });
    }
}

/// A pidfd is readable once its process has exited.
fn readable(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; timeout 0 never blocks.
    unsafe { libc::poll(&raw mut p, 1, 0) == 1 }
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just gave us this fd; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_exit_of_a_child() {
        let Ok(mut child) = std::process::Command::new("sleep").arg("0.3").spawn() else {
            crate::skip::skip("exits::records_the_exit_of_a_child", "no sleep binary");
            return;
        };
        let pid = Pid::try_from(child.id()).unwrap_or(0);
        let root = ProcRoot::new("/proc");
        let start = super::super::process_stat(&root, pid)
            .ok()
            .flatten()
            .map(|s| s.start_time)
            .unwrap_or(0);
        let w = ExitWatch::start();
        let before = now_ms();
        assert!(w.watch(&root, pid, start));
        assert!(
            !w.watch(&root, pid, start + 1),
            "another start time is another process"
        );
        let _ = child.wait();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while w.exited_at(pid, start).is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let at = w.exited_at(pid, start);
        assert!(at.is_some_and(|t| t >= before), "{at:?}");
    }
}
