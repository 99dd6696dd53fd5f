//! Running `cwleak states`: one look (or a saved one), counted and rendered.

use super::build::build;
use super::config::StatesConfig;
use super::render;
use super::report::StatesReport;
use crate::cli::StatesArgs;
use crate::exit::Exit;
use crate::report::RenderOptions;
use anyhow::{bail, Context, Result};
use std::io::{self, Write};

pub fn run(args: &StatesArgs) -> Result<Exit> {
    let cfg = StatesConfig::from_args(args)?;
    if let Some(every) = cfg.watch {
        return super::watch::run(&cfg, every);
    }
    let report = look(&cfg)?;
    crate::app::write_out(|out| write_report(&cfg, &report, &cfg.render, None, out))?;
    Ok(Exit::Clean)
}

/// Read the machine (or the snapshot file) once and count it.
pub fn look(cfg: &StatesConfig) -> Result<StatesReport> {
    let snap = match &cfg.from {
        Some(path) => crate::capture::load(path, cfg.sample, cfg.max_snapshot)?,
        None => crate::source::read(&cfg.source)
            .with_context(|| format!("reading {}", cfg.source.root.display()))?,
    };
    if let Some(pid) = cfg
        .options
        .scope
        .pids
        .iter()
        .find(|p| !snap.processes.iter().any(|q| q.pid == **p))
    {
        bail!("--pid {pid}: no such process in {}", snap.meta.proc_root);
    }
    let mut report = build(&snap, &cfg.options);
    report.scan.from = cfg.from.as_ref().map(|p| p.display().to_string());
    Ok(report)
}

pub(super) fn write_report(
    cfg: &StatesConfig,
    report: &StatesReport,
    opts: &RenderOptions,
    note: Option<&str>,
    out: &mut dyn Write,
) -> io::Result<()> {
    if cfg.json {
        render::json(report, out)
    } else {
        render::text(report, opts, note, out)
    }
}
