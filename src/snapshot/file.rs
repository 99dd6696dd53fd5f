//! Reading and writing snapshot files: JSON, gzip'd when the name ends in .gz,
//! zstd when .zst (readers detect it from the magic bytes, whatever the name).
//! Writes go to a temporary file renamed into place: complete or absent.

use super::{Capture, FORMAT, SCHEMA_VERSION};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Decompressed size beyond which a file is refused (a 100k-socket host is ~50 MB).
const MAX_JSON_BYTES: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The OS error is part of the message, not a `source`: a chain would
    /// print it twice ("...: No such file...: No such file...").
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: not a cwleak snapshot ({reason})", path.display())]
    NotSnapshot { path: PathBuf, reason: String },
    #[error("{}: snapshot schema_version {found}, this cwleak reads {SCHEMA_VERSION}", path.display())]
    Version { path: PathBuf, found: u64 },
    #[error("{}: truncated or corrupted: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

pub fn read(path: &Path) -> Result<Capture, SnapshotError> {
    let io_err = |error| SnapshotError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut head = [0u8; 4];
    let mut f = File::open(path).map_err(io_err)?;
    let n = read_up_to(&mut f, &mut head).map_err(io_err)?;
    let f = File::open(path).map_err(io_err)?;
    let reader: Box<dyn Read> = match &head[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(BufReader::new(f))),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::Decoder::new(f).map_err(io_err)?),
        _ => Box::new(BufReader::new(f)),
    };
    let mut json = Vec::new();
    reader
        .take(MAX_JSON_BYTES)
        .read_to_end(&mut json)
        .map_err(|e| SnapshotError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    parse(path, &json)
}

/// Check the envelope first, so a wrong file says what it is not.
fn parse(path: &Path, json: &[u8]) -> Result<Capture, SnapshotError> {
    let not = |reason: &str| SnapshotError::NotSnapshot {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    #[derive(serde::Deserialize)]
    struct Envelope {
        format: Option<String>,
        schema_version: Option<u64>,
    }
    let env: Envelope = match serde_json::from_slice(json) {
        Ok(e) => e,
        Err(e) if e.is_eof() => {
            return Err(SnapshotError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
        Err(e) if e.is_syntax() && json.first().is_some_and(|b| *b == b'{') => {
            return Err(SnapshotError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
        Err(_) => return Err(not("not a JSON object")),
    };
    if env.format.as_deref() != Some(FORMAT) {
        return Err(not("no \"format\": \"cwleak-snapshot\" field"));
    }
    match env.schema_version {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(found) => {
            return Err(SnapshotError::Version {
                path: path.to_path_buf(),
                found,
            })
        }
        None => return Err(not("no schema_version")),
    }
    let capture: Capture = serde_json::from_slice(json).map_err(|e| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if capture.samples.is_empty() {
        return Err(SnapshotError::Corrupt {
            path: path.to_path_buf(),
            reason: "no samples".into(),
        });
    }
    Ok(capture)
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Write atomically, compressed according to the file name.
pub fn write(path: &Path, capture: &Capture) -> Result<(), SnapshotError> {
    let io_err = |error| SnapshotError::Io {
        path: path.to_path_buf(),
        error,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    {
        let out = BufWriter::new(tmp.as_file());
        let name = path.to_string_lossy();
        let result = if name.ends_with(".gz") {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            serde_json::to_writer(&mut enc, capture)
                .map_err(io::Error::other)
                .and_then(|()| enc.finish().map(drop))
        } else if name.ends_with(".zst") {
            zstd::Encoder::new(out, 6).and_then(|mut enc| {
                serde_json::to_writer(&mut enc, capture).map_err(io::Error::other)?;
                enc.finish().map(drop)
            })
        } else {
            let mut out = out;
            serde_json::to_writer(&mut out, capture)
                .map_err(io::Error::other)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
        };
        result.map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Snapshot;

    fn sample() -> Capture {
        Capture::new(vec![Snapshot::default()], false, 1000, 0)
    }

    #[test]
    fn round_trips_plain_gz_and_zstd() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.json", "a.json.gz", "a.json.zst"] {
            let p = dir.path().join(name);
            write(&p, &sample()).unwrap();
            assert_eq!(read(&p).unwrap(), sample(), "{name}");
        }
    }

    #[test]
    fn bad_files_get_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let cases: [(&[u8], &str); 6] = [
            (b"", "truncated"),
            (b"{\"format\":\"cwleak-snapshot\",\"schema_ver", "truncated"),
            (b"hello world", "not a cwleak snapshot"),
            (b"{\"format\":\"other\"}", "not a cwleak snapshot"),
            (
                b"{\"format\":\"cwleak-snapshot\",\"schema_version\":99}",
                "schema_version 99",
            ),
            (
                b"{\"format\":\"cwleak-snapshot\",\"schema_version\":1,\"samples\":7}",
                "corrupted",
            ),
        ];
        for (bytes, want) in cases {
            std::fs::write(&p, bytes).unwrap();
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{bytes:?}: {e}");
            assert!(e.contains("x.json"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        std::fs::write(&p, [0x1f, 0x8b, 0x08, 0x00, 0x01]).unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("x.json"));
    }
}
