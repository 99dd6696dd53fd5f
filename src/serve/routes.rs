//! What each request gets, decided from the method, the path and what the
//! scanner last published. Pure: the HTTP plumbing is in `http`.

use super::exposition::{self, Format};
use super::last_report::LastReport;
use super::metrics;
use hyper::body::Bytes;
use hyper::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The metrics of one scan in both formats, rendered once per scan.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: Bytes,
    pub openmetrics: Bytes,
}

impl Exposition {
    pub fn of(input: &metrics::Input) -> Exposition {
        Self::encode(&metrics::families(input))
    }

    pub fn encode(families: &[exposition::Family]) -> Exposition {
        Exposition {
            text: Bytes::from(exposition::encode(families, Format::Text)),
            openmetrics: Bytes::from(exposition::encode(families, Format::OpenMetrics)),
        }
    }
}

/// What the scanner publishes after every scan; requests only read it.
#[derive(Debug, Clone)]
pub struct Published {
    pub metrics: Exposition,
    /// The last successful scan's report, served as `scan --format json`
    /// prints it (rendered at the first request for it).
    pub report: Option<Arc<LastReport>>,
    pub last_ok: Option<Instant>,
    pub last_error: Option<String>,
    /// /healthz fails when the last successful scan is older than this.
    pub stale_after: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
    /// 405: the methods this path accepts.
    pub allow: Option<&'static str>,
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

const INDEX: &str = "cwleak serve\n\n/metrics  Prometheus metrics (OpenMetrics when the Accept header asks for it, else the 0.0.4 text format)\n/report   the last scan, as `cwleak scan --format json` prints it\n/healthz  200 while scans succeed, 503 otherwise\n";

/// `accept`: the request's Accept header, which picks the metrics format.
pub fn route(
    method: &Method,
    path: &str,
    accept: Option<&str>,
    p: &Published,
    now: Instant,
) -> Reply {
    let known = matches!(path, "/" | "/metrics" | "/report" | "/healthz");
    if !known {
        return text(404, "not found: try /metrics, /report or /healthz\n".into());
    }
    if method != Method::GET && method != Method::HEAD {
        return Reply {
            allow: Some("GET, HEAD"),
            ..text(405, format!("{method} not allowed: use GET\n"))
        };
    }
    match path {
        "/metrics" => {
            let format = exposition::negotiate(accept);
            Reply {
                status: 200,
                content_type: format.content_type(),
                body: match format {
                    Format::OpenMetrics => p.metrics.openmetrics.clone(),
                    Format::Text => p.metrics.text.clone(),
                },
                allow: None,
            }
        }
        "/report" => match p.report.as_deref().map(LastReport::json) {
            Some(Ok(body)) => Reply {
                status: 200,
                content_type: JSON,
                body,
                allow: None,
            },
            Some(Err(e)) => text(500, format!("{e}\n")),
            None => text(503, "no scan has finished yet\n".into()),
        },
        "/healthz" => health(p, now),
        _ => text(200, INDEX.into()),
    }
}

fn health(p: &Published, now: Instant) -> Reply {
    match (p.last_ok, &p.last_error) {
        (_, Some(e)) => text(503, format!("the last scan failed: {e}\n")),
        (None, None) => text(503, "no scan has finished yet\n".into()),
        (Some(t), None) if now.saturating_duration_since(t) > p.stale_after => text(
            503,
            format!(
                "the last successful scan is {}s old: scans are stuck\n",
                now.saturating_duration_since(t).as_secs()
            ),
        ),
        (Some(_), None) => text(200, "ok\n".into()),
    }
}

fn text(status: u16, body: String) -> Reply {
    Reply {
        status,
        content_type: TEXT,
        body: Bytes::from(body),
        allow: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(t0: Instant) -> Published {
        Published {
            metrics: Exposition {
                text: Bytes::from_static(b""),
                openmetrics: Bytes::from_static(b"# EOF\n"),
            },
            report: None,
            last_ok: None,
            last_error: None,
            stale_after: Duration::from_secs(60),
        }
        .with_ok(t0)
    }

    impl Published {
        fn with_ok(mut self, t: Instant) -> Self {
            self.last_ok = Some(t);
            self.report = Some(Arc::new(LastReport::new(crate::model::Snapshot::default())));
            self
        }
    }

    #[test]
    fn paths_methods_and_health() {
        let t0 = Instant::now();
        let p = published(t0);
        let r = route(&Method::GET, "/metrics", None, &p, t0);
        assert_eq!((r.status, r.content_type), (200, exposition::TEXT));
        let om = Some("application/openmetrics-text; version=1.0.0");
        let r = route(&Method::GET, "/metrics", om, &p, t0);
        assert_eq!(
            (r.content_type, &r.body[..]),
            (exposition::OPENMETRICS, &b"# EOF\n"[..])
        );
        assert_eq!(route(&Method::HEAD, "/report", None, &p, t0).status, 200);
        assert_eq!(route(&Method::GET, "/nope", None, &p, t0).status, 404);
        // An unknown path is 404 whatever the method.
        assert_eq!(route(&Method::POST, "/nope", None, &p, t0).status, 404);
        let r = route(&Method::POST, "/metrics", None, &p, t0);
        assert_eq!((r.status, r.allow), (405, Some("GET, HEAD")));
        assert_eq!(route(&Method::GET, "/healthz", None, &p, t0).status, 200);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(route(&Method::GET, "/healthz", None, &p, later).status, 503);
        let mut failed = p.clone();
        failed.last_error = Some("boom".into());
        let r = route(&Method::GET, "/healthz", None, &failed, t0);
        assert_eq!(r.status, 503);
        assert!(r.body.starts_with(b"the last scan failed: boom"));
        let mut fresh = p.clone();
        fresh.last_ok = None;
        fresh.report = None;
        assert_eq!(
            route(&Method::GET, "/healthz", None, &fresh, t0).status,
            503
        );
        assert_eq!(route(&Method::GET, "/report", None, &fresh, t0).status, 503);
        assert_eq!(route(&Method::GET, "/", None, &p, t0).status, 200);
    }
}
