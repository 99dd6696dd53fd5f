//! `cwleak capture`: record looks at the machine into a snapshot file, and
//! load one back for `scan --from`.

use crate::cli::CaptureArgs;
use crate::config::source_config;
use crate::exit::Exit;
use crate::model::{Snapshot, TcpState};
use crate::snapshot::{self, Capture};
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::path::Path;

pub fn run(args: &CaptureArgs) -> Result<Exit> {
    let mut source = source_config(&args.source);
    source.cmdline = args.cmdline;
    source.sysctls = true;
    let progress = std::io::stderr().is_terminal();
    let total = args.samples as usize;
    let mut samples = Vec::with_capacity(total);
    for i in 0..total {
        if i > 0 {
            std::thread::sleep(args.interval);
        }
        let snap = crate::app::look(&source, args.settle)?;
        if progress {
            eprint!(
                "\rcwleak capture: look {}/{}: {} processes, {} sockets in CLOSE_WAIT   ",
                i + 1,
                total,
                snap.processes.len(),
                close_wait(&snap)
            );
            let _ = std::io::stderr().flush();
        }
        samples.push(snap);
    }
    if progress {
        eprintln!();
    }
    let settle_ms = u64::try_from(args.settle.as_millis()).unwrap_or(u64::MAX);
    let interval_ms = u64::try_from(args.interval.as_millis()).unwrap_or(u64::MAX);
    let capture = Capture::new(samples, args.cmdline, settle_ms, interval_ms);
    snapshot::write(&args.output, &capture).context("writing the snapshot")?;
    let size = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "cwleak: wrote {} ({} look(s), {} KiB); analyse it anywhere with: cwleak scan --from {}",
        args.output.display(),
        total,
        size.div_ceil(1024),
        args.output.display()
    );
    Ok(Exit::Clean)
}

/// One look of a snapshot file (`sample` 0-based; None: the last).
pub fn load(path: &Path, sample: Option<usize>) -> Result<Snapshot> {
    let capture = snapshot::read(path)?;
    let n = capture.samples.len();
    let index = sample.unwrap_or(n.saturating_sub(1));
    if index >= n {
        bail!(
            "{}: --sample {} but the snapshot has {n} look(s)",
            path.display(),
            index + 1
        );
    }
    let mut samples = capture.samples;
    Ok(samples.swap_remove(index))
}

fn close_wait(snap: &Snapshot) -> usize {
    snap.sockets
        .iter()
        .filter(|s| s.state == TcpState::CloseWait)
        .count()
}
