//! The scan loop of `serve`: one look every `--interval` (incremental: only
//! changed fd tables are walked again, then the settle window), diagnosed
//! host-wide, rendered once into the metrics text and the JSON report, and
//! published for requests to copy. HTTP never triggers a scan.

use super::config::ServeConfig;
use super::metrics::{self, Counters, StateCounts};
use super::routes::Published;
use crate::diagnose::{self, Report, Scope};
use crate::report::{self, Format, RenderOptions};
use crate::source::{incremental, Incremental};
use crate::stop;
use anyhow::{Context, Result};
use hyper::body::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub type Shared = Arc<Mutex<Published>>;

/// Scan until asked to stop.
pub fn run(cfg: &ServeConfig, shared: &Shared) {
    let mut reader = Incremental::new(incremental::FULL_EVERY);
    let mut counters = Counters::default();
    let mut last: Option<(Report, StateCounts)> = None;
    loop {
        let started = Instant::now();
        let result = scan(cfg, &mut reader);
        let took = started.elapsed().as_secs_f64();
        counters.scans += 1;
        counters.duration_s += took;
        counters.last_duration_s = took;
        let error = match result {
            Ok(fresh) => {
                counters.last_success_s = Some(epoch_s());
                last = Some(fresh);
                None
            }
            Err(e) => {
                counters.errors += 1;
                let msg = format!("{e:#}");
                crate::diag!("cwleak serve: scan failed: {msg}");
                Some(msg)
            }
        };
        publish(cfg, shared, last.as_ref(), &counters, error);
        if !stop::sleep_until(started + cfg.interval) {
            return;
        }
    }
}

fn scan(cfg: &ServeConfig, reader: &mut Incremental) -> Result<(Report, StateCounts)> {
    let snap = crate::app::look_with(&cfg.source, cfg.settle, |c| reader.read(c))?;
    let states = metrics::state_counts(&snap);
    Ok((diagnose::diagnose(&snap, &Scope::everything()), states))
}

/// Render once, then swap under the lock: a request never waits for a render.
fn publish(
    cfg: &ServeConfig,
    shared: &Shared,
    last: Option<&(Report, StateCounts)>,
    counters: &Counters,
    error: Option<String>,
) {
    let empty = StateCounts::new();
    let exposition = super::routes::Exposition::of(&metrics::Input {
        report: last.map(|(r, _)| r),
        states: last.map_or(&empty, |(_, s)| s),
        counters,
        top: cfg.top,
    });
    let json = match last.map(|(r, _)| json(r)).transpose() {
        Ok(j) => j,
        Err(e) => {
            crate::diag!("cwleak serve: {e:#}");
            None
        }
    };
    let mut p = shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    p.metrics = exposition;
    if json.is_some() {
        p.report = json;
    }
    if error.is_none() && last.is_some() {
        p.last_ok = Some(Instant::now());
    }
    p.last_error = error;
}

/// The report exactly as `cwleak scan --format json` prints it.
fn json(r: &Report) -> Result<Bytes> {
    let mut buf = Vec::new();
    report::render(r, Format::Json, &RenderOptions::default(), &mut buf)
        .context("rendering the JSON report")?;
    Ok(Bytes::from(buf))
}

fn epoch_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
