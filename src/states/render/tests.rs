use super::*;
use crate::states::build::{build, Options};
use crate::states::report::Dimension;
use crate::states::report::StatesScope;
use crate::states::testdata::web;

fn report(by: &[Dimension]) -> StatesReport {
    build(
        &web(),
        &Options {
            scope: StatesScope {
                with_children: true,
                ..StatesScope::default()
            },
            by: by.to_vec(),
            limit: 5,
        },
    )
}

fn text_of(r: &StatesReport, note: Option<&str>) -> String {
    let mut buf = Vec::new();
    text(r, &RenderOptions::default(), note, &mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn the_table_lists_all_twelve_states_in_kernel_order() {
    let t = text_of(&report(&[Dimension::Process, Dimension::Port]), None);
    let names: Vec<&str> = t
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| TcpState::ALL.iter().any(|s| s.name() == *w))
        .take(12)
        .collect();
    let kernel: Vec<&str> = TcpState::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(names, kernel, "{t}");
    assert!(
        t.starts_with("cwleak states: 15 TCP sockets in 3 network namespaces\n"),
        "{t}"
    );
    assert!(t.contains("  TIME_WAIT           4\n"), "{t}");
    assert!(t.contains("  NEW_SYN_RECV        0\n"), "{t}");
}

#[test]
fn blocks_explain_owners_and_break_down() {
    let t = text_of(&report(&[Dimension::Process, Dimension::Port]), None);
    assert!(
        t.contains("TIME_WAIT 4  no process: closed first on this side, kept 60 s by the kernel"),
        "{t}"
    );
    assert!(
        t.contains("ESTABLISHED 6  3 held by processes; 2 waiting in accept queues"),
        "{t}"
    );
    assert!(t.contains("`cwleak scan` names the"), "{t}");
    assert!(t.contains("process 100 nginx"), "{t}");
    assert!(t.contains("port    local 443"), "{t}");
    assert!(t.contains("  4026533000  1 socket: TIME_WAIT 1\n"), "{t}");
    assert!(
        t.contains("4026531840  (this namespace; pid 100 nginx) 12 sockets:"),
        "{t}"
    );
    assert!(t.contains("1 process file(s) could not be read"), "{t}");
    // Blocks come most sockets first.
    let est = t.find("\nESTABLISHED 6").unwrap();
    let tw = t.find("\nTIME_WAIT 4").unwrap();
    assert!(est < tw);
    // Every line fits 80 columns.
    for l in t.lines() {
        assert!(l.chars().count() <= 80, "too wide: {l:?}");
    }
}

#[test]
fn rows_beyond_the_limit_are_summed_up() {
    let mut r = report(&[Dimension::Port]);
    r = build(
        &web(),
        &Options {
            limit: 1,
            by: r.top.by.clone(),
            scope: r.scan.scope.clone(),
        },
    );
    let t = text_of(&r, None);
    assert!(t.contains("            and 3 more ports"), "{t}");
    assert!(t.contains("            and 2 more ports"), "{t}");
}

#[test]
fn a_hostile_process_name_cannot_drive_the_terminal() {
    let mut snap = web();
    snap.processes[1].comm = "ng\x1b[2Jinx".into();
    let r = build(
        &snap,
        &Options {
            scope: StatesScope::default(),
            by: vec![Dimension::Process],
            limit: 5,
        },
    );
    let t = text_of(&r, None);
    assert!(!t.contains('\x1b'), "{t:?}");
}

#[test]
fn watch_shows_the_change() {
    let mut r = report(&[]);
    let before = r.total;
    let mut after = before;
    after.add_n(TcpState::TimeWait, 1200);
    r.total = after;
    r.sockets = after.total();
    r.change = Some(after.change_since(&before));
    let t = text_of(&r, Some("every 2s"));
    assert!(t.contains("CHANGE"), "{t}");
    assert!(t.contains("  TIME_WAIT       1,204     +1,200\n"), "{t}");
    assert!(t.contains("every 2s"), "{t}");
    let mut line = Vec::new();
    plain_line(&r, &mut line).unwrap();
    let line = String::from_utf8(line).unwrap();
    assert!(line.contains(" sockets 1,215 (+1,200) "), "{line}");
    assert!(line.contains(" TIME_WAIT 1,204 (+1,200)"), "{line}");
    assert!(!line.contains("NEW_SYN_RECV"), "{line}");
    assert_eq!(line.lines().count(), 1);
}

#[test]
fn json_round_trips() {
    let r = report(&[Dimension::Process, Dimension::Remote]);
    let mut buf = Vec::new();
    json(&r, &mut buf).unwrap();
    assert!(buf.ends_with(b"}\n"));
    let back: StatesReport = serde_json::from_slice(&buf).unwrap();
    assert_eq!(back, r);
    let mut line = Vec::new();
    json_line(&r, &mut line).unwrap();
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
}

#[test]
fn the_kernel_counts_and_moving_counters_are_shown() {
    let mut snap = web();
    snap.namespaces[0].kernel = Some(crate::model::KernelCounts {
        inuse: 12,
        orphans: 2,
        tw: 3,
        alloc: 20,
        mem_pages: 7,
    });
    snap.namespaces[0].counters = [("ListenOverflows".to_string(), 40)].into();
    let opts = Options {
        scope: StatesScope::default(),
        by: vec![],
        limit: 5,
    };
    let mut r = build(&snap, &opts);
    let host = r
        .namespaces
        .iter_mut()
        .find(|n| n.kernel.is_some())
        .unwrap();
    assert_eq!((host.orphans, host.tw_buckets), (2, 3));
    host.counters_change = Some([("ListenOverflows".to_string(), 12)].into());
    let t = text_of(&r, None);
    assert!(t.contains("What the kernel counts"), "{t}");
    assert!(t.contains("tw 3 (3 timewait sockets in the table)"), "{t}");
    assert!(t.contains("orphans 2 (2 in this namespace's table)"), "{t}");
    for l in t.lines() {
        assert!(l.chars().count() <= 80, "too wide: {l:?}");
    }
    assert!(
        t.contains("moving since the last look: ListenOverflows +12"),
        "{t}"
    );
    let mut line = Vec::new();
    plain_line(&r, &mut line).unwrap();
    let line = String::from_utf8(line).unwrap();
    assert!(line.contains("ListenOverflows +12"), "{line}");
}
