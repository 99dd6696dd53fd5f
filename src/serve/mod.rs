//! `cwleak serve`: Prometheus metrics, the JSON report and a health check
//! over HTTP, for fleets that already run Prometheus.
//!
//! Two parts that share one published state (`routes::Published`):
//! `scanner` looks at the host every `--interval` on its own thread and
//! renders the answers once (`metrics`, the JSON report); `http` answers
//! requests on a small single-threaded tokio runtime by copying them. No
//! request ever starts a scan. SIGINT or SIGTERM stop both (`crate::stop`).

pub mod config;
pub mod exposition;
mod http;
mod last_report;
pub mod metrics;
pub mod routes;
mod scanner;

use crate::cli::ServeArgs;
use crate::exit::Exit;
use crate::report::units::duration_ms;
use crate::stop;
use anyhow::{Context, Result};
use config::ServeConfig;
use routes::Published;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How long a stop waits for a scan in progress before leaving without it.
const SCAN_GRACE: Duration = Duration::from_secs(5);

pub fn run(args: &ServeArgs) -> Result<Exit> {
    let cfg = ServeConfig::from_args(args)?;
    let listener = std::net::TcpListener::bind(cfg.listen)
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    listener
        .set_nonblocking(true)
        .context("making the listening socket non-blocking")?;
    let addr = listener.local_addr().context("reading the bound address")?;
    stop::install()?;
    crate::diag!(
        "cwleak serve: listening on http://{addr}/metrics (also /report, /healthz); scanning {} every {}",
        cfg.source.root.display(),
        duration_ms(u64::try_from(cfg.interval.as_millis()).unwrap_or(u64::MAX))
    );
    if !addr.ip().is_loopback() {
        crate::diag!(
            "cwleak serve: warning: {addr} is reachable from other hosts, and /report names \
             processes, cgroups and connections; restrict it (firewall, NetworkPolicy) to your \
             Prometheus"
        );
    }
    let shared = Arc::new(Mutex::new(Published {
        metrics: routes::Exposition::of(&metrics::Input {
            report: None,
            states: &metrics::StateCounts::new(),
            counters: &metrics::Counters::default(),
            top: cfg.top,
        }),
        report: None,
        last_ok: None,
        last_error: None,
        stale_after: cfg.stale_after(),
    }));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let scanner_cfg = cfg.clone();
    let scanner_state = shared.clone();
    std::thread::Builder::new()
        .name("cwleak-scan".into())
        .spawn(move || {
            scanner::run(&scanner_cfg, &scanner_state);
            let _ = done_tx.send(());
        })
        .context("starting the scan thread")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the HTTP runtime")?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        http::serve(listener, shared).await;
        Ok::<(), std::io::Error>(())
    });
    // The HTTP side ends only on a stop request or a listener it could not
    // adopt; make sure the scanner stops too.
    stop::request();
    served.context("serving HTTP")?;
    if done_rx.recv_timeout(SCAN_GRACE).is_err() {
        crate::diag!("cwleak serve: a scan was still running; leaving without it");
    }
    crate::diag!("cwleak serve: stopped");
    Ok(Exit::Clean)
}
