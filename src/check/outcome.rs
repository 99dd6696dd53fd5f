//! What `cwleak check` concluded, as plain data: the report's `check` field
//! (docs/json-schema.md). Filled by the check, read by the renderers.

use crate::diagnose::Cause;
use crate::model::Pid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckInfo {
    /// The thresholds were met (whatever a wrapped command's status).
    pub passed: bool,
    /// The exit status cwleak returned.
    pub exit_code: i32,
    /// Why the check failed, for people; empty when it passed.
    pub failures: Vec<String>,
    /// cwleak could not check (every process in scope exited, ...); exit 2.
    pub error: Option<String>,
    /// Leaked sockets that count against the thresholds.
    pub counted: usize,
    /// Leaked sockets an allow rule accepts (listed, not counted).
    pub allowed: usize,
    pub max: usize,
    pub max_per_process: Option<usize>,
    pub allow: Vec<AllowRule>,
    /// The cwleak.toml that was read.
    pub config_file: Option<String>,
    /// One per blamed process (pid null: sockets nobody visibly holds), as in
    /// the JUnit file.
    pub blamed: Vec<BlamedProcess>,
    /// The processes --pid and --pidfile named, and whether they still ran.
    pub roots: Vec<Root>,
    pub command: Option<CommandRun>,
    pub during: Option<During>,
}

/// An accepted kind of leak: a cause, a port (local or remote), or both.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AllowRule {
    pub cause: Option<Cause>,
    pub port: Option<u16>,
    pub reason: Option<String>,
    /// "command line", or the config file it came from.
    pub source: String,
    /// Findings it accepted.
    pub matched: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlamedProcess {
    pub pid: Option<Pid>,
    pub comm: Option<String>,
    pub causes: Vec<Cause>,
    pub counted: usize,
    pub allowed: usize,
    /// Its sockets are part of why the check failed.
    pub failed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Root {
    pub pid: Pid,
    /// "--pid", or "--pidfile PATH".
    pub from: String,
    pub comm: Option<String>,
    /// Still running when the check was taken.
    pub running: bool,
    /// When it exited (ms since the epoch); null while running or when unknown.
    pub exited_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandRun {
    pub argv: Vec<String>,
    /// Null when a signal killed it.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub started_at_ms: u64,
    pub duration_ms: u64,
}

/// `--during`: how leaks grew while the command ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct During {
    pub interval_ms: u64,
    pub samples: usize,
    /// Samples whose scan failed; the last error is in `last_error`.
    pub failed_samples: usize,
    pub last_error: Option<String>,
    /// The whole scope: the highest count of persistent CLOSE_WAIT sockets
    /// in one sample, when (ms since the command started), the count at the
    /// last sample, and `[ms, count]` whenever it changed.
    pub peak: usize,
    pub peak_at_ms: u64,
    pub last: usize,
    pub series: Vec<(u64, usize)>,
    /// Blamed processes, first seen first.
    pub processes: Vec<Growth>,
}

/// One blamed process over the command's run. Times are ms since it started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Growth {
    pub pid: Option<Pid>,
    pub comm: Option<String>,
    pub causes: Vec<Cause>,
    /// First sample with a CLOSE_WAIT socket blamed on it that was there the
    /// sample before too.
    pub first_seen_ms: u64,
    pub peak: usize,
    pub peak_at_ms: u64,
    /// Its count at the last sample.
    pub last: usize,
    /// `[ms, count]` whenever the count changed (thinned past 512 points).
    pub series: Vec<(u64, usize)>,
}
