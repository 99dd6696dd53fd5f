//! Graphviz for a post-mortem: the processes that hold leaked sockets (the
//! blamed ones in red), their ancestry, and the sockets grouped by who holds
//! them and why, one node per (holder set, cause).

use super::ranges;
use super::units::count;
use crate::diagnose::{Cause, ProcessInfo, Report};
use crate::model::{Inode, Pid};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

/// Socket nodes drawn; the rest are counted in one note.
const MAX_SOCKET_NODES: usize = 200;
const BLAMED_EDGE: &str = "color=red, fontcolor=red, penwidth=2.5, style=bold";

/// A DOT double-quoted string: quotes and backslashes escaped, line breaks
/// as `\n`, every other character `wrap::hostile` names (controls, bidi
/// overrides, zero-width) dropped to '?', as in the other renderers.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if super::wrap::hostile(c) => out.push('?'),
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
    /// Remote addresses (without port): what tells a fork's sockets apart.
    peers: BTreeMap<String, usize>,
    /// The one socket, while the node has one: drawn by its addresses.
    first: Option<(String, String, u64)>,
    /// fds of each holder: (blamed, not blamed). A blamed fd is one to close.
    fds: BTreeMap<Pid, (Vec<i32>, Vec<i32>)>,
}

/// Socket nodes are keyed by namespace, holders and cause.
type NodeKey = (Inode, Vec<Pid>, Cause);

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

/// "peer 10.0.0.2" or "peers 10.0.0.2 (3), 10.0.0.3 (1), +2".
fn peers_label(peers: &BTreeMap<String, usize>) -> String {
    let mut by_count: Vec<(&String, &usize)> = peers.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    match by_count.as_slice() {
        [] => String::new(),
        [(p, _)] => format!("peer {p}"),
        _ => {
            let mut parts: Vec<String> = by_count
                .iter()
                .take(2)
                .map(|(p, n)| format!("{p} ({n})"))
                .collect();
            if by_count.len() > 2 {
                parts.push(format!("+{}", by_count.len() - 2));
            }
            format!("peers {}", parts.join(", "))
        }
    }
}

fn socket_label(node: &SocketNode, holders: &[Pid], cause: Cause) -> String {
    let states: Vec<&str> = node.states.iter().copied().collect();
    let why = if holders.is_empty() {
        "no visible holder"
    } else {
        cause.name()
    };
    match (&node.first, node.sockets) {
        (Some((local, remote, inode)), 1) => {
            format!(
                "{local} <- {remote}\ninode {inode}, {}\n{why}",
                states.join("/")
            )
        }
        _ => format!(
            "{}{} {}\n{}\n{why}",
            count(node.sockets, "socket", "sockets"),
            ports_label(&node.ports, node.sockets),
            states.join("/"),
            peers_label(&node.peers)
        ),
    }
}

/// A command line shortened to fit a node.
fn short(cmd: &str) -> String {
    const MAX: usize = 48;
    if cmd.chars().count() <= MAX {
        cmd.to_string()
    } else {
        let head: String = cmd.chars().take(MAX - 3).collect();
        format!("{head}...")
    }
}

const LEGEND: &str = r##"  subgraph cluster_legend {
    label="legend"; fontsize=10; color=gray70; style=rounded;
    node [fontsize=9]; edge [fontsize=9];
    "legend_blamed" [label="blamed process", color=red, penwidth=2, style=filled, fillcolor="#ffe0e0"];
    "legend_proc" [label="process"];
    "legend_sock" [label="CLOSE_WAIT socket(s)", shape=ellipse];
    "legend_none" [label="no visible holder", shape=ellipse, style=dashed];
    "legend_blamed" -> "legend_sock" [label="fd N: to close", color=red, fontcolor=red, penwidth=2.5, style=bold];
    "legend_proc" -> "legend_sock" [label="fd N: also held"];
    "legend_proc" -> "legend_blamed" [label="parent of", style=dashed, color=gray50, arrowhead=onormal];
  }
"##;

pub fn render(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let mut nodes: BTreeMap<NodeKey, SocketNode> = BTreeMap::new();
    let mut comms: BTreeMap<Pid, String> = BTreeMap::new();
    let mut blamed: BTreeSet<Pid> = BTreeSet::new();
    for f in &report.findings {
        let mut holder_pids: Vec<Pid> = f.holders.iter().map(|h| h.pid).collect();
        holder_pids.sort_unstable();
        holder_pids.dedup();
        let node = nodes
            .entry((f.socket.netns, holder_pids, f.cause))
            .or_default();
        node.sockets += 1;
        *node.ports.entry(f.socket.local.port()).or_default() += 1;
        *node
            .peers
            .entry(f.socket.remote.ip().to_string())
            .or_default() += 1;
        node.states.insert(f.socket.state.name());
        if node.sockets == 1 {
            node.first = Some((
                f.socket.local.to_string(),
                f.socket.remote.to_string(),
                f.socket.inode,
            ));
        }
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
    let mut ordered: Vec<(&NodeKey, &SocketNode)> = nodes.iter().collect();
    ordered.sort_by(|a, b| b.1.sockets.cmp(&a.1.sockets).then(a.0.cmp(b.0)));
    let (drawn, skipped) = ordered.split_at(ordered.len().min(MAX_SOCKET_NODES));

    // Processes: every holder drawn, plus the ancestors the report lists.
    let mut pids: BTreeSet<Pid> = drawn
        .iter()
        .flat_map(|(_, n)| n.fds.keys().copied())
        .collect();
    let mut info: BTreeMap<Pid, &ProcessInfo> = BTreeMap::new();
    for p in &report.processes {
        comms.entry(p.pid).or_insert_with(|| p.comm.clone());
        pids.insert(p.pid);
        info.insert(p.pid, p);
        if p.close_wait_blamed > 0 {
            blamed.insert(p.pid);
        }
    }

    // One cluster per network namespace: its processes and its sockets.
    // Processes whose namespace is unknown are drawn outside any cluster.
    let mut clusters: BTreeMap<Option<Inode>, Vec<String>> = BTreeMap::new();
    for &pid in &pids {
        let comm = comms.get(&pid).map_or("?", String::as_str);
        let id = quote(&format!("p{pid}"));
        let p = info.get(&pid);
        let mut label = format!("{pid} {comm}");
        let mut extra = String::new();
        if let Some(cmd) = p.and_then(|p| p.cmdline.as_deref()) {
            label.push_str(&format!("\n{}", short(cmd)));
            extra = format!(", tooltip={}", quote(cmd));
        }
        let line = if blamed.contains(&pid) {
            label.push_str("\nblamed");
            format!("{id} [label={}, color=red, penwidth=2, style=filled, fillcolor=\"#ffe0e0\"{extra}];", quote(&label))
        } else {
            format!("{id} [label={}{extra}];", quote(&label))
        };
        clusters
            .entry(p.and_then(|p| p.netns))
            .or_default()
            .push(line);
    }
    for (i, ((netns, holder_pids, cause), node)) in drawn.iter().enumerate() {
        let style = if holder_pids.is_empty() {
            "dashed"
        } else {
            "solid"
        };
        clusters.entry(Some(*netns)).or_default().push(format!(
            "{} [label={}, shape=ellipse, style={style}];",
            quote(&format!("s{i}")),
            quote(&socket_label(node, holder_pids, *cause))
        ));
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
    // Head labels (the fd numbers) off the arrowhead, where they can be read.
    writeln!(
        out,
        "  edge [fontname=\"monospace\", fontsize=10, labelfontsize=11, labeldistance=2.5, labelangle=-30];"
    )?;
    for (netns, lines) in &clusters {
        match netns {
            Some(ns) => {
                writeln!(out, "  subgraph \"cluster_netns_{ns}\" {{")?;
                writeln!(
                    out,
                    "    label={}; style=rounded; color=gray60;",
                    quote(&format!("netns {ns}"))
                )?;
                for l in lines {
                    writeln!(out, "    {l}")?;
                }
                writeln!(out, "  }}")?;
            }
            None => {
                for l in lines {
                    writeln!(out, "  {l}")?;
                }
            }
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
    // fd numbers as head labels: each sits where its edge meets the socket.
    for (i, (_, node)) in drawn.iter().enumerate() {
        let id = quote(&format!("s{i}"));
        for (pid, (blamed_fds, other_fds)) in &node.fds {
            let from = quote(&format!("p{pid}"));
            if !blamed_fds.is_empty() {
                let label = quote(&ranges::fds_label(blamed_fds, 4));
                writeln!(out, "  {from} -> {id} [headlabel={label}, {BLAMED_EDGE}];")?;
            }
            if !other_fds.is_empty() {
                let label = quote(&ranges::fds_label(other_fds, 4));
                writeln!(out, "  {from} -> {id} [headlabel={label}];")?;
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
    if !drawn.is_empty() {
        out.write_all(LEGEND.as_bytes())?;
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
    fn neutralises_bidi_and_zero_width_characters() {
        assert_eq!(quote("a\u{202E}b\u{200B}c\u{9B}d\re"), "\"a?b?c?d?e\"");
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
            out.contains(
                "[label=\"4994 sockets :8080 CLOSE_WAIT\\npeers 10.0.1.100 (9), 10.0.1.103 (9), +598\\nfork-parent-kept\""
            ),
            "{out}"
        );
        // fd numbers sit at the head of their own edge.
        assert!(out.contains("\"p4242\" -> \"s0\" [headlabel=\"fds 13-5006\", color=red"));
        // Only the dup()ed copy is blamed, not the original fd.
        assert!(
            out.contains("\"p6000\" -> \"s10\" [headlabel=\"fd 15\", color=red"),
            "{out}"
        );
        assert!(out.contains("\"p6000\" -> \"s10\" [headlabel=\"fd 9\"];"));
        assert!(out.contains("\"p4250\" -> \"s"), "{out}");
        assert!(out.contains("\"p1\" -> \"p4242\" [style=dashed"));
        assert!(out.contains(
            "2 sockets :9000 CLOSE_WAIT\\npeer 10.0.5.5\\nno visible holder\", shape=ellipse, style=dashed"
        ));
        assert!(out.contains("\"p5000\" -> \"s") && out.contains("headlabel=\"fds 20-21\"]"));
        assert!(out.contains("subgraph cluster_legend {"));
        assert!(out.lines().count() < 120, "{out}");
        let braces = out.matches('{').count();
        assert_eq!(braces, out.matches('}').count());
    }

    /// A lone socket is drawn by its addresses and inode: a fork's sockets,
    /// same port, same holders' shape, are told apart.
    #[test]
    fn a_lone_socket_shows_its_addresses_and_inode() {
        let out = dot(&testdata::realistic());
        assert!(
            out.contains(
                "\"s10\" [label=\"10.0.0.2:443 <- 198.51.100.7:55000\\ninode 105005, CLOSE_WAIT\\ndup-copy-kept\""
            ),
            "{out}"
        );
    }

    #[test]
    fn one_cluster_per_network_namespace() {
        let mut r = testdata::realistic();
        let other = 4026532999;
        let last = r.findings.len() - 1;
        r.findings[last].socket.netns = other;
        let out = dot(&r);
        assert!(
            out.contains(&format!("subgraph \"cluster_netns_{other}\" {{")),
            "{out}"
        );
        assert!(out.contains(&format!(
            "subgraph \"cluster_netns_{}\" {{",
            testdata::HOST_NS
        )));
    }

    #[test]
    fn a_recorded_command_line_is_on_the_node() {
        let mut r = testdata::realistic();
        r.processes[1].cmdline = Some("python3 app.py --password=***".into());
        let out = dot(&r);
        assert!(
            out.contains("python3 app.py --password=***\\nblamed\""),
            "{out}"
        );
        assert!(out.contains("tooltip=\"python3 app.py --password=***\""));
    }

    #[test]
    fn empty_report_is_a_valid_graph() {
        let out = dot(&testdata::clean());
        assert!(out.starts_with("digraph cwleak {\n") && out.ends_with("}\n"));
    }
}
