//! Raw CLI arguments resolved into settings: the scope as numbers, the output
//! decided (colour, width), the source configured.

use crate::cli::{ColorArg, FormatArg, ScanArgs, SourceArgs, TablesArg};
use crate::diagnose::Scope;
use crate::model::Inode;
use crate::report::{Format, RenderOptions};
use crate::source::{self, ProcRoot, SourceConfig, TableMethod};
use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ScanConfig {
    pub source: SourceConfig,
    /// Analyse this snapshot file instead of reading the machine.
    pub from: Option<std::path::PathBuf>,
    /// Which look of the snapshot (0-based); None: the last.
    pub sample: Option<usize>,
    pub scope: Scope,
    pub settle: Duration,
    pub format: Format,
    pub render: RenderOptions,
}

impl ScanConfig {
    pub fn from_args(a: &ScanArgs) -> Result<Self> {
        let source = source_config(&a.source);
        let root = ProcRoot::new(&source.root);
        let netns = a
            .netns
            .iter()
            .map(|spec| resolve_netns(&root, spec))
            .collect::<Result<Vec<Inode>>>()?;
        Ok(ScanConfig {
            scope: Scope {
                pids: a.pids.clone(),
                with_children: !a.no_children,
                ports: a.ports.clone(),
                netns,
            },
            settle: a.settle,
            from: a.from.clone(),
            sample: a.sample.map(|n| n.saturating_sub(1)),
            format: match a.format {
                FormatArg::Text => Format::Text,
                FormatArg::Json => Format::Json,
                FormatArg::Markdown => Format::Markdown,
                FormatArg::Dot => Format::Dot,
            },
            render: RenderOptions {
                color: use_color(a.color),
                width: terminal_width(),
            },
            source,
        })
    }
}

pub fn source_config(a: &SourceArgs) -> SourceConfig {
    SourceConfig {
        root: a.proc_root.clone(),
        method: match a.tables {
            TablesArg::Auto => TableMethod::Auto,
            TablesArg::Proc => TableMethod::Proc,
            TablesArg::SockDiag => TableMethod::SockDiag,
        },
        threads: a.threads,
        ..SourceConfig::default()
    }
}

/// Pids are at most 2^22; namespace inodes are far above that.
const PID_MAX_LIMIT: u64 = 1 << 22;

fn resolve_netns(root: &ProcRoot, spec: &str) -> Result<Inode> {
    if let Ok(n) = spec.parse::<u64>() {
        if n > PID_MAX_LIMIT {
            return Ok(n);
        }
        return source::netns_of_pid(root, n as i32).with_context(|| {
            format!("--netns {spec}: cannot read the network namespace of pid {n}")
        });
    }
    let inode = source::netns_of_path(std::path::Path::new(spec))
        .with_context(|| format!("--netns {spec}"))?;
    if inode == 0 {
        bail!("--netns {spec}: not a namespace file");
    }
    Ok(inode)
}

fn use_color(c: ColorArg) -> bool {
    match c {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

fn terminal_width() -> usize {
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok());
    from_env
        .or_else(source::tty_width)
        .unwrap_or(80)
        .clamp(40, 200)
}
