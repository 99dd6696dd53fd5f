//! Report files are complete or absent: written to a temporary file in the
//! same directory (so the rename cannot cross filesystems), flushed to disk,
//! then renamed over the target in one step. A crash, a full disk or a
//! render error leaves the previous file (or none), never half a report.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Write `path` with `render`, atomically. Missing parent directories are
/// created (CI steps often name a fresh `test-results/`).
pub fn write(
    path: &Path,
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(err)?;
    let (tmp, file) = create_temp(&dir, &name.to_string_lossy()).map_err(err)?;
    let result = fill(file, render).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

fn fill(file: File, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let mut out = BufWriter::new(file);
    render(&mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()
}

/// A new file `.NAME.cwleak-PID-N.tmp` beside the target (O_EXCL: never
/// someone else's file).
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last = None;
    for n in 0..100 {
        let tmp = dir.join(format!(".{name}.cwleak-{pid}-{n}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name left")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cwleak-atomic-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

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

    #[test]
    fn writes_creates_parents_and_replaces() {
        let d = dir("ok");
        let path = d.join("sub/report.json");
        write(&path, |o| o.write_all(b"one")).unwrap();
        write(&path, |o| o.write_all(b"two")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(entries(&d.join("sub")), vec!["report.json"]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_render_leaves_the_old_file_and_no_temporary() {
        let d = dir("fail");
        let path = d.join("junit.xml");
        write(&path, |o| o.write_all(b"<old/>")).unwrap();
        let e = write(&path, |o| {
            o.write_all(b"<half")?;
            Err(io::Error::other("renderer failed"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("junit.xml"), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "<old/>");
        assert_eq!(entries(&d), vec!["junit.xml"]);
        let fresh = d.join("never.xml");
        assert!(write(&fresh, |_| Err(io::Error::other("no"))).is_err());
        assert!(!fresh.exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_is_not_a_file_name() {
        assert!(write(Path::new("/"), |_| Ok(())).is_err());
    }
}
