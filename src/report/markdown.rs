//! Markdown for a ticket: the summary, a table of groups, one `###` section
//! per group (holders, cause, evidence, fix, mitigation), then the scan.

use super::holders::{self, HolderRow, Processes};
use super::ranges;
use super::text::summary_line;
use super::units::{age, bytes, count, utc};
use super::wrap::clean;
use crate::diagnose::{Group, Report};
use std::io::{self, Write};

const MAX_TABLE_GROUPS: usize = 100;
const MAX_SECTIONS: usize = 20;
const MAX_HOLDER_ROWS: usize = 20;
const MAX_UNREADABLE: usize = 50;

/// Text safe in a paragraph or a table cell: hostile characters replaced
/// (`wrap::clean`), Markdown punctuation escaped, and `<` as `&lt;` (a
/// backslash before `<` is not honoured by every renderer: some start a tag).
pub fn esc(s: &str) -> String {
    let chars: Vec<char> = clean(s).chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        // An underscore inside a word (CLOSE_WAIT) never makes emphasis.
        let in_word = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(|c| c.is_alphanumeric())
        };
        let intraword = c == '_' && in_word(i.checked_sub(1)) && in_word(Some(i + 1));
        // What starts a line could start a quote, heading or list item.
        let at_start = i == 0 && matches!(c, '>' | '#' | '-' | '+' | '=');
        let list_number = matches!(c, '.' | ')')
            && i > 0
            && chars[..i].iter().all(char::is_ascii_digit)
            && chars.get(i + 1).is_none_or(|c| c.is_whitespace());
        if c == '<' {
            out.push_str("&lt;");
            continue;
        }
        if at_start
            || list_number
            || (!intraword && matches!(c, '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '&'))
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An inline code span that holds any text (backticks included).
pub fn code(s: &str) -> String {
    let s = clean(s);
    let fence = "`".repeat(longest_backtick_run(&s) + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A code span inside a table row, where GFM needs every pipe escaped.
fn cell_code(s: &str) -> String {
    code(s).replace('|', "\\|")
}

fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// A fenced code block; the fence is longer than any backtick run inside.
fn code_block(out: &mut dyn Write, lang: &str, text: &str) -> io::Result<()> {
    let fence = "`".repeat((longest_backtick_run(text) + 1).max(3));
    writeln!(out, "{fence}{lang}")?;
    for line in text.lines() {
        let line: String = line
            .chars()
            .map(|c| {
                if c != '\t' && super::wrap::hostile(c) {
                    '?'
                } else {
                    c
                }
            })
            .collect();
        writeln!(out, "{line}")?;
    }
    writeln!(out, "{fence}")
}

fn who(g: &Group) -> String {
    match (g.pid, &g.comm) {
        (Some(pid), Some(comm)) => format!("pid {pid} {}", esc(comm)),
        (Some(pid), None) => format!("pid {pid}"),
        (None, _) => "no visible holder".to_string(),
    }
}

pub fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let host = report.host.hostname.as_deref().unwrap_or("unknown host");
    writeln!(out, "## cwleak report: {}", esc(host))?;
    writeln!(out)?;
    writeln!(out, "**{}**", esc(&summary_line(report)))?;
    writeln!(out)?;
    let kernel = report
        .host
        .kernel
        .as_deref()
        .map(code)
        .unwrap_or_else(|| "unknown".into());
    writeln!(
        out,
        "Host {}, kernel {kernel}, taken {}, {} {}.",
        code(host),
        utc(report.host.taken_at_ms),
        esc(&report.tool.name),
        esc(&report.tool.version)
    )?;
    if !report.groups.is_empty() {
        writeln!(out)?;
        groups_table(report, out)?;
    }
    let procs = Processes::new(report);
    for (i, g) in report.groups.iter().take(MAX_SECTIONS).enumerate() {
        writeln!(out)?;
        section(report, &procs, i + 1, g, out)?;
    }
    if report.groups.len() > MAX_SECTIONS {
        writeln!(out)?;
        writeln!(
            out,
            "{} more groups are in the JSON output.",
            report.groups.len() - MAX_SECTIONS
        )?;
    }
    writeln!(out)?;
    scan(report, out)
}

fn groups_table(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "| Blamed pid | Comm | Cause | Sockets | Local ports | Oldest |"
    )?;
    writeln!(out, "|---:|---|---|---:|---|---|")?;
    for g in report.groups.iter().take(MAX_TABLE_GROUPS) {
        let pid = g.pid.map_or("-".to_string(), |p| p.to_string());
        let comm = match (&g.comm, g.pid) {
            (Some(c), _) => esc(c),
            (None, None) => "(no visible holder)".into(),
            (None, Some(_)) => "?".into(),
        };
        let ports = holders::ports_phrase(g, 3).unwrap_or_default();
        let ports = ports
            .strip_prefix("local ports ")
            .or(ports.strip_prefix("local port "))
            .unwrap_or(&ports);
        writeln!(
            out,
            "| {pid} | {comm} | {} | {} | {} | {} |",
            cell_code(g.cause.name()),
            g.sockets,
            esc(ports),
            esc(&age(g.oldest_close_wait_ms))
        )?;
    }
    if report.groups.len() > MAX_TABLE_GROUPS {
        writeln!(
            out,
            "| | and {} more | | | | |",
            report.groups.len() - MAX_TABLE_GROUPS
        )?;
    }
    Ok(())
}

fn section(
    report: &Report,
    procs: &Processes,
    n: usize,
    g: &Group,
    out: &mut dyn Write,
) -> io::Result<()> {
    writeln!(
        out,
        "### {n}. {}: {}, {}",
        who(g),
        count(g.sockets, "socket", "sockets"),
        esc(g.cause.name())
    )?;
    writeln!(out)?;
    if let Some(p) = g.pid.and_then(|pid| procs.get(pid)) {
        let mut facts = Vec::new();
        if let Some(exe) = &p.exe {
            facts.push(format!("exe {}", code(exe)));
        }
        if let Some(cmd) = &p.cmdline {
            facts.push(format!("command line {}", code(cmd)));
        }
        if let Some(cg) = &p.cgroup {
            facts.push(format!("cgroup {}", code(cg)));
        }
        if let Some(ns_pid) = p.ns_pid {
            facts.push(format!("pid {ns_pid} in its container"));
        }
        if let Some(ns) = p.netns {
            facts.push(format!("netns {ns}"));
        }
        facts.push(format!("uid {}", p.uid));
        facts.push(match p.fd_limit {
            Some(limit) => format!("{} of {limit} fds open", p.fd_count),
            None => format!("{} fds open", p.fd_count),
        });
        writeln!(out, "- **Process:** {}", facts.join(", "))?;
    } else if let Some(ns) = holders::netns(report, g) {
        writeln!(out, "- **Network namespace:** {ns}")?;
    }
    if !g.fds.is_empty() {
        writeln!(
            out,
            "- **Blamed fds:** {} ({})",
            ranges::format(&g.fds, 8),
            ranges::distinct(&g.fds)
        )?;
    }
    if let Some(ports) = holders::ports_phrase(g, 5) {
        writeln!(out, "- **Ports:** {}", esc(&ports))?;
    }
    let peers = holders::peers(report, g);
    if !peers.is_empty() {
        writeln!(out, "- **Peers:** {}", esc(&holders::top_list(&peers, 5)))?;
    }
    writeln!(
        out,
        "- **In CLOSE_WAIT for:** {}",
        esc(&age(g.oldest_close_wait_ms))
    )?;
    writeln!(out, "- **Unread:** {}", bytes(g.unread_bytes))?;
    let rows = holders::holders(report, g);
    if !rows.is_empty() {
        writeln!(out)?;
        holders_table(&rows, out)?;
    }
    writeln!(out)?;
    writeln!(out, "**Cause:** {}", code(g.cause.name()))?;
    for alt in &g.alternatives {
        writeln!(out)?;
        writeln!(out, "**Or:** {}: {}", code(alt.cause.name()), esc(&alt.why))?;
    }
    if !g.evidence.is_empty() {
        writeln!(out)?;
        writeln!(out, "**Evidence:**")?;
        writeln!(out)?;
        for e in &g.evidence {
            writeln!(out, "- {}", esc(e))?;
        }
    }
    if !g.fix.trim().is_empty() {
        writeln!(out)?;
        writeln!(out, "**Fix:** {}", esc(&g.fix.replace('\n', "; ")))?;
    }
    let mitigation = g.mitigation_text();
    if !mitigation.trim().is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "**Mitigation** (run by hand once checked; cwleak never runs it):"
        )?;
        writeln!(out)?;
        code_block(out, "sh", &mitigation)?;
    }
    Ok(())
}

fn holders_table(rows: &[HolderRow], out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "| Holder pid | Parent | Comm | fds | Blamed | O_CLOEXEC |"
    )?;
    writeln!(out, "|---:|---:|---|---|---|---|")?;
    for r in rows.iter().take(MAX_HOLDER_ROWS) {
        writeln!(
            out,
            "| {} | {} | {} | {} ({}){} | {} | {} |",
            r.pid,
            r.ppid,
            esc(&r.comm),
            ranges::format(&r.fds, 6),
            r.fds.len(),
            r.threads_phrase(),
            if r.blamed { "**yes**" } else { "no" },
            r.cloexec_label()
        )?;
    }
    if rows.len() > MAX_HOLDER_ROWS {
        writeln!(
            out,
            "| | | and {} more | | | |",
            rows.len() - MAX_HOLDER_ROWS
        )?;
    }
    Ok(())
}

fn scan(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let s = &report.scan;
    writeln!(out, "### Scan")?;
    writeln!(out)?;
    writeln!(
        out,
        "- Read {} ({}), {}, {} ({} sockets), {} in {} ms; settle window {} ms.",
        code(&s.proc_root),
        if s.live { "live" } else { "not live" },
        count(s.processes, "process", "processes"),
        count(s.fds, "fd", "fds"),
        s.socket_fds,
        count(s.tcp_sockets, "TCP socket", "TCP sockets"),
        s.duration_ms,
        s.settle_ms
    )?;
    let states: Vec<String> = report
        .summary
        .by_state
        .iter()
        .map(|(st, n)| format!("{} {n}", st.name()))
        .collect();
    if !states.is_empty() {
        // Say so when only some states were read: the counts are not the whole table.
        let read = if s.states_read.len() < crate::model::TcpState::ALL.len() {
            let names: Vec<&str> = s.states_read.iter().map(|st| st.name()).collect();
            format!(" (only {} read)", names.join(" and "))
        } else {
            String::new()
        };
        writeln!(
            out,
            "- TCP states{}: {}.",
            esc(&read),
            esc(&states.join(", "))
        )?;
    }
    if report.summary.transient > 0 {
        writeln!(
            out,
            "- {} CLOSE_WAIT sockets were transient (gone or changed within the settle window).",
            report.summary.transient
        )?;
    }
    if report.summary.still_sending > 0 {
        writeln!(
            out,
            "- {} CLOSE_WAIT sockets were still sending (the owner kept sending to a peer that half-closed): not leaks.",
            report.summary.still_sending
        )?;
    }
    for ns in &s.namespaces {
        let via = ns
            .via_pid
            .map_or(String::new(), |p| format!(" via pid {p}"));
        writeln!(
            out,
            "- Network namespace {}{via}: {} sockets, read with {}.",
            ns.inode,
            ns.sockets,
            esc(&ns.method)
        )?;
    }
    if !s.incomplete.is_empty() {
        writeln!(out)?;
        writeln!(out, "**Incomplete:** this look cannot support \"no leak\":")?;
        writeln!(out)?;
        for gap in &s.incomplete {
            writeln!(out, "- {}", esc(gap))?;
        }
    }
    if !s.unreadable.is_empty() {
        writeln!(out)?;
        writeln!(out, "Could not read ({}):", s.unreadable.len())?;
        writeln!(out)?;
        for u in s.unreadable.iter().take(MAX_UNREADABLE) {
            let pid = u.pid.map_or(String::new(), |p| format!("pid {p} "));
            let path = u.path.as_deref().map(code).unwrap_or_default();
            let kind = serde_json::to_value(u.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            writeln!(out, "- {pid}{path} ({}): {}", esc(&kind), esc(&u.message))?;
        }
        if s.unreadable.len() > MAX_UNREADABLE {
            writeln!(out, "- and {} more", s.unreadable.len() - MAX_UNREADABLE)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata;

    fn md(report: &Report) -> String {
        let mut buf = Vec::new();
        render(report, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn has_table_sections_and_mitigation_block() {
        let out = md(&testdata::realistic());
        assert!(
            out.contains(
                "| 4242 | python3 | `fork-parent-kept` | 5000 | 8080 (5000) | \\>= 12m30s |\n"
            ),
            "{out}"
        );
        assert!(out.contains("| - | (no visible holder) | `no-visible-holder` | 2 |"));
        assert!(out.contains("### 1. pid 4242 python3: 5000 sockets, fork-parent-kept\n"));
        assert!(out.contains("| 4242 | 1 | python3 | 7-5006 (5000) | **yes** | no |\n"));
        assert!(
            out.contains("```sh\nrestart api.service, or close the fds in the parent: gdb -p 4242")
        );
        assert!(out.contains("### Scan\n"));
        assert!(out.contains("- pid 77 `/proc/77/fd` (permission-denied): permission denied\n"));
        assert_eq!(out.matches("\n### ").count(), 7);
    }

    #[test]
    fn escapes_what_would_break_the_markdown() {
        assert_eq!(
            esc("a|b *c* <d> _e_ x_y"),
            "a\\|b \\*c\\* &lt;d> \\_e\\_ x_y"
        );
        assert_eq!(esc("> 1. #x"), "\\> 1. #x");
        assert_eq!(esc("12. x"), "12\\. x");
        assert_eq!(esc("10.0.1.10 and 0.1.0"), "10.0.1.10 and 0.1.0");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(cell_code("a|b"), "`a\\|b`");
        let mut r = testdata::realistic();
        r.groups[0].mitigation = "echo ```\nrm -rf | cat".into();
        r.groups[0].comm = Some("x|y\nz".into());
        let out = md(&r);
        assert!(out.contains("````sh\necho ```\nrm -rf | cat\n````\n"));
        assert!(out.contains("| 4242 | x\\|y?z |"));
    }

    #[test]
    fn clean_report_is_short() {
        let out = md(&testdata::clean());
        assert!(out.contains("no CLOSE_WAIT leak"));
        assert!(!out.contains("| Blamed pid"));
    }
}
