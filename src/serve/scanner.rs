//! The scan loop of `serve`: one look every `--interval` (incremental: only
//! changed fd tables are walked again, then the settle window for the
//! CLOSE_WAIT sockets the last look did not already see settled), diagnosed
//! host-wide, rendered once into the metrics text, and published with the
//! report (rendered to JSON only if `/report` is asked for) for requests to
//! copy. HTTP never triggers a scan.

use super::config::ServeConfig;
use super::last_report::LastReport;
use super::metrics::{self, Counters, StateCounts};
use super::routes::Published;
use crate::diagnose::{self, Scope};
use crate::source::settled::LastLook;
use crate::source::{incremental, Incremental};
use crate::stop;
use anyhow::Result;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub type Shared = Arc<Mutex<Published>>;

/// Scan until asked to stop.
pub fn run(cfg: &ServeConfig, shared: &Shared) {
    let mut reader = Incremental::new(incremental::FULL_EVERY);
    let mut last_look = LastLook::default();
    let mut counters = Counters::default();
    let mut last: Option<(Arc<LastReport>, StateCounts)> = None;
    loop {
        let started = Instant::now();
        let result = scan(cfg, &mut reader, &mut last_look);
        let took = started.elapsed().as_secs_f64();
        counters.scans += 1;
        counters.duration_s += took;
        counters.last_duration_s = took;
        let error = match result {
            Ok((report, states)) => {
                counters.last_success_s = Some(epoch_s());
                last = Some((Arc::new(LastReport::new(report)), states));
                None
            }
            Err(e) => {
                counters.errors += 1;
                let msg = format!("{e:#}");
                crate::diag!("cwleak serve: scan failed: {msg}");
                Some(msg)
            }
        };
        // The look and the report it replaced are freed here, their pages
        // given back at once (main.rs): between looks the exporter holds
        // only what it serves.
        publish(cfg, shared, last.as_ref(), &counters, error);
        if !stop::sleep_until(started + cfg.interval) {
            return;
        }
    }
}

fn scan(
    cfg: &ServeConfig,
    reader: &mut Incremental,
    last_look: &mut LastLook,
) -> Result<(diagnose::Report, StateCounts)> {
    let snap =
        crate::app::look_after(&cfg.source, cfg.settle, |c| reader.read(c), Some(last_look))?;
    let states = metrics::state_counts(&snap);
    Ok((diagnose::diagnose(&snap, &Scope::everything()), states))
}

/// Render once, then swap under the lock: a request never waits for a render.
fn publish(
    cfg: &ServeConfig,
    shared: &Shared,
    last: Option<&(Arc<LastReport>, StateCounts)>,
    counters: &Counters,
    error: Option<String>,
) {
    let empty = StateCounts::new();
    let exposition = super::routes::Exposition::of(&metrics::Input {
        report: last.map(|(r, _)| r.report()),
        states: last.map_or(&empty, |(_, s)| s),
        counters,
        top: cfg.top,
    });
    let mut p = shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    p.metrics = exposition;
    if let Some((r, _)) = last {
        p.report = Some(r.clone());
    }
    if error.is_none() && last.is_some() {
        p.last_ok = Some(Instant::now());
    }
    p.last_error = error;
}

fn epoch_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
