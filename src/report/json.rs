//! JSON: the report exactly as serde emits it (described by
//! docs/report.schema.json), pretty-printed, with a final newline.

use crate::diagnose::Report;
use std::io::{self, Write};

pub fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use crate::report::testdata;

    #[test]
    fn json_round_trips_and_ends_with_newline() {
        let report = testdata::realistic();
        let mut buf = Vec::new();
        super::render(&report, &mut buf).unwrap();
        assert!(buf.ends_with(b"}\n"));
        let back: crate::diagnose::Report = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, report);
        let value: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(value["summary"]["by_cause"]["fork-parent-kept"], 5000);
        assert_eq!(value["summary"]["by_state"]["CLOSE_WAIT"], 5013);
        assert_eq!(
            value["groups"][0]["local_ports"][0],
            serde_json::json!([8080, 5000])
        );
        assert_eq!(value["findings"][0]["socket"]["local"], "10.0.0.2:8080");
    }
}
