use super::*;
use crate::states::testdata::{listener, sock, web, HOST, POD};

fn of(all: &[Observed], netns: Inode) -> &Observed {
    all.iter().find(|o| o.netns == netns).unwrap()
}

#[test]
fn time_wait_is_split_by_who_closed_first() {
    let all = observe(&web());
    let h = of(&all, HOST);
    assert_eq!(h.states.get(TcpState::TimeWait), 3);
    assert_eq!((h.time_wait_incoming, h.time_wait_outgoing), (2, 1));
    assert_eq!(h.time_wait_outgoing_loopback, 0);
    assert_eq!((h.orphans, h.orphan_fin_wait2), (2, 1));
    assert_eq!(
        all.len(),
        3,
        "a namespace seen only through its sockets is kept"
    );
    assert_eq!(of(&all, POD).states.total(), 2);
}

#[test]
fn the_busiest_destination_counts_ephemeral_ports_only() {
    let all = observe(&web());
    let d = of(&all, HOST).busiest.clone().unwrap();
    assert_eq!(d.remote.to_string(), "10.0.0.9:5432");
    assert_eq!(d.local_ip.to_string(), "10.0.0.1");
    assert_eq!((d.sockets, d.time_wait), (2, 1));
    // Accepted connections (local :443) are never a destination.
    let mut snap = web();
    snap.sockets.retain(|s| s.local.port() == 443);
    assert!(of(&observe(&snap), HOST).busiest.is_none());
}

#[test]
fn listeners_carry_their_queues_and_half_open_connections() {
    let all = observe(&web());
    let l = &of(&all, HOST).listeners;
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].accept_queue, l[0].backlog, l[0].syn_recv), (2, 10, 1));
    assert_eq!(fill(&l[0]), 200);
}

#[test]
fn listeners_fullest_first() {
    let mut snap = web();
    snap.sockets = vec![
        listener(HOST, 1, "0.0.0.0:22", 1, 100),
        listener(HOST, 2, "0.0.0.0:80", 90, 100),
        listener(HOST, 3, "0.0.0.0:81", 0, 0),
        sock(
            HOST,
            TcpState::TimeWait,
            0,
            "127.0.0.1:50000",
            "127.0.0.1:80",
        ),
    ];
    let all = observe(&snap);
    let h = of(&all, HOST);
    let order: Vec<u16> = h.listeners.iter().map(|l| l.local.port()).collect();
    assert_eq!(order, vec![80, 22, 81]);
    assert_eq!(h.time_wait_outgoing_loopback, 1);
}
