//! `cwleak watch`: look again every `--interval` and show, per process
//! holding CLOSE_WAIT sockets, how its count moves. A leak is a count that
//! only goes up; one look cannot show it, a series can.
//!
//! Each look after the first reads through an incremental source
//! (`source::Incremental`: only new processes and changed fd tables are
//! walked again), and a socket counts only if the look before saw it too
//! (`crate::growth`, shared with `check --during`): the interval is the
//! settle window. `track` follows each process, `table` draws the terminal
//! frame, `lines` the pipe lines, `summary` the end. Only `run` touches the
//! OS and the terminal.

pub mod config;
pub mod lines;
pub mod screen;
pub mod summary;
pub mod table;
pub mod trace;
pub mod track;

use crate::cli::WatchArgs;
use crate::diagnose::{self, Tally};
use crate::exit::Exit;
use crate::growth::Persistence;
use crate::model::Pid;
use crate::model::Snapshot;
use crate::source::{exits::now_ms, incremental, Incremental};
use crate::stop;
use anyhow::{bail, Context, Result};
use config::WatchConfig;
use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};
use summary::{Costs, Totals};
use track::Tracker;

pub fn run(args: &WatchArgs) -> Result<Exit> {
    let cfg = WatchConfig::from_args(args)?;
    stop::install()?;
    let mut reader = if cfg.incremental {
        Incremental::new(incremental::FULL_EVERY)
    } else {
        Incremental::disabled()
    };
    let mut persist = Persistence::default();
    let mut tracker = Tracker::default();
    let mut costs = Costs::default();
    let mut tracing = trace::Tracing::start(cfg.trace, &cfg.scope);
    let started = Instant::now();
    let end = cfg.duration.map(|d| started + d);
    let mut open = true;
    loop {
        let look_started = Instant::now();
        let first = tracker.looks() == 0;
        let (snap, Judged { tally, made }, read_ms) = look(&cfg, &mut reader, first, &mut tracing)?;
        if first {
            // A quiet watch must not read as "no leak" when it cannot see enough.
            for gap in &tally.incomplete {
                crate::diag!(
                    "cwleak watch: incomplete: {}",
                    crate::report::wrap::clean(gap)
                );
            }
        }
        let st = reader.stats();
        costs.add(read_ms, st.walked, st.processes);
        let tallies = if first {
            persist.seed(&tally)
        } else {
            persist.count(&tally)
        };
        let at_ms = ms(started.elapsed());
        let events = tracker.update(at_ms, track::seen(&snap, &tally, &tallies, &made, at_ms));
        let out = if cfg.tty {
            let header = table::Header {
                interval_ms: ms(cfg.interval),
                elapsed_ms: at_ms,
                looks: tracker.looks(),
                read_ms,
                walked: st.walked,
                processes: st.processes,
                scope: cfg.scope_text.clone(),
            };
            screen::in_place(&table::render(
                &header,
                &tracker.rows(),
                table::Screen {
                    color: cfg.color,
                    width: cfg.width,
                    height: cfg.height,
                },
            ))
        } else {
            let now = now_ms();
            events.iter().map(|e| lines::event(now, e) + "\n").collect()
        };
        if !emit(&out)? {
            open = false;
            break;
        }
        if cfg.count.is_some_and(|n| tracker.looks() as u64 >= n)
            || end.is_some_and(|e| Instant::now() >= e)
        {
            break;
        }
        // Between looks, hold only what the next one needs (the allocator
        // gives freed pages back at once: main.rs).
        drop((snap, tally));
        let next = look_started + cfg.interval;
        let next = end.map_or(next, |e| next.min(e));
        if !stop::sleep_while_read(next) {
            // A reader gone is no error: end quietly, status as usual.
            open = !stop::stdout_reader_gone();
            break;
        }
    }
    if open {
        let totals = Totals {
            tracker: &tracker,
            costs: &costs,
            elapsed_ms: ms(started.elapsed()),
            interval_ms: ms(cfg.interval),
            epoch_ms: now_ms(),
            trace: tracing.info(),
        };
        let text = if cfg.tty {
            summary::text(&totals)
        } else {
            summary::lines(&totals)
        };
        emit(&text)?;
    }
    Ok(if cfg.fail_on_growth && tracker.any_grew() {
        Exit::Grew
    } else {
        Exit::Clean
    })
}

/// What `watch` keeps of a look's diagnosis: its tally with a brief per
/// finding (not the findings: 20 MB at 40,000), and with `--trace` the call
/// that made each blamed process's first copy.
struct Judged {
    tally: Tally,
    made: HashMap<Pid, String>,
}

/// One look, diagnosed. The first one waits out its own settle window (as
/// `scan` does); the later ones have the previous look for that.
fn look(
    cfg: &WatchConfig,
    reader: &mut Incremental,
    first: bool,
    tracing: &mut trace::Tracing,
) -> Result<(Snapshot, Judged, u64)> {
    let mut read_ms = 0;
    let settle = if first { cfg.settle } else { Duration::ZERO };
    let snap = crate::app::look_with(&cfg.source, settle, |c| {
        let t = Instant::now();
        let r = reader.read(c);
        read_ms = ms(t.elapsed());
        r
    })?;
    if first {
        if let Some(pid) = cfg
            .scope
            .pids
            .iter()
            .find(|p| !snap.processes.iter().any(|q| q.pid == **p))
        {
            bail!("--pid {pid}: no such process in {}", snap.meta.proc_root);
        }
    }
    let judged = match tracing.facts(&snap, &cfg.scope) {
        // Traced causes need the findings made whole (origin::apply).
        Some(facts) => {
            let report = diagnose::diagnose_traced(&snap, &cfg.scope, Some(&facts));
            Judged {
                tally: Tally::of(&report),
                made: track::made_by(&report),
            }
        }
        None => Judged {
            tally: diagnose::tally(&snap, &cfg.scope, true),
            made: HashMap::new(),
        },
    };
    Ok((snap, judged, read_ms))
}

/// Write and flush; false when the reader has gone away (`watch | head`).
fn emit(s: &str) -> Result<bool> {
    let mut out = io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing output"),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
