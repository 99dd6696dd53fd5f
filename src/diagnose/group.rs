//! Findings grouped per blamed process and cause (a server holding 5,000
//! sockets is one group), and the processes the report names.

use super::context::Ctx;
use super::finding::{Cause, Finding, Group, Line, ProcessInfo};
use super::mitigation::GroupMitigation;
use crate::model::{FastMap, Pid};
use std::collections::BTreeMap;

/// Group findings, most sockets first, and reorder `findings` to match.
/// Sorted in place: a host with 40,000 findings must not hold them twice.
pub fn groups(ctx: &Ctx, findings: &mut [Finding]) -> Vec<Group> {
    let key = |f: &Finding| (f.blamed.first().map(|b| b.pid), f.cause);
    // Sorted as small (key, index) pairs, then moved once: sorting the
    // findings themselves would move each 250-byte finding a dozen times.
    let mut order: Vec<_> = findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let fd = f.blamed.first().map_or(i32::MAX, |b| b.fd);
            (key(f), fd, f.socket.inode, i)
        })
        .collect();
    // Addresses only break ties (sockets without an inode).
    let addresses = |i: usize| (findings[i].socket.remote, findings[i].socket.local);
    order.sort_unstable_by(|a, b| {
        (a.0, a.1, a.2)
            .cmp(&(b.0, b.1, b.2))
            .then_with(|| addresses(a.3).cmp(&addresses(b.3)))
            .then(a.3.cmp(&b.3))
    });
    // Runs of one key are the groups; biggest first, then by key.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let k = order[start].0;
        let len = order[start..].iter().take_while(|o| o.0 == k).count();
        runs.push((start, len));
        start += len;
    }
    runs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut dest = vec![0usize; findings.len()];
    let mut next = 0;
    for &(start, len) in &runs {
        for (i, o) in order[start..start + len].iter().enumerate() {
            dest[o.3] = next + i;
        }
        next += len;
    }
    drop(order);
    permute(findings, &mut dest);
    let mut out = Vec::with_capacity(runs.len());
    let mut start = 0;
    for &(_, len) in &runs {
        let members = &findings[start..start + len];
        let (pid, cause) = key(&members[0]);
        out.push(make_group(ctx, pid, cause, members, start));
        start += len;
    }
    out
}

/// Move item i to dest[i], in place (cycle by cycle).
fn permute<T>(items: &mut [T], dest: &mut [usize]) {
    for i in 0..items.len() {
        while dest[i] != i {
            let d = dest[i];
            items.swap(i, d);
            dest.swap(i, d);
        }
    }
}

fn make_group(
    ctx: &Ctx,
    pid: Option<Pid>,
    cause: Cause,
    members: &[Finding],
    start: usize,
) -> Group {
    let mut fds: Vec<i32> = members
        .iter()
        .flat_map(|f| f.blamed.iter().filter(|b| Some(b.pid) == pid).map(|b| b.fd))
        .collect();
    fds.sort_unstable();
    fds.dedup();
    let mut tables: Vec<Option<Pid>> = members
        .iter()
        .flat_map(|f| {
            f.blamed
                .iter()
                .filter(|b| Some(b.pid) == pid)
                .map(|b| b.tid)
        })
        .collect();
    tables.sort_unstable();
    tables.dedup();
    let mut ports: BTreeMap<u16, usize> = BTreeMap::new();
    for f in members {
        *ports.entry(f.socket.local.port()).or_default() += 1;
    }
    let mut local_ports: Vec<(u16, usize)> = ports.into_iter().collect();
    local_ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let first = members.first();
    Group {
        pid,
        comm: pid
            .and_then(|p| ctx.graph.process(p))
            .map(|p| p.comm.clone()),
        cause,
        alternatives: first.map(|f| f.alternatives.clone()).unwrap_or_default(),
        sockets: members.len(),
        mitigation: GroupMitigation::new(
            pid,
            &fds,
            &tables,
            first.map(|f| (&f.mitigation, &f.socket)),
        ),
        fds,
        local_ports,
        oldest_close_wait_ms: members.iter().filter_map(|f| f.socket.close_wait_ms).max(),
        unread_bytes: members
            .iter()
            .map(|f| u64::from(f.socket.recv_q.saturating_sub(1)))
            .sum(),
        evidence: group_evidence(members),
        fix: first.map(|f| f.fix.clone()).unwrap_or_default(),
        findings: (start..start + members.len()).collect(),
    }
}

/// What all members show is said once; a line only some show is marked as
/// the first socket's, so a group never claims what is true of one socket only.
fn group_evidence(members: &[Finding]) -> Vec<Line> {
    let Some(first) = members.first() else {
        return Vec::new();
    };
    first
        .evidence
        .iter()
        .map(|line| {
            // Shared lines are usually the same allocation: compare pointers first.
            let shown = |m: &Finding| {
                m.evidence
                    .iter()
                    .any(|l| std::sync::Arc::ptr_eq(l, line) || l == line)
            };
            if members.iter().all(shown) {
                line.clone()
            } else {
                Line::from(format!(
                    "{line} (for the socket to {}; this varies across the group)",
                    first.socket.remote
                ))
            }
        })
        .collect()
}

/// Every process named in a finding, with its ancestors.
pub fn processes(ctx: &Ctx, findings: &[Finding]) -> Vec<ProcessInfo> {
    let mut held: FastMap<Pid, usize> = FastMap::default();
    let mut blamed: FastMap<Pid, usize> = FastMap::default();
    for f in findings {
        // Holders are sorted by pid: each process counts once per socket.
        for (i, h) in f.holders.iter().enumerate() {
            if i == 0 || f.holders[i - 1].pid != h.pid {
                *held.entry(h.pid).or_default() += 1;
            }
        }
        if let Some(b) = f.blamed.first() {
            *blamed.entry(b.pid).or_default() += 1;
        }
    }
    let mut pids: Vec<Pid> = held.keys().copied().collect();
    for p in held.keys() {
        pids.extend(ctx.graph.ancestors(*p));
    }
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter_map(|pid| {
            let p = ctx.graph.process(pid)?;
            Some(ProcessInfo {
                pid,
                ppid: p.ppid,
                comm: p.comm.clone(),
                exe: p.exe.clone(),
                cmdline: p.cmdline.clone(),
                uid: p.uid,
                cgroup: p.cgroup.clone(),
                netns: p.netns,
                ns_pid: p.ns_pid,
                execd: ctx.graph.execd(pid),
                threads: p.threads,
                fd_count: p.fd_count,
                fd_limit: p.fd_limit,
                close_wait_held: held.get(&pid).copied().unwrap_or(0),
                close_wait_blamed: blamed.get(&pid).copied().unwrap_or(0),
            })
        })
        .collect()
}

/// 950 -> "950ms", 75_000 -> "1m15s", 7_500_000 -> "2h05m".
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{}.{}s", s, (ms % 1000) / 100),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::permute;
    use crate::diagnose::test_host::B;
    use crate::diagnose::Cause;
    use crate::model::{Pid, TcpState};

    /// The program and memory layout of a server named `comm`.
    fn program(pid: Pid, comm: &str) -> (String, u64) {
        (format!("/srv/{comm}"), u64::from(pid.unsigned_abs()) * 16)
    }

    /// A server that accepted its connections on its own port and never
    /// closed them (no fork, no other holder: never-closed): a listener at
    /// fd 3 and a leaked connection at each of `conns`' fds, with these
    /// unread bytes (FIN included), its last ACK as many seconds ago as
    /// its fd number.
    fn server(b: &mut B, pid: Pid, comm: &str, port: u16, conns: &[(i32, u32)]) {
        let (exe, layout) = program(pid, comm);
        b.proc(pid, 1, comm, &exe, layout);
        let held = std::iter::once((3, 0, TcpState::Listen))
            .chain(conns.iter().map(|&(fd, q)| (fd, q, TcpState::CloseWait)));
        for (fd, recv_q, state) in held {
            let inode = b.socket_on(port, state);
            let s = b.sock(inode);
            s.recv_q = recv_q;
            s.last_ack_ms = Some(1000 * u64::from(fd.unsigned_abs()));
            b.hold(pid, fd, inode, None);
        }
    }

    #[test]
    fn permute_moves_each_item_to_its_place() {
        let mut items = vec!['a', 'b', 'c', 'd', 'e'];
        let mut dest = vec![2, 0, 1, 4, 3];
        permute(&mut items, &mut dest);
        assert_eq!(items, vec!['b', 'c', 'a', 'e', 'd']);
    }

    #[test]
    fn one_group_per_blamed_process_most_sockets_first_each_with_its_own_findings() {
        let mut h = B::new();
        server(&mut h, 30, "small", 9090, &[(7, 1)]);
        server(&mut h, 20, "big", 8080, &[(5, 11), (4, 1)]);
        let r = h.report();
        assert_eq!(r.findings.len(), 3);
        let g: Vec<(Option<Pid>, Option<&str>, Cause, usize)> = r
            .groups
            .iter()
            .map(|g| (g.pid, g.comm.as_deref(), g.cause, g.sockets))
            .collect();
        assert_eq!(
            g,
            [
                (Some(20), Some("big"), Cause::NeverClosed, 2),
                (Some(30), Some("small"), Cause::NeverClosed, 1),
            ]
        );
        // Each group's indexes point at the findings blamed on its process.
        for g in &r.groups {
            assert_eq!(g.findings.len(), g.sockets);
            for &i in &g.findings {
                assert_eq!(r.findings[i].blamed[0].pid, g.pid.unwrap(), "{i}");
            }
        }
        assert_eq!(r.groups[0].findings, [0, 1]);
        assert_eq!(r.groups[1].findings, [2]);
        let big = &r.groups[0];
        assert_eq!(big.fds, [4, 5]);
        assert_eq!(big.local_ports, [(8080, 2)]);
        // 10 bytes unread on fd 5's socket; the FIN of each is not data.
        assert_eq!(big.unread_bytes, 10);
        assert_eq!(r.groups[1].unread_bytes, 0);
    }

    #[test]
    fn each_process_named_counts_the_sockets_it_holds_once_and_those_it_is_blamed_for() {
        let mut h = B::new();
        server(&mut h, 20, "srv", 8080, &[(4, 1), (5, 1)]);
        // Socket at fd 4: also held by a forked child (fork-parent-kept);
        // socket at fd 5: also at fd 6, a dup (dup-copy-kept).
        let at4 = h.snap.sockets[1].inode;
        let at5 = h.snap.sockets[2].inode;
        // A forked child: the same program and memory layout.
        let (exe, layout) = program(20, "srv");
        h.proc(21, 20, "srv", &exe, layout);
        h.hold(21, 4, at4, None).hold(20, 6, at5, None);
        let r = h.report();
        let causes: Vec<Cause> = r.findings.iter().map(|f| f.cause).collect();
        assert!(
            causes.contains(&Cause::ForkParentKept) && causes.contains(&Cause::DupCopyKept),
            "{causes:?}"
        );
        let counts: Vec<(Pid, usize, usize)> = r
            .processes
            .iter()
            .map(|p| (p.pid, p.close_wait_held, p.close_wait_blamed))
            .collect();
        // init is there as an ancestor: it holds nothing.
        assert_eq!(counts, [(1, 0, 0), (20, 2, 2), (21, 1, 0)]);
    }

    #[test]
    fn a_line_every_member_shows_is_said_once_one_only_some_show_is_marked_as_the_first_sockets() {
        use super::super::finding::Line;
        let mut h = B::new();
        server(&mut h, 20, "srv", 8080, &[(4, 1), (5, 1)]);
        let r = h.report();
        let mut members = r.findings.clone();
        // The same text in separate allocations is the same line.
        members[0].evidence = vec![Line::from("shared".to_string()), Line::from("only one")];
        members[1].evidence = vec![Line::from("shared".to_string()), Line::from("another")];
        let first_remote = members[0].socket.remote;
        let lines = super::group_evidence(&members);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(&*lines[0], "shared");
        assert_eq!(
            &*lines[1],
            format!("only one (for the socket to {first_remote}; this varies across the group)")
        );
    }

    #[test]
    fn a_duration_reads_in_the_unit_its_size_calls_for() {
        use super::duration;
        // The examples of its doc comment, and each unit's edges.
        assert_eq!(duration(950), "950ms");
        assert_eq!(duration(75_000), "1m15s");
        assert_eq!(duration(7_500_000), "2h05m");
        assert_eq!(duration(999), "999ms");
        assert_eq!(duration(1_000), "1.0s");
        assert_eq!(duration(59_950), "59.9s");
        assert_eq!(duration(60_000), "1m00s");
        assert_eq!(duration(3_599_999), "59m59s");
        assert_eq!(duration(3_600_000), "1h00m");
    }
}
