//! Every rule on hand-set settings and counts: where it starts, where it
//! turns critical, where it stays silent, and that it says what is true.

use super::*;
use crate::model::TcpState;
use crate::tuning::finding::{Rule, Value};
use crate::tuning::observe::{Destination, Listener, Observed};
use crate::tuning::settings::*;
use std::collections::BTreeMap;

const NS: u64 = 4_026_532_001;

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn observed(states: &[(TcpState, u64)]) -> Observed {
    let mut o = Observed {
        netns: NS,
        ..Observed::default()
    };
    for &(s, n) in states {
        o.states.add_n(s, n);
    }
    o
}

fn ns<'a>(raw: &'a BTreeMap<String, String>, o: &'a Observed) -> Namespace<'a> {
    Namespace {
        netns: o.netns,
        settings: Settings::new(raw),
        observed: o,
        listener_holders: &[],
    }
}

fn rules_of(findings: &[Finding]) -> Vec<(Rule, Severity)> {
    findings.iter().map(|f| (f.rule, f.severity)).collect()
}

fn observed_value<'a>(f: &'a Finding, name: &str) -> &'a Value {
    &f.observed
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no {name} in {f:#?}"))
        .value
}

#[test]
fn time_wait_buckets_warns_from_80_percent_and_never_turns_critical() {
    let raw = settings(&[(MAX_TW_BUCKETS, "1000")]);
    let quiet = observed(&[(TcpState::TimeWait, 799)]);
    assert!(limits::time_wait_buckets(&ns(&raw, &quiet)).is_none());
    let near = observed(&[(TcpState::TimeWait, 800)]);
    let f = limits::time_wait_buckets(&ns(&raw, &near)).unwrap();
    assert_eq!(
        (f.rule, f.severity),
        (Rule::TimeWaitBuckets, Severity::Warn)
    );
    assert_eq!(f.setting.as_deref(), Some(MAX_TW_BUCKETS));
    assert_eq!(f.netns, Some(NS));
    assert_eq!(observed_value(&f, "TIME_WAIT"), &Value::Int(800));
    assert_eq!(observed_value(&f, "percent"), &Value::Int(80));
    assert!(f.reason.contains("60 s"), "{}", f.reason);
    assert!(f.action.contains("tcp_fin_timeout does not shorten"));
    // At the limit the kernel skips TIME_WAIT: a lost protection, not an outage.
    let full = observed(&[(TcpState::TimeWait, 1000)]);
    let f = limits::time_wait_buckets(&ns(&raw, &full)).unwrap();
    assert_eq!(f.severity, Severity::Warn);
    assert!(
        f.title.contains("at the tcp_max_tw_buckets limit"),
        "{}",
        f.title
    );
    // Unknown limit: silent.
    assert!(limits::time_wait_buckets(&ns(&BTreeMap::new(), &full)).is_none());
}

fn destination(sockets: u64, time_wait: u64, remote: &str) -> Destination {
    Destination {
        local_ip: "10.0.0.1".parse().unwrap(),
        remote: remote.parse().unwrap(),
        sockets,
        time_wait,
    }
}

#[test]
fn local_port_range_counts_one_destination_against_the_range() {
    let raw = settings(&[(PORT_RANGE, "40000 40019"), (TW_REUSE, "2")]);
    let mut o = observed(&[]);
    o.busiest = Some(destination(15, 0, "10.0.0.9:5432"));
    assert!(limits::local_port_range(&ns(&raw, &o)).is_none());
    o.busiest = Some(destination(16, 10, "10.0.0.9:5432"));
    let f = limits::local_port_range(&ns(&raw, &o)).unwrap();
    assert_eq!((f.rule, f.severity), (Rule::LocalPortRange, Severity::Warn));
    assert_eq!(observed_value(&f, "ports in range"), &Value::Int(20));
    assert_eq!(
        observed_value(&f, "destination"),
        &Value::Text("10.0.0.9:5432".into())
    );
    assert!(f.reason.contains("EADDRNOTAVAIL"));
    // Not loopback: tcp_tw_reuse=2 does not help these TIME_WAIT ports.
    assert!(f.reason.contains("covers loopback only"), "{}", f.reason);
    // Every port taken, half by TIME_WAIT to loopback: tcp_tw_reuse=2 with
    // timestamps lets connect() take those over, so the range is not out.
    o.busiest = Some(destination(20, 10, "127.0.0.1:5432"));
    let f = limits::local_port_range(&ns(&raw, &o)).unwrap();
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(observed_value(&f, "ports not reusable"), &Value::Int(10));
    assert!(
        f.reason.contains("covers this loopback destination"),
        "{}",
        f.reason
    );
    assert!(f.reason.contains("Reuse applies here"), "{}", f.reason);
    assert!(f.reason.contains("cannot see failed"), "{}", f.reason);
    // ... and a moving TWRecycled proves it.
    o.moved = Some([("TWRecycled".to_string(), 7)].into());
    let f = limits::local_port_range(&ns(&raw, &o)).unwrap();
    assert!(f.reason.contains("TWRecycled moved by 7"), "{}", f.reason);
    o.moved = None;
    // Timestamps off: no reuse, the range is out.
    let raw = settings(&[
        (PORT_RANGE, "40000 40019"),
        (TW_REUSE, "2"),
        (TIMESTAMPS, "0"),
    ]);
    assert_eq!(
        limits::local_port_range(&ns(&raw, &o)).unwrap().severity,
        Severity::Critical
    );
    let raw = settings(&[(PORT_RANGE, "40000 40019"), (TW_REUSE, "0")]);
    let f = limits::local_port_range(&ns(&raw, &o)).unwrap();
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.reason.contains("tcp_tw_reuse=0"), "{}", f.reason);
    // The action never pastes a value.
    assert!(!f.action.contains("40000"), "{}", f.action);
}

fn listener(addr: &str, accept_queue: u64, backlog: u64, syn_recv: u64) -> Listener {
    Listener {
        local: addr.parse().unwrap(),
        accept_queue,
        backlog,
        syn_recv,
    }
}

#[test]
fn syn_backlog_depends_on_syncookies() {
    let mut o = observed(&[(TcpState::SynRecv, 90)]);
    o.listeners = vec![listener("0.0.0.0:80", 0, 100, 90)];
    let cookies = settings(&[(SYNCOOKIES, "1"), (SOMAXCONN, "4096")]);
    let f = limits::syn_backlog(&ns(&cookies, &o));
    assert_eq!(rules_of(&f), vec![(Rule::SynBacklog, Severity::Warn)]);
    assert!(f[0].reason.contains("SYN cookies"), "{}", f[0].reason);
    assert_eq!(f[0].setting.as_deref(), Some(SOMAXCONN));
    // A full queue with cookies still completes connections: warn only.
    o.listeners = vec![listener("0.0.0.0:80", 0, 100, 150)];
    assert_eq!(
        limits::syn_backlog(&ns(&cookies, &o))[0].severity,
        Severity::Warn
    );
    // Without cookies a full queue drops SYNs.
    let none = settings(&[(SYNCOOKIES, "0"), (MAX_SYN_BACKLOG, "4096")]);
    let f = limits::syn_backlog(&ns(&none, &o));
    assert_eq!(f[0].severity, Severity::Critical);
    assert_eq!(f[0].setting.as_deref(), Some(MAX_SYN_BACKLOG));
    // ... and from 3/4 of tcp_max_syn_backlog, even with a big listener backlog.
    o.listeners = vec![listener("0.0.0.0:80", 0, 4096, 100)];
    let small = settings(&[(SYNCOOKIES, "0"), (MAX_SYN_BACKLOG, "128")]);
    let f = limits::syn_backlog(&ns(&small, &o));
    assert_eq!(rules_of(&f), vec![(Rule::SynBacklog, Severity::Critical)]);
    // Quiet listeners say nothing; two listeners of one port are one finding.
    o.listeners = vec![
        listener("0.0.0.0:80", 0, 100, 85),
        listener("[::]:80", 0, 100, 85),
        listener("0.0.0.0:22", 0, 100, 0),
    ];
    let f = limits::syn_backlog(&ns(&cookies, &o));
    assert!(f.is_empty(), "85 of 200 is below 80%: {f:#?}");
}

#[test]
fn accept_queue_names_the_holder() {
    let raw = settings(&[(SOMAXCONN, "128")]);
    let mut o = observed(&[(TcpState::Listen, 1)]);
    o.listeners = vec![listener("0.0.0.0:8080", 128, 128, 0)];
    let holders = [("0.0.0.0:8080".parse().unwrap(), 4242, "java".to_string())];
    let n = Namespace {
        listener_holders: &holders,
        ..ns(&raw, &o)
    };
    let f = limits::accept_queue(&n);
    assert_eq!(rules_of(&f), vec![(Rule::AcceptQueue, Severity::Critical)]);
    assert!(f[0].action.contains("pid 4242 (java)"), "{}", f[0].action);
    assert!(f[0]
        .reason
        .contains("caps whatever the application asked for"));
    // Unknown backlog (tables from /proc): nothing to compare with.
    o.listeners = vec![listener("0.0.0.0:8080", 128, 0, 0)];
    assert!(limits::accept_queue(&ns(&raw, &o)).is_empty());
    o.listeners = vec![listener("0.0.0.0:8080", 79, 100, 0)];
    assert!(limits::accept_queue(&ns(&raw, &o)).is_empty());
}

#[test]
fn orphans_are_host_wide_and_warn_from_half() {
    let host = settings(&[(MAX_ORPHANS, "100")]);
    let child = settings(&[]);
    let mut a = observed(&[]);
    a.orphans = 30;
    let mut b = observed(&[]);
    b.netns = NS + 1;
    b.orphans = 20;
    let both = [ns(&host, &a), ns(&child, &b)];
    let f = limits::orphans(&both).unwrap();
    assert_eq!(
        (f.rule, f.severity, f.netns),
        (Rule::Orphans, Severity::Warn, None)
    );
    assert_eq!(observed_value(&f, "orphans"), &Value::Int(50));
    assert!(f.reason.contains("counts double"));
    assert!(f.reason.contains("tcp_mem[2]") && f.reason.contains("tcp_wmem[2]"));
    b.orphans = 70;
    let both = [ns(&host, &a), ns(&child, &b)];
    assert_eq!(limits::orphans(&both).unwrap().severity, Severity::Critical);
    b.orphans = 19;
    let both = [ns(&host, &a), ns(&child, &b)];
    assert!(limits::orphans(&both).is_none());
    // Only the initial namespace shows the limit: without it, silence.
    assert!(limits::orphans(&[ns(&child, &b)]).is_none());
    // The kernel's own count (host-wide) wins over the tables read.
    a.kernel = Some(crate::model::KernelCounts {
        orphans: 90,
        ..Default::default()
    });
    let both = [ns(&host, &a), ns(&child, &b)];
    let f = limits::orphans(&both).unwrap();
    assert_eq!(f.severity, Severity::Warn);
    assert_eq!(observed_value(&f, "orphans"), &Value::Int(90));
    assert_eq!(
        observed_value(&f, "orphans in the tables read"),
        &Value::Int(49)
    );
}

#[test]
fn time_wait_buckets_count_fin_wait2_handed_to_timewait() {
    let raw = settings(&[(MAX_TW_BUCKETS, "100")]);
    let mut o = observed(&[(TcpState::TimeWait, 70), (TcpState::FinWait2, 15)]);
    o.tw_buckets = 85;
    o.fin_wait2_timewait = 15;
    let f = limits::time_wait_buckets(&ns(&raw, &o)).unwrap();
    assert_eq!(observed_value(&f, "timewait sockets"), &Value::Int(85));
    assert_eq!(
        observed_value(&f, "FIN_WAIT2 handed to timewait"),
        &Value::Int(15)
    );
}

#[test]
fn moving_counters_are_overflows_happening() {
    let raw = settings(&[]);
    let mut o = observed(&[]);
    o.counters = [
        ("ListenOverflows".to_string(), 40),
        ("TCPTimeWaitOverflow".to_string(), 9),
    ]
    .into();
    // Read once: totals since boot are no finding.
    assert!(counters::moving(&ns(&raw, &o)).is_empty());
    o.moved = Some(
        [
            ("ListenOverflows".to_string(), 12),
            ("TCPTimeWaitOverflow".to_string(), 0),
        ]
        .into(),
    );
    o.window_ms = 1000;
    let f = counters::moving(&ns(&raw, &o));
    assert_eq!(
        rules_of(&f),
        vec![(Rule::ListenOverflow, Severity::Critical)]
    );
    assert!(
        f[0].title.starts_with("ListenOverflows +12 in 1.0 s"),
        "{}",
        f[0].title
    );
    assert!(f[0].reason.contains("SYN_SENT"), "{}", f[0].reason);
}

#[test]
fn tw_recycle_is_critical_when_on() {
    let o = observed(&[]);
    let on = settings(&[(TW_RECYCLE, "1")]);
    let f = facts::tw_recycle(&ns(&on, &o)).unwrap();
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.reason.contains("NAT") && f.reason.contains("4.12"));
    let off = settings(&[(TW_RECYCLE, "0")]);
    assert_eq!(
        facts::tw_recycle(&ns(&off, &o)).unwrap().severity,
        Severity::Info
    );
    assert!(facts::tw_recycle(&ns(&settings(&[]), &o)).is_none());
}

#[test]
fn fin_timeout_fact_when_changed_or_when_time_wait_abounds() {
    let quiet = observed(&[(TcpState::TimeWait, 10)]);
    let default = settings(&[(FIN_TIMEOUT, "60"), (MAX_TW_BUCKETS, "262144")]);
    assert!(facts::fin_timeout(&ns(&default, &quiet)).is_none());
    let lowered = settings(&[(FIN_TIMEOUT, "15")]);
    let f = facts::fin_timeout(&ns(&lowered, &quiet)).unwrap();
    assert_eq!(f.severity, Severity::Info);
    assert!(f.reason.contains("TIME_WAIT lasts 60 s"));
    assert!(f.reason.contains("orphaned FIN_WAIT2"));
    assert!(f
        .reason
        .contains("Setting it to 15 did not make TIME_WAIT any shorter"));
    let busy = observed(&[(TcpState::TimeWait, NOTABLE_TIME_WAIT)]);
    assert!(facts::fin_timeout(&ns(&default, &busy)).is_some());
}

#[test]
fn tw_reuse_fact_says_it_never_helps_incoming() {
    let mut o = observed(&[(TcpState::TimeWait, 5000)]);
    o.time_wait_incoming = 4000;
    o.time_wait_outgoing = 1000;
    o.time_wait_outgoing_loopback = 10;
    let raw = settings(&[(TW_REUSE, "2"), (TW_REUSE_DELAY, "1000")]);
    let f = facts::tw_reuse(&ns(&raw, &o)).unwrap();
    assert_eq!(f.severity, Severity::Info);
    assert!(f
        .reason
        .contains("does nothing for connections this host accepts"));
    assert!(f.reason.contains("1000 ms"), "{}", f.reason);
    assert!(f.reason.contains("4,000"));
    assert_eq!(observed_value(&f, "of those, to loopback"), &Value::Int(10));
    // Default value, little TIME_WAIT: nothing to say.
    let few = observed(&[(TcpState::TimeWait, 3)]);
    assert!(facts::tw_reuse(&ns(&raw, &few)).is_none());
    // Changed from the default: said even then.
    let on = settings(&[(TW_REUSE, "1")]);
    assert!(facts::tw_reuse(&ns(&on, &few))
        .unwrap()
        .title
        .contains("on for all outgoing"));
}

#[test]
fn close_wait_points_at_scan_and_no_setting() {
    let o = observed(&[(TcpState::CloseWait, 3)]);
    let f = facts::close_wait(&ns(&settings(&[]), &o)).unwrap();
    assert_eq!(
        (f.rule, f.severity, f.setting.clone()),
        (Rule::CloseWait, Severity::Info, None)
    );
    assert!(f.title.starts_with("3 sockets in CLOSE_WAIT"));
    assert!(f.action.contains(&format!("cwleak scan --netns {NS}")));
    assert!(facts::close_wait(&ns(&settings(&[]), &observed(&[]))).is_none());
}

#[test]
fn a_setting_tuned_on_the_host_only_is_reported_once() {
    let host = settings(&[(FIN_TIMEOUT, "30"), (SOMAXCONN, "4096")]);
    let pod = settings(&[(FIN_TIMEOUT, "60"), (SOMAXCONN, "4096")]);
    let a = observed(&[]);
    let mut b = observed(&[]);
    b.netns = NS + 1;
    let mut c = observed(&[]);
    c.netns = NS + 2;
    let all = [ns(&host, &a), ns(&pod, &b), ns(&pod, &c)];
    let f = facts::namespaces_differ(&all);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].setting.as_deref(), Some(FIN_TIMEOUT));
    assert_eq!(f[0].netns, None);
    assert_eq!(f[0].observed[0].name, "value 30");
    assert_eq!(f[0].observed[1].name, "value 60");
    assert_eq!(
        f[0].observed[1].value,
        Value::Text(format!("in netns {}, {}", NS + 1, NS + 2))
    );
    assert!(f[0].reason.contains("starts from the kernel's default"));
}

#[test]
fn evaluate_orders_by_severity() {
    let raw = settings(&[
        (TW_RECYCLE, "1"),
        (FIN_TIMEOUT, "30"),
        (MAX_TW_BUCKETS, "10"),
    ]);
    let o = observed(&[(TcpState::TimeWait, 9), (TcpState::CloseWait, 1)]);
    let f = evaluate(&[ns(&raw, &o)]);
    assert_eq!(
        rules_of(&f),
        vec![
            (Rule::TwRecycle, Severity::Critical),
            (Rule::TimeWaitBuckets, Severity::Warn),
            (Rule::FinTimeout, Severity::Info),
            (Rule::CloseWait, Severity::Info),
        ]
    );
    assert_eq!(level(79, 80), None);
    assert_eq!(level(80, 80), Some(Severity::Warn));
    assert_eq!(level(100, 80), Some(Severity::Critical));
}

/// docs/tcp-states.md: fin-timeout fires when orphaned FIN_WAIT2 >= 1000,
/// counting both kinds (full sockets and those handed to timewait).
#[test]
fn fin_timeout_fact_counts_both_kinds_of_orphaned_fin_wait2() {
    let default = settings(&[(FIN_TIMEOUT, "60")]);
    let with = |full: u64, handed: u64| {
        let mut o = observed(&[]);
        o.orphan_fin_wait2 = full;
        o.fin_wait2_timewait = handed;
        facts::fin_timeout(&ns(&default, &o))
    };
    let f = with(999, 1).expect("1000 orphaned FIN_WAIT2 in all");
    assert!(
        f.reason.contains("999 full sockets, 1 handed to timewait"),
        "{}",
        f.reason
    );
    assert!(with(0, 1000).is_some());
    assert!(with(1000, 0).is_some());
    assert!(with(998, 1).is_none(), "999 in all is below 1000");
}

/// "Setting it to N did not make TIME_WAIT any shorter" is said of a value
/// below TIME_WAIT's 60 s only.
#[test]
fn fin_timeout_not_below_60_is_not_said_to_have_been_lowered() {
    let busy = observed(&[(TcpState::TimeWait, NOTABLE_TIME_WAIT)]);
    for (v, lowered) in [("59", true), ("60", false), ("120", false)] {
        let raw = settings(&[(FIN_TIMEOUT, v)]);
        let f = facts::fin_timeout(&ns(&raw, &busy)).unwrap();
        assert_eq!(
            f.reason.contains("did not make TIME_WAIT any shorter"),
            lowered,
            "tcp_fin_timeout={v}: {}",
            f.reason
        );
    }
}

/// docs/tcp-states.md: TIME_WAIT is notable from 1000, or from a quarter of
/// tcp_max_tw_buckets; none at all is never notable.
#[test]
fn time_wait_is_notable_from_a_quarter_of_the_buckets() {
    let raw = settings(&[
        (FIN_TIMEOUT, "60"),
        (TW_REUSE, "2"),
        (MAX_TW_BUCKETS, "400"),
    ]);
    let quarter = observed(&[(TcpState::TimeWait, 100)]);
    assert!(facts::fin_timeout(&ns(&raw, &quarter)).is_some());
    assert!(facts::tw_reuse(&ns(&raw, &quarter)).is_some());
    let below = observed(&[(TcpState::TimeWait, 99)]);
    assert!(facts::fin_timeout(&ns(&raw, &below)).is_none());
    assert!(facts::tw_reuse(&ns(&raw, &below)).is_none());
    // tcp_max_tw_buckets=0 (no timewait sockets kept) and no TIME_WAIT: nothing to tell.
    let zero = settings(&[(FIN_TIMEOUT, "60"), (TW_REUSE, "2"), (MAX_TW_BUCKETS, "0")]);
    let none = observed(&[]);
    assert!(facts::fin_timeout(&ns(&zero, &none)).is_none());
    assert!(facts::tw_reuse(&ns(&zero, &none)).is_none());
}

/// docs/tcp-states.md: tcp_tw_reuse helps outgoing connections only, and 1 is
/// on for all of them. The action offers tcp_tw_reuse=1 only where it could
/// help: TIME_WAIT on connections opened here, with reuse not already 1.
#[test]
fn tw_reuse_offers_reuse_only_for_outgoing_time_wait_when_not_on() {
    let offered = |v: &str, incoming: u64, outgoing: u64| {
        let mut o = observed(&[(TcpState::TimeWait, incoming + outgoing)]);
        o.time_wait_incoming = incoming;
        o.time_wait_outgoing = outgoing;
        let raw = settings(&[(TW_REUSE, v)]);
        let f = facts::tw_reuse(&ns(&raw, &o)).unwrap();
        f.action.contains("tcp_tw_reuse=1")
    };
    assert!(offered("2", 4000, 1000));
    assert!(offered("0", 0, 1));
    assert!(
        !offered("1", 4000, 1000),
        "already on for every outgoing connection"
    );
    assert!(
        !offered("2", 5000, 0),
        "it never helps connections accepted here"
    );
    assert!(!offered("0", 5000, 0));
}

/// Every namespace is named, or counted in "and N more" (5 named per value).
#[test]
fn namespaces_differ_names_five_per_value_and_counts_the_rest() {
    let host = settings(&[(SOMAXCONN, "4096")]);
    let pod = settings(&[(SOMAXCONN, "128")]);
    let obs: Vec<Observed> = (0..7)
        .map(|i| {
            let mut o = observed(&[]);
            o.netns = NS + i;
            o
        })
        .collect();
    let text_of = |pods: usize| {
        let mut all = vec![ns(&host, &obs[0])];
        all.extend(obs[1..=pods].iter().map(|o| ns(&pod, o)));
        let f = facts::namespaces_differ(&all);
        assert_eq!(f.len(), 1, "{f:#?}");
        // "value 128" sorts before "value 4096".
        assert_eq!(f[0].observed[0].name, "value 128");
        f[0].observed[0].value.clone()
    };
    let five: Vec<String> = (1..=5).map(|i| (NS + i).to_string()).collect();
    assert_eq!(
        text_of(5),
        Value::Text(format!("in netns {}", five.join(", ")))
    );
    assert_eq!(
        text_of(6),
        Value::Text(format!("in netns {}, and 1 more", five.join(", ")))
    );
}

/// The reasons about TIME_WAIT name the port most TIME_WAIT on accepted
/// connections is on, and who listens there: that process closes first.
#[test]
fn time_wait_on_accepted_connections_names_the_port_and_its_listener() {
    let raw = settings(&[(MAX_TW_BUCKETS, "1000"), (TW_REUSE, "2")]);
    let mut o = observed(&[(TcpState::TimeWait, 900)]);
    o.time_wait_incoming = 900;
    o.time_wait_incoming_ports = vec![(8080, 412), (443, 300)];
    let holders = [
        ("0.0.0.0:443".parse().unwrap(), 30, "haproxy".to_string()),
        ("0.0.0.0:8080".parse().unwrap(), 31, "nginx".to_string()),
    ];
    let n = Namespace {
        listener_holders: &holders,
        ..ns(&raw, &o)
    };
    let said = " Most TIME_WAIT on accepted connections is on port 8080 (412, listened on by \
                pid 31 (nginx), which closes first).";
    let f = limits::time_wait_buckets(&n).unwrap();
    assert!(f.reason.ends_with(said), "{}", f.reason);
    assert!(facts::tw_reuse(&n).unwrap().reason.ends_with(said));
    // Nobody seen listening there: the port alone.
    let f = limits::time_wait_buckets(&ns(&raw, &o)).unwrap();
    assert!(
        f.reason
            .ends_with(" Most TIME_WAIT on accepted connections is on port 8080 (412)."),
        "{}",
        f.reason
    );
    // None on accepted connections: nothing said about them.
    o.time_wait_incoming_ports.clear();
    let f = limits::time_wait_buckets(&ns(&raw, &o)).unwrap();
    assert!(!f.reason.contains("Most TIME_WAIT"), "{}", f.reason);
}

/// docs/tcp-states.md: with tcp_tw_reuse=1 (and timestamps) connect() may
/// take over TIME_WAIT ports to any destination; with no TIME_WAIT there is
/// nothing to say about them; a TWRecycled that did not move proves nothing.
#[test]
fn local_port_range_says_what_reuse_does_for_this_destination() {
    let on = settings(&[(PORT_RANGE, "40000 40019"), (TW_REUSE, "1")]);
    let mut o = observed(&[]);
    o.busiest = Some(destination(20, 10, "10.0.0.9:5432"));
    let f = limits::local_port_range(&ns(&on, &o)).unwrap();
    assert_eq!(
        f.severity,
        Severity::Info,
        "10 of 20 ports are not reusable"
    );
    assert!(f.reason.contains("With tcp_tw_reuse=1"), "{}", f.reason);
    assert!(f.reason.contains("Reuse applies here"), "{}", f.reason);
    o.moved = Some([("TWRecycled".to_string(), 0)].into());
    let f = limits::local_port_range(&ns(&on, &o)).unwrap();
    assert!(!f.reason.contains("TWRecycled moved"), "{}", f.reason);
    assert!(f.reason.contains("Reuse applies here"), "{}", f.reason);
    assert_eq!(
        observed_value(&f, "TWRecycled in the window"),
        &Value::Int(0)
    );
    // No TIME_WAIT to this destination: no words about TIME_WAIT ports.
    for reuse in ["0", "1", "2"] {
        let raw = settings(&[(PORT_RANGE, "40000 40019"), (TW_REUSE, reuse)]);
        o.busiest = Some(destination(20, 0, "10.0.0.9:5432"));
        let f = limits::local_port_range(&ns(&raw, &o)).unwrap();
        assert_eq!(f.severity, Severity::Critical, "tcp_tw_reuse={reuse}");
        assert!(!f.reason.contains("tcp_tw_reuse="), "{}", f.reason);
    }
}

/// docs/tcp-states.md: without syncookies, SYNs are dropped once 3/4 of
/// tcp_max_syn_backlog is used: critical from there, a warning from 80% of
/// it; the reason says SYNs are dropped, not answered with cookies.
#[test]
fn syn_backlog_without_cookies_counts_against_three_quarters_of_the_max() {
    let none = settings(&[(SYNCOOKIES, "0"), (MAX_SYN_BACKLOG, "128")]);
    let mut o = observed(&[]);
    let at = |o: &mut Observed, syn_recv: u64| {
        o.listeners = vec![listener("0.0.0.0:80", 0, 4096, syn_recv)];
        limits::syn_backlog(&ns(&none, o))
    };
    let f = at(&mut o, 96);
    assert_eq!(rules_of(&f), vec![(Rule::SynBacklog, Severity::Critical)]);
    assert!(
        f[0].reason.contains("drops new SYNs (tcp_syncookies=0)"),
        "{}",
        f[0].reason
    );
    assert!(!f[0].reason.contains("SYN cookies"), "{}", f[0].reason);
    assert_eq!(
        rules_of(&at(&mut o, 95)),
        vec![(Rule::SynBacklog, Severity::Warn)]
    );
    // 80% of 96 is 76.8.
    assert_eq!(
        rules_of(&at(&mut o, 77)),
        vec![(Rule::SynBacklog, Severity::Warn)]
    );
    assert!(at(&mut o, 76).is_empty());
    // A tcp_max_syn_backlog of 0 (or from a hostile snapshot, huge) is no
    // limit to compare with, and no crash.
    for m in ["0", "6148914691236517206", "18446744073709551615"] {
        let raw = settings(&[(SYNCOOKIES, "0"), (MAX_SYN_BACKLOG, m)]);
        o.listeners = vec![listener("0.0.0.0:80", 0, 4096, 96)];
        assert!(limits::syn_backlog(&ns(&raw, &o)).is_empty(), "{m}");
    }
}

/// docs/tcp-states.md and json-schema.md: when the listener's backlog is
/// below somaxconn, the application's own listen() backlog is the limit:
/// `setting` is null and the advice is about the application's backlog.
#[test]
fn accept_queue_below_somaxconn_is_the_applications_own_backlog() {
    let raw = settings(&[(SOMAXCONN, "4096")]);
    let mut o = observed(&[(TcpState::Listen, 1)]);
    o.listeners = vec![listener("0.0.0.0:8080", 511, 511, 0)];
    let f = limits::accept_queue(&ns(&raw, &o));
    assert_eq!(rules_of(&f), vec![(Rule::AcceptQueue, Severity::Critical)]);
    assert_eq!(f[0].setting, None);
    assert!(
        f[0].reason.contains("below net.core.somaxconn"),
        "{}",
        f[0].reason
    );
    assert!(
        f[0].action.contains("listen() backlog in the application"),
        "{}",
        f[0].action
    );
    // At somaxconn, somaxconn caps it: the setting is named.
    let raw = settings(&[(SOMAXCONN, "511")]);
    let f = limits::accept_queue(&ns(&raw, &o));
    assert_eq!(f[0].setting.as_deref(), Some(SOMAXCONN));
    assert!(
        !f[0].reason.contains("below net.core.somaxconn"),
        "{}",
        f[0].reason
    );
    assert!(
        f[0].action.contains("listen() and somaxconn together"),
        "{}",
        f[0].action
    );
    // somaxconn unknown: no claim either way.
    let f = limits::accept_queue(&ns(&settings(&[]), &o));
    assert_eq!(f[0].setting.as_deref(), Some(SOMAXCONN));
    assert!(
        !f[0].reason.contains("net.core.somaxconn ("),
        "{}",
        f[0].reason
    );
    // An empty queue says nothing, whatever the backlog.
    o.listeners = vec![listener("0.0.0.0:8080", 0, 0, 0)];
    assert!(limits::accept_queue(&ns(&raw, &o)).is_empty());
}

/// The orphans finding names the namespaces that hold orphans, most first,
/// three at most; a namespace without any is not named.
#[test]
fn orphans_name_the_namespaces_holding_them() {
    let host = settings(&[(MAX_ORPHANS, "100")]);
    let child = settings(&[]);
    let counts = [0, 10, 40, 5, 20];
    let obs: Vec<Observed> = counts
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let mut o = observed(&[]);
            o.netns = NS + i as u64;
            o.orphans = n;
            o
        })
        .collect();
    let mut all = vec![ns(&host, &obs[0])];
    all.extend(obs[1..].iter().map(|o| ns(&child, o)));
    let f = limits::orphans(&all).unwrap();
    let named: Vec<(String, Value)> = f
        .observed
        .iter()
        .filter(|o| o.name.starts_with("orphans in netns"))
        .map(|o| (o.name.clone(), o.value.clone()))
        .collect();
    assert_eq!(
        named,
        [(2, 40), (4, 20), (1, 10)]
            .map(|(i, n)| (format!("orphans in netns {}", NS + i), Value::Int(n)))
    );
    // Only the initial namespace has any: it alone is named.
    let mut o = observed(&[]);
    o.orphans = 60;
    let mut quiet = observed(&[]);
    quiet.netns = NS + 1;
    let f = limits::orphans(&[ns(&host, &o), ns(&child, &quiet)]).unwrap();
    let named: Vec<&str> = f
        .observed
        .iter()
        .map(|o| o.name.as_str())
        .filter(|n| n.starts_with("orphans in netns"))
        .collect();
    assert_eq!(named, [format!("orphans in netns {NS}")]);
}

/// docs/tcp-states.md: TCP memory (sockstat, host-wide) warns past
/// tcp_mem[1] (pressure) and is critical at tcp_mem[2].
#[test]
fn tcp_mem_warns_at_pressure_and_is_critical_at_the_max() {
    let raw = settings(&[(TCP_MEM, "100 200 300")]);
    let with = |pages: u64| {
        let mut o = observed(&[]);
        o.kernel = Some(crate::model::KernelCounts {
            mem_pages: pages,
            ..Default::default()
        });
        limits::tcp_mem(&[ns(&raw, &o)])
    };
    assert!(with(199).is_none());
    let f = with(200).unwrap();
    assert_eq!(
        (f.rule, f.severity, f.netns, f.setting.as_deref()),
        (Rule::TcpMem, Severity::Warn, None, Some(TCP_MEM))
    );
    assert_eq!(observed_value(&f, "pages"), &Value::Int(200));
    assert_eq!(with(299).unwrap().severity, Severity::Warn);
    assert_eq!(with(300).unwrap().severity, Severity::Critical);
    // The kernel's count unread: nothing to compare.
    assert!(limits::tcp_mem(&[ns(&raw, &observed(&[]))]).is_none());
}
