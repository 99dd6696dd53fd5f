use super::*;
use crate::states::testdata::{tuned, tuned_extra, HOST, POD};
use crate::tuning::finding::Rule;
use crate::tuning::report::{build, build_with};

fn text_of(r: &TuningReport) -> String {
    let mut buf = Vec::new();
    text(r, &RenderOptions::default(), &mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn every_rule_speaks_on_the_tuned_host() {
    let r = build_with(&tuned(), &[], &tuned_extra());
    let mut rules: Vec<Rule> = r.findings.iter().map(|f| f.rule).collect();
    rules.sort();
    rules.dedup();
    assert_eq!(rules, Rule::ALL.to_vec(), "{:#?}", r.findings);
    assert_eq!(r.findings[0].severity, Severity::Critical);
    assert_eq!(
        r.summary.critical + r.summary.warn + r.summary.info,
        r.findings.len()
    );
    let ns: Vec<u64> = r.namespaces.iter().map(|n| n.netns).collect();
    assert_eq!(ns, vec![HOST, POD], "own namespace first");
}

#[test]
fn text_puts_findings_first_then_settings_beside_counts() {
    let t = text_of(&build(&tuned(), &[]));
    assert!(t.starts_with("cwleak sysctl: "), "{t}");
    let first_critical = t.find("\nCRITICAL ").unwrap();
    let first_info = t.find("\nINFO ").unwrap();
    let table = t.find("Settings beside the live counts:").unwrap();
    assert!(first_critical < first_info && first_info < table, "{t}");
    assert!(
        t.contains("  setting   net.ipv4.tcp_tw_recycle = 1\n"),
        "{t}"
    );
    assert!(t.contains("90% of the limit"), "{t}");
    assert!(
        t.contains("tcp_max_tw_buckets     100           TIME_WAIT 90 (90%)"),
        "{t}"
    );
    assert!(t.contains("  netns     host-wide\n"), "{t}");
    for l in t.lines() {
        assert!(l.chars().count() <= 80, "too wide: {l:?}");
    }
}

#[test]
fn no_findings_says_so() {
    let mut snap = tuned();
    snap.sockets.clear();
    snap.namespaces.truncate(1);
    snap.namespaces[0].sysctls.remove("net.ipv4.tcp_tw_recycle");
    snap.namespaces[0]
        .sysctls
        .remove("net.ipv4.tcp_fin_timeout");
    snap.namespaces[0].sysctls.remove("net.ipv4.tcp_tw_reuse");
    snap.namespaces[0].kernel = None;
    let r = build(&snap, &[]);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert!(text_of(&r).starts_with("cwleak sysctl: no findings in 1 network namespace"));
}

#[test]
fn json_round_trips() {
    let r = build(&tuned(), &[POD]);
    assert_eq!(r.namespaces.len(), 1);
    let mut buf = Vec::new();
    json(&r, &mut buf).unwrap();
    let back: TuningReport = serde_json::from_slice(&buf).unwrap();
    assert_eq!(back, r);
}
