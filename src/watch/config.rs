//! `cwleak watch` arguments resolved: the scope as numbers, when to stop,
//! how to draw.

use crate::cli::WatchArgs;
use crate::config::{source_config, terminal_width, use_color};
use crate::diagnose::Scope;
use crate::source::{ProcRoot, SourceConfig};
use anyhow::{bail, Result};
use std::io::IsTerminal;
use std::time::Duration;

/// Looking faster than this would spend the machine walking /proc.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The first look's settle window, at most (later looks use the interval).
const FIRST_SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub source: SourceConfig,
    pub scope: Scope,
    /// `--pid 42 --port 8080`, for the header; empty for the whole host.
    pub scope_text: String,
    pub interval: Duration,
    /// The first look's settle window: later looks are each other's.
    pub settle: Duration,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub fail_on_growth: bool,
    /// Redraw a table in place (stdout is a terminal), else one line per change.
    pub tty: bool,
    pub color: bool,
    pub width: usize,
    pub height: usize,
    /// Reuse the fd walks of unchanged processes (off: `--full-walk`).
    pub incremental: bool,
    /// `--trace`: record how the watched processes make their socket fds.
    pub trace: bool,
}

impl WatchConfig {
    pub fn from_args(a: &WatchArgs) -> Result<Self> {
        if a.interval < MIN_INTERVAL {
            bail!("--interval {:?}: too short, use at least 100ms", a.interval);
        }
        let source = crate::source::SourceConfig {
            states: crate::source::TableStates::Leaks,
            ..source_config(&a.source)
        };
        let scope = crate::config::scope(&a.scope, &ProcRoot::new(&source.root))?;
        let mut scope_text = Vec::new();
        scope_text.extend(scope.pids.iter().map(|p| format!("--pid {p}")));
        scope_text.extend(scope.ports.iter().map(|p| format!("--port {p}")));
        scope_text.extend(scope.netns.iter().map(|n| format!("--netns {n}")));
        Ok(WatchConfig {
            scope,
            scope_text: scope_text.join(" "),
            interval: a.interval,
            settle: a.interval.min(FIRST_SETTLE),
            count: a.count,
            duration: a.duration,
            fail_on_growth: a.fail_on_growth,
            tty: std::io::stdout().is_terminal(),
            color: use_color(a.color),
            width: terminal_width(),
            height: crate::source::tty_height().filter(|h| *h > 0).unwrap_or(24),
            incremental: !a.full_walk,
            trace: a.trace,
            source,
        })
    }
}
