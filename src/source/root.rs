//! Reading files under a proc root, without allocating in the hot loop: the fd
//! walk uses directory fds and `readlinkat` into a stack buffer.

use super::SourceError;
use crate::model::Pid;
use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// A proc root: `/proc`, a recorded fixture tree, or any directory shaped like one.
#[derive(Debug, Clone)]
pub struct ProcRoot {
    path: PathBuf,
}

impl ProcRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ProcRoot { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Numeric entries: thread-group ids (threads live under PID/task).
    pub fn pids(&self) -> Result<Vec<Pid>, SourceError> {
        let dir =
            std::fs::read_dir(&self.path).map_err(|e| SourceError::io(None, &self.path, e))?;
        let mut pids: Vec<Pid> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Read a whole small file into `buf` (cleared first).
    pub fn read_into(
        &self,
        pid: Option<Pid>,
        rel: &Path,
        buf: &mut Vec<u8>,
    ) -> Result<(), SourceError> {
        let path = self.join(rel);
        buf.clear();
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(buf))
            .map_err(|e| SourceError::io(pid, &path, e))?;
        Ok(())
    }

    pub fn read_string(&self, pid: Option<Pid>, rel: &Path) -> Result<String, SourceError> {
        let path = self.join(rel);
        std::fs::read_to_string(&path).map_err(|e| SourceError::io(pid, &path, e))
    }

    pub fn read_link(&self, pid: Option<Pid>, rel: &Path) -> Result<Vec<u8>, SourceError> {
        use std::os::unix::ffi::OsStringExt;
        let path = self.join(rel);
        std::fs::read_link(&path)
            .map(|p| p.into_os_string().into_vec())
            .map_err(|e| SourceError::io(pid, &path, e))
    }
}

/// readlinkat(dir, name) into `buf`; returns the target bytes.
pub fn readlink_at<'b>(
    dir: BorrowedFd<'_>,
    name: &CStr,
    buf: &'b mut [u8; 256],
) -> std::io::Result<&'b [u8]> {
    // SAFETY: dir is a live fd, name is NUL-terminated, buf is writable for its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = usize::try_from(n).unwrap_or(0);
    Ok(&buf[..n])
}
