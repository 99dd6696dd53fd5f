use super::*;
use crate::states::side::Side;
use crate::states::testdata::{web, HOST, POD};
use TcpState::*;

fn opts(by: &[Dimension]) -> Options {
    Options {
        scope: StatesScope {
            with_children: true,
            ..StatesScope::default()
        },
        by: by.to_vec(),
        limit: 5,
    }
}

fn all() -> Options {
    opts(&[
        Dimension::Process,
        Dimension::Port,
        Dimension::Remote,
        Dimension::Netns,
    ])
}

fn detail(r: &StatesReport, s: TcpState) -> &StateDetail {
    r.by_state
        .iter()
        .find(|d| d.state == s)
        .unwrap_or_else(|| panic!("no {s:?} in {:#?}", r.by_state))
}

#[test]
fn totals_and_namespaces_are_exact() {
    let r = build(&web(), &all());
    assert_eq!(r.sockets, 15);
    let expect = [
        (Established, 6),
        (SynRecv, 1),
        (FinWait1, 1),
        (FinWait2, 1),
        (TimeWait, 4),
        (CloseWait, 1),
        (Listen, 1),
    ];
    for s in TcpState::ALL {
        let want = expect.iter().find(|(x, _)| *x == s).map_or(0, |e| e.1);
        assert_eq!(r.total.get(s), want, "{s:?}");
    }
    let ns: Vec<(u64, u64, bool)> = r
        .namespaces
        .iter()
        .map(|n| (n.netns, n.sockets, n.own))
        .collect();
    assert_eq!(
        ns,
        vec![(HOST, 12, true), (POD, 2, false), (4_026_533_000, 1, false)]
    );
    assert_eq!(r.namespaces[0].orphans, 2);
    assert_eq!(r.namespaces[0].comm.as_deref(), Some("nginx"));
    assert_eq!(r.namespaces[2].via_pid, None);
    assert_eq!(r.namespaces[1].states.get(Established), 2);
    // by_state: only states with sockets, in the kernel's order.
    let order: Vec<TcpState> = r.by_state.iter().map(|d| d.state).collect();
    assert_eq!(
        order,
        vec![
            Established,
            SynRecv,
            FinWait1,
            FinWait2,
            TimeWait,
            CloseWait,
            Listen
        ]
    );
    assert_eq!(r.scan.unreadable.len(), 1);
}

#[test]
fn owners_tell_processes_kernel_accept_queue_and_unknown_apart() {
    let r = build(&web(), &opts(&[]));
    let e = detail(&r, Established).owners;
    assert_eq!(
        (e.process, e.kernel, e.accept_queue, e.unknown),
        (3, 0, 2, 1)
    );
    assert_eq!(detail(&r, TimeWait).owners.kernel, 4);
    assert_eq!(detail(&r, SynRecv).owners.kernel, 1);
    assert_eq!(detail(&r, FinWait1).owners.kernel, 1);
    assert_eq!(detail(&r, CloseWait).owners.process, 1);
    assert!(detail(&r, Established).processes.is_none());
    assert!(detail(&r, Established).ports.is_none());
}

#[test]
fn processes_count_each_socket_once_per_holder() {
    let r = build(&web(), &all());
    let p = detail(&r, Established).processes.as_ref().unwrap();
    let got: Vec<(i32, &str, u64)> = p
        .entries
        .iter()
        .map(|e| (e.pid, e.comm.as_str(), e.count))
        .collect();
    assert_eq!(got, vec![(100, "nginx", 2), (200, "worker", 1)]);
    let l = detail(&r, Listen).processes.as_ref().unwrap();
    assert_eq!(l.entries.len(), 2, "the listener is held by both nginx");
    assert!(detail(&r, TimeWait)
        .processes
        .as_ref()
        .unwrap()
        .entries
        .is_empty());
}

#[test]
fn time_wait_goes_to_the_service_port() {
    let r = build(&web(), &all());
    let p = detail(&r, TimeWait).ports.as_ref().unwrap();
    let got: Vec<(u16, Side, u64)> = p
        .entries
        .iter()
        .map(|e| (e.port, e.side, e.count))
        .collect();
    assert_eq!(
        got,
        vec![
            (443, Side::Local, 2),
            (443, Side::Remote, 1),
            (5432, Side::Remote, 1)
        ]
    );
    let remotes = detail(&r, TimeWait).remotes.as_ref().unwrap();
    assert_eq!(remotes.distinct, 4);
    assert!(remotes
        .entries
        .iter()
        .any(|e| e.address.to_string() == "10.0.0.8"));
    let netns = detail(&r, TimeWait).netns.as_ref().unwrap();
    assert_eq!(netns.entries[0].netns, HOST);
    assert_eq!(netns.entries[0].count, 3);
    assert!(detail(&r, Listen)
        .remotes
        .as_ref()
        .unwrap()
        .entries
        .is_empty());
}

#[test]
fn top_limits_and_counts_the_rest() {
    let mut o = all();
    o.limit = 1;
    let r = build(&web(), &o);
    let p = detail(&r, TimeWait).ports.as_ref().unwrap();
    assert_eq!(p.entries.len(), 1);
    assert_eq!((p.distinct, p.rest), (3, 2));
}

#[test]
fn scope_by_pid_port_and_netns() {
    let snap = web();
    let mut o = opts(&[Dimension::Process]);
    o.scope.pids = vec![100];
    let r = build(&snap, &o);
    assert_eq!(r.sockets, 4, "{:#?}", r.total);
    assert_eq!(r.total.get(TimeWait), 0, "TIME_WAIT belongs to no process");
    assert_eq!(
        r.namespaces.len(),
        1,
        "only the namespaces the scope reaches"
    );
    o.scope.pids = vec![1];
    let r = build(&snap, &o);
    assert_eq!(r.sockets, 5, "systemd's descendants hold 5");
    assert_eq!(r.namespaces.len(), 2);
    o.scope.with_children = false;
    assert_eq!(build(&snap, &o).sockets, 0);

    let mut o = opts(&[]);
    o.scope.ports = vec![5432];
    let r = build(&snap, &o);
    assert_eq!((r.total.get(Established), r.total.get(TimeWait)), (1, 1));

    let mut o = opts(&[]);
    o.scope.netns = vec![POD];
    let r = build(&snap, &o);
    assert_eq!(r.sockets, 2);
    assert_eq!(r.namespaces.len(), 1);
    assert_eq!(r.namespaces[0].netns, POD);
}

#[test]
fn descendants_follow_ppid() {
    let snap = web();
    let d = with_descendants(&snap.processes, &[1], true);
    assert_eq!(d.len(), 4);
    let d = with_descendants(&snap.processes, &[100], true);
    assert_eq!(d, [100, 101].into());
}

#[test]
fn an_empty_snapshot_counts_zero_everywhere() {
    let r = build(&Snapshot::default(), &all());
    assert_eq!(r.sockets, 0);
    assert!(r.by_state.is_empty() && r.namespaces.is_empty());
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["total"].as_object().unwrap().len(), 12);
}
