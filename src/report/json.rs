//! JSON: the report exactly as serde emits it (described by
//! docs/report.schema.json), with a final newline. Compact (one line) unless
//! asked to indent; compact findings are serialized on all cores.

use crate::diagnose::{Finding, Report};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use std::io::{self, Write};

pub fn render(report: &Report, pretty: bool, out: &mut dyn Write) -> io::Result<()> {
    if pretty {
        serde_json::to_writer_pretty(&mut *out, report)
    } else {
        serde_json::to_writer(&mut *out, &View::of(report))
    }
    .map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// The report's fields in the report's order, with the findings written by
/// `Parallel` (tests/report_schema.rs and the test below hold it to `Report`).
#[derive(serde::Serialize)]
struct View<'a> {
    schema_version: u32,
    tool: &'a crate::diagnose::Tool,
    host: &'a crate::diagnose::Host,
    summary: &'a crate::diagnose::Summary,
    groups: &'a [crate::diagnose::Group],
    findings: Parallel<'a>,
    processes: &'a [crate::diagnose::ProcessInfo],
    scan: &'a crate::diagnose::ScanInfo,
    check: &'a Option<crate::check::CheckInfo>,
    trace: &'a Option<crate::trace::TraceInfo>,
}

impl<'a> View<'a> {
    fn of(r: &'a Report) -> Self {
        View {
            schema_version: r.schema_version,
            tool: &r.tool,
            host: &r.host,
            summary: &r.summary,
            groups: &r.groups,
            findings: Parallel(&r.findings),
            processes: &r.processes,
            scan: &r.scan,
            check: &r.check,
            trace: &r.trace,
        }
    }
}

/// Findings serialized on all cores while the main thread writes them out
/// in order: worker k takes batches k, k+n, k+2n... and hands each over a
/// channel of its own that holds one, so at most two batches per worker are
/// in memory at any time.
struct Parallel<'a>(&'a [Finding]);

const BATCH: usize = 1024;

type Batch = serde_json::Result<Vec<Box<RawValue>>>;

impl Serialize for Parallel<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        if threads == 1 || self.0.len() < 2 * BATCH {
            for f in self.0 {
                seq.serialize_element(f)?;
            }
            return seq.end();
        }
        let batches: Vec<&[Finding]> = self.0.chunks(BATCH).collect();
        std::thread::scope(|scope| {
            let mut queues = Vec::with_capacity(threads);
            for k in 0..threads {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(1);
                let mine = batches.iter().skip(k).step_by(threads);
                scope.spawn(move || {
                    for batch in mine {
                        // Lines repeated within a batch (findings come in
                        // groups) are escaped once; the cache goes with it.
                        let raw = crate::diagnose::escaped::with_cache(|| {
                            batch.iter().map(serde_json::value::to_raw_value).collect()
                        });
                        // The writer gave up (an error): stop.
                        if tx.send(raw).is_err() {
                            break;
                        }
                    }
                });
                queues.push(rx);
            }
            for i in 0..batches.len() {
                let batch = queues[i % threads]
                    .recv()
                    .map_err(|_| serde::ser::Error::custom("a serializing thread stopped"))?
                    .map_err(serde::ser::Error::custom)?;
                for raw in batch {
                    seq.serialize_element(&raw)?;
                }
            }
            Ok::<(), S::Error>(())
        })?;
        seq.end()
    }
}

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
        assert!(report.findings.len() > super::BATCH, "several batches");
        let mut buf = Vec::new();
        super::render(&report, false, &mut buf).unwrap();
        let direct = serde_json::to_vec(&report).unwrap();
        assert_eq!(&buf[..buf.len() - 1], &direct[..]);
    }
}
