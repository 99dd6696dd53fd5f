//! Reading and writing snapshot files: JSON, gzip'd when the name ends in .gz,
//! zstd when .zst (readers detect it from the magic bytes, whatever the name).
//! Writes go through `crate::output`: a file is complete or absent.
//!
//! A reader opens the file once (a pipe or a FIFO can be read only once),
//! refuses what does not start as a JSON object, parses while decompressing,
//! keeps only the look asked for, and stops at a cap on the decompressed
//! size and on any one string: a small decompression bomb costs neither
//! gigabytes of memory nor minutes.

use super::{Capture, FORMAT, SCHEMA_VERSION};
use crate::model::Snapshot;
use crate::output::{self, Access, Written};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Default cap on a snapshot's decompressed size (`--max-snapshot-size`).
/// A look at a 100k-socket host is about 50 MB of JSON.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// No string in a snapshot comes near this (command lines are the longest).
const MAX_STRING_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}: not a cwleak snapshot ({reason})", path.display())]
    NotSnapshot { path: PathBuf, reason: String },
    #[error("{}: snapshot schema_version {found}, this cwleak reads {SCHEMA_VERSION}", path.display())]
    Version { path: PathBuf, found: u64 },
    #[error("{}: truncated or corrupted: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "{}: more than {} once decompressed; refused (raise the cap with --max-snapshot-size)",
        path.display(),
        size_text(*max)
    )]
    TooLarge { path: PathBuf, max: u64 },
}

/// Which looks to keep while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    All,
    /// The last one.
    Last,
    /// 0-based.
    Index(usize),
}

/// A snapshot file's header, the looks kept, and how many it holds.
#[derive(Debug)]
pub struct Loaded {
    pub capture: Capture,
    pub looks: usize,
}

/// Every look of `path`, with the default cap.
pub fn read(path: &Path) -> Result<Capture, SnapshotError> {
    read_keeping(path, Keep::All, DEFAULT_MAX_BYTES).map(|l| l.capture)
}

/// Read `path`, keeping the looks `keep` names, refusing more than
/// `max_bytes` of decompressed JSON.
pub fn read_keeping(path: &Path, keep: Keep, max_bytes: u64) -> Result<Loaded, SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut f = File::open(path).map_err(io_err)?;
    if f.metadata().map_err(io_err)?.is_dir() {
        return Err(io_err(io::Error::other("is a directory")));
    }
    // Peek at the magic bytes of the one open file (up to 4: a short read of
    // a pipe is read on), then read on from them.
    let mut head = Vec::with_capacity(4);
    (&mut f).take(4).read_to_end(&mut head).map_err(io_err)?;
    let raw = io::Cursor::new(head.clone()).chain(f);
    let decoded: Box<dyn Read> = match head.as_slice() {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(raw))),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::Decoder::new(raw).map_err(io_err)?),
        _ => Box::new(raw),
    };
    let over = Rc::new(Cell::new(None));
    let mut json = BufReader::with_capacity(
        1 << 16,
        Capped {
            inner: decoded,
            left: max_bytes,
            string: None,
            over: Rc::clone(&over),
        },
    );
    let too_large = |e: Option<Over>, other: String| match e {
        Some(Over::Total) => SnapshotError::TooLarge {
            path: path.to_path_buf(),
            max: max_bytes,
        },
        Some(Over::String) => SnapshotError::NotSnapshot {
            path: path.to_path_buf(),
            reason: format!("a string longer than {}", size_text(MAX_STRING_BYTES)),
        },
        None => corrupt(other),
    };
    match first_byte(&mut json) {
        Ok(Some(b'{')) => {}
        Ok(Some(_)) => {
            return Err(SnapshotError::NotSnapshot {
                path: path.to_path_buf(),
                reason: "not a JSON object".into(),
            })
        }
        Ok(None) => return Err(corrupt("empty".into())),
        Err(e) => return Err(too_large(over.get(), e.to_string())),
    }
    let rejected = Cell::new(None);
    let mut de = serde_json::Deserializer::from_reader(json);
    let parsed = Top {
        keep,
        rejected: &rejected,
    }
    .deserialize(&mut de)
    .and_then(|l| de.end().map(|()| l));
    match (parsed, rejected.take()) {
        (_, Some(Reject::NotSnapshot(reason))) => Err(SnapshotError::NotSnapshot {
            path: path.to_path_buf(),
            reason,
        }),
        (_, Some(Reject::Version(found))) => Err(SnapshotError::Version {
            path: path.to_path_buf(),
            found,
        }),
        (Ok(l), None) => Ok(l),
        (Err(e), None) => Err(too_large(over.get(), e.to_string())),
    }
}

/// The first byte that is not JSON whitespace (None: there is none).
fn first_byte(r: &mut impl io::BufRead) -> io::Result<Option<u8>> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        match buf.iter().position(|b| !b" \t\r\n".contains(b)) {
            Some(i) => return Ok(Some(buf[i])),
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

/// "1 GiB", "16 MiB", "1000 bytes".
pub fn size_text(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Total,
    String,
}

/// The decompressed stream, cut off (with an error) past `left` bytes or
/// inside a string longer than `MAX_STRING_BYTES`.
struct Capped {
    inner: Box<dyn Read>,
    left: u64,
    /// Inside a string: its length so far, and whether the last byte was a
    /// backslash.
    string: Option<(u64, bool)>,
    over: Rc<Cell<Option<Over>>>,
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(self.fail(Over::Total));
        }
        self.left -= n as u64;
        for &b in &buf[..n] {
            self.string = match self.string {
                None if b == b'"' => Some((0, false)),
                None => None,
                Some((len, _)) if len >= MAX_STRING_BYTES => return Err(self.fail(Over::String)),
                Some((len, true)) => Some((len + 1, false)),
                Some((_, false)) if b == b'"' => None,
                Some((len, false)) => Some((len + 1, b == b'\\')),
            };
        }
        Ok(n)
    }
}

impl Capped {
    fn fail(&self, what: Over) -> io::Error {
        self.over.set(Some(what));
        io::Error::other("size cap reached")
    }
}

/// Why the envelope was refused (told apart from a parse error).
#[derive(Debug)]
enum Reject {
    NotSnapshot(String),
    Version(u64),
}

/// The top-level object: the envelope is checked as soon as it is read (our
/// writer puts it first), so a foreign or newer file is refused before its
/// looks are parsed.
struct Top<'a> {
    keep: Keep,
    rejected: &'a Cell<Option<Reject>>,
}

impl Top<'_> {
    fn reject<E: de::Error>(&self, why: Reject) -> E {
        let text = format!("{why:?}");
        self.rejected.set(Some(why));
        E::custom(text)
    }
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = Loaded;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Loaded, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Loaded;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a cwleak snapshot object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loaded, A::Error> {
        let mut format = None;
        let mut version = None;
        let mut tool_version = None;
        let mut cmdline_kept = None;
        let mut settle_ms = None;
        let mut interval_ms = None;
        let mut samples = None;
        // Looks met before the envelope (a reordered file): parsed after it.
        let mut early: Option<Box<serde_json::value::RawValue>> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => {
                    let f: String = map.next_value()?;
                    if f != FORMAT {
                        return Err(self.reject(Reject::NotSnapshot(
                            "no \"format\": \"cwleak-snapshot\" field".into(),
                        )));
                    }
                    format = Some(f);
                }
                "schema_version" => {
                    let v: u64 = map.next_value()?;
                    if v != u64::from(SCHEMA_VERSION) {
                        return Err(self.reject(Reject::Version(v)));
                    }
                    version = Some(v);
                }
                "tool_version" => tool_version = Some(map.next_value::<String>()?),
                "cmdline_kept" => cmdline_kept = Some(map.next_value::<bool>()?),
                "settle_ms" => settle_ms = Some(map.next_value::<u64>()?),
                "interval_ms" => interval_ms = Some(map.next_value::<u64>()?),
                "samples" if format.is_some() && version.is_some() => {
                    samples = Some(map.next_value_seed(Samples(self.keep))?);
                }
                "samples" => early = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if format.is_none() {
            return Err(self.reject(Reject::NotSnapshot(
                "no \"format\": \"cwleak-snapshot\" field".into(),
            )));
        }
        if version.is_none() {
            return Err(self.reject(Reject::NotSnapshot("no schema_version".into())));
        }
        if let Some(raw) = early {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            samples = Some(
                Samples(self.keep)
                    .deserialize(&mut de)
                    .map_err(de::Error::custom)?,
            );
        }
        let (samples, looks) = samples.ok_or_else(|| de::Error::missing_field("samples"))?;
        if looks == 0 {
            return Err(de::Error::custom("no samples"));
        }
        Ok(Loaded {
            capture: Capture {
                format: FORMAT.to_string(),
                schema_version: SCHEMA_VERSION,
                tool_version: tool_version
                    .ok_or_else(|| de::Error::missing_field("tool_version"))?,
                cmdline_kept: cmdline_kept
                    .ok_or_else(|| de::Error::missing_field("cmdline_kept"))?,
                settle_ms: settle_ms.ok_or_else(|| de::Error::missing_field("settle_ms"))?,
                interval_ms: interval_ms.ok_or_else(|| de::Error::missing_field("interval_ms"))?,
                samples,
            },
            looks,
        })
    }
}

/// The looks, parsed one at a time; only the kept ones stay in memory.
struct Samples(Keep);

impl<'de> DeserializeSeed<'de> for Samples {
    type Value = (Vec<Snapshot>, usize);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Samples {
    type Value = (Vec<Snapshot>, usize);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of looks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::new();
        let mut n = 0;
        while let Some(look) = seq.next_element::<Snapshot>()? {
            match self.0 {
                Keep::All => kept.push(look),
                Keep::Last => kept = vec![look],
                Keep::Index(i) if i == n => kept.push(look),
                Keep::Index(_) => {}
            }
            n += 1;
        }
        Ok((kept, n))
    }
}

/// Write `path` (atomically when it is a file: `crate::output`), compressed
/// according to its name. Every write, flush and compressor-finish error is
/// an error.
pub fn write(path: &Path, capture: &Capture) -> Result<Written, SnapshotError> {
    let name = path.to_string_lossy();
    let kind = if name.ends_with(".gz") {
        Compression::Gzip
    } else if name.ends_with(".zst") {
        Compression::Zstd
    } else {
        Compression::None
    };
    output::write(path, Access::Owner, |out| encode(out, kind, capture)).map_err(|e| {
        SnapshotError::Write {
            path: path.to_path_buf(),
            source: e.source,
        }
    })
}

enum Compression {
    None,
    Gzip,
    Zstd,
}

fn encode(out: &mut dyn Write, kind: Compression, capture: &Capture) -> io::Result<()> {
    match kind {
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            serde_json::to_writer(&mut enc, capture).map_err(io::Error::from)?;
            enc.finish()?.flush()
        }
        Compression::Zstd => {
            let mut enc = zstd::Encoder::new(out, 6)?;
            serde_json::to_writer(&mut enc, capture).map_err(io::Error::from)?;
            enc.finish()?.flush()
        }
        Compression::None => {
            serde_json::to_writer(&mut *out, capture).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
            out.flush()
        }
    }
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

    #[test]
    fn keeps_the_look_asked_for_and_reads_a_reordered_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("three.json");
        let mut looks = vec![Snapshot::default(); 3];
        for (i, l) in looks.iter_mut().enumerate() {
            l.meta.hostname = Some(format!("look-{i}"));
        }
        write(&p, &Capture::new(looks, false, 1000, 0)).unwrap();
        let host = |keep| {
            let l = read_keeping(&p, keep, DEFAULT_MAX_BYTES).unwrap();
            assert_eq!(l.looks, 3);
            l.capture
                .samples
                .iter()
                .filter_map(|s| s.meta.hostname.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(host(Keep::Last), ["look-2"]);
        assert_eq!(host(Keep::Index(0)), ["look-0"]);
        assert!(host(Keep::Index(7)).is_empty());
        assert_eq!(host(Keep::All).len(), 3);
        // Keys in another order (jq -S sorts them): looks before the envelope.
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let sorted: std::collections::BTreeMap<String, serde_json::Value> =
            serde_json::from_value(v).unwrap();
        std::fs::write(&p, serde_json::to_vec(&sorted).unwrap()).unwrap();
        assert_eq!(host(Keep::Last), ["look-2"]);
    }

    #[test]
    fn caps_the_decompressed_size_and_any_one_string() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write(&p, &sample()).unwrap();
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(read_keeping(&p, Keep::Last, size).is_ok());
        let e = read_keeping(&p, Keep::Last, size - 1).unwrap_err();
        assert!(matches!(e, SnapshotError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("--max-snapshot-size"), "{e}");
        let mut long = b"{\"format\":\"".to_vec();
        long.resize(long.len() + (MAX_STRING_BYTES as usize) + 10, b'a');
        std::fs::write(&p, &long).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("a string longer than 16 MiB"), "{e}");
        std::fs::write(&p, [0u8; 64]).unwrap();
        assert!(read(&p)
            .unwrap_err()
            .to_string()
            .contains("not a JSON object"));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(1 << 30), "1 GiB");
        assert_eq!(size_text(3 << 20), "3 MiB");
        assert_eq!(size_text(1 << 10), "1 KiB");
        assert_eq!(size_text(1000), "1000 bytes");
        // Not a whole number of any unit: in bytes, never rounded.
        assert_eq!(size_text(1536), "1536 bytes");
        assert_eq!(size_text((1 << 30) + (1 << 20)), "1025 MiB");
        assert_eq!(size_text(0), "0 bytes");
    }

    /// The string cap is on one string, not on the bytes between strings: a
    /// snapshot padded with 17 MiB of whitespace reads.
    #[test]
    fn the_string_cap_counts_only_what_is_inside_one_string() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("padded.json");
        write(&p, &sample()).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let body = text.trim_start().strip_prefix('{').unwrap();
        let pad = " ".repeat(MAX_STRING_BYTES as usize + (1 << 20));
        std::fs::write(&p, format!("{{\"y\":\"a\\\"b\",{pad}\"x\":1,{body}")).unwrap();
        assert_eq!(read(&p).unwrap(), sample());
    }

    /// A string is measured as it is written in the file, escapes included:
    /// 18 MiB of `\\` is refused like 18 MiB of letters.
    #[test]
    fn an_escaped_string_past_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("escapes.json");
        let mut long = b"{\"format\":\"".to_vec();
        long.extend(b"\\\\".repeat((MAX_STRING_BYTES as usize) / 2 + (1 << 20)));
        long.extend(b"\"}");
        std::fs::write(&p, &long).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("a string longer than 16 MiB"), "{e}");
    }

    /// A newer (or foreign) file is refused as such whatever the order of its
    /// keys, before looks this version may not understand are parsed.
    #[test]
    fn a_newer_file_is_refused_by_version_whatever_its_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.json");
        for text in [
            r#"{"samples":[7],"format":"cwleak-snapshot","schema_version":99}"#,
            r#"{"format":"cwleak-snapshot","samples":[7],"schema_version":99}"#,
            r#"{"schema_version":99,"samples":[7],"format":"cwleak-snapshot"}"#,
        ] {
            std::fs::write(&p, text).unwrap();
            let e = read(&p).unwrap_err();
            assert!(
                matches!(e, SnapshotError::Version { found: 99, .. }),
                "{text}: {e}"
            );
        }
        std::fs::write(&p, r#"{"samples":[7],"format":"other","schema_version":1}"#).unwrap();
        let e = read(&p).unwrap_err();
        assert!(matches!(e, SnapshotError::NotSnapshot { .. }), "{e}");
    }

    /// A corrupt look in a file as cwleak writes it (envelope first): the
    /// error says what was expected, and where in the file.
    #[test]
    fn a_corrupt_look_is_placed_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.json");
        let head = r#"{"format":"cwleak-snapshot","schema_version":1,"tool_version":"0","cmdline_kept":false,"settle_ms":0,"interval_ms":0,"samples":["#;
        std::fs::write(&p, format!("{head}7]}}")).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("corrupted"), "{e}");
        // The first position said is the look's own.
        let column: usize = e
            .split("column ")
            .nth(1)
            .map(|c| {
                c.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no column in {e}"));
        assert!(
            column > head.len(),
            "{e}: the look is past column {}",
            head.len()
        );
        // Not a list at all: said so.
        std::fs::write(&p, format!("{}7}}", head.trim_end_matches('['))).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("expected a list of looks"), "{e}");
    }
}
