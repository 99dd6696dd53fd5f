//! `cwleak check`: a CI gate on the scan. Scope what the build owns, run the
//! test command (wrap mode), look after the settle window, judge the leaks
//! against the thresholds, write the reports, say it in a few lines.
//!
//! Module map: `roots` (--pid/--pidfile, exits), `wrap` (the command and its
//! signals), `during` (growth while it runs), `thresholds` (allow rules and
//! the verdict), `config_file` (cwleak.toml), `junit`, `summary`, `outcome`
//! (the report's `check` data). Files are written by `crate::output`.
//! Reading the system stays in `crate::source`.

pub mod config_file;
mod during;
pub mod junit;
pub mod outcome;
pub mod roots;
mod summary;
pub mod thresholds;
mod trace;
mod wrap;

pub use outcome::CheckInfo;

use crate::config::CheckConfig;
use crate::diagnose::{self, Report, Scope};
use crate::exit::Exit;
use crate::source::{self, exits::now_ms, ProcRoot};
use anyhow::{bail, Result};
use during::Tracker;
use outcome::{CommandRun, During, Root};
use roots::Roots;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub fn run(cfg: &CheckConfig) -> Result<Exit> {
    let started = Instant::now();
    let mut roots = Roots::start(cfg.roots.clone(), ProcRoot::new(&cfg.source.root))?;
    let tracing = trace::Tracing::start(cfg);
    let (command, during, command_exit) = if cfg.command.is_empty() {
        (None, None, None)
    } else {
        match run_command(cfg, &mut roots)? {
            Ran::Done(run, during) => {
                let exit = Exit::from_command(run.exit_code, run.signal);
                (Some(run), during, exit)
            }
            Ran::Stop(exit) => return Ok(exit),
        }
    };
    let look_started = Instant::now();
    let look = take(cfg, &mut roots, tracing)?;
    let look_ms = ms(look_started.elapsed());
    let mut report = look.report;
    let verdict = thresholds::apply(&mut report, &cfg.thresholds);
    // Missing data never passes: a verdict met on a look that could not see
    // everything in scope is an error (2), not a PASS.
    let error = look.error.or_else(|| {
        (verdict.passed && !report.scan.incomplete.is_empty()).then(|| {
            format!(
                "cannot pass on missing data: {}",
                report.scan.incomplete.join("; ")
            )
        })
    });
    let passed = verdict.passed && error.is_none();
    let own = match (&error, passed) {
        (Some(_), _) => Exit::Error,
        (None, true) => Exit::Clean,
        (None, false) => Exit::Leaks,
    };
    let mut exit = command_exit.unwrap_or(own);
    let scope = scope_text(cfg, &look.roots);
    let stable_scope = stable_scope_text(cfg, &look.roots);
    report.check = Some(CheckInfo {
        passed,
        exit_code: exit.code(),
        failures: verdict.failures,
        error,
        counted: verdict.counted,
        allowed: verdict.allowed,
        max: cfg.thresholds.max,
        max_per_process: cfg.thresholds.max_per_process,
        allow: verdict.rules,
        config_file: cfg.config_file.as_ref().map(|p| p.display().to_string()),
        blamed: verdict.blamed,
        roots: look.roots,
        command,
        during,
    });
    let elapsed = ms(started.elapsed());
    let suite = junit::Suite {
        scope: &scope,
        stable_scope: &stable_scope,
        duration_ms: elapsed,
        look_ms,
    };
    let (written, failed) = write_files(cfg, &report, &suite);
    crate::diag_part!(
        "{}",
        summary::render(
            &report,
            &scope,
            ms(cfg.settle),
            source::running_as_root(),
            &written
        )
    );
    if failed && command_exit.is_none() {
        exit = Exit::Error;
    }
    Ok(exit)
}

enum Ran {
    Done(CommandRun, Option<During>),
    /// No check: the command could not start, or cwleak was told to stop.
    Stop(Exit),
}

fn run_command(cfg: &CheckConfig, roots: &mut Roots) -> Result<Ran> {
    let started_at_ms = now_ms();
    let started = Instant::now();
    let running = match wrap::spawn(&cfg.command) {
        Ok(r) => r,
        Err(e) => {
            let exit = match e {
                wrap::WrapError::NotFound { .. } => Exit::NotFound,
                _ => Exit::CannotExecute,
            };
            crate::diag!("cwleak: error: {:#}", anyhow::Error::from(e));
            return Ok(Ran::Stop(exit));
        }
    };
    let stop = AtomicBool::new(false);
    let (finished, tracker) = std::thread::scope(|s| {
        let sampler = cfg.during.map(|interval| {
            let (stop, roots) = (&stop, &mut *roots);
            s.spawn(move || sample_loop(cfg, roots, stop, started, interval))
        });
        let finished = running.wait();
        stop.store(true, Ordering::SeqCst);
        let tracker = sampler.and_then(|h| h.join().ok());
        (finished, tracker)
    });
    let f = finished?;
    if let Some(sig) = f.interrupted {
        crate::diag!("cwleak check: stopped by signal {sig} while the command ran; no check taken");
        let exit = Exit::from_command(f.code, f.signal).unwrap_or(Exit::Command(128 + sig));
        return Ok(Ran::Stop(exit));
    }
    let run = CommandRun {
        argv: cfg
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        exit_code: f.code,
        signal: f.signal,
        started_at_ms,
        duration_ms: ms(f.duration),
    };
    let during = tracker.zip(cfg.during).map(|(t, iv)| t.finish(ms(iv)));
    Ok(Ran::Done(run, during))
}

/// Sample every `interval` until `stop`; a sample that fails is counted.
fn sample_loop(
    cfg: &CheckConfig,
    roots: &mut Roots,
    stop: &AtomicBool,
    started: Instant,
    interval: Duration,
) -> Tracker {
    let mut t = Tracker::default();
    let mut next = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) {
        let at = ms(started.elapsed());
        match sample(cfg, roots) {
            Ok(Some(report)) => t.add(at, &report),
            Ok(None) => t.empty(at),
            Err(e) => t.failed(format!("{e:#}")),
        }
        next += interval;
        while !stop.load(Ordering::SeqCst) && started.elapsed() < next {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    t
}

fn sample(cfg: &CheckConfig, roots: &mut Roots) -> Result<Option<Report>> {
    let now = roots.resolve(true)?;
    let Some(scope) = scope_now(&cfg.scope, &now, !roots.is_empty()) else {
        return Ok(None);
    };
    let source = source::SourceConfig {
        tables_for: crate::config::tables_for(&scope),
        ..cfg.source.clone()
    };
    let snap = source::read(&source)?;
    Ok(Some(diagnose::diagnose(&snap, &scope)))
}

/// The scope with the roots that still run; None when there were roots and
/// none runs (nothing left to look at).
fn scope_now(base: &Scope, roots: &[Root], has_roots: bool) -> Option<Scope> {
    let mut s = base.clone();
    s.pids = roots.iter().filter(|r| r.running).map(|r| r.pid).collect();
    s.pids.sort_unstable();
    s.pids.dedup();
    (!has_roots || !s.pids.is_empty()).then_some(s)
}

struct Look {
    report: Report,
    roots: Vec<Root>,
    error: Option<String>,
}

/// The check itself: look, settle, look again, diagnose the scope.
fn take(cfg: &CheckConfig, roots: &mut Roots, tracing: trace::Tracing) -> Result<Look> {
    check_cgroups(cfg)?;
    let before = roots.resolve(false)?;
    let scope = scope_now(&cfg.scope, &before, !roots.is_empty());
    let settle = if scope.is_some() {
        cfg.settle
    } else {
        Duration::ZERO
    };
    let source = source::SourceConfig {
        tables_for: scope
            .as_ref()
            .map(crate::config::tables_for)
            .unwrap_or_default(),
        ..cfg.source.clone()
    };
    let mut snap = crate::app::look(&source, settle)?;
    // A root that exited within the settle window is gone too.
    let after = roots.resolve(false)?;
    let error =
        (!roots.is_empty() && !after.iter().any(|r| r.running)).then(|| nothing_left(&after));
    let scope = scope.unwrap_or_else(|| {
        // Nothing runs: list the pids asked about, look at no socket (the
        // pids may already name other processes).
        snap.sockets.clear();
        let mut s = cfg.scope.clone();
        s.pids = before.iter().map(|r| r.pid).collect();
        s
    });
    let facts = tracing.finish(&snap);
    Ok(Look {
        report: diagnose::diagnose_traced(&snap, &scope, facts.as_ref()),
        roots: after,
        error,
    })
}

fn nothing_left(roots: &[Root]) -> String {
    let names: Vec<String> = roots
        .iter()
        .map(|r| format!("pid {} ({})", r.pid, r.from))
        .collect();
    format!(
        "nothing left to check: every process in scope had exited ({}), and its sockets closed \
         with it; keep the service running until cwleak has looked (or add --during to watch it \
         while the command runs)",
        names.join(", ")
    )
}

/// A --cgroup that does not exist would make an empty scope and a pass.
fn check_cgroups(cfg: &CheckConfig) -> Result<()> {
    let root = ProcRoot::new(&cfg.source.root);
    for cg in &cfg.scope.cgroups {
        if source::cgroup::cgroup_exists(&root, cg) == Some(false) {
            bail!("--cgroup {cg}: no such cgroup (is the unit or container running?)");
        }
    }
    Ok(())
}

/// Write --report and --junit; failures are printed, never half a file.
fn write_files(cfg: &CheckConfig, report: &Report, suite: &junit::Suite) -> (Vec<String>, bool) {
    let mut written = Vec::new();
    let mut failed = false;
    let mut save = |path: &std::path::Path,
                    what: &str,
                    r: &dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()>| {
        match crate::output::write(path, crate::output::Access::Default, r) {
            Ok(_) => written.push(format!("{what} {}", path.display())),
            Err(e) => {
                crate::diag!("cwleak: error: {:#}", anyhow::Error::from(e));
                failed = true;
            }
        }
    };
    if let Some(path) = &cfg.report {
        save(path, "report", &|out| {
            // A CI artifact people open: indented.
            let opts = crate::report::RenderOptions {
                pretty: true,
                ..Default::default()
            };
            crate::report::render(report, crate::report::Format::Json, &opts, out)
        });
    }
    if let Some(path) = &cfg.junit {
        save(path, "junit", &|out| junit::render(report, suite, out));
    }
    (written, failed)
}

/// "pid 42 (--pidfile run/api.pid) and descendants, local port 8080".
fn scope_text(cfg: &CheckConfig, roots: &[Root]) -> String {
    let mut parts = Vec::new();
    if !roots.is_empty() {
        let names: Vec<String> = roots
            .iter()
            .map(|r| match r.from.as_str() {
                "--pid" => format!("--pid {}", r.pid),
                from => format!("pid {} ({from})", r.pid),
            })
            .collect();
        let mut p = names.join(", ");
        if cfg.scope.with_children {
            p.push_str(" and descendants");
        }
        parts.push(p);
    }
    let list = |v: Vec<String>| v.join(", ");
    if !cfg.scope.local_ports.is_empty() {
        parts.push(format!(
            "local port {}",
            list(cfg.scope.local_ports.iter().map(u16::to_string).collect())
        ));
    }
    if !cfg.scope.cgroups.is_empty() {
        parts.push(format!("cgroup {}", list(cfg.scope.cgroups.clone())));
    }
    if !cfg.scope.netns.is_empty() {
        parts.push(format!(
            "netns {}",
            list(cfg.scope.netns.iter().map(u64::to_string).collect())
        ));
    }
    parts.join("; ")
}

/// The scope as the user wrote it, without pids (a restarted service gets a
/// new one): "--pid (leakyd)", "--pidfile run/api.pid", ports, cgroups.
fn stable_scope_text(cfg: &CheckConfig, roots: &[Root]) -> String {
    let mut parts = Vec::new();
    if !roots.is_empty() {
        let names: Vec<String> = roots
            .iter()
            .map(|r| match r.from.as_str() {
                "--pid" => format!("--pid ({})", r.comm.as_deref().unwrap_or("?")),
                from => from.to_string(),
            })
            .collect();
        let mut p = names.join(", ");
        if cfg.scope.with_children {
            p.push_str(" and descendants");
        }
        parts.push(p);
    }
    if !cfg.scope.local_ports.is_empty() {
        let ports: Vec<String> = cfg.scope.local_ports.iter().map(u16::to_string).collect();
        parts.push(format!("local port {}", ports.join(", ")));
    }
    if !cfg.scope.cgroups.is_empty() {
        parts.push(format!("cgroup {}", cfg.scope.cgroups.join(", ")));
    }
    if !cfg.scope.netns.is_empty() {
        // Inodes change when a namespace is made again.
        parts.push("--netns".to_string());
    }
    parts.join("; ")
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
