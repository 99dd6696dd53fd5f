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
            .and_then(|f| read_all(f, buf))
            .map_err(|e| SourceError::io(pid, &path, e))?;
        Ok(())
    }

    pub fn read_string(&self, pid: Option<Pid>, rel: &Path) -> Result<String, SourceError> {
        let mut buf = Vec::new();
        self.read_into(pid, rel, &mut buf)?;
        String::from_utf8(buf).map_err(|_| {
            let e = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            );
            SourceError::io(pid, self.join(rel), e)
        })
    }

    pub fn read_link(&self, pid: Option<Pid>, rel: &Path) -> Result<Vec<u8>, SourceError> {
        use std::os::unix::ffi::OsStringExt;
        let path = self.join(rel);
        std::fs::read_link(&path)
            .map(|p| p.into_os_string().into_vec())
            .map_err(|e| SourceError::io(pid, &path, e))
    }
}

/// A whole file appended to `buf` with plain `read`s until end of file.
/// `read_to_end` first asks the file its size (`statx`) and position
/// (`lseek`), and a /proc file says 0 bytes: two system calls per file for
/// nothing, ten thousand of them in a look at 2,000 processes.
fn read_all(mut f: std::fs::File, buf: &mut Vec<u8>) -> std::io::Result<()> {
    // Through a chunk on the stack: the copy costs less than zeroing the
    // vector's spare room before each read would (a read of a pipe or a
    // large table can return much less than the room).
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_files_of_any_size_and_proc_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [0usize, 1, 511, 4096, 4097, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            std::fs::write(dir.path().join("f"), &data).expect("write");
            let mut buf = b"old".to_vec();
            ProcRoot::new(dir.path())
                .read_into(None, Path::new("f"), &mut buf)
                .expect("read");
            assert_eq!(buf, data, "{len} bytes");
        }
        // A /proc file: its size says 0, its content is what a read gives.
        let root = ProcRoot::new("/proc");
        let status = root
            .read_string(None, Path::new("self/limits"))
            .expect("limits");
        assert!(status.starts_with("Limit"), "{status}");
        std::fs::write(dir.path().join("bad"), [0xff, 0xfe]).expect("write");
        let e = ProcRoot::new(dir.path())
            .read_string(Some(7), Path::new("bad"))
            .expect_err("not UTF-8");
        let message = e.to_warning().message;
        assert!(message.contains("UTF-8"), "{message}");
    }
}
