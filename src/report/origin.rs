//! `--trace` origins as the text and JUnit renderers show them: the call
//! that made a blamed copy and the top frames of its stack, so a CI log
//! points at the line to fix.

use crate::diagnose::origin::{place, top_frame};
use crate::diagnose::{Finding, Group, Report};
use crate::trace::{Origin, Step};

/// Frames shown per stack.
const TOP: usize = 3;

/// "accept() at server.c:51 (take) in pid 10"
pub fn call(s: &Step) -> String {
    match top_frame(&s.stack) {
        Some(f) => format!("{}() at {} in pid {}", s.event, place(f), s.pid),
        None => format!("{}() in pid {}", s.event, s.pid),
    }
}

/// "take (server.c:51) < serve (server.c:56) < main (server.c:129)": the
/// program's own frames, else those with a source line, else the named ones.
pub fn frames(s: &Step) -> String {
    let own = s.stack.iter().any(|f| f.is_own());
    let with_source: Vec<String> = s
        .stack
        .iter()
        .filter(|f| if own { f.is_own() } else { f.has_source() })
        .take(TOP)
        .map(|f| f.short())
        .collect();
    let shown = if with_source.is_empty() {
        s.stack
            .iter()
            .filter(|f| f.function.is_some())
            .take(TOP)
            .map(|f| f.short())
            .collect()
    } else {
        with_source
    };
    shown.join(" < ")
}

/// Lines for the origin of one copy: each step, oldest first.
pub fn lines(fd: i32, o: &Origin) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in o.steps().enumerate() {
        let lead = if i == 0 {
            format!("fd {fd} of pid {}: made by ", o.step.pid)
        } else {
            "then ".to_string()
        };
        let mut line = format!("{lead}{}", call(s));
        let st = frames(s);
        if !st.is_empty() {
            line.push_str(&format!(" [{st}]"));
        }
        out.push(line);
    }
    out
}

/// The first blamed copy's origin in a finding.
pub fn blamed(f: &Finding) -> Option<(i32, &Origin)> {
    let b = f.blamed.first()?;
    let h = f.holders.iter().find(|h| h.pid == b.pid && h.fd == b.fd)?;
    Some((h.fd, h.origin.as_deref()?))
}

/// The lines a group shows: its first finding's blamed copy.
pub fn group_lines(report: &Report, g: &Group) -> Vec<String> {
    g.findings
        .iter()
        .filter_map(|&i| report.findings.get(i))
        .find_map(blamed)
        .map(|(fd, o)| lines(fd, o))
        .unwrap_or_default()
}
