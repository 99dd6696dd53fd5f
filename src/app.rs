//! Running a command: read, settle, diagnose, render; map the outcome to an exit code.

use crate::cli::{CheckArgs, Cli, Command, ScanArgs};
use crate::config::{CheckConfig, ScanConfig};
use crate::diagnose::{self, Report};
use crate::exit::Exit;
use crate::report;
use crate::source;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::{self, Write};

pub fn run(cli: Cli) -> Result<Exit> {
    match cli.command {
        Command::Scan(args) => scan(&args),
        Command::Check(args) => check(&args),
        Command::Capture(args) => crate::capture::run(&args),
        Command::States(args) => crate::states::run(&args),
        Command::Sysctl(args) => crate::tuning::run(&args),
        Command::Watch(args) => crate::watch::run(&args),
        Command::Serve(args) => crate::serve::run(&args),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            write_out(|out| {
                clap_complete::generate(shell, &mut cmd, "cwleak", out);
                Ok(())
            })?;
            Ok(Exit::Clean)
        }
        Command::Man { dir: None } => {
            let man = clap_mangen::Man::new(Cli::command());
            write_out(|out| man.render(out))?;
            Ok(Exit::Clean)
        }
        Command::Man { dir: Some(dir) } => {
            man_pages(&dir)?;
            Ok(Exit::Clean)
        }
    }
}

/// One page per command: cwleak.1 names cwleak-scan(1) and the others, so
/// they must exist too.
fn man_pages(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let source = format!("cwleak {}", env!("CARGO_PKG_VERSION"));
    let subs = cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned();
    let pages: Vec<clap::Command> = std::iter::once(cmd.clone()).chain(subs).collect();
    let mut written = Vec::new();
    for page in pages {
        let man = clap_mangen::Man::new(page).source(source.clone());
        // Complete or absent, as every file cwleak writes (crate::output).
        let path = dir.join(man.get_filename());
        crate::output::write(&path, crate::output::Access::Default, |out| man.render(out))?;
        written.push(path);
    }
    write_out(|out| {
        for p in &written {
            writeln!(out, "{}", p.display())?;
        }
        Ok(())
    })
}

fn check(args: &CheckArgs) -> Result<Exit> {
    let cfg = CheckConfig::from_args(args)?;
    crate::check::run(&cfg)
}

fn scan(args: &ScanArgs) -> Result<Exit> {
    let cfg = ScanConfig::from_args(args)?;
    let report = scan_report(&cfg)?;
    let mut t = std::time::Instant::now();
    write_out(|out| report::render(&report, cfg.format, &cfg.render, out))?;
    source::phase_done("render", &mut t);
    let exit = Exit::of_report(&report);
    // The process ends now: freeing 40,000 findings one by one would only
    // delay the exit. The kernel takes the memory back at once.
    std::mem::forget(report);
    Ok(exit)
}

/// One look (two with a settle window), diagnosed; or a saved look.
pub fn scan_report(cfg: &ScanConfig) -> Result<Report> {
    let mut recording = match cfg.trace_for {
        Some(d) if cfg.from.is_none() => Some(crate::trace_for::record(cfg, d)?),
        _ => None,
    };
    let snap = match &cfg.from {
        Some(path) => crate::capture::load(path, cfg.sample, cfg.max_snapshot)?,
        None => look(&cfg.source, cfg.settle)?,
    };
    if let Some(pid) = cfg
        .scope
        .pids
        .iter()
        .find(|p| !snap.processes.iter().any(|q| q.pid == **p))
    {
        anyhow::bail!("--pid {pid}: no such process in {}", snap.meta.proc_root);
    }
    let facts = recording.as_mut().map(|r| r.facts(&snap));
    drop(recording);
    let mut t = std::time::Instant::now();
    let report = diagnose::diagnose_traced(&snap, &cfg.scope, facts.as_ref());
    source::phase_done("diagnose", &mut t);
    // Before the report is written: the allocator gives the pages back at
    // once (main.rs), so the rendering's peak is the report alone.
    drop(snap);
    source::phase_done("free snapshot", &mut t);
    Ok(report)
}

/// Read the machine once, then look again at its CLOSE_WAIT sockets after
/// the settle window.
pub fn look(
    source_cfg: &source::SourceConfig,
    settle: std::time::Duration,
) -> Result<crate::model::Snapshot> {
    look_with(source_cfg, settle, source::read)
}

/// As `look`, with the first read done by `read` (an incremental reader).
pub fn look_with(
    source_cfg: &source::SourceConfig,
    settle: std::time::Duration,
    read: impl FnOnce(
        &source::SourceConfig,
    ) -> std::result::Result<crate::model::Snapshot, source::SourceError>,
) -> Result<crate::model::Snapshot> {
    look_after(source_cfg, settle, read, None)
}

/// `look_with` for a program that looks again and again (`serve`): the
/// sockets that were in CLOSE_WAIT at `last` with the same holders have
/// settled already (source/settled.rs); only the others wait for the
/// window's second look. `last` then holds this look.
pub fn look_after(
    source_cfg: &source::SourceConfig,
    settle: std::time::Duration,
    read: impl FnOnce(
        &source::SourceConfig,
    ) -> std::result::Result<crate::model::Snapshot, source::SourceError>,
    last: Option<&mut source::settled::LastLook>,
) -> Result<crate::model::Snapshot> {
    let read = read(source_cfg).with_context(|| format!("scanning {}", source_cfg.root.display()));
    let mut snap = match read {
        Ok(snap) => snap,
        Err(e) => {
            // The next look's "last look" must be one interval before it.
            if let Some(last) = last {
                last.forget();
            }
            return Err(e);
        }
    };
    let ms = u64::try_from(settle.as_millis()).unwrap_or(u64::MAX);
    // Made once for the split and for remembering this look, unless the
    // window's second look changed its holders (it drops the fds of
    // sockets that closed).
    let mut digests = last.as_ref().map(|_| source::settled::Digests::of(&snap));
    if snap.meta.live && !settle.is_zero() {
        let split = match (last.as_deref(), &digests) {
            (Some(last), Some(d)) => last.split_with(&snap, d),
            _ => source::settled::Split {
                fresh: snap
                    .sockets
                    .iter()
                    .filter(|s| s.state == crate::model::TcpState::CloseWait)
                    .map(|s| s.key())
                    .collect(),
                still_sending: Vec::new(),
            },
        };
        if split.fresh.is_empty() {
            // Nothing to look at again (no CLOSE_WAIT, or all settled since
            // the last look; a leak must be in CLOSE_WAIT at both looks). The
            // window was in force all the same: report it, not 0.
            snap.settle = Some(crate::model::Settle {
                window_ms: ms,
                transient: Vec::new(),
                still_sending: Vec::new(),
            });
        } else {
            std::thread::sleep(settle);
            let mut t = std::time::Instant::now();
            source::recheck::settle_these(&mut snap, source_cfg.method, ms, split.fresh);
            source::phase_done("settle re-check", &mut t);
            digests = digests.map(|_| source::settled::Digests::of(&snap));
        }
        if let Some(settled) = snap.settle.as_mut() {
            if !split.still_sending.is_empty() {
                settled.still_sending.extend(split.still_sending);
                settled
                    .still_sending
                    .sort_by_key(|k| (k.netns, k.inode, k.local, k.remote));
            }
        }
    }
    if let (Some(last), Some(d)) = (last, &digests) {
        last.remember_with(&snap, d);
    }
    Ok(snap)
}

/// Write to stdout; a reader that went away (EPIPE) is not an error.
pub(crate) fn write_out(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let stdout = io::stdout();
    // Big: a report of 40,000 findings is 50 MB; 8 KiB writes would be 6,000 syscalls.
    let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let result = f(&mut out).and_then(|()| out.flush());
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing output"),
    }
}
