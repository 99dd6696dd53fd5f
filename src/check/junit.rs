//! JUnit XML for CI test views (GitHub, GitLab, Jenkins): one test case per
//! blamed program, failed when its leaks fail the check; the failure text is
//! its findings with holders, cause, fix. A passing check still has a passing
//! test case, so the check shows up as run. Written by hand: the format is
//! small, and every piece of text from the system goes through `esc`.
//!
//! Case names are stable across runs, so CI keeps a case's history: the
//! program's name and the scope as the user wrote it, never a pid (a
//! restarted service has a new one); pids are in the case's text.

use super::outcome::{BlamedProcess, CheckInfo};
use super::thresholds::{plural, who};
use crate::diagnose::{Finding, Report};
use crate::model::Pid;
use crate::report::units::{duration_ms, utc};
use std::io::{self, Write};

/// Sockets written out per test case; the JSON report has every one.
const MAX_SOCKETS: usize = 20;
const MAX_EVIDENCE: usize = 6;
const CLASSNAME: &str = "cwleak.check";

/// What the suite says about the run besides the report.
pub struct Suite<'a> {
    /// "--pid 42 and descendants, local port 8080".
    pub scope: &'a str,
    /// The scope without pids: "--pidfile run/api.pid and descendants".
    pub stable_scope: &'a str,
    /// How long the check took, command included.
    pub duration_ms: u64,
    /// How long the look that judged every case took (settle included).
    pub look_ms: u64,
}

struct Case {
    name: String,
    outcome: Outcome,
    text: String,
}

enum Outcome {
    Pass,
    Failure { message: String, kind: String },
    Error { message: String },
}

pub fn render(report: &Report, suite: &Suite, out: &mut dyn Write) -> io::Result<()> {
    let empty;
    let check = match &report.check {
        Some(c) => c,
        None => {
            empty = placeholder();
            &empty
        }
    };
    let cases = cases(report, check, suite);
    let failures = cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failure { .. }))
        .count();
    let errors = cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Error { .. }))
        .count();
    let time = seconds(suite.duration_ms);
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="cwleak" tests="{}" failures="{failures}" errors="{errors}" time="{time}">"#,
        cases.len()
    )?;
    writeln!(
        out,
        r#"  <testsuite name="cwleak check" tests="{}" failures="{failures}" errors="{errors}" skipped="0" time="{time}" timestamp="{}" hostname="{}">"#,
        cases.len(),
        iso8601(report.host.taken_at_ms),
        esc(report.host.hostname.as_deref().unwrap_or("localhost"))
    )?;
    properties(report, check, suite, out)?;
    for c in &cases {
        case(c, suite.look_ms, out)?;
    }
    writeln!(out, "  </testsuite>")?;
    writeln!(out, "</testsuites>")
}

fn placeholder() -> CheckInfo {
    CheckInfo {
        passed: true,
        exit_code: 0,
        failures: Vec::new(),
        error: None,
        counted: 0,
        allowed: 0,
        max: 0,
        max_per_process: None,
        allow: Vec::new(),
        config_file: None,
        blamed: Vec::new(),
        roots: Vec::new(),
        command: None,
        during: None,
    }
}

fn properties(
    report: &Report,
    check: &CheckInfo,
    suite: &Suite,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut props: Vec<(&str, String)> = vec![
        ("scope", suite.scope.to_string()),
        ("max", check.max.to_string()),
        (
            "max-per-process",
            check
                .max_per_process
                .map_or("none".to_string(), |m| m.to_string()),
        ),
        ("settle", duration_ms(report.scan.settle_ms)),
        ("leaked", report.summary.leaked.to_string()),
        ("counted", check.counted.to_string()),
        ("allowed", check.allowed.to_string()),
        ("transient", report.summary.transient.to_string()),
    ];
    if let Some(c) = &check.command {
        props.push(("command", c.argv.join(" ")));
    }
    if let Some(f) = &check.config_file {
        props.push(("config", f.clone()));
    }
    writeln!(out, "    <properties>")?;
    for (name, value) in props {
        writeln!(
            out,
            r#"      <property name="{}" value="{}"/>"#,
            esc(name),
            esc(&value)
        )?;
    }
    writeln!(out, "    </properties>")
}

fn case(c: &Case, look_ms: u64, out: &mut dyn Write) -> io::Result<()> {
    write!(
        out,
        r#"    <testcase classname="{CLASSNAME}" name="{}" time="{}""#,
        esc(&c.name),
        seconds(look_ms)
    )?;
    match &c.outcome {
        Outcome::Pass if c.text.is_empty() => return writeln!(out, "/>"),
        Outcome::Pass => writeln!(out, ">")?,
        Outcome::Failure { message, kind } => writeln!(
            out,
            ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>",
            esc(message),
            esc(kind),
            esc_text(&c.text)
        )?,
        Outcome::Error { message } => writeln!(
            out,
            ">\n      <error message=\"{}\" type=\"cwleak\">{}</error>",
            esc(message),
            esc_text(&c.text)
        )?,
    }
    if matches!(c.outcome, Outcome::Pass) {
        writeln!(out, "      <system-out>{}</system-out>", esc_text(&c.text))?;
    }
    writeln!(out, "    </testcase>")
}

fn cases(report: &Report, check: &CheckInfo, suite: &Suite) -> Vec<Case> {
    // Processes of one program (prefork workers, a restarted service) are one
    // case: the same name, failing if any of them fails.
    let mut cases: Vec<Case> = Vec::new();
    for b in &check.blamed {
        let c = process_case(report, check, b, suite.stable_scope);
        match cases.iter_mut().find(|k| k.name == c.name) {
            Some(k) => merge(k, c),
            None => cases.push(c),
        }
    }
    // A root that leaks nothing passes under the name it fails under when
    // it leaks: the case's history stays one line.
    for r in &check.roots {
        let name = case_name(r.comm.as_deref(), suite.stable_scope);
        if check.error.is_none() && r.comm.is_some() && !cases.iter().any(|c| c.name == name) {
            cases.push(Case {
                name,
                outcome: Outcome::Pass,
                text: format!(
                    "pid {} ({}): no CLOSE_WAIT leak\nscope: {}",
                    r.pid, r.from, suite.scope
                ),
            });
        }
    }
    if let Some(e) = &check.error {
        cases.push(Case {
            name: format!("check of {}", suite.stable_scope),
            outcome: Outcome::Error { message: e.clone() },
            text: format!("{e}\nscope: {}", suite.scope),
        });
    } else if cases.is_empty() {
        let mut text = format!("scope: {}", suite.scope);
        if report.summary.transient > 0 {
            text.push_str(&format!(
                "\n{} CLOSE_WAIT {} closed within the settle window (not leaks)",
                report.summary.transient,
                plural(report.summary.transient, "socket", "sockets")
            ));
        }
        cases.push(Case {
            name: format!("no CLOSE_WAIT leak in {}", suite.stable_scope),
            outcome: Outcome::Pass,
            text,
        });
    }
    cases
}

/// "leakyd in --pidfile run/leakyd.pid and descendants".
fn case_name(program: Option<&str>, stable_scope: &str) -> String {
    match program {
        Some(p) => format!("{p} in {stable_scope}"),
        None => format!("no visible holder in {stable_scope}"),
    }
}

/// One more process of the same program into its case.
fn merge(into: &mut Case, other: Case) {
    into.outcome = match (
        std::mem::replace(&mut into.outcome, Outcome::Pass),
        other.outcome,
    ) {
        (Outcome::Failure { message, kind }, _) => Outcome::Failure { message, kind },
        (_, Outcome::Failure { message, kind }) => Outcome::Failure { message, kind },
        (o, _) => o,
    };
    into.text.push_str("\n\n");
    into.text.push_str(&other.text);
}

fn process_case(report: &Report, check: &CheckInfo, b: &BlamedProcess, stable_scope: &str) -> Case {
    // The program: its comm, else the name of its executable.
    let exe_name = b
        .pid
        .and_then(|pid| report.processes.iter().find(|p| p.pid == pid))
        .and_then(|p| p.exe.as_deref())
        .and_then(|e| e.rsplit('/').next());
    let program = match (b.pid, b.comm.as_deref().or(exe_name)) {
        (Some(_), Some(name)) => Some(name.to_string()),
        (Some(pid), None) => Some(format!("unnamed process (pid {pid})")),
        (None, _) => None,
    };
    let name = case_name(program.as_deref(), stable_scope);
    let causes: Vec<&str> = b.causes.iter().map(|c| c.name()).collect();
    let total = b.counted + b.allowed;
    let mut headline = format!(
        "{}: {total} {} leaked in CLOSE_WAIT, cause {}",
        who(b.pid, b.comm.as_deref()),
        plural(total, "socket", "sockets"),
        causes.join(", ")
    );
    if b.allowed > 0 {
        headline.push_str(&format!(" ({} allowed)", b.allowed));
    }
    let mut text = headline.clone();
    text.push('\n');
    for f in &check.failures {
        text.push_str(&format!("check failed: {f}\n"));
    }
    text.push_str(&findings_text(report, b.pid));
    let outcome = if b.failed {
        Outcome::Failure {
            message: headline,
            kind: causes.join(","),
        }
    } else {
        Outcome::Pass
    };
    Case {
        name,
        outcome,
        text,
    }
}

/// The groups blamed on `pid`: cause, fix, evidence once per group, then
/// each socket with its holders.
fn findings_text(report: &Report, pid: Option<Pid>) -> String {
    let mut text = String::new();
    let mut shown = 0;
    let mut hidden = 0;
    for g in report.groups.iter().filter(|g| g.pid == pid) {
        text.push_str(&format!(
            "\ncause {}: {} {}\n",
            g.cause.name(),
            g.sockets,
            plural(g.sockets, "socket", "sockets")
        ));
        text.push_str(&format!("  fix: {}\n", g.fix));
        let mitigation = g.mitigation_text();
        if !mitigation.is_empty() {
            text.push_str(&format!("  now: {mitigation}\n"));
        }
        for (i, e) in g.evidence.iter().take(MAX_EVIDENCE).enumerate() {
            let label = if i == 0 { "  why: " } else { "       " };
            text.push_str(&format!("{label}{e}\n"));
        }
        for f in g.findings.iter().filter_map(|&i| report.findings.get(i)) {
            if shown == MAX_SOCKETS {
                hidden += 1;
                continue;
            }
            shown += 1;
            text.push_str(&socket_line(f));
        }
    }
    if hidden > 0 {
        text.push_str(&format!(
            "  ... and {hidden} more {} (the JSON report lists every one)\n",
            plural(hidden, "socket", "sockets")
        ));
    }
    text
}

fn socket_line(f: &Finding) -> String {
    let s = &f.socket;
    let blamed: Vec<String> = f
        .blamed
        .iter()
        .map(|b| format!("pid {} fd {}", b.pid, b.fd))
        .collect();
    let holders: Vec<String> = f
        .holders
        .iter()
        .map(|h| {
            // The flag is read only where it explains a copy: say nothing
            // where it was not read.
            let cloexec = match h.cloexec {
                Some(true) => " (cloexec)",
                Some(false) => " (no cloexec)",
                None => "",
            };
            let table = h
                .tid
                .map(|t| format!(" in thread {t}'s own fd table"))
                .unwrap_or_default();
            format!("pid {} {} fd {}{table}{cloexec}", h.pid, h.comm, h.fd)
        })
        .collect();
    let mut line = format!(
        "  socket {} <- {} inode {}, in CLOSE_WAIT {}\n",
        s.local,
        s.remote,
        s.inode,
        s.close_wait_ms
            .map_or("for an unknown time".to_string(), |ms| format!(
                ">= {}",
                duration_ms(ms)
            ))
    );
    if !blamed.is_empty() {
        line.push_str(&format!("    close: {}\n", blamed.join(", ")));
    }
    if !holders.is_empty() {
        line.push_str(&format!("    holders: {}\n", holders.join(", ")));
    }
    if let Some((fd, o)) = crate::report::origin::blamed(f) {
        for (i, l) in crate::report::origin::lines(fd, o).iter().enumerate() {
            let label = if i == 0 { "    made: " } else { "          " };
            line.push_str(&format!("{label}{l}\n"));
        }
    }
    if let Some(a) = &f.allowed {
        line.push_str(&format!("    allowed: {a}\n"));
    }
    line
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// "2026-03-14T09:26:53": JUnit's timestamp (xs:dateTime, here in UTC).
fn iso8601(ms: u64) -> String {
    let u = utc(ms);
    let u = u.strip_suffix(" UTC").unwrap_or(&u);
    u.replacen(' ', "T", 1)
}

/// An attribute value: markup escaped, and tabs and line breaks as
/// character references (attribute normalisation would turn them into
/// spaces otherwise).
pub fn esc(s: &str) -> String {
    escape(s, true)
}

/// Element text: markup escaped, line breaks and tabs kept as they are so
/// the file stays readable; a CR is a reference (parsers fold CR LF to LF).
pub fn esc_text(s: &str) -> String {
    escape(s, false)
}

/// Characters XML 1.0 cannot carry at all become U+FFFD; the others a CI
/// page must not show as they are (CR, C1 controls, bidi overrides,
/// zero-width characters) become '?', as in every renderer.
fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 && c != '\r' || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                out.push('\u{FFFD}')
            }
            c if crate::report::wrap::hostile(c) => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::thresholds::{apply, Thresholds};
    use crate::report::testdata;

    fn with_check(mut report: Report, t: &Thresholds) -> Report {
        let v = apply(&mut report, t);
        let mut c = placeholder();
        c.passed = v.passed;
        c.exit_code = if v.passed { 0 } else { 1 };
        c.failures = v.failures;
        c.counted = v.counted;
        c.allowed = v.allowed;
        c.blamed = v.blamed;
        c.max = t.max;
        report.check = Some(c);
        report
    }

    fn xml(report: &Report) -> String {
        let mut buf = Vec::new();
        let suite = Suite {
            scope: "--pid 4242 and descendants",
            stable_scope: "--pid (python3) and descendants",
            duration_ms: 1234,
            look_ms: 1017,
        };
        render(report, &suite, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn counts(doc: &roxmltree::Document) -> (usize, usize, usize) {
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        let n = |a: &str| suite.attribute(a).unwrap().parse::<usize>().unwrap();
        let cases = suite
            .children()
            .filter(|c| c.has_tag_name("testcase"))
            .count();
        assert_eq!(cases, n("tests"));
        (n("tests"), n("failures"), n("errors"))
    }

    #[test]
    fn one_case_per_blamed_process_failing_with_holders_cause_and_fix() {
        let r = with_check(testdata::realistic(), &Thresholds::default());
        let text = xml(&r);
        let doc = roxmltree::Document::parse(&text).unwrap();
        let blamed = r.check.as_ref().unwrap().blamed.len();
        assert_eq!(counts(&doc), (blamed, blamed, 0));
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        let body = failure.text().unwrap();
        assert!(body.contains("cause fork-parent-kept"), "{body}");
        assert!(body.contains("  fix: "), "{body}");
        assert!(body.contains("holders: pid 4242 python3 fd 7"), "{body}");
        assert!(
            body.contains("more sockets (the JSON report lists every one)"),
            "{body}"
        );
        assert_eq!(failure.attribute("type"), Some("fork-parent-kept"));
        assert_eq!(
            doc.descendants()
                .find(|n| n.has_tag_name("testsuite"))
                .and_then(|n| n.attribute("time")),
            Some("1.234")
        );
    }

    #[test]
    fn a_passing_check_has_a_passing_case() {
        let r = with_check(testdata::clean(), &Thresholds::default());
        let text = xml(&r);
        let doc = roxmltree::Document::parse(&text).unwrap();
        assert_eq!(counts(&doc), (1, 0, 0));
        assert!(
            text.contains(r#"name="no CLOSE_WAIT leak in --pid (python3) and descendants""#),
            "{text}"
        );
        assert!(text.contains("3 CLOSE_WAIT sockets closed within the settle window"));
    }

    #[test]
    fn allowed_leaks_pass_and_say_why() {
        let t = Thresholds {
            max: 10_000,
            ..Thresholds::default()
        };
        let r = with_check(testdata::realistic(), &t);
        let doc_text = xml(&r);
        let doc = roxmltree::Document::parse(&doc_text).unwrap();
        let (tests, failures, _) = counts(&doc);
        assert!(tests > 1 && failures == 0);
        assert!(doc.descendants().any(|n| n.has_tag_name("system-out")));
    }

    /// No pid in a case's name (a restarted service keeps its history); the
    /// pids are in the text; every case has the look's time.
    #[test]
    fn case_names_carry_no_pid_and_cases_have_a_time() {
        let r = with_check(testdata::realistic(), &Thresholds::default());
        let text = xml(&r);
        let doc = roxmltree::Document::parse(&text).unwrap();
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        let mut names = std::collections::BTreeSet::new();
        for c in &cases {
            let name = c.attribute("name").unwrap();
            assert!(!name.contains("pid 4"), "{name}");
            assert!(names.insert(name), "two cases named {name}");
            assert_eq!(c.attribute("time"), Some("1.017"));
        }
        assert!(text.contains("pid 4242 python3: "), "{text}");
    }

    #[test]
    fn an_error_is_an_error_case() {
        let mut r = with_check(testdata::clean(), &Thresholds::default());
        if let Some(c) = r.check.as_mut() {
            c.error = Some("every process in scope exited before the check".into());
        }
        let doc_text = xml(&r);
        let doc = roxmltree::Document::parse(&doc_text).unwrap();
        assert_eq!(counts(&doc), (1, 0, 1));
    }

    #[test]
    fn hostile_names_stay_well_formed() {
        let mut r = testdata::realistic();
        r.groups[0].comm = Some("a<b>&\"c'\u{1}\u{1b}]0;x\u{7}\u{9b}\u{202e}\u{200b}".into());
        r.groups[0].fix = "close ]]> & <tags>\r\n\ttab".into();
        r.host.hostname = Some("h\"<".into());
        let r = with_check(r, &Thresholds::default());
        let text = xml(&r);
        let doc = roxmltree::Document::parse(&text).unwrap();
        let case = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase"))
            .unwrap();
        assert_eq!(
            case.attribute("name"),
            Some("a<b>&\"c'\u{FFFD}\u{FFFD}]0;x\u{FFFD}??? in --pid (python3) and descendants")
        );
        let body = case
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .and_then(|n| n.text())
            .unwrap();
        // A CR could rewrite the line a CI page shows: neutralised too.
        assert!(body.contains("fix: close ]]> & <tags>?\n\ttab"), "{body}");
    }

    #[test]
    fn timestamps_are_xs_datetime() {
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20");
        assert_eq!(seconds(5), "0.005");
    }
}
