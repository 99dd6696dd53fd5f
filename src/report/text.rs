//! Text for an on-call engineer: one summary line, one block per group,
//! then what could not be read. Wrapped to `opts.width`; groups are the unit,
//! so 5000 sockets print as one block of a few lines.

use super::holders::{self, Processes};
use super::ranges;
use super::style::Style;
use super::units::{age, bytes, count, duration_ms};
use super::wrap::{clean, wrap};
use super::RenderOptions;
use crate::diagnose::{Cause, Group, Report};
use crate::model::WarningKind;
use std::io::{self, Write};

/// Narrower than this, wrapping does more harm than good.
const MIN_WIDTH: usize = 40;
/// Groups drawn as full blocks, then as one line each, then only counted.
const FULL_GROUPS: usize = 8;
const BRIEF_GROUPS: usize = 30;
const MAX_HOLDERS: usize = 4;
const MAX_EVIDENCE: usize = 6;
const MAX_UNREADABLE: usize = 3;
const INDENT: &str = "  ";
const LABEL_INDENT: &str = "        ";

struct Out<'a> {
    out: &'a mut dyn Write,
    width: usize,
    st: Style,
}

impl Out<'_> {
    fn line(&mut self, s: &str) -> io::Result<()> {
        writeln!(self.out, "{s}")
    }

    /// A wrapped paragraph; `paint` styles each finished line.
    fn para(
        &mut self,
        text: &str,
        first: &str,
        rest: &str,
        paint: impl Fn(&str) -> String,
    ) -> io::Result<()> {
        for l in wrap(text, self.width, first, rest) {
            writeln!(self.out, "{}", paint(&l))?;
        }
        Ok(())
    }

    /// "  why:  text", the label styled, continuation lines under the text.
    fn labelled(&mut self, label: &str, text: &str) -> io::Result<()> {
        self.labelled_hanging(label, text, LABEL_INDENT)
    }

    /// Like `labelled`, continuation lines indented by `rest`.
    fn labelled_hanging(&mut self, label: &str, text: &str, rest: &str) -> io::Result<()> {
        let field = if label.len() < 6 {
            format!("{label:<6}")
        } else {
            format!("{label} ")
        };
        let first = format!("{INDENT}{field}");
        let styled = format!("{INDENT}{}{}", self.st.bold(label), &field[label.len()..]);
        self.para(text, &first, rest, |l| match l.strip_prefix(&first) {
            Some(rest) => format!("{styled}{rest}"),
            None if l == first.trim_end() => styled.trim_end().to_string(),
            None => l.to_string(),
        })
    }
}

pub fn render(report: &Report, opts: &RenderOptions, out: &mut dyn Write) -> io::Result<()> {
    let mut o = Out {
        out,
        width: opts.width.max(MIN_WIDTH),
        st: Style::new(opts.color),
    };
    let st = o.st;
    let leaked = report.summary.leaked > 0 || !report.scan.incomplete.is_empty();
    o.para(&summary_line(report), "", INDENT, |l| {
        if leaked {
            st.bold(l)
        } else {
            st.green(l)
        }
    })?;
    let procs = Processes::new(report);
    for (i, g) in report.groups.iter().enumerate() {
        if i < FULL_GROUPS {
            o.line("")?;
            group_block(&mut o, report, &procs, g)?;
        } else if i < FULL_GROUPS + BRIEF_GROUPS {
            if i == FULL_GROUPS {
                o.line("")?;
            }
            o.para(&brief_line(g), "", INDENT, str::to_string)?;
        } else {
            let n = report.groups.len() - i;
            o.para(
                &format!("and {n} more groups (the JSON output lists every one)"),
                "",
                INDENT,
                str::to_string,
            )?;
            break;
        }
    }
    unreadable(&mut o, report, opts.read_as_root)?;
    // scan --trace-for: what the recording covered.
    if let Some(t) = &report.trace {
        o.para(&clean(&t.summary()), "", INDENT, str::to_string)?;
    }
    Ok(())
}

/// "cwleak: 5003 sockets leaked in CLOSE_WAIT by 2 processes (...); 4 transient; ..."
pub fn summary_line(report: &Report) -> String {
    let s = &report.summary;
    let mut line = String::from("cwleak: ");
    if s.leaked == 0 && !report.scan.incomplete.is_empty() {
        line.push_str("no CLOSE_WAIT leak seen, but this look is INCOMPLETE (no all-clear)");
        if s.transient > 0 {
            line.push_str(&format!(" ({} transient)", s.transient));
        }
    } else if s.leaked == 0 {
        line.push_str("no CLOSE_WAIT leak");
        let mut apart = Vec::new();
        if s.transient > 0 {
            apart.push(format!("{} transient", s.transient));
        }
        if s.still_sending > 0 {
            apart.push(format!("{} still sending", s.still_sending));
        }
        if !apart.is_empty() {
            line.push_str(&format!(" ({})", apart.join(", ")));
        }
    } else {
        line.push_str(&format!(
            "{} leaked in CLOSE_WAIT ",
            count(s.leaked, "socket", "sockets")
        ));
        if s.processes_blamed == 0 {
            line.push_str("with no visible holder");
        } else {
            line.push_str(&format!(
                "by {}",
                count(s.processes_blamed, "process", "processes")
            ));
        }
        let mut causes: Vec<(Cause, usize)> = s
            .by_cause
            .iter()
            .map(|(&c, &n)| (c, n))
            .filter(|&(_, n)| n > 0)
            .collect();
        causes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let causes: Vec<String> = causes
            .iter()
            .map(|(c, n)| format!("{} {n}", c.name()))
            .collect();
        if !causes.is_empty() {
            line.push_str(&format!(" ({})", causes.join(", ")));
        }
        if s.transient > 0 {
            line.push_str(&format!("; {} transient", s.transient));
        }
        // Half-closed streams the owner is still finishing: not leaks.
        if s.still_sending > 0 {
            line.push_str(&format!("; {} still sending", s.still_sending));
        }
    }
    let scan = &report.scan;
    line.push_str(&format!(
        "; {}, {}, {} netns scanned in {} ms",
        count(scan.processes, "process", "processes"),
        count(scan.fds, "fd", "fds"),
        scan.namespaces.len(),
        scan.duration_ms
    ));
    if !scan.live {
        line.push_str(&format!(
            " (read from {}, not live)",
            clean(&scan.proc_root)
        ));
    }
    line
}

fn header(report: &Report, procs: &Processes, g: &Group) -> String {
    let mut extra = Vec::new();
    let info = g.pid.and_then(|pid| procs.get(pid));
    if let Some(p) = info {
        if let Some(exe) = &p.exe {
            let base = exe.rsplit('/').next().unwrap_or(exe);
            if base != p.comm {
                extra.push(format!("exe {}", clean(exe)));
            }
        }
        if let Some(cg) = &p.cgroup {
            extra.push(format!("cgroup {}", clean(cg)));
        }
        if let Some(ns_pid) = p.ns_pid {
            extra.push(format!("pid {ns_pid} in its container"));
        }
    }
    if let Some(ns) = info
        .and_then(|p| p.netns)
        .or_else(|| holders::netns(report, g))
    {
        extra.push(format!("netns {ns}"));
    }
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(" ({})", extra.join(", "))
    };
    match g.pid {
        Some(pid) => {
            let comm = g
                .comm
                .as_deref()
                .or(info.map(|p| p.comm.as_str()))
                .unwrap_or("?");
            format!("pid {pid} {}{extra}", clean(comm))
        }
        None => format!("no visible holder{extra}"),
    }
}

fn group_block(o: &mut Out, report: &Report, procs: &Processes, g: &Group) -> io::Result<()> {
    let st = o.st;
    o.para(&header(report, procs, g), "", "    ", |l| st.bold(l))?;

    let mut what = format!(
        "{} in CLOSE_WAIT, cause {}",
        count(g.sockets, "socket", "sockets"),
        g.cause.name()
    );
    if let Some(p) = g.pid.and_then(|pid| procs.get(pid)) {
        match p.fd_limit {
            Some(limit) => what.push_str(&format!("; {} of {limit} fds open", p.fd_count)),
            None => what.push_str(&format!("; {} fds open", p.fd_count)),
        }
    }
    let cause = g.cause.name();
    o.para(&what, INDENT, INDENT, |l| {
        l.replacen(cause, &st.red(cause), 1)
    })?;
    // Recorded only by `capture --cmdline`; a live scan never reads it.
    if let Some(cmd) = g
        .pid
        .and_then(|pid| procs.get(pid))
        .and_then(|p| p.cmdline.as_deref())
    {
        o.labelled("cmd:", &clean(cmd))?;
    }
    // One look could not decide: the other causes, and what tells them apart.
    for alt in &g.alternatives {
        o.labelled_hanging(
            "or:",
            &clean(&format!("{}: {}", alt.cause.name(), alt.why)),
            &format!("{LABEL_INDENT}  "),
        )?;
    }

    let mut facts = Vec::new();
    if !g.fds.is_empty() {
        let n = ranges::distinct(&g.fds);
        let label = ranges::fds_label(&g.fds, 4);
        facts.push(if n > 1 {
            format!("{label} ({n})")
        } else {
            label
        });
    }
    facts.extend(holders::ports_phrase(g, 3));
    facts.push(format!("oldest {}", age(g.oldest_close_wait_ms)));
    facts.push(format!("unread {}", bytes(g.unread_bytes)));
    o.para(&facts.join(", "), INDENT, INDENT, str::to_string)?;
    let peers = holders::peers(report, g);
    if !peers.is_empty() {
        o.para(
            &format!("peer {}", holders::top_list(&peers, 3)),
            INDENT,
            INDENT,
            str::to_string,
        )?;
    }

    // Each evidence line hangs, so the next one is seen to start anew.
    let hanging = if g.evidence.len() > 1 {
        format!("{LABEL_INDENT}  ")
    } else {
        LABEL_INDENT.to_string()
    };
    for (i, e) in g.evidence.iter().take(MAX_EVIDENCE).enumerate() {
        o.labelled_hanging(if i == 0 { "why:" } else { "" }, &clean(e), &hanging)?;
    }
    if g.evidence.len() > MAX_EVIDENCE {
        o.labelled(
            "",
            &format!("(and {} more)", g.evidence.len() - MAX_EVIDENCE),
        )?;
    }
    // --trace: where the blamed copy was made, down to the line.
    for (i, l) in super::origin::group_lines(report, g).iter().enumerate() {
        o.labelled_hanging(if i == 0 { "made:" } else { "" }, &clean(l), &hanging)?;
    }
    let mitigation = g.mitigation_text();
    for (label, text) in [("fix:", &*g.fix), ("now:", mitigation.as_str())] {
        for (i, l) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            o.labelled(if i == 0 { label } else { "" }, &clean(l))?;
        }
    }

    if g.pid.is_none() {
        let pids = holders::unreadable_pids(report);
        if !pids.is_empty() {
            let list: Vec<String> = pids.iter().take(8).map(i32::to_string).collect();
            let more = if pids.len() > 8 {
                format!(" and {} more", pids.len() - 8)
            } else {
                String::new()
            };
            let text = format!(
                "held by a process cwleak could not read: pid {}{more}",
                list.join(", ")
            );
            o.labelled("maybe:", &text)?;
        }
        return Ok(());
    }
    let rows = holders::holders(report, g);
    let mut parts: Vec<String> = rows
        .iter()
        .take(MAX_HOLDERS)
        .map(|r| {
            let mut s = format!(
                "{} {} {}",
                r.pid,
                clean(&r.comm),
                ranges::fds_label(&r.fds, 3)
            );
            s.push_str(&r.threads_phrase());
            match (r.fds.len() > 1, r.blamed) {
                (true, true) => s.push_str(&format!(" ({}, blamed)", r.fds.len())),
                (true, false) => s.push_str(&format!(" ({})", r.fds.len())),
                (false, true) => s.push_str(" (blamed)"),
                (false, false) => {}
            }
            s
        })
        .collect();
    if rows.len() > MAX_HOLDERS {
        parts.push(format!("and {} more", rows.len() - MAX_HOLDERS));
    }
    if !parts.is_empty() {
        let first = format!("{INDENT}holders: ");
        let styled = format!("{INDENT}{} ", st.bold("holders:"));
        o.para(
            &parts.join(", "),
            &first,
            &" ".repeat(first.len()),
            |l| match l.strip_prefix(&first) {
                Some(rest) => format!("{styled}{rest}"),
                None => l.to_string(),
            },
        )?;
    }
    Ok(())
}

/// One line for a group past the first few.
fn brief_line(g: &Group) -> String {
    let who = match (g.pid, &g.comm) {
        (Some(pid), Some(comm)) => format!("pid {pid} {}", clean(comm)),
        (Some(pid), None) => format!("pid {pid}"),
        (None, _) => "no visible holder".to_string(),
    };
    let mut s = format!(
        "{who}: {}, {}",
        count(g.sockets, "socket", "sockets"),
        g.cause.name()
    );
    if !g.fds.is_empty() {
        s.push_str(&format!(", {}", ranges::fds_label(&g.fds, 2)));
    }
    if let Some(p) = holders::ports_phrase(g, 1) {
        s.push_str(&format!(", {p}"));
    }
    if let Some(ms) = g.oldest_close_wait_ms {
        s.push_str(&format!(", oldest >= {}", duration_ms(ms)));
    }
    s
}

/// What the look could not see, each on its own line: it decides whether
/// the answer stands (scan.incomplete in JSON).
fn incomplete(o: &mut Out, report: &Report) -> io::Result<()> {
    if report.scan.incomplete.is_empty() {
        return Ok(());
    }
    o.line("")?;
    let st = o.st;
    for gap in &report.scan.incomplete {
        o.para(&format!("incomplete: {}", clean(gap)), "", INDENT, |l| {
            st.yellow(l)
        })?;
    }
    Ok(())
}

fn unreadable(o: &mut Out, report: &Report, read_as_root: bool) -> io::Result<()> {
    incomplete(o, report)?;
    let all = &report.scan.unreadable;
    // Incomplete ones were said above, each on its line.
    let (vanished, failed): (Vec<_>, Vec<_>) = all
        .iter()
        .filter(|u| u.kind != WarningKind::Incomplete)
        .partition(|u| u.kind == WarningKind::Vanished);
    if failed.is_empty() && vanished.is_empty() {
        return Ok(());
    }
    o.line("")?;
    let st = o.st;
    if !failed.is_empty() {
        let mut pids: Vec<i32> = failed.iter().filter_map(|u| u.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        let paths = failed.iter().filter(|u| u.pid.is_none()).count();
        let what = match (pids.len(), paths) {
            (n, 0) => count(n, "process", "processes"),
            (0, m) => count(m, "path", "paths"),
            (n, m) => format!(
                "{} and {}",
                count(n, "process", "processes"),
                count(m, "path", "paths")
            ),
        };
        let mut items: Vec<String> = failed
            .iter()
            .take(MAX_UNREADABLE)
            .map(|u| {
                let mut s = String::new();
                if let Some(pid) = u.pid {
                    s.push_str(&format!("pid {pid} "));
                }
                if let Some(path) = &u.path {
                    s.push_str(&clean(path));
                }
                format!("{}: {}", s.trim_end(), clean(&u.message))
            })
            .collect();
        if failed.len() > MAX_UNREADABLE {
            items.push(format!("and {} more", failed.len() - MAX_UNREADABLE));
        }
        let mut text = format!("could not read {what}: {}", items.join("; "));
        if failed
            .iter()
            .any(|u| u.kind == WarningKind::PermissionDenied)
        {
            text.push_str(&format!(
                " (the answer may be incomplete: a holder may be among them; {})",
                super::unreadable_hint(read_as_root)
            ));
        }
        o.para(&text, "", INDENT, |l| st.yellow(l))?;
    }
    if !vanished.is_empty() {
        let text = format!(
            "{} exited during the scan (harmless)",
            count(vanished.len(), "process", "processes")
        );
        o.para(&text, "", INDENT, |l| st.dim(l))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata;
    use crate::report::wrap::width_of;

    fn text(report: &Report, width: usize, color: bool) -> String {
        let mut buf = Vec::new();
        render(
            report,
            &RenderOptions {
                color,
                width,
                pretty: false,
                read_as_root: false,
            },
            &mut buf,
        )
        .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn summary_wording() {
        let r = testdata::realistic();
        assert_eq!(
            summary_line(&r),
            "cwleak: 5009 sockets leaked in CLOSE_WAIT by 5 processes (fork-parent-kept 5000, never-closed 3, \
             inherited-no-cloexec 2, no-visible-holder 2, dup-copy-kept 1, passed-fd-kept 1); 4 transient; \
             812 processes, 40210 fds, 2 netns scanned in 231 ms"
        );
        assert_eq!(
            summary_line(&testdata::clean()),
            "cwleak: no CLOSE_WAIT leak (3 transient); 812 processes, 40210 fds, 2 netns scanned in 231 ms"
        );
        let mut one = testdata::Builder::new();
        one.group(
            Some(9),
            Some("x"),
            Cause::NeverClosed,
            &[],
            "",
            "",
            vec![testdata::sock("1.2.3.4:1", "1.2.3.5:2", vec![], &[(9, 3)])],
        );
        let mut one = one.build();
        one.scan.live = false;
        one.scan.proc_root = "/tmp/snap".into();
        assert_eq!(
            summary_line(&one),
            "cwleak: 1 socket leaked in CLOSE_WAIT by 1 process (never-closed 1); 812 processes, 40210 fds, \
             2 netns scanned in 231 ms (read from /tmp/snap, not live)"
        );
    }

    #[test]
    fn group_block_names_fds_ports_and_holders() {
        let out = text(&testdata::realistic(), 80, false);
        assert!(
            out.contains(
                "\npid 4242 python3 (cgroup /system.slice/api.service, netns 4026531840)\n"
            ),
            "{out}"
        );
        assert!(out.contains(
            "  5000 sockets in CLOSE_WAIT, cause fork-parent-kept; 5010 of 65536 fds open\n"
        ));
        assert!(out.contains(
            "  fds 7-5006 (5000), local port 8080 (5000), oldest >= 12m30s, unread 0 B\n"
        ));
        assert!(
            out.contains("  holders: 4242 python3 fds 7-5006 (5000, blamed), 4250 python3 fd 4,")
        );
        assert!(out.contains("and 3 more\n"));
        assert!(out.contains("  peer 10.0.9.9:5432 (3)\n"));
        let wide = text(&testdata::realistic(), 200, false);
        assert!(wide.contains("pid 7000 envoy (cgroup /kubepods/burstable/pod1234/abcdef, pid 12 in its container, netns 4026532500)"));
        assert!(out.contains("no visible holder (netns 4026531840)"));
        assert!(
            out.contains("  maybe: held by a process cwleak could not read: pid 77\n"),
            "{out}"
        );
        assert!(out.contains(
            "could not read 1 process and 1 path: pid 77 /proc/77/fd: permission denied;"
        ));
        assert!(out.contains("1 process exited during the scan (harmless)"));
    }

    #[test]
    fn no_line_is_wider_than_the_terminal() {
        for width in [40, 60, 80, 120] {
            let out = text(&testdata::realistic(), width, false);
            for l in out.lines() {
                assert!(
                    width_of(l) <= width || !l.trim().contains(' '),
                    "width {width}: {l:?}"
                );
            }
        }
    }

    #[test]
    fn five_thousand_sockets_take_a_bounded_number_of_lines() {
        let out = text(&testdata::realistic(), 80, false);
        assert!(out.lines().count() < 80, "{out}");
        let first_block = out.split("\n\n").nth(1).unwrap();
        assert!(first_block.lines().count() <= 16, "{first_block}");
    }

    #[test]
    fn many_groups_are_cut_short() {
        let mut b = testdata::Builder::new();
        for pid in 1..=100 {
            let s = testdata::sock(
                "1.2.3.4:80",
                &format!("1.2.3.5:{}", 1000 + pid),
                vec![],
                &[(pid, 5)],
            );
            b.group(
                Some(pid),
                Some("w"),
                Cause::NeverClosed,
                &["e"],
                "f",
                "m",
                vec![s],
            );
        }
        let out = text(&b.build(), 80, false);
        assert!(
            out.contains(
                "pid 9 w: 1 socket, never-closed, fd 5, local port 80 (1), oldest >= 1m00s\n"
            ),
            "{out}"
        );
        assert!(out.contains("and 62 more groups"));
        assert!(out.lines().count() < 120);
    }

    #[test]
    fn colour_only_when_asked() {
        let plain = text(&testdata::realistic(), 80, false);
        assert!(!plain.contains('\x1b'));
        let coloured = text(&testdata::realistic(), 80, true);
        assert!(coloured.contains("\x1b[1;31mfork-parent-kept\x1b[0m"));
        assert!(coloured.contains("\x1b[1mwhy:\x1b[0m"));
    }

    #[test]
    fn hostile_names_cannot_drive_the_terminal() {
        let mut r = testdata::realistic();
        r.groups[0].comm = Some("evil\x1b]0;pwned\x07".into());
        r.groups[0].evidence = vec!["line\nbreak\x1b[2J".into()];
        let out = text(&r, 80, false);
        assert!(!out.contains('\x1b') && !out.contains('\x07'));
    }

    #[test]
    fn empty_and_odd_reports_do_not_panic() {
        let mut r = testdata::realistic();
        r.groups[0].findings.push(99_999);
        r.groups[1].evidence.clear();
        r.groups[1].fix = "".into();
        r.groups[1].local_ports.clear();
        r.processes.clear();
        let _ = text(&r, 0, true);
        let out = text(&testdata::clean(), 200, false);
        assert_eq!(out.lines().count(), 1, "{out}");
    }
}
