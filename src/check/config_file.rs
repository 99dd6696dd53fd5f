//! cwleak.toml: the thresholds and allow rules a repository keeps for
//! `cwleak check`, found like other tools find theirs (the current directory,
//! then its parents, stopping at the repository root).
//!
//! ```toml
//! [check]
//! max = 0
//! max-per-process = 0
//! settle = "2s"
//! allow = [
//!   "inherited-no-cloexec",
//!   { port = 5432, reason = "the pool closes idle connections lazily" },
//!   { cause = "never-closed", port = 6379 },
//! ]
//! allow-ports = [9090]
//! ```
//!
//! Unknown keys are errors: a misspelt threshold must not silently pass a gate.
//!
//! Errors name the place (line, column) and what was expected, never the
//! text found there: `--config` may name any file cwleak can read (under sudo,
//! `/etc/shadow`), and its error lands in a CI log.

use super::thresholds::AllowSpec;
use crate::cli::parse_duration;
use crate::diagnose::Cause;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const FILE_NAME: &str = "cwleak.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{}: refused: a symlink to {} owned by uid {owner}, not by you (uid {uid}); \
         pass --config to use it",
        path.display(),
        target.display()
    )]
    ForeignSymlink {
        path: PathBuf,
        target: PathBuf,
        owner: u32,
        uid: u32,
    },
}

/// More than any real cwleak.toml: a config naming /dev/zero is refused, not read forever.
const MAX_BYTES: u64 = 1 << 20;

/// What the file says; every field optional (flags win over it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileSettings {
    pub path: PathBuf,
    pub max: Option<usize>,
    pub max_per_process: Option<usize>,
    pub settle: Option<Duration>,
    pub allow: Vec<AllowSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    check: CheckTable,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CheckTable {
    max: Option<usize>,
    max_per_process: Option<usize>,
    settle: Option<toml::Spanned<String>>,
    #[serde(default)]
    allow: Vec<toml::Spanned<AllowEntry>>,
    #[serde(default)]
    allow_ports: Vec<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a cause name, or a table of cause, port and reason (e.g. { port = 5432, reason = \"...\" })"
)]
enum AllowEntry {
    Cause(String),
    Rule(RuleTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleTable {
    cause: Option<String>,
    port: Option<u16>,
    reason: Option<String>,
}

/// The cwleak.toml that applies in `start`: in it or the nearest parent,
/// not looking above the repository root (a directory holding `.git`).
pub fn discover(start: &Path) -> Option<PathBuf> {
    for dir in start.ancestors() {
        let candidate = dir.join(FILE_NAME);
        if candidate.is_file() {
            return Some(candidate);
        }
        if dir.join(".git").exists() {
            return None;
        }
    }
    None
}

/// A discovered file that is a symlink must lead to a file the invoking user
/// owns, and the symlink's owner too: a checked-out `cwleak.toml ->
/// /etc/shadow` must not make `sudo cwleak check` read root's file.
pub fn check_discovered(path: &Path) -> Result<(), ConfigFileError> {
    use std::os::unix::fs::MetadataExt;
    let read = |source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let link = std::fs::symlink_metadata(path).map_err(read)?;
    if !link.file_type().is_symlink() {
        return Ok(());
    }
    let target = std::fs::metadata(path).map_err(read)?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if target.uid() == uid && target.uid() == link.uid() {
        return Ok(());
    }
    Err(ConfigFileError::ForeignSymlink {
        path: path.to_path_buf(),
        target: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        owner: target.uid(),
        uid,
    })
}

pub fn load(path: &Path) -> Result<FileSettings, ConfigFileError> {
    use std::io::Read;
    let read = |source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    let invalid = |message: String| ConfigFileError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if bytes.len() as u64 > MAX_BYTES {
        return Err(invalid(format!(
            "larger than {} KiB: not a cwleak.toml",
            MAX_BYTES / 1024
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let (line, column) = position(e.as_bytes(), e.utf8_error().valid_up_to());
        invalid(format!(
            "line {line}, column {column}: not UTF-8 text (expected a TOML file)"
        ))
    })?;
    parse(&text, path).map_err(invalid)
}

/// 1-based line and column (in characters) of byte `at` in `text`.
fn position(text: &[u8], at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// "line L, column C: " for a span of the text, or nothing without one.
fn place(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        let (line, column) = position(text.as_bytes(), s.start);
        format!("line {line}, column {column}: ")
    })
    .unwrap_or_default()
}

/// The words a message may quote: this file format's own names.
fn vocabulary(word: &str) -> bool {
    const KEYS: [&str; 9] = [
        "check",
        "max",
        "max-per-process",
        "settle",
        "allow",
        "allow-ports",
        "cause",
        "port",
        "reason",
    ];
    KEYS.contains(&word)
        || Cause::parse(word).is_some()
        || word.chars().all(|c| c.is_ascii_punctuation() && c != '\\')
}

/// The parser's message with every quoted piece of the file's text taken out
/// (serde quotes what it found: "invalid type: string \"hunter2\"", "unknown
/// field `root`"); what it expected, our own names, stays.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().unwrap_or('`');
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        // A Debug-quoted string escapes its quotes: find the closing one.
        let mut close = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if quote == '"' && !escaped => escaped = true,
                c if c == quote && !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(close) = close else {
            out.push_str("(text not shown)");
            return out;
        };
        let inner = &after[..close];
        if !inner.is_empty() && vocabulary(inner) {
            out.push(quote);
            out.push_str(inner);
            out.push(quote);
        } else {
            out.push_str("(text not shown)");
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out.trim_end().to_string()
}

/// Parse the text of `path` (pure: the path only names the rules' source).
pub fn parse(text: &str, path: &Path) -> Result<FileSettings, String> {
    let doc: Doc = toml::from_str(text)
        .map_err(|e| format!("{}{}", place(text, e.span()), redact(e.message())))?;
    let c = doc.check;
    let source = path.display().to_string();
    let settle = c
        .settle
        .map(|s| {
            parse_duration(s.get_ref()).map_err(|_| {
                format!(
                    "{}check.settle: expected a duration such as \"500ms\" or \"2s\"",
                    place(text, Some(s.span()))
                )
            })
        })
        .transpose()?;
    let mut allow = Vec::new();
    for (i, entry) in c.allow.into_iter().enumerate() {
        let at = place(text, Some(entry.span()));
        let (cause, port, reason) = match entry.into_inner() {
            AllowEntry::Cause(name) => (Some(name), None, None),
            AllowEntry::Rule(r) => (r.cause, r.port, r.reason),
        };
        let cause = cause
            .map(|name| {
                Cause::parse(&name).ok_or_else(|| {
                    format!(
                        "{at}check.allow[{i}]: not a cause name (expected one of: {})",
                        Cause::ALL.map(Cause::name).join(", ")
                    )
                })
            })
            .transpose()?;
        if cause.is_none() && port.is_none() {
            return Err(format!(
                "{at}check.allow[{i}]: a rule needs a cause, a port or both"
            ));
        }
        allow.push(AllowSpec {
            cause,
            port,
            reason,
            source: source.clone(),
        });
    }
    allow.extend(c.allow_ports.into_iter().map(|port| AllowSpec {
        cause: None,
        port: Some(port),
        reason: None,
        source: source.clone(),
    }));
    Ok(FileSettings {
        path: path.to_path_buf(),
        max: c.max,
        max_per_process: c.max_per_process,
        settle,
        allow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<FileSettings, String> {
        parse(text, Path::new("/repo/cwleak.toml"))
    }

    #[test]
    fn reads_thresholds_and_every_form_of_allow_rule() {
        let s = p(r#"
[check]
max = 2
max-per-process = 1
settle = "500ms"
allow = [
  "inherited-no-cloexec",
  { port = 5432, reason = "pool closes lazily" },
  { cause = "never-closed", port = 6379 },
]
allow-ports = [9090]
"#)
        .unwrap();
        assert_eq!(s.max, Some(2));
        assert_eq!(s.max_per_process, Some(1));
        assert_eq!(s.settle, Some(Duration::from_millis(500)));
        let rules: Vec<(Option<Cause>, Option<u16>, Option<&str>)> = s
            .allow
            .iter()
            .map(|a| (a.cause, a.port, a.reason.as_deref()))
            .collect();
        assert_eq!(
            rules,
            vec![
                (Some(Cause::InheritedNoCloexec), None, None),
                (None, Some(5432), Some("pool closes lazily")),
                (Some(Cause::NeverClosed), Some(6379), None),
                (None, Some(9090), None),
            ]
        );
        assert!(s.allow.iter().all(|a| a.source == "/repo/cwleak.toml"));
    }

    #[test]
    fn an_empty_file_changes_nothing() {
        let s = p("").unwrap();
        assert_eq!((s.max, s.max_per_process, s.settle), (None, None, None));
        assert!(s.allow.is_empty());
    }

    #[test]
    fn mistakes_are_errors_with_their_place() {
        let e = p("[check]\nmax-per-proces = 1\n").unwrap_err();
        assert!(
            e.contains("line 2, column 1") && e.contains("unknown field"),
            "{e}"
        );
        assert!(e.contains("`max-per-process`"), "what was expected: {e}");
        let e = p("[check]\nallow = [\"fork-parent\"]\n").unwrap_err();
        assert!(
            e.contains("line 2, column 10") && e.contains("not a cause name"),
            "{e}"
        );
        let e = p("[check]\nallow = [{ reason = \"x\" }]\n").unwrap_err();
        assert!(e.contains("needs a cause, a port or both"), "{e}");
        let e = p("[check]\nallow = [{ prot = 1 }]\n").unwrap_err();
        assert!(e.contains("a cause name, or a table"), "{e}");
        let e = p("[check]\nmax = -1\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = p("[check]\nsettle = \"soon\"\n").unwrap_err();
        assert!(e.contains("check.settle") && e.contains("line 2"), "{e}");
        assert!(p("[scan]\nx = 1\n").is_err());
        assert!(p("max = 1\n").is_err(), "thresholds belong in [check]");
    }

    #[test]
    fn errors_never_quote_the_file() {
        let secrets = [
            "root:$6$SECRETSALT$SECRETHASH:19000:0:99999:7:::\n",
            "[check]\nmax = \"SECRETVALUE\"\n",
            "[check]\nSECRETKEY = 1\n",
            "[check]\nallow = [\"SECRETCAUSE\"]\n",
            "[check]\nsettle = \"SECRETTIME\"\n",
            "SECRETTOP = 1\n",
            "[SECRETTABLE]\n",
            "[check]\nmax = 1\nmax = SECRETDUP\n",
            "[check]\nallow = [{ port = \"SECRETPORT\" }]\n",
            "[check]\nallow = [{ cause = \"never-closed\", SECRETFIELD = 1 }]\n",
            "password = \"SECRET\\\"QUOTED\"\n",
            "token = 'SECRETLITERAL'\n",
            "a = \"\"\"SECRETMULTI\n",
        ];
        for text in secrets {
            let e = p(text).unwrap_err();
            assert!(!e.contains("SECRET"), "{text:?} gave {e}");
            assert!(e.contains("line "), "{text:?} gave {e}");
        }
    }

    #[test]
    fn redaction_keeps_our_own_names_and_punctuation() {
        assert_eq!(
            redact("unknown field `pasword`, expected one of `max`, `settle`"),
            "unknown field (text not shown), expected one of `max`, `settle`"
        );
        assert_eq!(
            redact("invalid type: string \"a\\\"b\", expected usize"),
            "invalid type: string (text not shown), expected usize"
        );
        assert_eq!(redact("expected `.`, `=`"), "expected `.`, `=`");
        assert_eq!(redact("unclosed `abc"), "unclosed (text not shown)");
    }

    #[test]
    fn discovery_stops_at_the_repository_root() {
        let dir = std::env::temp_dir().join(format!("cwleak-cfg-{}", std::process::id()));
        let repo = dir.join("repo");
        let deep = repo.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        // Above the repository: never found from inside it.
        std::fs::write(dir.join(FILE_NAME), "").unwrap();
        assert_eq!(discover(&deep), None);
        std::fs::write(repo.join(FILE_NAME), "").unwrap();
        assert_eq!(discover(&deep), Some(repo.join(FILE_NAME)));
        std::fs::write(repo.join("a").join(FILE_NAME), "").unwrap();
        assert_eq!(discover(&deep), Some(repo.join("a").join(FILE_NAME)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
