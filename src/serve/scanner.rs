//! The scan loop of `serve`: one look every `--interval` (incremental: only
//! changed fd tables are walked again, then the settle window for the
//! CLOSE_WAIT sockets the last look did not already see settled), diagnosed
//! host-wide into counts (`diagnose::tally`: no report is made), rendered
//! once into the metrics text, and published with the look (made into the
//! JSON report only if `/report` is asked for) for requests to copy. HTTP
//! never triggers a scan.

use super::config::ServeConfig;
use super::exposition::Family;
use super::last_report::LastReport;
use super::metrics::{self, Counters};
use super::routes::Published;
use crate::diagnose::{self, Scope};
use crate::model::Snapshot;
use crate::source::settled::LastLook;
use crate::source::{incremental, Incremental};
use crate::stop;
use anyhow::Result;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub type Shared = Arc<Mutex<Published>>;

/// What the last successful scan left: its metric families, and its look
/// for `/report`.
struct Last {
    families: Vec<Family>,
    report: Arc<LastReport>,
}

/// Scan until asked to stop.
pub fn run(cfg: &ServeConfig, shared: &Shared) {
    let mut reader = Incremental::new(incremental::FULL_EVERY);
    let mut last_look = LastLook::default();
    let mut counters = Counters::default();
    let mut last: Option<Last> = None;
    loop {
        let started = Instant::now();
        let result = scan(cfg, &mut reader, &mut last_look);
        let took = started.elapsed().as_secs_f64();
        counters.scans += 1;
        counters.duration_s += took;
        counters.last_duration_s = took;
        let error = match result {
            Ok((look, families)) => {
                counters.last_success_s = Some(epoch_s());
                last = Some(Last {
                    families,
                    report: Arc::new(LastReport::new(look)),
                });
                None
            }
            Err(e) => {
                counters.errors += 1;
                let msg = format!("{e:#}");
                crate::diag!("cwleak serve: scan failed: {msg}");
                Some(msg)
            }
        };
        // The look it replaced is freed here, its pages given back at once
        // (main.rs): between looks the exporter holds only what it serves.
        publish(shared, last.as_ref(), &counters, error);
        if !stop::sleep_until(started + cfg.interval) {
            return;
        }
    }
}

/// One look and the metric families of its diagnosis: the diagnosis is
/// tallied, its findings dropped as they are judged (`diagnose::tally`);
/// `/report` makes the report from the look when asked.
fn scan(
    cfg: &ServeConfig,
    reader: &mut Incremental,
    last_look: &mut LastLook,
) -> Result<(Snapshot, Vec<Family>)> {
    let snap =
        crate::app::look_after(&cfg.source, cfg.settle, |c| reader.read(c), Some(last_look))?;
    let states = metrics::state_counts(&snap);
    let tally = diagnose::tally(&snap, &Scope::everything(), false);
    let families = metrics::scan_families(&tally, &states, cfg.top);
    Ok((snap, families))
}

/// Render once, then swap under the lock: a request never waits for a render.
fn publish(shared: &Shared, last: Option<&Last>, counters: &Counters, error: Option<String>) {
    let exposition = super::routes::Exposition::encode(&metrics::families_of(
        counters,
        last.map(|l| l.families.as_slice()),
    ));
    let mut p = shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    p.metrics = exposition;
    if let Some(l) = last {
        p.report = Some(l.report.clone());
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
