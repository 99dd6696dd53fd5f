//! The temporary file of an atomic write, removed whatever ends the write:
//! an error (Drop), or SIGINT, SIGTERM or SIGHUP (a cancelled job, Ctrl-C, a
//! closed terminal) while it exists. The handler unlinks the file, then lets
//! the signal end the process as it would have (status 128+N in a shell).
//! A signal the process ignores (`nohup`, a background job's SIGINT) stays
//! ignored.

use super::Access;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The temporary file's name for the handler (null: none). One write at a
/// time: outputs are written one after the other.
static TEMP: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

pub struct Temp {
    path: PathBuf,
    file: Option<File>,
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Temp {
    /// A new file `.NAME.cwleak-PID-N.tmp` in `dir` (O_EXCL: never someone
    /// else's file), removed on drop unless committed.
    pub fn create(dir: &Path, name: &str, access: Access) -> io::Result<Temp> {
        let pid = std::process::id();
        let mode = match access {
            Access::Default => 0o666,
            Access::Owner => 0o600,
        };
        let mut last = None;
        for n in 0..100 {
            let path = dir.join(format!(".{name}.cwleak-{pid}-{n}.tmp"));
            // Registered before it exists: a signal between the open and the
            // registration would leave it behind.
            let mut temp = Temp {
                previous: register(&path),
                path,
                file: None,
            };
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&temp.path)
            {
                Ok(f) => {
                    temp.file = Some(f);
                    return Ok(temp);
                }
                Err(e) => {
                    // Not ours: unregister without removing.
                    temp.unregister();
                    temp.path = PathBuf::new();
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no temporary name left")))
    }

    /// The open file (once).
    pub fn file(&self) -> io::Result<File> {
        match &self.file {
            Some(f) => f.try_clone(),
            None => Err(io::Error::other("temporary file already taken")),
        }
    }

    /// Move the finished file to `target`. `exists`: `target` was a regular
    /// file when the write began (replace it); else it must still be absent.
    pub fn commit(mut self, target: &Path, exists: bool) -> io::Result<()> {
        self.file = None;
        let result = if exists {
            replace_file(&self.path, target)
        } else {
            rename_new(&self.path, target)
        };
        if result.is_ok() {
            self.unregister();
            self.path = PathBuf::new();
        }
        result
    }

    fn unregister(&mut self) {
        let p = TEMP.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if !p.is_null() {
            // SAFETY: made by CString::into_raw in `register`; the swap
            // took it from the handler, which can no longer see it.
            drop(unsafe { CString::from_raw(p) });
        }
        restore(&std::mem::take(&mut self.previous));
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        self.file = None;
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
            self.unregister();
        }
    }
}

/// Still a regular file (not swapped for a device since): rename over it.
fn replace_file(tmp: &Path, target: &Path) -> io::Result<()> {
    if !fs::symlink_metadata(target)?.is_file() {
        return Err(io::Error::other(
            "stopped being a regular file while being written: not replaced",
        ));
    }
    fs::rename(tmp, target)
}

/// Rename without replacing: something that appeared at `target` meanwhile
/// (maybe a device) is not destroyed.
fn rename_new(tmp: &Path, target: &Path) -> io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(
        AT_FDCWD,
        tmp,
        AT_FDCWD,
        target,
        RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => {
            // Another writer made a regular file there: last one wins, as
            // for an existing file; anything else is left alone.
            replace_file(tmp, target)
        }
        // A filesystem without RENAME_NOREPLACE: a hard link does not
        // replace either.
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
            match fs::hard_link(tmp, target) {
                Ok(()) => fs::remove_file(tmp),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => replace_file(tmp, target),
                Err(_) => fs::rename(tmp, target),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Publish `path` for the handler, and catch the signals that end a run.
fn register(path: &Path) -> Vec<(libc::c_int, libc::sigaction)> {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let old = TEMP.swap(c.into_raw(), Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: as in `unregister`.
        drop(unsafe { CString::from_raw(old) });
    }
    let mut previous = Vec::new();
    for sig in SIGNALS {
        // SAFETY: sigaction is plain data; the handler only uses an atomic,
        // unlink, sigaction and raise, all async-signal-safe.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &raw mut old) != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                // Ignored, or someone else's handler: leave it.
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut sa.sa_mask);
            if libc::sigaction(sig, &raw const sa, std::ptr::null_mut()) == 0 {
                previous.push((sig, old));
            }
        }
    }
    previous
}

fn restore(previous: &[(libc::c_int, libc::sigaction)]) {
    for (sig, old) in previous {
        // SAFETY: `old` is what sigaction returned for this signal.
        unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    let p = TEMP.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: unlink, signal and raise are async-signal-safe; `p` is a
    // valid C string that nobody frees once swapped out here.
    unsafe {
        if !p.is_null() {
            libc::unlink(p);
        }
        // Die of the signal, as without the handler: it is blocked while
        // the handler runs, and delivered with the default action on return.
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_path_that_appeared_meanwhile_is_not_destroyed() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        fs::write(&tmp, "new").unwrap();
        let target = d.path().join("dir");
        fs::create_dir(&target).unwrap();
        assert!(rename_new(&tmp, &target).is_err());
        assert!(target.is_dir());
        let file = d.path().join("file");
        fs::write(&file, "other writer").unwrap();
        rename_new(&tmp, &file).unwrap();
        assert_eq!(fs::read_to_string(&file).unwrap(), "new");
    }
}
