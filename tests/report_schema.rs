//! The JSON output against docs/report.schema.json.
//!
//! Reports that use every cause and every nullable field both null and set
//! are rendered with `--format json`'s code and checked against the schema by
//! the small validator below. It knows only the keywords the schema uses and
//! refuses any other, so the schema cannot silently lean on an unchecked one.
//! The test also fails when serde emits a field the schema does not list (or
//! the reverse), when an enum in the code and in the schema differ, and when
//! the example in docs/json-schema.md drifts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cwleak::check::outcome::*;
use cwleak::diagnose::*;
use cwleak::model::{Family, Pid, TcpState, WarningKind};
use cwleak::report::{render, Format, RenderOptions};
use cwleak::trace::{Frame, Origin, Step, TraceInfo};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const SCHEMA: &str = include_str!("../docs/report.schema.json");
const DOC: &str = include_str!("../docs/json-schema.md");

// The validator is shared with the other schema tests.
#[path = "support/schema.rs"]
mod schema;
use schema::*;

// ------------------------------------------------------------------- data

fn holder(pid: Pid, ppid: Pid, comm: &str, fd: i32, cloexec: Option<bool>) -> Holder {
    Holder {
        pid,
        ppid,
        comm: comm.into(),
        fd,
        cloexec,
        tid: None,
        origin: None,
    }
}

fn socket(inode: u64, local: &str, remote: &str, close_wait_ms: Option<u64>) -> SocketInfo {
    let local: std::net::SocketAddr = local.parse().unwrap();
    SocketInfo {
        inode,
        netns: 4_026_531_840,
        family: if local.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        },
        local,
        remote: remote.parse().unwrap(),
        state: TcpState::CloseWait,
        recv_q: 17,
        send_q: 0,
        close_wait_ms,
    }
}

fn finding(
    socket: SocketInfo,
    holders: Vec<Holder>,
    blamed: &[(Pid, i32)],
    cause: Cause,
) -> Finding {
    Finding {
        socket,
        holders,
        blamed: blamed
            .iter()
            .map(|&(pid, fd)| Blame { pid, fd, tid: None })
            .collect(),
        cause,
        // One finding with an alternative, so the schema checks its shape.
        alternatives: if cause == Cause::ForkParentKept {
            vec![Alternative {
                cause: Cause::NeverClosed,
                why: "if it never handed it to a child".into(),
            }]
        } else {
            Vec::new()
        },
        evidence: vec![format!("evidence for {}", cause.name()).into()],
        fix: format!("fix for {}", cause.name()).into(),
        mitigation: format!("mitigation for {}", cause.name()).as_str().into(),
        allowed: None,
        basis: Default::default(),
    }
}

fn process(pid: Pid, ppid: Pid, comm: &str, known: bool) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid,
        comm: comm.into(),
        exe: known.then(|| format!("/usr/bin/{comm}")),
        cmdline: known.then(|| format!("{comm} --serve --token=***")),
        uid: 1000,
        cgroup: known.then(|| "/system.slice/api.service".into()),
        netns: known.then_some(4_026_531_840),
        ns_pid: known.then_some(7),
        execd: known.then_some(true),
        threads: 4,
        fd_count: 5010,
        fd_limit: known.then_some(65_536),
        close_wait_held: 1,
        close_wait_blamed: 1,
    }
}

/// Every cause, every nullable field both null and set (but Host's: see
/// `sparse`), IPv4 and IPv6 addresses.
fn full() -> Report {
    let mut findings = vec![
        finding(
            socket(1001, "10.0.0.2:8080", "10.0.1.9:40000", Some(750_000)),
            vec![
                holder(4242, 1, "python3", 7, Some(false)),
                holder(4250, 4242, "python3", 4, None),
            ],
            &[(4242, 7)],
            Cause::ForkParentKept,
        ),
        finding(
            socket(1002, "[::1]:3000", "[::1]:50000", None),
            vec![
                holder(5000, 1, "node", 20, Some(false)),
                holder(5100, 5000, "sleep", 20, Some(false)),
            ],
            &[(5100, 20)],
            Cause::InheritedNoCloexec,
        ),
        finding(
            socket(1003, "10.0.0.2:41000", "10.0.9.9:5432", Some(1_000)),
            vec![holder(3100, 1, "java", 40, Some(true))],
            &[(3100, 40)],
            Cause::NeverClosed,
        ),
        finding(
            socket(1004, "10.0.0.2:443", "198.51.100.7:55000", Some(2_000)),
            vec![
                holder(6000, 1, "haproxy", 9, Some(true)),
                holder(6000, 1, "haproxy", 15, Some(true)),
            ],
            &[(6000, 15)],
            Cause::DupCopyKept,
        ),
        finding(
            socket(1005, "[fe80::1%2]:9901", "[fe80::2%2]:60000", Some(3_000)),
            vec![holder(7000, 6990, "envoy", 33, None)],
            &[(7000, 33)],
            Cause::PassedFdKept,
        ),
        finding(
            socket(1006, "10.0.0.2:9000", "10.0.5.5:40000", None),
            vec![],
            &[],
            Cause::NoVisibleHolder,
        ),
    ];
    // The java socket is held in a thread's own fd table (unshare(CLONE_FILES)).
    findings[2].holders[0].tid = Some(3107);
    findings[2].blamed[0].tid = Some(3107);
    let groups = findings
        .iter()
        .enumerate()
        .map(|(i, f)| Group {
            pid: f.blamed.first().map(|b| b.pid),
            comm: f
                .blamed
                .first()
                .and_then(|b| f.holders.iter().find(|h| h.pid == b.pid))
                .map(|h| h.comm.to_string()),
            cause: f.cause,
            alternatives: f.alternatives.clone(),
            sockets: 1,
            fds: f.blamed.iter().map(|b| b.fd).collect(),
            local_ports: vec![(f.socket.local.port(), 1)],
            oldest_close_wait_ms: f.socket.close_wait_ms,
            unread_bytes: u64::from(f.socket.recv_q),
            evidence: f.evidence.clone(),
            fix: f.fix.clone(),
            mitigation: f.mitigation_text().as_str().into(),
            findings: vec![i],
        })
        .collect();
    let by_cause: BTreeMap<Cause, usize> = Cause::ALL.into_iter().map(|c| (c, 1)).collect();
    let by_state: BTreeMap<TcpState, usize> = TcpState::ALL
        .into_iter()
        .map(|s| (s, s.kernel_number() as usize))
        .collect();
    Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "cwleak".into(),
            version: "0.1.0".into(),
        },
        host: Host {
            hostname: Some("web-1".into()),
            kernel: Some("6.8.0-45-generic".into()),
            taken_at_ms: 1_700_000_000_123,
        },
        summary: Summary {
            leaked: findings.len(),
            transient: 4,
            still_sending: 2,
            processes_blamed: 5,
            by_cause,
            by_state,
        },
        groups,
        findings,
        processes: vec![
            process(1, 0, "systemd", true),
            process(4242, 1, "python3", true),
            process(4250, 4242, "python3", false),
            process(5000, 1, "node", true),
            process(5100, 5000, "sleep", true),
            process(3100, 1, "java", true),
            process(6000, 1, "haproxy", true),
            process(6990, 1, "containerd-shim", true),
            process(7000, 6990, "envoy", false),
        ],
        scan: ScanInfo {
            proc_root: "/proc".into(),
            live: true,
            processes: 812,
            fds: 40_210,
            socket_fds: 5_300,
            tcp_sockets: 6_100,
            states_read: TcpState::ALL.to_vec(),
            namespaces: vec![
                NamespaceInfo {
                    inode: 4_026_531_840,
                    via_pid: Some(1),
                    method: "sock_diag".into(),
                    sockets: 6000,
                },
                NamespaceInfo {
                    inode: 4_026_532_500,
                    via_pid: None,
                    method: "proc".into(),
                    sockets: 100,
                },
            ],
            duration_ms: 231,
            settle_ms: 1000,
            scope: cwleak::diagnose::Scope::everything(),
            unreadable: vec![
                Unreadable {
                    pid: Some(77),
                    path: Some("/proc/77/fd".into()),
                    kind: WarningKind::PermissionDenied,
                    message: "permission denied".into(),
                },
                Unreadable {
                    pid: Some(78),
                    path: None,
                    kind: WarningKind::Vanished,
                    message: "exited".into(),
                },
                Unreadable {
                    pid: None,
                    path: Some("/proc/net/tcp6".into()),
                    kind: WarningKind::NetTable,
                    message: "no such file".into(),
                },
                Unreadable {
                    pid: None,
                    path: Some("/proc".into()),
                    kind: WarningKind::Incomplete,
                    message: "this /proc hides other users' processes".into(),
                },
            ],
            incomplete: vec!["this /proc hides other users' processes".into()],
        },
        check: None,
        trace: None,
    }
}

/// Nothing leaked, host unknown: the other side of Host's nullable fields.
fn sparse() -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "cwleak".into(),
            version: "0.1.0".into(),
        },
        host: Host {
            hostname: None,
            kernel: None,
            taken_at_ms: 0,
        },
        summary: Summary::default(),
        groups: vec![],
        findings: vec![],
        processes: vec![],
        scan: ScanInfo {
            proc_root: "/tmp/snapshot/proc".into(),
            states_read: vec![TcpState::CloseWait, TcpState::Listen],
            ..ScanInfo::default()
        },
        check: None,
        trace: None,
    }
}

/// `cwleak check --report` around a command, with --during, allow rules
/// and an exited root: every check field set (nullable ones non-null).
fn checked() -> Report {
    let mut r = full();
    r.findings[3].allowed = Some("cause dup-copy-kept (/repo/cwleak.toml: known)".into());
    // --trace: one holder's copy seen made (dup, then fork).
    r.findings[0].basis = origin::Basis::Traced;
    r.findings[0].holders[0].origin = Some(Box::new(traced_origin()));
    let mut dup = traced_origin();
    std::mem::swap(&mut dup.step, &mut dup.earlier[0]);
    dup.earlier[0].from_fd = None;
    r.findings[3].holders[1].origin = Some(Box::new(dup));
    r.trace = Some(TraceInfo {
        active: true,
        unavailable: None,
        events: 27,
        dropped_events: 1,
        untracked_processes: 0,
        truncated_stacks: 0,
        untracked_passes: 0,
    });
    r.scan.scope = Scope {
        pids: vec![4242],
        with_children: true,
        ports: vec![],
        netns: vec![4_026_531_840],
        cgroups: vec!["/system.slice/api.service".into()],
        local_ports: vec![8080],
    };
    let growth = Growth {
        pid: Some(4242),
        comm: Some("python3".into()),
        causes: vec![Cause::ForkParentKept],
        first_seen_ms: 1200,
        peak: 3,
        peak_at_ms: 4500,
        last: 3,
        series: vec![(1200, 1), (2400, 2), (4500, 3)],
    };
    r.check = Some(CheckInfo {
        passed: false,
        exit_code: 1,
        failures: vec![
            "5 persistent CLOSE_WAIT sockets in scope, more than the 0 allowed (--max)".into(),
        ],
        error: Some("nothing left to check".into()),
        counted: 5,
        allowed: 1,
        max: 0,
        max_per_process: Some(2),
        allow: vec![AllowRule {
            cause: Some(Cause::DupCopyKept),
            port: Some(443),
            reason: Some("known".into()),
            source: "/repo/cwleak.toml".into(),
            matched: 1,
        }],
        config_file: Some("/repo/cwleak.toml".into()),
        blamed: vec![BlamedProcess {
            pid: Some(4242),
            comm: Some("python3".into()),
            causes: vec![Cause::ForkParentKept],
            counted: 1,
            allowed: 0,
            failed: true,
        }],
        roots: vec![Root {
            pid: 4242,
            from: "--pidfile /run/api.pid".into(),
            comm: Some("python3".into()),
            running: false,
            exited_at_ms: Some(1_700_000_000_000),
        }],
        command: Some(CommandRun {
            argv: vec!["pytest".into(), "-x".into()],
            exit_code: Some(0),
            signal: Some(9),
            started_at_ms: 1_699_999_990_000,
            duration_ms: 9_000,
        }),
        during: Some(During {
            interval_ms: 1000,
            samples: 9,
            failed_samples: 1,
            last_error: Some("scanning /proc: ...".into()),
            peak: 3,
            peak_at_ms: 4500,
            last: 3,
            series: vec![(0, 0), (1200, 1), (2400, 2), (4500, 3)],
            processes: vec![growth],
        }),
    });
    r
}

/// A killed command, a clean --during: the nested nullable fields null.
/// A copy made by dup() in the parent and handed down by fork(): frames
/// with every field set, and one with nothing known but its address.
fn traced_origin() -> Origin {
    let frames = vec![
        Frame {
            function: None,
            file: None,
            line: None,
            module: None,
            address: 0x7f00_0000_1000,
        },
        Frame {
            function: Some("serve".into()),
            file: Some("/src/server.c".into()),
            line: Some(88),
            module: Some("/srv/server".into()),
            address: 0x5600_0000_2000,
        },
    ];
    let dup = Step {
        event: "dup".into(),
        pid: 4242,
        tid: 4243,
        fd: 7,
        from_fd: Some(3),
        from_pid: None,
        at_ms: 1_700_000_000_000,
        stack: frames.clone(),
    };
    Origin {
        step: Step {
            event: "fork".into(),
            from_fd: None,
            from_pid: Some(4241),
            at_ms: 1_700_000_000_004,
            ..dup.clone()
        },
        earlier: vec![dup],
    }
}

fn checked_nulls() -> Report {
    let mut r = checked();
    r.trace = Some(TraceInfo {
        unavailable: Some("no kernel BTF (/sys/kernel/btf/vmlinux: No such file)".into()),
        ..TraceInfo::default()
    });
    if let Some(c) = r.check.as_mut() {
        if let Some(cmd) = c.command.as_mut() {
            cmd.exit_code = None;
            cmd.signal = None;
        }
        if let Some(d) = c.during.as_mut() {
            d.last_error = None;
            d.processes = vec![Growth::default()];
        }
    }
    r
}

/// The other side of every nullable check field.
fn checked_sparse() -> Report {
    let mut r = sparse();
    r.check = Some(CheckInfo {
        passed: true,
        exit_code: 0,
        failures: vec![],
        error: None,
        counted: 0,
        allowed: 0,
        max: 0,
        max_per_process: None,
        allow: vec![AllowRule {
            cause: None,
            port: None,
            reason: None,
            source: "command line".into(),
            matched: 0,
        }],
        config_file: None,
        blamed: vec![BlamedProcess {
            pid: None,
            comm: None,
            causes: vec![Cause::NoVisibleHolder],
            counted: 0,
            allowed: 1,
            failed: false,
        }],
        roots: vec![Root {
            pid: 7,
            from: "--pid".into(),
            comm: None,
            running: true,
            exited_at_ms: None,
        }],
        command: None,
        during: None,
    });
    r
}

fn emitted(report: &Report) -> Value {
    let mut buf = Vec::new();
    render(
        report,
        Format::Json,
        &RenderOptions {
            color: false,
            width: 80,
            pretty: true,
            ..RenderOptions::default()
        },
        &mut buf,
    )
    .unwrap();
    serde_json::from_slice(&buf).unwrap()
}

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("docs/report.schema.json is not valid JSON")
}

/// The first ```json block of docs/json-schema.md.
fn doc_example() -> Value {
    let start = DOC
        .find("```json\n")
        .expect("docs/json-schema.md has a ```json example")
        + "```json\n".len();
    let len = DOC[start..]
        .find("\n```")
        .expect("the ```json example is closed");
    serde_json::from_str(&DOC[start..start + len])
        .expect("the example in docs/json-schema.md is valid JSON")
}

// ------------------------------------------------------------------ tests

#[test]
fn emitted_reports_match_the_schema_and_cover_it() {
    let schema = schema();
    let mut v = Validator::new(&schema);
    for report in [
        full(),
        sparse(),
        checked(),
        checked_sparse(),
        checked_nulls(),
    ] {
        let doc = emitted(&report);
        let errors = v.validate(&doc);
        assert!(
            errors.is_empty(),
            "the JSON output does not match docs/report.schema.json:\n{}",
            errors.join("\n")
        );
    }

    // Every nullable field seen null and set; what serde emits for each
    // object is exactly what the schema lists, all required, nothing more.
    assert_covered(&schema, &v, "docs/report.schema.json");
}

#[test]
fn schema_enums_match_the_code() {
    let schema = schema();
    let defs = &schema["$defs"];
    let names = |v: &Value| -> Vec<String> {
        v["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().into())
            .collect()
    };
    let causes: Vec<String> = Cause::ALL.iter().map(|c| c.name().to_string()).collect();
    assert_eq!(names(&defs["cause"]), causes);
    let states: Vec<String> = TcpState::ALL.iter().map(|s| s.name().to_string()).collect();
    assert_eq!(names(&defs["tcp_state"]), states);
    for c in Cause::ALL {
        assert_eq!(serde_json::to_value(c).unwrap(), json!(c.name()));
    }
    for s in TcpState::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.name()));
    }
    // Exhaustive: a new WarningKind fails to compile here until it is added.
    let kind_name = |k: WarningKind| match k {
        WarningKind::PermissionDenied => "permission-denied",
        WarningKind::Vanished => "vanished",
        WarningKind::Malformed => "malformed",
        WarningKind::NetTable => "net-table",
        WarningKind::Io => "io",
        WarningKind::TimedOut => "timed-out",
        WarningKind::Incomplete => "incomplete",
    };
    let kinds = [
        WarningKind::PermissionDenied,
        WarningKind::Vanished,
        WarningKind::Malformed,
        WarningKind::NetTable,
        WarningKind::Io,
        WarningKind::TimedOut,
        WarningKind::Incomplete,
    ];
    for k in kinds {
        assert_eq!(serde_json::to_value(k).unwrap(), json!(kind_name(k)));
    }
    let kinds: Vec<String> = kinds.iter().map(|&k| kind_name(k).to_string()).collect();
    assert_eq!(names(&defs["warning_kind"]), kinds);
    assert_eq!(
        schema["properties"]["schema_version"]["const"],
        json!(SCHEMA_VERSION)
    );
    let families: Vec<Value> = [Family::Ipv4, Family::Ipv6]
        .iter()
        .map(|f| serde_json::to_value(f).unwrap())
        .collect();
    assert_eq!(
        defs["SocketInfo"]["properties"]["family"]["enum"],
        json!(families)
    );
}

#[test]
fn serde_shapes_the_schema_relies_on() {
    let doc = emitted(&full());
    assert_eq!(doc["groups"][0]["local_ports"], json!([[8080, 1]]));
    assert_eq!(doc["summary"]["by_cause"]["passed-fd-kept"], json!(1));
    assert_eq!(doc["summary"]["by_state"]["CLOSE_WAIT"], json!(8));
    assert_eq!(
        doc["findings"][0]["socket"]["local"],
        json!("10.0.0.2:8080")
    );
    assert_eq!(doc["findings"][1]["socket"]["local"], json!("[::1]:3000"));
    assert_eq!(
        doc["findings"][4]["socket"]["local"],
        json!("[fe80::1%2]:9901")
    );
    assert_eq!(doc["groups"][5]["pid"], Value::Null);
    let back: Report = serde_json::from_value(doc).unwrap();
    assert_eq!(back, full());
}

#[test]
fn the_schema_rejects_what_serde_never_emits() {
    let schema = schema();
    let good = emitted(&full());
    type Breakage = Box<dyn Fn(&mut Value)>;
    let breakages: Vec<(&str, Breakage)> = vec![
        (
            "an unknown field",
            Box::new(|d| d["groups"][0]["extra"] = json!(1)),
        ),
        (
            "a missing field",
            Box::new(|d| drop(d["findings"][0].as_object_mut().unwrap().remove("fix"))),
        ),
        (
            "an unknown cause",
            Box::new(|d| d["findings"][0]["cause"] = json!("leaky")),
        ),
        (
            "an unknown state key",
            Box::new(|d| d["summary"]["by_state"]["BOGUS"] = json!(1)),
        ),
        (
            "an unknown cause key",
            Box::new(|d| d["summary"]["by_cause"]["leaky"] = json!(1)),
        ),
        (
            "a port triple",
            Box::new(|d| d["groups"][0]["local_ports"] = json!([[8080, 1, 2]])),
        ),
        (
            "a port out of range",
            Box::new(|d| d["groups"][0]["local_ports"] = json!([[70000, 1]])),
        ),
        (
            "another schema version",
            Box::new(|d| d["schema_version"] = json!(2)),
        ),
        (
            "a negative count",
            Box::new(|d| d["summary"]["leaked"] = json!(-1)),
        ),
        (
            "a string pid",
            Box::new(|d| d["processes"][0]["pid"] = json!("1")),
        ),
        (
            "a null that is not nullable",
            Box::new(|d| d["findings"][0]["socket"]["inode"] = Value::Null),
        ),
        (
            "a float",
            Box::new(|d| d["scan"]["duration_ms"] = json!(1.5)),
        ),
    ];
    for (what, breaks) in breakages {
        let mut doc = good.clone();
        breaks(&mut doc);
        assert!(
            !Validator::new(&schema).validate(&doc).is_empty(),
            "the schema accepts {what}"
        );
    }
}

#[test]
fn the_documented_example_is_valid() {
    let schema = schema();
    let example = doc_example();
    let errors = Validator::new(&schema).validate(&example);
    assert!(
        errors.is_empty(),
        "the example in docs/json-schema.md does not match the schema:\n{}",
        errors.join("\n")
    );
    let report: Report =
        serde_json::from_value(example.clone()).expect("the example deserialises into a Report");
    assert_eq!(
        emitted(&report),
        example,
        "the example is not what cwleak would print for it"
    );
}

#[test]
fn the_doc_describes_every_field() {
    let schema = schema();
    let (mut nullable, mut objects) = (BTreeSet::new(), BTreeSet::new());
    schema_locations(&schema, "#", &mut nullable, &mut objects);
    let v = Validator::new(&schema);
    for loc in &objects {
        let node = if loc == "#" { &schema } else { v.resolve(loc) };
        for field in node["properties"].as_object().unwrap().keys() {
            assert!(
                DOC.contains(&format!("`{field}`")),
                "docs/json-schema.md does not describe `{field}` ({loc})"
            );
        }
    }
}
