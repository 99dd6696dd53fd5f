//! `cwleak states` arguments resolved: scope as numbers, breakdowns, output.

use super::build::Options;
use super::report::{Dimension, StatesScope};
use crate::cli::{ByArg, StatesArgs, TextJsonArg};
use crate::config::{resolve_netns_all, source_config, terminal_width, use_color};
use crate::report::RenderOptions;
use crate::source::{ProcRoot, SourceConfig};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Redrawing faster than this would spend the machine walking /proc.
pub const MIN_WATCH: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct StatesConfig {
    pub source: SourceConfig,
    /// Count a snapshot file instead of this machine.
    pub from: Option<PathBuf>,
    /// Which look of the snapshot (0-based); None: the last.
    pub sample: Option<usize>,
    /// With `from`: the cap on its decompressed size.
    pub max_snapshot: u64,
    pub options: Options,
    pub json: bool,
    pub render: RenderOptions,
    /// Look again every this long (`--watch`).
    pub watch: Option<Duration>,
    /// Stop after this many looks (`--count`).
    pub count: Option<u64>,
}

impl StatesConfig {
    pub fn from_args(a: &StatesArgs) -> Result<Self> {
        let mut source = source_config(&a.source);
        // Each namespace's ephemeral port range tells which end of a
        // connection is the service; a few small files per namespace.
        source.sysctls = true;
        source.kernel_counts = true;
        source.netns_files = crate::config::netns_paths(&a.netns);
        let root = ProcRoot::new(&source.root);
        let netns = resolve_netns_all(&root, &a.netns)?;
        if let Some(w) = a.watch {
            if w < MIN_WATCH {
                bail!("--watch {w:?}: too short, use at least 100ms");
            }
        }
        Ok(StatesConfig {
            source,
            from: a.snapshot.from.clone(),
            sample: a.snapshot.sample_index(),
            max_snapshot: a.snapshot.max_bytes(),
            options: Options {
                scope: StatesScope {
                    pids: a.pids.clone(),
                    with_children: !a.no_children,
                    ports: a.ports.clone(),
                    netns,
                },
                by: dimensions(&a.by),
                limit: a.top,
            },
            json: a.format == TextJsonArg::Json,
            render: RenderOptions {
                color: use_color(a.color),
                width: terminal_width(),
                pretty: false,
                ..RenderOptions::default()
            },
            watch: a.watch,
            count: a.count,
        })
    }
}

/// `--by`, deduplicated in the order given; by default processes and ports
/// (a process for the sockets that have one, a port for those that do not).
pub fn dimensions(by: &[ByArg]) -> Vec<Dimension> {
    let mut out: Vec<Dimension> = Vec::new();
    for b in by {
        let d = match b {
            ByArg::Process => Dimension::Process,
            ByArg::Port => Dimension::Port,
            ByArg::Netns => Dimension::Netns,
            ByArg::Remote => Dimension::Remote,
        };
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if out.is_empty() {
        out = vec![Dimension::Process, Dimension::Port];
    }
    out
}
