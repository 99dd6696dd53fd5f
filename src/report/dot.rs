//! Graphviz for a post-mortem: the processes that hold leaked sockets (the
//! blamed ones in red), their ancestry, and the sockets grouped by who holds
//! them and why, one node per (holder set, cause).

use super::ranges;
use super::units::count;
use crate::diagnose::{Cause, Report};
use crate::model::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

/// Socket nodes drawn; the rest are counted in one note.
const MAX_SOCKET_NODES: usize = 200;
const BLAMED_EDGE: &str = "color=red, fontcolor=red, penwidth=2.5, style=bold";

/// A DOT double-quoted string: quotes and backslashes escaped, line breaks
/// as `\n`, other control characters dropped to '?'.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default)]
struct SocketNode {
    sockets: usize,
    ports: BTreeMap<u16, usize>,
    states: BTreeSet<&'static str>,
    /// fds of each holder: (blamed, not blamed). A blamed fd is one to close.
    fds: BTreeMap<Pid, (Vec<i32>, Vec<i32>)>,
}

fn ports_label(ports: &BTreeMap<u16, usize>, sockets: usize) -> String {
    let mut by_count: Vec<(u16, usize)> = ports.iter().map(|(&p, &n)| (p, n)).collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    match by_count.as_slice() {
        [] => String::new(),
        [(p, _)] => format!(" :{p}"),
        _ if sockets > 1 && by_count.iter().all(|&(_, n)| n == 1) => {
            format!(" ({} ports)", by_count.len())
        }
        [(p, _), rest @ ..] => format!(" :{p} (+{} ports)", rest.len()),
    }
}

pub fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut nodes: BTreeMap<(Vec<Pid>, Cause), SocketNode> = BTreeMap::new();
    let mut comms: BTreeMap<Pid, String> = BTreeMap::new();
    let mut blamed: BTreeSet<Pid> = BTreeSet::new();
    for f in &report.findings {
        let mut holder_pids: Vec<Pid> = f.holders.iter().map(|h| h.pid).collect();
        holder_pids.sort_unstable();
        holder_pids.dedup();
        let node = nodes.entry((holder_pids, f.cause)).or_default();
        node.sockets += 1;
        *node.ports.entry(f.socket.local.port()).or_default() += 1;
        node.states.insert(f.socket.state.name());
        for h in &f.holders {
            comms.entry(h.pid).or_insert_with(|| h.comm.to_string());
            let entry = node.fds.entry(h.pid).or_default();
            if f.blamed.iter().any(|b| b.pid == h.pid && b.fd == h.fd) {
                entry.0.push(h.fd);
            } else {
                entry.1.push(h.fd);
            }
        }
        blamed.extend(f.blamed.iter().map(|b| b.pid));
    }
    let mut ordered: Vec<(&(Vec<Pid>, Cause), &SocketNode)> = nodes.iter().collect();
    ordered.sort_by(|a, b| b.1.sockets.cmp(&a.1.sockets).then(a.0.cmp(b.0)));
    let (drawn, skipped) = ordered.split_at(ordered.len().min(MAX_SOCKET_NODES));

    // Processes: every holder drawn, plus the ancestors the report lists.
    let mut pids: BTreeSet<Pid> = drawn
        .iter()
        .flat_map(|(_, n)| n.fds.keys().copied())
        .collect();
    for p in &report.processes {
        comms.entry(p.pid).or_insert_with(|| p.comm.clone());
        pids.insert(p.pid);
        if p.close_wait_blamed > 0 {
            blamed.insert(p.pid);
        }
    }

    writeln!(out, "digraph cwleak {{")?;
    writeln!(out, "  rankdir=LR;")?;
    let title = format!(
        "cwleak on {}: {}",
        report.host.hostname.as_deref().unwrap_or("unknown host"),
        count(
            report.summary.leaked,
            "socket leaked in CLOSE_WAIT",
            "sockets leaked in CLOSE_WAIT"
        )
    );
    writeln!(out, "  label={}; labelloc=t;", quote(&title))?;
    writeln!(out, "  node [shape=box, fontname=\"monospace\"];")?;
    writeln!(out, "  edge [fontname=\"monospace\", fontsize=10];")?;
    for &pid in &pids {
        let comm = comms.get(&pid).map_or("?", String::as_str);
        let id = quote(&format!("p{pid}"));
        if blamed.contains(&pid) {
            let label = quote(&format!("{pid} {comm}\nblamed"));
            writeln!(out, "  {id} [label={label}, color=red, penwidth=2, style=filled, fillcolor=\"#ffe0e0\"];")?;
        } else {
            writeln!(out, "  {id} [label={}];", quote(&format!("{pid} {comm}")))?;
        }
    }
    for p in &report.processes {
        if p.pid != p.ppid && pids.contains(&p.ppid) {
            let (from, to) = (
                quote(&format!("p{}", p.ppid)),
                quote(&format!("p{}", p.pid)),
            );
            writeln!(
                out,
                "  {from} -> {to} [style=dashed, color=gray50, arrowhead=onormal];"
            )?;
        }
    }
    for (i, ((holder_pids, cause), node)) in drawn.iter().enumerate() {
        let id = quote(&format!("s{i}"));
        let states: Vec<&str> = node.states.iter().copied().collect();
        let what = format!(
            "{}{} {}\n{}",
            count(node.sockets, "socket", "sockets"),
            ports_label(&node.ports, node.sockets),
            states.join("/"),
            if holder_pids.is_empty() {
                "no visible holder"
            } else {
                cause.name()
            }
        );
        let style = if holder_pids.is_empty() {
            "dashed"
        } else {
            "solid"
        };
        writeln!(
            out,
            "  {id} [label={}, shape=ellipse, style={style}];",
            quote(&what)
        )?;
        for (pid, (blamed_fds, other_fds)) in &node.fds {
            let from = quote(&format!("p{pid}"));
            if !blamed_fds.is_empty() {
                let label = quote(&ranges::fds_label(blamed_fds, 4));
                writeln!(out, "  {from} -> {id} [label={label}, {BLAMED_EDGE}];")?;
            }
            if !other_fds.is_empty() {
                let label = quote(&ranges::fds_label(other_fds, 4));
                writeln!(out, "  {from} -> {id} [label={label}];")?;
            }
        }
    }
    if !skipped.is_empty() {
        let sockets: usize = skipped.iter().map(|(_, n)| n.sockets).sum();
        let label = format!(
            "and {} more socket groups ({}): see the JSON output",
            skipped.len(),
            count(sockets, "socket", "sockets")
        );
        writeln!(out, "  \"more\" [label={}, shape=note];", quote(&label))?;
    }
    writeln!(out, "}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata;

    fn dot(report: &Report) -> String {
        let mut buf = Vec::new();
        render(report, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn escapes_labels() {
        assert_eq!(quote("a\"b\\c\nd\x1be"), "\"a\\\"b\\\\c\\nd?e\"");
        let mut r = testdata::realistic();
        r.processes[1].comm = "py\"thon\\".into();
        r.findings[0].holders[0].comm = "py\"thon\\".into();
        let out = dot(&r);
        assert!(
            out.contains("\"p4242\" [label=\"4242 py\\\"thon\\\\\\nblamed\""),
            "{out}"
        );
    }

    #[test]
    fn groups_sockets_by_holders_and_cause() {
        let out = dot(&testdata::realistic());
        assert!(out.starts_with("digraph cwleak {\n") && out.ends_with("}\n"));
        assert!(
            out.contains("[label=\"4994 sockets :8080 CLOSE_WAIT\\nfork-parent-kept\""),
            "{out}"
        );
        assert!(out.contains("\"p4242\" -> \"s0\" [label=\"fds 13-5006\", color=red"));
        // Only the dup()ed copy is blamed, not the original fd.
        assert!(
            out.contains("\"p6000\" -> \"s10\" [label=\"fd 15\", color=red"),
            "{out}"
        );
        assert!(out.contains("\"p6000\" -> \"s10\" [label=\"fd 9\"];"));
        assert!(out.contains("\"p4250\" -> \"s"), "{out}");
        assert!(out.contains("\"p1\" -> \"p4242\" [style=dashed"));
        assert!(out.contains(
            "2 sockets :9000 CLOSE_WAIT\\nno visible holder\", shape=ellipse, style=dashed"
        ));
        assert!(out.contains("\"p5000\" -> \"s") && out.contains("label=\"fds 20-21\"]"));
        assert!(out.lines().count() < 100, "{out}");
        let braces = out.matches('{').count();
        assert_eq!(braces, out.matches('}').count());
    }

    #[test]
    fn empty_report_is_a_valid_graph() {
        let out = dot(&testdata::clean());
        assert!(out.starts_with("digraph cwleak {\n") && out.ends_with("}\n"));
    }
}
