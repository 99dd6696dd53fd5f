//! The last successful scan, kept as the look it diagnosed and made into
//! the JSON report only when `/report` is asked for, once per scan.
//! Prometheus scrapes only `/metrics`: rendering every scan's report (tens
//! of MB on a big host) would cost every interval and hold its text in
//! memory for nobody. The look, not the report: the report of 40,000
//! findings is about twice the size of the look it comes from, and during
//! the next look the last one is still kept for `/report`, beside the new
//! look and its report. Diagnosis is pure, so the same look gives the same
//! report, byte for byte.

use crate::diagnose::{self, Scope};
use crate::model::Snapshot;
use crate::report::{self, Format, RenderOptions};
use hyper::body::Bytes;
use std::sync::OnceLock;

#[derive(Debug)]
pub struct LastReport {
    look: Snapshot,
    /// The JSON, once a request asked for it; Err: why it could not be made.
    json: OnceLock<Result<Bytes, String>>,
}

impl LastReport {
    /// `look`: what the scan diagnosed, host-wide (`Scope::everything`).
    pub fn new(look: Snapshot) -> Self {
        LastReport {
            look,
            json: OnceLock::new(),
        }
    }

    /// The report exactly as `cwleak scan --format json` prints it.
    pub fn json(&self) -> Result<Bytes, String> {
        self.json
            .get_or_init(|| {
                let report = diagnose::diagnose(&self.look, &Scope::everything());
                let mut buf = Vec::new();
                report::render(&report, Format::Json, &RenderOptions::default(), &mut buf)
                    .map(|()| Bytes::from(buf))
                    .map_err(|e| format!("rendering the JSON report: {e:#}"))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_json(look: &Snapshot) -> Vec<u8> {
        let report = diagnose::diagnose(look, &Scope::everything());
        let mut buf = Vec::new();
        report::render(&report, Format::Json, &RenderOptions::default(), &mut buf).expect("render");
        buf
    }

    #[test]
    fn the_report_made_from_the_kept_look_is_the_one_the_scan_made() {
        let looks = crate::capture::corpus();
        assert!(looks.len() >= 4, "corpus: {} looks", looks.len());
        let mut findings = 0;
        for (name, look) in looks {
            // What the scanner's metrics were made from...
            let scanned = scan_json(&look);
            let kept = LastReport::new(look);
            // ...and what /report answers later, once and again.
            let first = kept.json().expect("json");
            assert_eq!(&first[..], &scanned[..], "{name}");
            assert_eq!(kept.json().expect("json"), first, "{name}");
            let v: serde_json::Value = serde_json::from_slice(&first).expect("JSON");
            findings += v["findings"].as_array().map_or(0, Vec::len);
        }
        assert!(findings > 0, "the corpus has findings");
    }
}
