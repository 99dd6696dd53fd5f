//! Errors at the OS edge: each one carries the pid and path it came from.

use crate::model::{Pid, Warning, WarningKind};
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}", path.display())]
    Io {
        pid: Option<Pid>,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {message}", path.display())]
    Malformed {
        pid: Option<Pid>,
        path: PathBuf,
        message: String,
    },
    #[error("{} is not a proc filesystem (no numeric process entries, no self/stat)", path.display())]
    NotProc { path: PathBuf },
    #[error("--fds bpf: the task_file iterator cannot run here: {message}")]
    FdIterator { message: String },
    #[error("sock_diag in network namespace {netns}: {message}")]
    Netlink { netns: u64, message: String },
}

impl SourceError {
    pub fn io(pid: Option<Pid>, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SourceError::Io {
            pid,
            path: path.into(),
            source,
        }
    }

    pub fn malformed(
        pid: Option<Pid>,
        path: impl Into<PathBuf>,
        message: impl Into<String>,
    ) -> Self {
        SourceError::Malformed {
            pid,
            path: path.into(),
            message: message.into(),
        }
    }

    /// ENOENT/ESRCH: the process went away while we read it.
    pub fn is_vanished(&self) -> bool {
        matches!(self, SourceError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH)))
    }

    /// The message with its cause, on one line (Display leaves the cause to
    /// the error chain so `{:#}` does not print it twice).
    pub fn full_message(&self) -> String {
        match self {
            SourceError::Io { source, .. } => format!("{self}: {source}"),
            _ => self.to_string(),
        }
    }

    /// Turn a per-process failure into a warning listed in the report.
    pub fn to_warning(&self) -> Warning {
        let (pid, path, kind) = match self {
            SourceError::Io { pid, path, source } => {
                let kind = match source.raw_os_error() {
                    Some(libc::EACCES) | Some(libc::EPERM) => WarningKind::PermissionDenied,
                    Some(libc::ENOENT) | Some(libc::ESRCH) => WarningKind::Vanished,
                    _ if source.kind() == io::ErrorKind::TimedOut => WarningKind::TimedOut,
                    _ => WarningKind::Io,
                };
                (*pid, Some(path.display().to_string()), kind)
            }
            SourceError::Malformed { pid, path, .. } => (
                *pid,
                Some(path.display().to_string()),
                WarningKind::Malformed,
            ),
            SourceError::NotProc { path } => {
                (None, Some(path.display().to_string()), WarningKind::Io)
            }
            SourceError::Netlink { .. } => (None, None, WarningKind::NetTable),
            SourceError::FdIterator { .. } => (None, None, WarningKind::Io),
        };
        Warning {
            pid,
            path,
            kind,
            message: self.full_message(),
        }
    }
}
