//! The processes --pid and --pidfile name: pidfiles read when asked, and each
//! process told running or exited (with when, once it was watched), so a
//! scope that went away is said, never silently empty.

use super::outcome::Root;
use crate::model::Pid;
use crate::source::exits::ExitWatch;
use crate::source::{self, ProcRoot, SourceError};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub enum RootSpec {
    Pid(Pid),
    Pidfile(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("--pid {pid}: no such process")]
    NoSuchProcess { pid: Pid },
    #[error("--pid {pid}: it has already exited (a zombie its parent has not reaped)")]
    AlreadyExited { pid: Pid },
    #[error("--pidfile {}: cannot read it (is the service started?)", path.display())]
    PidfileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--pidfile {}: {message}", path.display())]
    PidfileContent { path: PathBuf, message: String },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// A process seen running: its pid and start time name it for good.
#[derive(Debug, Clone)]
struct Known {
    pid: Pid,
    start_time: u64,
    comm: String,
}

pub struct Roots {
    specs: Vec<RootSpec>,
    root: ProcRoot,
    known: Vec<Known>,
    /// Live roots only: pidfds name processes of our own pid namespace.
    watch: Option<ExitWatch>,
}

impl Roots {
    /// Every --pid must name a running process now; pidfiles that already
    /// name one are watched from now on too.
    pub fn start(specs: Vec<RootSpec>, root: ProcRoot) -> Result<Self, RootError> {
        let watch = (!specs.is_empty() && source::is_live(&root)).then(ExitWatch::start);
        let mut roots = Roots {
            specs,
            root,
            known: Vec::new(),
            watch,
        };
        for spec in roots.specs.clone() {
            match spec {
                RootSpec::Pid(pid) => {
                    if !roots.see(pid)? {
                        let zombie = source::process_stat(&roots.root, pid)?.is_some();
                        return Err(if zombie {
                            RootError::AlreadyExited { pid }
                        } else {
                            RootError::NoSuchProcess { pid }
                        });
                    }
                }
                RootSpec::Pidfile(path) => {
                    if let Ok(pid) = read_pidfile(&path) {
                        roots.see(pid)?;
                    }
                }
            }
        }
        Ok(roots)
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Each root now: pidfiles read again, running or exited. With
    /// `missing_ok` (samples while the command runs) a pidfile not written
    /// yet leaves its root out instead of being an error.
    pub fn resolve(&mut self, missing_ok: bool) -> Result<Vec<Root>, RootError> {
        let mut out = Vec::new();
        for spec in self.specs.clone() {
            let (pid, from) = match &spec {
                RootSpec::Pid(pid) => (*pid, "--pid".to_string()),
                RootSpec::Pidfile(path) => match read_pidfile(path) {
                    Ok(pid) => (pid, format!("--pidfile {}", path.display())),
                    Err(RootError::PidfileRead { source, .. })
                        if missing_ok && source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                },
            };
            out.push(self.state(pid, from)?);
        }
        Ok(out)
    }

    fn state(&mut self, pid: Pid, from: String) -> Result<Root, RootError> {
        let now = source::process_stat(&self.root, pid)?;
        let known = self.known.iter().find(|k| k.pid == pid).cloned();
        let running = match (&now, &known) {
            (Some(s), Some(k)) => !s.zombie && s.start_time == k.start_time,
            (Some(s), None) => !s.zombie && self.see(pid)?,
            (None, _) => false,
        };
        let exited_at_ms = match (&known, &self.watch) {
            (Some(k), Some(w)) if !running => w.exited_at(k.pid, k.start_time),
            _ => None,
        };
        let comm = known
            .map(|k| k.comm)
            .or_else(|| now.filter(|_| running).map(|s| s.comm));
        Ok(Root {
            pid,
            from,
            comm,
            running,
            exited_at_ms,
        })
    }

    /// Remember `pid` as running (and watch it); false when it is not.
    fn see(&mut self, pid: Pid) -> Result<bool, RootError> {
        let Some(s) = source::process_stat(&self.root, pid)? else {
            return Ok(false);
        };
        if s.zombie {
            return Ok(false);
        }
        if let Some(w) = &self.watch {
            w.watch(&self.root, pid, s.start_time);
        }
        self.known.retain(|k| k.pid != pid);
        self.known.push(Known {
            pid,
            start_time: s.start_time,
            comm: s.comm,
        });
        Ok(true)
    }
}

/// A pid and a newline; anything longer is not a pidfile (and /dev/zero is not read forever).
const PIDFILE_MAX: u64 = 4096;

fn read_pidfile(path: &Path) -> Result<Pid, RootError> {
    use std::io::Read;
    let read = |source| RootError::PidfileRead {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(PIDFILE_MAX)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    parse_pidfile(&bytes).map_err(|message| RootError::PidfileContent {
        path: path.to_path_buf(),
        message,
    })
}

/// The pid on the first line of a pidfile (surrounding blanks ignored). The
/// error never quotes the text: `--pidfile` may name a secret-bearing file.
pub fn parse_pidfile(bytes: &[u8]) -> Result<Pid, String> {
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = first.trim_ascii();
    match std::str::from_utf8(first)
        .ok()
        .and_then(|t| t.parse::<Pid>().ok())
    {
        Some(pid) if pid > 0 => Ok(pid),
        _ if first.is_empty() => Err("line 1: empty (expected a pid)".into()),
        _ => Err(format!(
            "line 1: expected a positive decimal pid, found {} byte(s) of other text (not shown)",
            first.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfiles_hold_one_positive_pid() {
        assert_eq!(parse_pidfile(b"1234\n"), Ok(1234));
        assert_eq!(parse_pidfile(b"  77  \nignored"), Ok(77));
        assert!(parse_pidfile(b"").unwrap_err().contains("empty"));
        assert!(parse_pidfile(b"0\n").is_err());
        assert!(parse_pidfile(b"-5").is_err());
        let e = parse_pidfile(b"root:$6$s3cr3t:19000::::::\n").unwrap_err();
        assert!(!e.contains("root") && !e.contains("s3cr3t"), "{e}");
        assert!(parse_pidfile(b"\xff\xfe").is_err());
    }

    #[test]
    fn our_own_process_runs_and_a_missing_one_is_refused() {
        let me = Pid::try_from(std::process::id()).unwrap_or(1);
        let mut roots = Roots::start(vec![RootSpec::Pid(me)], ProcRoot::new("/proc")).unwrap();
        let r = roots.resolve(false).unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].running && r[0].exited_at_ms.is_none(), "{r:?}");
        let err = Roots::start(vec![RootSpec::Pid(i32::MAX)], ProcRoot::new("/proc"));
        assert!(matches!(err, Err(RootError::NoSuchProcess { pid }) if pid == i32::MAX));
    }
}
