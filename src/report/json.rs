//! JSON: the report exactly as serde emits it (described by
//! docs/report.schema.json), with a final newline. Compact (one line) unless
//! asked to indent; compact findings are serialized on all cores.

use crate::diagnose::{Finding, Report};
use serde::Serialize;
use std::io::{self, Write};

pub fn render(report: &Report, pretty: bool, out: &mut dyn Write) -> io::Result<()> {
    if pretty {
        serde_json::to_writer_pretty(&mut *out, report).map_err(io::Error::from)?;
    } else {
        compact(report, out)?;
    }
    out.write_all(b"\n")
}

/// The report's fields in the report's order (the test below holds it to
/// `Report`), each value through serde; the object's braces and keys are
/// written here so that the findings can be written as whole batches.
fn compact(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    fn field(out: &mut dyn Write, key: &str, v: &impl Serialize) -> io::Result<()> {
        write!(out, ",\"{key}\":")?;
        serde_json::to_writer(&mut *out, v).map_err(io::Error::from)
    }
    write!(out, "{{\"schema_version\":{}", r.schema_version)?;
    field(out, "tool", &r.tool)?;
    field(out, "host", &r.host)?;
    field(out, "summary", &r.summary)?;
    field(out, "groups", &r.groups)?;
    out.write_all(b",\"findings\":[")?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    findings(&r.findings, threads, out)?;
    out.write_all(b"]")?;
    field(out, "processes", &r.processes)?;
    field(out, "scan", &r.scan)?;
    field(out, "check", &r.check)?;
    field(out, "trace", &r.trace)?;
    out.write_all(b"}")
}

/// Findings serialized on n = `threads` workers while this thread writes
/// them out in order: worker k takes batches k, k+n, k+2n... and writes each
/// into one buffer, handed over a channel of its own that holds one and given
/// back for the next batch. So at most three buffers per worker exist, reused
/// from batch to batch: no allocation per finding that the allocator would
/// have to take back and hand out again.
fn findings(all: &[Finding], threads: usize, out: &mut dyn Write) -> io::Result<()> {
    if threads <= 1 || all.len() < 2 * BATCH {
        // Straight to the writer: no buffer of the whole array.
        return write_elements(all, out).map_err(io::Error::from);
    }
    let batches: Vec<&[Finding]> = all.chunks(BATCH).collect();
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(threads);
        for k in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(1);
            let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let mine = batches.iter().skip(k).step_by(threads);
            scope.spawn(move || {
                for batch in mine {
                    let mut buf = back_rx.try_recv().unwrap_or_default();
                    buf.clear();
                    let done = write_batch(batch, &mut buf).map(|()| buf);
                    // The writer gave up (an error): stop.
                    if tx.send(done).is_err() {
                        break;
                    }
                }
            });
            queues.push((rx, back_tx));
        }
        for i in 0..batches.len() {
            let (rx, back) = &queues[i % threads];
            let buf = rx
                .recv()
                .map_err(|_| io::Error::other("a serializing thread stopped"))?
                .map_err(io::Error::from)?;
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(&buf)?;
            // The worker may have finished: then the buffer is simply dropped.
            let _ = back.send(buf);
        }
        Ok(())
    })
}

/// One batch for a worker: lines repeated within a batch (findings come in
/// groups) are escaped once; the cache goes with it.
fn write_batch(batch: &[Finding], buf: &mut Vec<u8>) -> serde_json::Result<()> {
    crate::diagnose::escaped::with_cache(|| write_elements(batch, buf))
}

/// Findings separated by commas, as serde writes the elements of a sequence.
fn write_elements(findings: &[Finding], out: &mut dyn Write) -> serde_json::Result<()> {
    for (i, f) in findings.iter().enumerate() {
        if i > 0 {
            out.write_all(b",").map_err(serde_json::Error::io)?;
        }
        serde_json::to_writer(&mut *out, f)?;
    }
    Ok(())
}

const BATCH: usize = 1024;

type Batch = serde_json::Result<Vec<u8>>;

#[cfg(test)]
mod tests {
    use crate::report::testdata;

    #[test]
    fn json_round_trips_and_ends_with_newline() {
        let report = testdata::realistic();
        for pretty in [false, true] {
            let mut buf = Vec::new();
            super::render(&report, pretty, &mut buf).unwrap();
            assert!(buf.ends_with(b"}\n"));
            assert_eq!(buf.iter().filter(|&&b| b == b'\n').count() == 1, !pretty);
            let back: crate::diagnose::Report = serde_json::from_slice(&buf).unwrap();
            assert_eq!(back, report);
        }
        let mut buf = Vec::new();
        super::render(&report, false, &mut buf).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(value["summary"]["by_cause"]["fork-parent-kept"], 5000);
        assert_eq!(value["summary"]["by_state"]["CLOSE_WAIT"], 5013);
        assert_eq!(
            value["groups"][0]["local_ports"][0],
            serde_json::json!([8080, 5000])
        );
        assert_eq!(value["findings"][0]["socket"]["local"], "10.0.0.2:8080");
    }

    /// The compact view writes exactly what serde writes for the report.
    #[test]
    fn the_parallel_view_is_the_report() {
        let report = testdata::realistic();
        let mut buf = Vec::new();
        super::render(&report, false, &mut buf).unwrap();
        let direct = serde_json::to_vec(&report).unwrap();
        assert_eq!(&buf[..buf.len() - 1], &direct[..]);
    }

    /// The findings array is the same bytes on one thread as on several,
    /// whatever the cores of the machine running the test (on one core
    /// `render` alone would never take the threaded path). An odd count
    /// leaves a short last batch, and more batches than threads makes a
    /// worker take several.
    #[test]
    fn the_findings_are_the_same_bytes_on_any_number_of_threads() {
        let mut findings = testdata::realistic().findings;
        let one = findings.clone();
        while findings.len() < 7 * super::BATCH + 3 {
            findings.extend_from_slice(&one);
        }
        findings.truncate(7 * super::BATCH + 3);
        let mut serial = Vec::new();
        super::findings(&findings, 1, &mut serial).unwrap();
        let direct = serde_json::to_vec(&findings).unwrap();
        assert_eq!(&direct[1..direct.len() - 1], &serial[..]);
        for threads in [2, 3, 8] {
            let mut threaded = Vec::new();
            super::findings(&findings, threads, &mut threaded).unwrap();
            assert!(threaded == serial, "{threads} threads");
        }
    }
}
