#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `scan --format dot` read by Graphviz itself: every recorded fixture's
//! graph parses, and `dot -Tjson` (Graphviz's own reading of it) shows what
//! a person needs: sockets told apart, fd numbers on their own edges, one
//! cluster per network namespace, a legend. Truth about the fixtures comes
//! from their facts.json, recorded when the scenario ran.

#[path = "support/skip.rs"]
mod skip;

use assert_cmd::Command;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

fn have_dot(test: &str) -> bool {
    let ok = std::process::Command::new("dot")
        .arg("-V")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip::skip(
            test,
            "Graphviz `dot` is not installed (apt-get install graphviz)",
        );
    }
    ok
}

fn cwleak_dot(fixture: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(fixture)
        .join("proc");
    let out = Command::cargo_bin("cwleak")
        .unwrap()
        .args(["scan", "--settle", "0", "--format", "dot", "--proc-root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{fixture}: {out:?}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Graphviz's own parse of the graph, laid out, as JSON.
fn graphviz(dot: &str) -> Value {
    let mut child = std::process::Command::new("dot")
        .arg("-Tjson")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dot rejected the graph: {err}\n{dot}");
    assert!(err.trim().is_empty(), "dot warned: {err}\n{dot}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn facts(fixture: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(fixture)
        .join("facts.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn objects(g: &Value) -> &Vec<Value> {
    g["objects"].as_array().unwrap()
}

#[test]
fn every_fixture_graph_parses_in_graphviz() {
    if !have_dot("every_fixture_graph_parses_in_graphviz") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.path().join("proc").is_dir() {
            graphviz(&cwleak_dot(&e.file_name().to_string_lossy()));
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} fixtures");
}

/// A forking server's three leaked sockets: one node each, labelled by the
/// peer address the fixture recorded, each holder's fd on its own edge.
#[test]
fn fork_sockets_are_told_apart_and_fds_sit_on_their_edges() {
    if !have_dot("fork_sockets_are_told_apart_and_fds_sit_on_their_edges") {
        return;
    }
    let g = graphviz(&cwleak_dot("fork-alive"));
    let facts = facts("fork-alive");
    let sockets: Vec<&Value> = objects(&g)
        .iter()
        .filter(|o| o["name"].as_str().is_some_and(|n| n.starts_with('s')))
        .collect();
    let labels: BTreeSet<&str> = sockets
        .iter()
        .map(|o| o["label"].as_str().unwrap())
        .collect();
    let recorded = facts["sockets"].as_array().unwrap();
    assert_eq!(labels.len(), recorded.len(), "{labels:?}");
    for s in recorded {
        let remote = s["remote"].as_str().unwrap();
        let inode = s["inode"].as_u64().unwrap();
        assert!(
            labels
                .iter()
                .any(|l| l.contains(remote) && l.contains(&format!("inode {inode}"))),
            "no node for {remote} inode {inode}: {labels:?}"
        );
    }
    // Every (pid, fd) the fixture recorded is the head label of an edge
    // from that pid's node to a socket node.
    let name_of = |gvid: &Value| -> String {
        objects(&g)
            .iter()
            .find(|o| o["_gvid"] == *gvid)
            .map(|o| o["name"].as_str().unwrap().to_string())
            .unwrap()
    };
    let edges: Vec<(String, String, String)> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                name_of(&e["tail"]),
                name_of(&e["head"]),
                e.get("headlabel")?.as_str()?.to_string(),
            ))
        })
        .collect();
    for s in recorded {
        for h in s["holders"].as_array().unwrap() {
            let want = (format!("p{}", h["pid"]), format!("fd {}", h["fd"]));
            assert!(
                edges
                    .iter()
                    .any(|(t, hd, l)| *t == want.0 && hd.starts_with('s') && *l == want.1),
                "no edge {want:?}: {edges:?}"
            );
        }
    }
    assert!(
        objects(&g).iter().any(|o| o["name"] == "cluster_legend"),
        "no legend"
    );
}

/// A server in its own network namespace: its process and socket in that
/// namespace's cluster, the host's processes in another.
#[test]
fn one_cluster_per_network_namespace() {
    if !have_dot("one_cluster_per_network_namespace") {
        return;
    }
    let g = graphviz(&cwleak_dot("netns"));
    let facts = facts("netns");
    let clusters: Vec<&Value> = objects(&g)
        .iter()
        .filter(|o| {
            o["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("cluster_netns_"))
        })
        .collect();
    let names: BTreeSet<String> = clusters
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = [&facts["netns"], &facts["host_netns"]]
        .iter()
        .map(|n| format!("cluster_netns_{n}"))
        .collect();
    assert_eq!(names, want);
    let ns = clusters
        .iter()
        .find(|c| c["name"] == format!("cluster_netns_{}", facts["netns"]))
        .unwrap();
    let members: Vec<String> = ns["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            objects(&g)
                .iter()
                .find(|o| o["_gvid"] == *id)
                .map(|o| o["name"].as_str().unwrap().to_string())
                .unwrap()
        })
        .collect();
    let server = format!("p{}", facts["server"]["pid"]);
    assert!(members.contains(&server), "{members:?}");
    assert!(members.iter().any(|m| m.starts_with('s')), "{members:?}");
}
