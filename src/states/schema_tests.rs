//! The JSON of `cwleak states` and `cwleak sysctl` against
//! docs/states.schema.json and docs/sysctl.schema.json, with the validator
//! tests/report_schema.rs uses for the scan report: emitted documents match,
//! every nullable field is seen null and set, serde emits exactly the fields
//! each schema lists, and the enums agree with the code.

#[path = "../../tests/support/schema.rs"]
mod schema;

use super::build::{build, Options};
use super::report::{Dimension, StatesReport, StatesScope};
use super::testdata::{tuned, web};
use crate::model::{TcpState, Warning, WarningKind};
use crate::tuning::{Rule, Severity, TuningReport};
use schema::{assert_covered, Validator};
use serde_json::{json, Value};

const STATES: &str = include_str!("../../docs/states.schema.json");
const SYSCTL: &str = include_str!("../../docs/sysctl.schema.json");

fn states_reports() -> Vec<StatesReport> {
    let mut snap = web();
    snap.warnings.push(Warning {
        pid: None,
        path: None,
        kind: WarningKind::NetTable,
        message: "sock_diag in network namespace 1: refused".into(),
    });
    snap.processes[3].netns = None;
    // The pod: read through its file, no process in it, with the kernel's counts.
    snap.namespaces[1].via_pid = None;
    snap.namespaces[1].file = Some("/run/netns/pod".into());
    snap.namespaces[1].kernel = Some(crate::model::KernelCounts {
        inuse: 2,
        orphans: 2,
        tw: 0,
        alloc: 9,
        mem_pages: 3,
    });
    snap.namespaces[1].counters = [("ListenOverflows".to_string(), 4)].into();
    let all = Options {
        scope: StatesScope {
            pids: vec![1],
            with_children: true,
            ports: vec![],
            netns: vec![],
        },
        by: vec![
            Dimension::Process,
            Dimension::Port,
            Dimension::Netns,
            Dimension::Remote,
        ],
        limit: 2,
    };
    let mut watched = build(&snap, &all);
    watched.change = Some(watched.total.change_since(&Default::default()));
    for n in &mut watched.namespaces {
        n.counters_change = Some(crate::states::counter_change(
            &Default::default(),
            &n.counters,
        ));
    }
    watched.scan.from = Some("/tmp/look.json.zst".into());
    let mut bare = web();
    bare.meta.hostname = None;
    bare.meta.kernel = None;
    let none = Options {
        scope: StatesScope::default(),
        by: vec![],
        limit: 5,
    };
    vec![
        build(&web(), &all),
        watched,
        build(&bare, &none),
        build(&Default::default(), &none),
    ]
}

fn sysctl_reports() -> Vec<TuningReport> {
    let mut snap = tuned();
    snap.warnings.push(Warning {
        pid: None,
        path: None,
        kind: WarningKind::Io,
        message: "x".into(),
    });
    let mut bare = tuned();
    bare.meta.hostname = None;
    bare.meta.kernel = None;
    snap.namespaces[1].via_pid = None;
    snap.namespaces[1].file = Some("/run/netns/pod".into());
    let mut loaded = crate::tuning::build(&bare, &[]);
    loaded.scan.from = Some("/tmp/look.json.zst".into());
    let extra = super::testdata::tuned_extra();
    vec![
        crate::tuning::report::build_with(&snap, &[], &extra),
        loaded,
    ]
}

fn check_all<T: serde::Serialize>(file: &str, text: &str, docs: &[T]) {
    let schema: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut v = Validator::new(&schema);
    for d in docs {
        let doc = serde_json::to_value(d).unwrap();
        let errors = v.validate(&doc);
        assert!(
            errors.is_empty(),
            "the JSON output does not match {file}:\n{}",
            errors.join("\n")
        );
    }
    assert_covered(&schema, &v, file);
}

#[test]
fn states_json_matches_its_schema_and_covers_it() {
    check_all("docs/states.schema.json", STATES, &states_reports());
}

#[test]
fn sysctl_json_matches_its_schema_and_covers_it() {
    check_all("docs/sysctl.schema.json", SYSCTL, &sysctl_reports());
}

fn enum_of(v: &Value) -> Vec<Value> {
    v["enum"].as_array().unwrap().clone()
}

#[test]
fn schema_enums_match_the_code() {
    let states: Value = serde_json::from_str(STATES).unwrap();
    let sysctl: Value = serde_json::from_str(SYSCTL).unwrap();
    let names: Vec<Value> = TcpState::ALL.iter().map(|s| json!(s.name())).collect();
    assert_eq!(enum_of(&states["$defs"]["tcp_state"]), names);
    let counted: Vec<Value> = states["$defs"]["StateCounts"]["required"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(counted, names);
    let dims = [
        Dimension::Process,
        Dimension::Port,
        Dimension::Netns,
        Dimension::Remote,
    ];
    let dim_names: Vec<Value> = dims
        .iter()
        .map(|d| serde_json::to_value(d).unwrap())
        .collect();
    assert_eq!(
        enum_of(&states["$defs"]["TopOptions"]["properties"]["by"]["items"]),
        dim_names
    );
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    assert_eq!(
        enum_of(&sysctl["$defs"]["Finding"]["properties"]["rule"]),
        rules
    );
    let sev: Vec<Value> = [Severity::Info, Severity::Warn, Severity::Critical]
        .iter()
        .map(|s| json!(s.name()))
        .collect();
    assert_eq!(
        enum_of(&sysctl["$defs"]["Finding"]["properties"]["severity"]),
        sev
    );
    for s in [Severity::Info, Severity::Warn, Severity::Critical] {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.name()));
    }
}

/// The first ```json block after `heading` in docs/json-schema.md.
fn doc_example(heading: &str) -> Value {
    const DOC: &str = include_str!("../../docs/json-schema.md");
    let at = DOC
        .find(heading)
        .unwrap_or_else(|| panic!("docs/json-schema.md has no {heading:?} section"));
    let start = DOC[at..].find("```json\n").expect("a ```json example") + at + "```json\n".len();
    let len = DOC[start..].find("\n```").expect("the example is closed");
    serde_json::from_str(&DOC[start..start + len])
        .unwrap_or_else(|e| panic!("the {heading:?} example is not valid JSON: {e}"))
}

#[test]
fn the_documented_examples_match_their_schemas() {
    for (heading, text) in [
        ("# `cwleak states --format json`", STATES),
        ("# `cwleak sysctl --format json`", SYSCTL),
    ] {
        let schema: Value = serde_json::from_str(text).unwrap();
        let errors = Validator::new(&schema).validate(&doc_example(heading));
        assert!(errors.is_empty(), "{heading}:\n{}", errors.join("\n"));
    }
    // And they read back into the types the code emits.
    let _: StatesReport =
        serde_json::from_value(doc_example("# `cwleak states --format json`")).unwrap();
    let _: TuningReport =
        serde_json::from_value(doc_example("# `cwleak sysctl --format json`")).unwrap();
}
