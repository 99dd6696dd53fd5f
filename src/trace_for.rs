//! `scan --trace-for DURATION`: before the scan, record in the kernel how
//! the processes in scope make, copy and close their socket fds
//! (`source::trace`), so a leak made meanwhile is explained by its history.
//!
//! Followed: the `--pid` roots and their descendants; without `--pid`, the
//! processes that hold a TCP socket (any state) in scope (ports, network
//! namespaces) at the start, and their descendants from then on. A process
//! that starts later and is not a descendant is not followed. Where
//! tracing cannot run, one line says why and the scan runs as without it.

use crate::config::ScanConfig;
use crate::model::Snapshot;
use crate::source::trace::{close_wait_fds, unavailable, Followed, Tracer};
use crate::source::{self, TableStates};
use crate::trace::Facts;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

pub enum Recording {
    Unavailable(String),
    On(Box<Tracer>),
}

/// Start tracing, follow the scope's processes, and wait `d` (Ctrl-C ends
/// the wait early).
pub fn record(cfg: &ScanConfig, d: Duration) -> Result<Recording> {
    let tracer = match Tracer::start(None) {
        Ok(t) => t,
        Err(why) => {
            crate::diag!(
                "cwleak scan: --trace-for is not available here: {}; scanning without it",
                crate::report::wrap::clean(&why)
            );
            return Ok(Recording::Unavailable(why));
        }
    };
    // Before saying it records: Ctrl-C from then on scans now.
    crate::stop::install()?;
    if cfg.scope.pids.is_empty() {
        // Every TCP state: a client's sockets are established, not listening.
        let all = source::SourceConfig {
            states: TableStates::All,
            ..cfg.source.clone()
        };
        let snap =
            source::read(&all).with_context(|| format!("scanning {}", all.root.display()))?;
        let mut followed = Followed::default();
        let n = tracer.follow_holders(&mut followed, &snap, |s| {
            crate::trace::followed_socket(&cfg.scope, s)
        });
        crate::diag!(
            "cwleak scan: --trace-for: recording for {}: {n} processes holding TCP sockets followed, \
             with their children; Ctrl-C scans now",
            crate::report::units::duration_ms(millis(d))
        );
    } else {
        for pid in &cfg.scope.pids {
            if let Err(e) = tracer.track(*pid) {
                crate::diag!("cwleak scan: --trace-for: cannot follow pid {pid}: {e}");
            }
        }
        crate::diag!(
            "cwleak scan: --trace-for: recording for {}: the --pid roots followed, with their \
             children; Ctrl-C scans now",
            crate::report::units::duration_ms(millis(d))
        );
    }
    crate::stop::sleep_until(Instant::now() + d);
    Ok(Recording::On(Box::new(tracer)))
}

impl Recording {
    /// What was recorded about the holders of the look's CLOSE_WAIT sockets.
    pub fn facts(&mut self, snap: &Snapshot) -> Facts {
        match self {
            Recording::Unavailable(why) => unavailable(why.clone()),
            Recording::On(t) => t.facts(&close_wait_fds(snap)),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
