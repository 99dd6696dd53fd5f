//! Prometheus exposition formats, written from one list of metric families:
//! OpenMetrics 1.0 text (what Prometheus asks for first) and the classic
//! text format 0.0.4 (what `promtool check metrics`, older scrapers and
//! `curl` get). Pure. Hand-written because the two differ only in a few
//! rules (below) and no crate writes both from one model.
//!
//! | | OpenMetrics | 0.0.4 |
//! |---|---|---|
//! | counter | `# TYPE x counter`, sample `x_total` | family named `x_total` |
//! | info | `# TYPE x info`, sample `x_info` | a gauge `x_info` |
//! | `# UNIT` | yes | no |
//! | end | `# EOF` | nothing |

use std::fmt::Write;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => TEXT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// One metric family. `name` is the OpenMetrics family name: without
/// `_total` (counters) or `_info` (info), with the unit as its suffix.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub unit: Option<&'static str>,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            unit: None,
            samples: Vec::new(),
        }
    }

    pub fn seconds(mut self) -> Family {
        self.unit = Some("seconds");
        self
    }

    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: Value) {
        self.samples.push(Sample { labels, value });
    }

    /// A sample without labels.
    pub fn with(mut self, value: Value) -> Family {
        self.push(Vec::new(), value);
        self
    }
}

pub fn encode(families: &[Family], format: Format) -> String {
    let mut out = String::new();
    for f in families {
        let suffix = match f.kind {
            Kind::Counter => "_total",
            Kind::Info => "_info",
            Kind::Gauge => "",
        };
        let (meta_name, type_name) = match (format, f.kind) {
            (Format::OpenMetrics, Kind::Counter) => (f.name.to_string(), "counter"),
            (Format::OpenMetrics, Kind::Info) => (f.name.to_string(), "info"),
            (Format::Text, Kind::Counter) => (format!("{}{suffix}", f.name), "counter"),
            (Format::Text, Kind::Info) => (format!("{}{suffix}", f.name), "gauge"),
            (_, Kind::Gauge) => (f.name.to_string(), "gauge"),
        };
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# HELP {meta_name} {}", escape_help(f.help));
        let _ = writeln!(out, "# TYPE {meta_name} {type_name}");
        if let (Format::OpenMetrics, Some(unit)) = (format, f.unit) {
            let _ = writeln!(out, "# UNIT {meta_name} {unit}");
        }
        for s in &f.samples {
            out.push_str(f.name);
            out.push_str(suffix);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
            }
            let _ = match s.value {
                Value::Int(n) => writeln!(out, " {n}"),
                Value::Float(x) => writeln!(out, " {}", float(x)),
            };
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Both formats read Go-style floats; Rust prints 1e21 as "1000000000000000000000".
fn float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{x:?}")
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The format a scraper asked for in `Accept`: OpenMetrics when it ranks
/// `application/openmetrics-text` at least as high as the plain text, the
/// 0.0.4 text otherwise (no header, `*/*`, `text/plain`, anything else).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut om: f64 = 0.0;
    let mut text: f64 = 0.0;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .find_map(|v| v.parse::<f64>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if om > 0.0 && om >= text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> Vec<Family> {
        let mut fams = vec![
            Family::new("x_scans", Kind::Counter, "Scans").with(Value::Int(4)),
            Family::new("x_scan_duration_seconds", Kind::Counter, "Time")
                .seconds()
                .with(Value::Float(2.5)),
            Family::new("x_build", Kind::Info, "Build").with(Value::Int(1)),
        ];
        let mut g = Family::new("x_sockets", Kind::Gauge, "a\\b\nc");
        g.push(vec![("comm", "a\"b\\c\nd".into())], Value::Int(0));
        fams.push(g);
        fams
    }

    #[test]
    fn openmetrics_and_text_differ_where_the_formats_do() {
        let om = encode(&families(), Format::OpenMetrics);
        for want in [
            "# TYPE x_scans counter\nx_scans_total 4\n",
            "# TYPE x_scan_duration_seconds counter\n# UNIT x_scan_duration_seconds seconds\nx_scan_duration_seconds_total 2.5\n",
            "# TYPE x_build info\nx_build_info 1\n",
            "# HELP x_sockets a\\\\b\\nc\n",
            "x_sockets{comm=\"a\\\"b\\\\c\\nd\"} 0\n",
        ] {
            assert!(om.contains(want), "{want:?} not in\n{om}");
        }
        assert!(om.ends_with("# EOF\n"));
        let text = encode(&families(), Format::Text);
        for want in [
            "# HELP x_scans_total Scans\n# TYPE x_scans_total counter\nx_scans_total 4\n",
            "# TYPE x_build_info gauge\nx_build_info 1\n",
            "# TYPE x_scan_duration_seconds_total counter\nx_scan_duration_seconds_total 2.5\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
    }

    #[test]
    fn accept_is_negotiated() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        // What Prometheus sends.
        assert_eq!(
            negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
    }
}
