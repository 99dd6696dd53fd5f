//! `cwleak capture`: record looks at the machine into a snapshot file, and
//! load one back for `scan --from`.

use crate::cli::CaptureArgs;
use crate::config::source_config;
use crate::exit::Exit;
use crate::model::{Snapshot, TcpState};
use crate::snapshot::{self, Capture, Keep};
use anyhow::{bail, Result};
use std::io::IsTerminal;
use std::path::Path;

pub fn run(args: &CaptureArgs) -> Result<Exit> {
    let mut source = source_config(&args.source);
    source.cmdline = args.cmdline;
    source.sysctls = true;
    // So that `states --from` and `sysctl --from` show what the kernel counted.
    source.kernel_counts = true;
    let progress = std::io::stderr().is_terminal();
    let total = args.samples as usize;
    let mut samples = Vec::with_capacity(total);
    for i in 0..total {
        if i > 0 {
            std::thread::sleep(args.interval);
        }
        let snap = crate::app::look(&source, args.settle)?;
        if progress {
            crate::diag_part!(
                "\rcwleak capture: look {}/{}: {} processes, {} sockets in CLOSE_WAIT   ",
                i + 1,
                total,
                snap.processes.len(),
                close_wait(&snap)
            );
        }
        samples.push(snap);
    }
    if progress {
        crate::diag!();
    }
    let settle_ms = u64::try_from(args.settle.as_millis()).unwrap_or(u64::MAX);
    let interval_ms = u64::try_from(args.interval.as_millis()).unwrap_or(u64::MAX);
    let capture = Capture::new(samples, args.cmdline, settle_ms, interval_ms);
    let written = snapshot::write(&args.output, &capture)?;
    let analyse = if written.streamed {
        String::new()
    } else {
        format!(
            "; analyse it anywhere with: cwleak scan --from {}",
            args.output.display()
        )
    };
    crate::diag!(
        "cwleak: wrote {} ({} look(s), {} KiB){analyse}",
        args.output.display(),
        total,
        written.bytes.div_ceil(1024),
    );
    Ok(Exit::Clean)
}

/// One look of a snapshot file (`sample` 0-based; None: the last), read
/// with at most `max_bytes` of decompressed JSON.
pub fn load(path: &Path, sample: Option<usize>, max_bytes: u64) -> Result<Snapshot> {
    let keep = sample.map_or(Keep::Last, Keep::Index);
    let loaded = snapshot::read_keeping(path, keep, max_bytes)?;
    let n = loaded.looks;
    match loaded.capture.samples.into_iter().next() {
        Some(look) => Ok(look),
        None => bail!(
            "{}: --sample {} but the snapshot has {n} look(s)",
            path.display(),
            sample.unwrap_or(0) + 1
        ),
    }
}

fn close_wait(snap: &Snapshot) -> usize {
    snap.sockets
        .iter()
        .filter(|s| s.state == TcpState::CloseWait)
        .count()
}

/// Real captures with findings of several causes (tests/corpus), by file
/// name: what pure code is held to where it must agree with itself.
#[cfg(test)]
pub fn corpus() -> Vec<(String, crate::model::Snapshot)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/snapshots");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let look = load(&p, None, u64::MAX).expect("capture");
            (p.display().to_string(), look)
        })
        .collect()
}
