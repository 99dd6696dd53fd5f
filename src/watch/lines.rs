//! `watch` into a pipe or a file: one logfmt line per change (a process
//! appears, its count changes, it holds none any more), then the summary as
//! lines of the same shape, so a log shipper or `grep` can read both. Pure.

use super::table::{causes, printable, signed};
use super::track::{Event, Row};
use crate::report::units::{duration_ms, utc};

/// "2026-03-14T09:26:53Z".
pub fn timestamp(epoch_ms: u64) -> String {
    utc(epoch_ms).replacen(' ', "T", 1).replace(" UTC", "Z")
}

/// `TIME EVENT pid=.. comm=.. count=.. step=.. change=.. per_min=.. oldest=.. cause=.. cgroup=..`
pub fn event(epoch_ms: u64, e: &Event) -> String {
    format!(
        "{} {} {}",
        timestamp(epoch_ms),
        e.kind.name(),
        fields(&e.row, Some(e.row.step))
    )
}

/// The summary line of one process: `TIME final pid=.. first=.. count=.. peak=.. change=..`.
pub fn last(epoch_ms: u64, r: &Row) -> String {
    format!(
        "{} final {} first={} peak={}",
        timestamp(epoch_ms),
        fields(r, None),
        r.first,
        r.peak
    )
}

fn fields(r: &Row, step: Option<i64>) -> String {
    let mut f = vec![
        format!(
            "pid={}",
            r.key.pid.map_or("none".to_string(), |p| p.to_string())
        ),
        format!("comm={}", value(&r.comm)),
        format!("count={}", r.count),
    ];
    if let Some(s) = step {
        f.push(format!("step={}", signed(s)));
    }
    f.push(format!("change={}", signed(r.change())));
    f.push(format!(
        "per_min={}",
        r.per_min.map_or("-".to_string(), |m| format!("{m:.1}"))
    ));
    f.push(format!(
        "oldest={}",
        r.oldest_ms.map_or("-".to_string(), duration_ms)
    ));
    f.push(format!("cause={}", causes(r)));
    f.push(format!(
        "cgroup={}",
        value(r.cgroup.as_deref().unwrap_or("-"))
    ));
    // --trace, once a leaked copy's making was recorded.
    if let Some(m) = &r.made {
        f.push(format!("made={}", value(m)));
    }
    f.join(" ")
}

/// A logfmt value: quoted when it has spaces, quotes or `=`; never a control character.
fn value(s: &str) -> String {
    let s = printable(s);
    if s.is_empty() || s.contains([' ', '"', '=', '\\']) {
        format!("{:?}", s)
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;
    use crate::watch::track::{EventKind, ProcKey};

    #[test]
    fn one_logfmt_line_per_change() {
        let row = Row {
            key: ProcKey {
                pid: Some(4242),
                start_time: 1,
            },
            comm: "my server".into(),
            cgroup: Some("/system.slice/api.service".into()),
            count: 5,
            first: 3,
            peak: 5,
            step: 2,
            per_min: Some(60.0),
            oldest_ms: Some(4000),
            causes: vec![Cause::ForkParentKept],
            made: None,
        };
        let e = Event {
            kind: EventKind::Grew,
            row: row.clone(),
        };
        assert_eq!(
            event(1_700_000_000_123, &e),
            "2023-11-14T22:13:20Z grew pid=4242 comm=\"my server\" count=5 step=+2 change=+2 \
             per_min=60.0 oldest=4s cause=fork-parent-kept cgroup=/system.slice/api.service"
        );
        assert_eq!(
            last(0, &row),
            "1970-01-01T00:00:00Z final pid=4242 comm=\"my server\" count=5 change=+2 \
             per_min=60.0 oldest=4s cause=fork-parent-kept cgroup=/system.slice/api.service first=3 peak=5"
        );
        // --trace: the call that made a leaked copy, quoted, last.
        let traced = Row {
            made: Some("accept4() at server.c:55 (take) in pid 4242".into()),
            ..row
        };
        assert!(last(0, &traced).ends_with(
            "cgroup=/system.slice/api.service made=\"accept4() at server.c:55 (take) in pid 4242\" first=3 peak=5"
        ));
    }
}
