//! The few lines `cwleak check` prints to stderr: the verdict first, then
//! who leaks and the fix, what was allowed, what exited, how leaks grew.
//! Plain text (CI logs), names cleaned of control characters.

use super::outcome::CheckInfo;
use super::thresholds::{plural, who};
use crate::diagnose::Report;
use crate::report::ranges::fds_label;
use crate::report::units::{duration_ms, utc};
use crate::report::wrap::clean;

/// Blamed processes listed before "and N more".
const MAX_LISTED: usize = 8;

/// `settle_ms` is the configured window (the report's is 0 when nothing
/// needed a second look).
pub fn render(
    report: &Report,
    scope: &str,
    settle_ms: u64,
    read_as_root: bool,
    files: &[String],
) -> String {
    let Some(c) = &report.check else {
        return String::new();
    };
    let mut out = vec![verdict_line(report, c)];
    if let Some(cmd) = &c.command {
        if cmd.exit_code != Some(0) {
            let how = match (cmd.exit_code, cmd.signal) {
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                (None, None) => "failed".into(),
            };
            out.push(format!(
                "  the command failed ({how}); cwleak exits with its status, {}",
                c.exit_code
            ));
        }
    }
    out.extend(failures(c));
    out.extend(blamed(report, c));
    if c.allowed > 0 {
        out.push(format!(
            "  allowed: {} {} (listed in the report, not counted)",
            c.allowed,
            plural(c.allowed, "socket", "sockets")
        ));
    }
    out.extend(exited(report, c));
    out.extend(growth(c));
    let unreadable = report
        .scan
        .unreadable
        .iter()
        .filter(|u| u.kind == crate::model::WarningKind::PermissionDenied)
        .count();
    if unreadable > 0 {
        out.push(format!(
            "  warning: {unreadable} {} could not be read (a holder may be among them; {})",
            plural(unreadable, "path", "paths"),
            crate::report::unreadable_hint(read_as_root)
        ));
    }
    if c.error.is_none() {
        for gap in &report.scan.incomplete {
            out.push(format!("  incomplete: {}", clean(gap)));
        }
    }
    if let Some(t) = &report.trace {
        out.push(trace_line(t));
    }
    out.push(format!(
        "  scope: {scope}; settle {}; {} processes read in {} ms",
        duration_ms(settle_ms),
        report.scan.processes,
        report.scan.duration_ms
    ));
    out.push(match &c.config_file {
        Some(f) => format!("  config: {}", clean(f)),
        None => "  config: none (no cwleak.toml read)".to_string(),
    });
    if !files.is_empty() {
        out.push(format!("  wrote {}", files.join(", ")));
    }
    out.join("\n") + "\n"
}

/// What --trace recorded, and what it lost (a gap can hide an origin).
fn trace_line(t: &crate::trace::TraceInfo) -> String {
    if let Some(why) = &t.unavailable {
        return format!("  trace: not recorded: {}", clean(why));
    }
    let mut line = format!("  trace: {} events recorded", t.events);
    let mut lost = Vec::new();
    if t.dropped_events > 0 {
        lost.push(format!("{} dropped (ring buffer full)", t.dropped_events));
    }
    if t.untracked_processes > 0 {
        lost.push(format!(
            "{} processes not followed (pid map full)",
            t.untracked_processes
        ));
    }
    if t.untracked_passes > 0 {
        lost.push(format!(
            "{} passed fds not followed (too many in flight)",
            t.untracked_passes
        ));
    }
    if lost.is_empty() {
        line.push_str(", none lost");
    } else {
        line.push_str(&format!(
            "; warning: {}: origins may be missing",
            lost.join(", ")
        ));
    }
    line
}

fn verdict_line(report: &Report, c: &CheckInfo) -> String {
    let leaked = report.summary.leaked;
    let mut line = String::from("cwleak check: ");
    if let Some(e) = &c.error {
        line.push_str(&format!("ERROR: {}", clean(e)));
        return line;
    }
    line.push_str(if c.passed { "PASS: " } else { "FAIL: " });
    if leaked == 0 {
        line.push_str("no CLOSE_WAIT leak in scope");
    } else {
        line.push_str(&format!(
            "{} persistent CLOSE_WAIT {} in scope",
            c.counted,
            plural(c.counted, "socket", "sockets")
        ));
        if c.passed {
            line.push_str(&format!(", within --max {}", c.max));
        } else if c.counted > c.max {
            line.push_str(&format!(", more than --max {}", c.max));
        }
        if c.allowed > 0 {
            line.push_str(&format!(" (+{} allowed)", c.allowed));
        }
        if !c.blamed.is_empty() {
            let n = c.blamed.iter().filter(|b| b.pid.is_some()).count();
            line.push_str(&format!(
                ", {n} {} blamed",
                plural(n, "process", "processes")
            ));
        }
    }
    if report.summary.transient > 0 {
        line.push_str(&format!("; {} transient", report.summary.transient));
    }
    line
}

fn failures(c: &CheckInfo) -> Vec<String> {
    if c.passed || c.error.is_some() {
        return Vec::new();
    }
    // The verdict line already says the total against --max.
    c.failures
        .iter()
        .filter(|f| !f.ends_with("(--max)"))
        .map(|f| format!("  {}", clean(f)))
        .collect()
}

/// Per blamed process: counts, causes, fds, ports, and each cause's fix.
fn blamed(report: &Report, c: &CheckInfo) -> Vec<String> {
    let mut out = Vec::new();
    // Ten helpers that inherited a socket share one fix: say it once.
    let mut fixes_said = Vec::new();
    for b in c.blamed.iter().take(MAX_LISTED) {
        let groups: Vec<_> = report.groups.iter().filter(|g| g.pid == b.pid).collect();
        let fds: Vec<i32> = groups.iter().flat_map(|g| g.fds.iter().copied()).collect();
        let causes: Vec<&str> = b.causes.iter().map(|c| c.name()).collect();
        let mut ports: Vec<(u16, usize)> = Vec::new();
        for (p, n) in groups.iter().flat_map(|g| g.local_ports.iter()) {
            match ports.iter_mut().find(|(q, _)| q == p) {
                Some(e) => e.1 += n,
                None => ports.push((*p, *n)),
            }
        }
        let total = b.counted + b.allowed;
        let mut line = format!(
            "  {}: {total} {}, {}",
            clean(&who(b.pid, b.comm.as_deref())),
            plural(total, "socket", "sockets"),
            causes.join(", ")
        );
        if !fds.is_empty() {
            line.push_str(&format!(", {}", fds_label(&fds, 4)));
        }
        if let Some((p, _)) = ports.first() {
            line.push_str(&format!(", local port {p}"));
        }
        if b.allowed > 0 {
            line.push_str(&format!(" ({} allowed)", b.allowed));
        }
        if !b.failed && b.counted > 0 {
            line.push_str(" (within the thresholds)");
        }
        out.push(line);
        // --trace: the decisive fact, and the code that made the blamed copy.
        if let Some(g) = groups.first() {
            if let Some(fact) = g.evidence.first().and_then(|e| e.strip_prefix("traced: ")) {
                out.push(format!("    why (traced): {}", clean(fact)));
            }
            let made = crate::report::origin::group_lines(report, g);
            for (i, l) in made.iter().enumerate() {
                let label = if i == 0 { "    made: " } else { "          " };
                out.push(format!("{label}{}", clean(l)));
            }
        }
        for g in &groups {
            if !fixes_said.contains(&g.cause) {
                fixes_said.push(g.cause);
                out.push(format!("    fix ({}): {}", g.cause.name(), clean(&g.fix)));
            }
        }
    }
    if c.blamed.len() > MAX_LISTED {
        out.push(format!(
            "  and {} more blamed (see the JSON report)",
            c.blamed.len() - MAX_LISTED
        ));
    }
    out
}

fn exited(report: &Report, c: &CheckInfo) -> Vec<String> {
    c.roots
        .iter()
        .filter(|r| !r.running)
        .map(|r| {
            let name = match &r.comm {
                Some(comm) => format!("pid {} {}", r.pid, clean(comm)),
                None => format!("pid {}", r.pid),
            };
            let when = match r.exited_at_ms {
                Some(at) => {
                    let before = report.host.taken_at_ms.saturating_sub(at);
                    if at > report.host.taken_at_ms {
                        format!("exited at {} (during the check)", utc(at))
                    } else {
                        format!(
                            "exited at {}, {} before the check",
                            utc(at),
                            duration_ms(before)
                        )
                    }
                }
                None => "is not running (exited; when is unknown)".into(),
            };
            format!("  {name} ({}) {when}", clean(&r.from))
        })
        .collect()
}

fn growth(c: &CheckInfo) -> Vec<String> {
    let Some(d) = &c.during else {
        return Vec::new();
    };
    let total = if d.peak == 0 {
        ", no persistent CLOSE_WAIT socket seen".to_string()
    } else {
        format!(
            "; in scope: peak {} at +{}, {} at the end",
            d.peak,
            duration_ms(d.peak_at_ms),
            d.last
        )
    };
    let mut out = vec![format!(
        "  during the command: {} {} every {}{total}",
        d.samples,
        plural(d.samples, "sample", "samples"),
        duration_ms(d.interval_ms),
    )];
    for g in d.processes.iter().take(MAX_LISTED) {
        out.push(format!(
            "    {}: first seen at +{}, peak {} at +{}, {} at the end",
            clean(&who(g.pid, g.comm.as_deref())),
            duration_ms(g.first_seen_ms),
            g.peak,
            duration_ms(g.peak_at_ms),
            g.last
        ));
    }
    if d.failed_samples > 0 {
        out.push(format!(
            "    {} samples failed: {}",
            d.failed_samples,
            clean(d.last_error.as_deref().unwrap_or("?"))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::outcome::Root;
    use crate::check::thresholds::{apply, Thresholds};
    use crate::report::testdata;

    fn checked(mut r: Report, t: &Thresholds) -> Report {
        let v = apply(&mut r, t);
        r.check = Some(CheckInfo {
            passed: v.passed,
            exit_code: i32::from(!v.passed),
            failures: v.failures,
            error: None,
            counted: v.counted,
            allowed: v.allowed,
            max: t.max,
            max_per_process: t.max_per_process,
            allow: v.rules,
            config_file: None,
            blamed: v.blamed,
            roots: vec![],
            command: None,
            during: None,
        });
        r
    }

    /// Which cwleak.toml was used, or that none was; and a hint about
    /// unreadable paths that is true for root too.
    #[test]
    fn names_the_config_file_and_a_hint_that_fits_root() {
        let mut r = checked(testdata::realistic(), &Thresholds::default());
        let none = render(&r, "--pid 7", 1000, true, &[]);
        assert!(
            none.contains("\n  config: none (no cwleak.toml read)\n"),
            "{none}"
        );
        if let Some(c) = r.check.as_mut() {
            c.config_file = Some("/src/app/cwleak.toml".into());
        }
        let s = render(&r, "--pid 7", 1000, true, &[]);
        assert!(s.contains("\n  config: /src/app/cwleak.toml\n"), "{s}");
        if r.scan
            .unreadable
            .iter()
            .any(|u| u.kind == crate::model::WarningKind::PermissionDenied)
        {
            let warning = |s: &str| {
                s.lines()
                    .find(|l| l.starts_with("  warning: "))
                    .unwrap_or_default()
                    .to_string()
            };
            let w = warning(&s);
            assert!(
                w.contains("cwleak ran as root, so something else refused"),
                "{s}"
            );
            assert!(!w.contains("run cwleak as root"), "{s}");
            let user = render(&r, "--pid 7", 1000, false, &[]);
            assert!(warning(&user).contains("run cwleak as root"), "{user}");
        }
    }

    #[test]
    fn a_failure_names_the_process_the_fds_and_the_fix() {
        let r = checked(testdata::realistic(), &Thresholds::default());
        let s = render(
            &r,
            "--pid 4242 and descendants",
            1000,
            false,
            &["report.json".into()],
        );
        let first = s.lines().next().unwrap_or("");
        assert!(
            first.starts_with("cwleak check: FAIL: 5009 persistent CLOSE_WAIT sockets in scope"),
            "{s}"
        );
        assert!(s.contains("\n  pid 4242 python3: 5000 sockets, fork-parent-kept, fds 7-5006, local port 8080\n"), "{s}");
        assert!(s.contains("    fix (fork-parent-kept): "), "{s}");
        assert!(
            s.contains("  scope: --pid 4242 and descendants; settle 1s"),
            "{s}"
        );
        assert!(s.contains("  wrote report.json"), "{s}");
        assert!(s.lines().count() < 40, "{s}");
    }

    #[test]
    fn a_pass_is_one_line_the_scope_and_the_config() {
        let r = checked(testdata::clean(), &Thresholds::default());
        let s = render(&r, "local port 8080", 1000, false, &[]);
        assert_eq!(
            s.lines().next(),
            Some("cwleak check: PASS: no CLOSE_WAIT leak in scope; 3 transient")
        );
        assert_eq!(s.lines().count(), 3, "{s}");
    }

    #[test]
    fn exited_roots_say_when() {
        let mut r = checked(testdata::clean(), &Thresholds::default());
        if let Some(c) = r.check.as_mut() {
            c.roots = vec![
                Root {
                    pid: 7,
                    from: "--pid".into(),
                    comm: Some("svc".into()),
                    running: false,
                    exited_at_ms: Some(r.host.taken_at_ms - 2_000),
                },
                Root {
                    pid: 8,
                    from: "--pidfile /run/x.pid".into(),
                    comm: None,
                    running: false,
                    exited_at_ms: None,
                },
            ];
        }
        let s = render(&r, "--pid 7", 1000, false, &[]);
        assert!(
            s.contains(
                "  pid 7 svc (--pid) exited at 2023-11-14 22:13:18 UTC, 2s before the check"
            ),
            "{s}"
        );
        assert!(
            s.contains("  pid 8 (--pidfile /run/x.pid) is not running"),
            "{s}"
        );
    }
}
