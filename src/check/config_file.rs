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
}

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
    settle: Option<String>,
    #[serde(default)]
    allow: Vec<AllowEntry>,
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

pub fn load(path: &Path) -> Result<FileSettings, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path).map_err(|message| ConfigFileError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// Parse the text of `path` (pure: the path only names the rules' source).
pub fn parse(text: &str, path: &Path) -> Result<FileSettings, String> {
    let doc: Doc = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    let c = doc.check;
    let source = path.display().to_string();
    let settle = c
        .settle
        .as_deref()
        .map(|s| parse_duration(s).map_err(|e| format!("check.settle: {e}")))
        .transpose()?;
    let mut allow = Vec::new();
    for (i, entry) in c.allow.into_iter().enumerate() {
        let (cause, port, reason) = match entry {
            AllowEntry::Cause(name) => (Some(name), None, None),
            AllowEntry::Rule(r) => (r.cause, r.port, r.reason),
        };
        let cause = cause
            .map(|name| {
                Cause::parse(&name).ok_or_else(|| {
                    format!(
                        "check.allow[{i}]: unknown cause {name:?} (causes: {})",
                        Cause::ALL.map(Cause::name).join(", ")
                    )
                })
            })
            .transpose()?;
        if cause.is_none() && port.is_none() {
            return Err(format!(
                "check.allow[{i}]: a rule needs a cause, a port or both"
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
        assert!(e.contains("max-per-proces") && e.contains("line 2"), "{e}");
        let e = p("[check]\nallow = [\"fork-parent\"]\n").unwrap_err();
        assert!(e.contains("unknown cause \"fork-parent\""), "{e}");
        let e = p("[check]\nallow = [{ reason = \"x\" }]\n").unwrap_err();
        assert!(e.contains("needs a cause, a port or both"), "{e}");
        let e = p("[check]\nallow = [{ prot = 1 }]\n").unwrap_err();
        assert!(e.contains("a cause name, or a table"), "{e}");
        let e = p("[check]\nmax = -1\n").unwrap_err();
        assert!(e.contains("max"), "{e}");
        let e = p("[check]\nsettle = \"soon\"\n").unwrap_err();
        assert!(e.contains("check.settle"), "{e}");
        assert!(p("[scan]\nx = 1\n").is_err());
        assert!(p("max = 1\n").is_err(), "thresholds belong in [check]");
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
