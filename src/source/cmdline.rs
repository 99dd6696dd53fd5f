//! Reading /proc/PID/cmdline without hanging. The kernel takes the target's
//! memory-map lock to copy the arguments out, so a process stuck with that
//! lock held (the hung server we were called for) would block the read
//! forever. Each read runs on its own thread with a deadline; a read given up
//! on is reported, and its thread dies with cwleak (the lock wait is killable).

use super::root::ProcRoot;
use super::SourceError;
use crate::model::Pid;
use crate::parse::cmdline;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

pub const DEADLINE: Duration = Duration::from_millis(500);

/// The masked command line of `pid`, or an error (TimedOut when given up on).
pub fn read(root: &ProcRoot, pid: Pid, deadline: Duration) -> Result<String, SourceError> {
    let path = root.join(format!("{pid}/cmdline"));
    let (tx, rx) = mpsc::channel();
    let p: PathBuf = path.clone();
    std::thread::Builder::new()
        .name("cwleak-cmdline".into())
        .spawn(move || {
            let _ = tx.send(std::fs::read(&p));
        })
        .map_err(|e| SourceError::io(Some(pid), &path, e))?;
    match rx.recv_timeout(deadline) {
        Ok(Ok(raw)) => Ok(cmdline::masked(&raw)),
        Ok(Err(e)) => Err(SourceError::io(Some(pid), &path, e)),
        Err(_) => Err(SourceError::io(
            Some(pid),
            &path,
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "gave up after {} ms: the process holds its memory-map lock (hung?)",
                    deadline.as_millis()
                ),
            ),
        )),
    }
}
