//! Saved snapshots (`cwleak capture`): one or more looks at a machine, written
//! so that `scan --from FILE` on any machine gives the findings a live scan
//! gave at that moment. The file is the third way to fill the model, beside
//! the live /proc and a recorded tree: it holds `Snapshot`s exactly as the
//! source produced them (after the settle window's second look).

mod file;

pub use file::{
    read, read_keeping, size_text, write, Keep, Loaded, SnapshotError, DEFAULT_MAX_BYTES,
};

use crate::model::Snapshot;
use serde::{Deserialize, Serialize};

/// Identifies a cwleak snapshot among JSON documents.
pub const FORMAT: &str = "cwleak-snapshot";
/// Bumped on any change a reader of the previous version would misread.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Capture {
    pub format: String,
    pub schema_version: u32,
    /// cwleak version that wrote it.
    pub tool_version: String,
    /// Whether command lines (masked) were kept (`--cmdline`).
    pub cmdline_kept: bool,
    /// Settle window applied to each look, and the time between looks.
    pub settle_ms: u64,
    pub interval_ms: u64,
    /// The looks, oldest first; never empty.
    pub samples: Vec<Snapshot>,
}

impl Capture {
    pub fn new(
        samples: Vec<Snapshot>,
        cmdline_kept: bool,
        settle_ms: u64,
        interval_ms: u64,
    ) -> Self {
        Capture {
            format: FORMAT.to_string(),
            schema_version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            cmdline_kept,
            settle_ms,
            interval_ms,
            samples,
        }
    }
}
