//! Output files (`capture -o`, `check --report`, `check --junit`): what is
//! already at the path decides how it is written.
//!
//! - A regular file, or nothing: replaced atomically. The output goes to a
//!   temporary file in the same directory (so the rename cannot cross
//!   filesystems), is flushed to disk, then renamed over the target in one
//!   step. Any write, flush or sync error (a full disk) fails the write and
//!   removes the temporary file: the path keeps its previous file, or stays
//!   absent, never half an output. SIGINT, SIGTERM or SIGHUP while writing
//!   remove the temporary file too (`signals`).
//! - A symlink is followed: the file it names is written as above, the link
//!   stays.
//! - A character device (`/dev/null`, a terminal) or a FIFO: written through
//!   (streamed) as a shell redirection would, never replaced by a file.
//!   `/dev/stdout`, `/dev/fd/N` and `/proc/*/fd/N` name an already open
//!   file: written through too, appended when it is a regular file.
//! - A directory, a block device or a socket: refused.

mod signals;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Who may read a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// 0666 less the umask, as a shell redirection creates it.
    Default,
    /// 0600: the owner only (snapshots may hold command lines).
    Owner,
}

/// How an output was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub bytes: u64,
    /// Into an existing device, FIFO or open file, rather than a file of its own.
    pub streamed: bool,
}

/// Write `path` with `render` (see the module doc for what each kind of
/// target gets). Missing parent directories of a new file are created (CI
/// steps often name a fresh `test-results/`).
pub fn write(
    path: &Path,
    access: Access,
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<Written, WriteError> {
    let err = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let result = match target(path).map_err(err)? {
        Target::File { path: file, exists } => replace(&file, exists, access, render),
        Target::Stream { append } => stream(path, append, render),
    };
    result.map_err(err)
}

#[derive(Debug, PartialEq)]
enum Target {
    /// Atomic replace of `path` (the symlink's target when the path is one).
    File { path: PathBuf, exists: bool },
    /// Write through what is already there.
    Stream { append: bool },
}

fn target(path: &Path) -> io::Result<Target> {
    let (last, via_proc) = resolve(path)?;
    match fs::metadata(path) {
        Ok(m) => {
            let t = m.file_type();
            if t.is_file() {
                // /dev/stdout redirected to a file: that open file, not a
                // new one at its name.
                Ok(if via_proc {
                    Target::Stream { append: true }
                } else {
                    Target::File {
                        path: last,
                        exists: true,
                    }
                })
            } else if t.is_char_device() || t.is_fifo() {
                Ok(Target::Stream { append: false })
            } else if t.is_dir() {
                Err(refused("is a directory"))
            } else if t.is_block_device() {
                Err(refused(
                    "is a block device; refusing to write over a disk (write to a file on it)",
                ))
            } else if t.is_socket() {
                Err(refused("is a socket"))
            } else {
                Err(refused("is neither a regular file, a device nor a FIFO"))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !via_proc => Ok(Target::File {
            path: last,
            exists: false,
        }),
        Err(e) => Err(e),
    }
}

fn refused(what: &str) -> io::Error {
    io::Error::other(format!("{what}: not written"))
}

/// Follow the symlinks at the end of `path`: the last path of the chain (a
/// file, or nothing yet), and whether the chain went through /proc (an fd
/// link: the target is an already open file, maybe not a path at all).
fn resolve(path: &Path) -> io::Result<(PathBuf, bool)> {
    let mut p = path.to_path_buf();
    let mut via_proc = false;
    // As the kernel's own limit on nested links.
    for _ in 0..40 {
        via_proc |= is_fd_link(&p);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            Ok(_) => return Ok((p, via_proc)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((p, via_proc)),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// `/proc/PID/fd/N`, `/proc/PID/task/TID/fd/N`, `/dev/fd/N`: a name for an
/// open file (`/dev/stdout` is a link to `/proc/self/fd/1`).
fn is_fd_link(p: &Path) -> bool {
    let parts: Vec<&std::ffi::OsStr> = p.iter().collect();
    let s = |i: usize| parts.get(i).and_then(|c| c.to_str());
    match (s(0), s(1)) {
        (Some("/"), Some("dev")) => parts.len() == 4 && s(2) == Some("fd"),
        (Some("/"), Some("proc")) => {
            (parts.len() == 5 && s(3) == Some("fd"))
                || (parts.len() == 7 && s(3) == Some("task") && s(5) == Some("fd"))
        }
        _ => false,
    }
}

fn replace(
    path: &Path,
    exists: bool,
    access: Access,
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<Written> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let tmp = signals::Temp::create(&dir, &name.to_string_lossy(), access)?;
    let bytes = fill(tmp.file()?, render)?;
    tmp.commit(path, exists)?;
    Ok(Written {
        bytes,
        streamed: false,
    })
}

/// Render through a buffer; every write, the final flush and the sync count.
fn fill(file: File, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<u64> {
    let mut out = Counted {
        inner: BufWriter::new(file),
        bytes: 0,
    };
    render(&mut out)?;
    let file = out
        .inner
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok(out.bytes)
}

fn stream(
    path: &Path,
    append: bool,
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<Written> {
    // No O_CREAT, no O_TRUNC: what is there is written into, never made anew.
    // A FIFO blocks here until a reader opens it, as `cmd > fifo` does.
    let file = OpenOptions::new()
        .write(true)
        .append(append)
        .custom_flags(libc::O_NOCTTY)
        .open(path)?;
    // Swapped for a regular file since it was looked at: writing from its
    // start would overwrite part of it.
    if !append && file.metadata()?.is_file() {
        return Err(io::Error::other(
            "became a regular file while being opened: not written",
        ));
    }
    let mut out = Counted {
        inner: BufWriter::new(file),
        bytes: 0,
    };
    render(&mut out)?;
    out.inner.flush()?;
    Ok(Written {
        bytes: out.bytes,
        streamed: true,
    })
}

/// Counts what goes through.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entries(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .map(|r| {
                r.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn put(path: &Path, bytes: &[u8]) -> Result<Written, WriteError> {
        write(path, Access::Default, |o| o.write_all(bytes))
    }

    #[test]
    fn writes_creates_parents_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/report.json");
        put(&path, b"one").unwrap();
        let w = put(&path, b"two").unwrap();
        assert_eq!(
            w,
            Written {
                bytes: 3,
                streamed: false
            }
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(entries(&d.path().join("sub")), vec!["report.json"]);
    }

    #[test]
    fn owner_only_files_are_0600() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("snap.json");
        write(&path, Access::Owner, |o| o.write_all(b"{}")).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_failed_render_leaves_the_old_file_and_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("junit.xml");
        put(&path, b"<old/>").unwrap();
        let e = write(&path, Access::Default, |o| {
            o.write_all(b"<half")?;
            Err(io::Error::other("renderer failed"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("junit.xml"), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "<old/>");
        assert_eq!(entries(d.path()), vec!["junit.xml"]);
        let fresh = d.path().join("never.xml");
        assert!(write(&fresh, Access::Default, |_| Err(io::Error::other("no"))).is_err());
        assert!(!fresh.exists());
        assert_eq!(entries(d.path()), vec!["junit.xml"]);
    }

    #[test]
    fn a_symlink_to_a_file_keeps_the_link_and_replaces_the_file() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.json");
        let link = d.path().join("link.json");
        fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        put(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        // A dangling link: the file it names is created.
        let dangling = d.path().join("dangling.json");
        std::os::unix::fs::symlink("later.json", &dangling).unwrap();
        put(&dangling, b"made").unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("later.json")).unwrap(),
            "made"
        );
        assert_eq!(
            entries(d.path()),
            vec!["dangling.json", "later.json", "link.json", "real.json"]
        );
    }

    #[test]
    fn devices_are_written_through_and_directories_refused() {
        let w = put(Path::new("/dev/null"), b"gone").unwrap();
        assert!(w.streamed);
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let full = put(Path::new("/dev/full"), b"x").unwrap_err();
        assert_eq!(full.source.raw_os_error(), Some(libc::ENOSPC), "{full:#?}");
        let d = tempfile::tempdir().unwrap();
        let e = put(d.path(), b"x").unwrap_err();
        assert!(format!("{:#}", anyhow::Error::from(e)).contains("is a directory"));
        assert!(put(Path::new("/"), b"x").is_err());
    }

    #[test]
    fn fd_links_are_told_from_other_paths_in_proc() {
        for p in ["/proc/self/fd/1", "/proc/42/task/42/fd/3", "/dev/fd/2"] {
            assert!(is_fd_link(Path::new(p)), "{p}");
        }
        for p in [
            "/proc/self/cwd/report.json",
            "/proc/self/fd",
            "/dev/stdout",
            "fd/1",
        ] {
            assert!(!is_fd_link(Path::new(p)), "{p}");
        }
        assert!(resolve(Path::new("/dev/stdout")).unwrap().1);
    }

    #[test]
    fn a_symlink_loop_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", d.path().join("b")).unwrap();
        let e = put(&a, b"x").unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(libc::ELOOP));
    }
}
