//! `cwleak serve` arguments resolved.

use crate::cli::ServeArgs;
use crate::config::source_config;
use crate::source::SourceConfig;
use anyhow::{bail, Result};
use std::net::SocketAddr;
use std::time::Duration;

/// Scanning more often than this would make cwleak a load on the host.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub source: SourceConfig,
    pub listen: SocketAddr,
    pub interval: Duration,
    pub settle: Duration,
    pub top: usize,
}

impl ServeConfig {
    pub fn from_args(a: &ServeArgs) -> Result<Self> {
        if a.interval < MIN_INTERVAL {
            bail!("--interval {:?}: too short, use at least 500ms", a.interval);
        }
        Ok(ServeConfig {
            // /metrics counts every socket by state; the diagnosis needs
            // records of CLOSE_WAIT sockets and listeners only.
            source: SourceConfig {
                states: crate::source::TableStates::Counted,
                follow: a.follow_sockets,
                ..source_config(&a.source)
            },
            listen: a.listen,
            interval: a.interval,
            // A scan must end before the next is due.
            settle: a.settle.min(a.interval / 2),
            top: a.top,
        })
    }

    /// /healthz fails past this age of the last successful scan: a few
    /// missed scans, not one slow one.
    pub fn stale_after(&self) -> Duration {
        self.interval * 3 + Duration::from_secs(30)
    }
}
