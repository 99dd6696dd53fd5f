//! The last successful scan's report, kept as a value and rendered to JSON
//! only when `/report` is asked for, once per scan. Prometheus scrapes only
//! `/metrics`: rendering every scan's report (tens of MB on a big host)
//! would cost every interval and hold its text in memory for nobody.

use crate::diagnose::Report;
use crate::report::{self, Format, RenderOptions};
use hyper::body::Bytes;
use std::sync::OnceLock;

#[derive(Debug)]
pub struct LastReport {
    report: Report,
    /// The JSON, once a request asked for it; Err: why it could not be made.
    json: OnceLock<Result<Bytes, String>>,
}

impl LastReport {
    pub fn new(report: Report) -> Self {
        LastReport {
            report,
            json: OnceLock::new(),
        }
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The report exactly as `cwleak scan --format json` prints it.
    pub fn json(&self) -> Result<Bytes, String> {
        self.json
            .get_or_init(|| {
                let mut buf = Vec::new();
                report::render(
                    &self.report,
                    Format::Json,
                    &RenderOptions::default(),
                    &mut buf,
                )
                .map(|()| Bytes::from(buf))
                .map_err(|e| format!("rendering the JSON report: {e:#}"))
            })
            .clone()
    }
}
