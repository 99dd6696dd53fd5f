//! The rules on small hand-built snapshots: one test per rule and per limit
//! of its evidence, each naming the fact that decides. Live tests with real
//! processes (tests/scan_live.rs, tests/scan_patterns.rs) check the facts
//! themselves.

use super::super::fixes;
use super::super::test_host::{B, PORT};
use crate::diagnose::{diagnose, Cause, Finding, Scope};
use crate::model::{ForkSigns, Inode, Pid, Settle, SocketFd, TcpState};

fn alts(f: &Finding) -> Vec<Cause> {
    f.alternatives.iter().map(|a| a.cause).collect()
}

fn blamed(f: &Finding) -> Vec<(Pid, i32)> {
    f.blamed.iter().map(|b| (b.pid, b.fd)).collect()
}

fn says(f: &Finding, text: &str) -> bool {
    f.evidence.iter().any(|e| e.contains(text))
}

/// A server exec'd by a launcher (sh, 10) that ran commands first: the
/// counters came with it across exec. Returns (b, server, conn).
fn wrapped_server(signs: ForkSigns) -> (B, Pid, Inode) {
    let mut b = B::new();
    b.proc(10, 1, "sh", "/bin/sh", 10);
    b.proc(20, 10, "python3", "/usr/bin/python3", 20).fork_signs = signs;
    let l = b.listener();
    let c = b.conn();
    b.hold(20, 3, l, None).hold(20, 4, c, None);
    (b, 20, c)
}

// ------------------------------------------------------------ fork evidence

#[test]
fn counters_inherited_across_exec_are_not_fork_evidence() {
    let (b, server, c) = wrapped_server(ForkSigns {
        reaped_child_faults: 500,
        ..ForkSigns::default()
    });
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(server, 4)]);
    assert_eq!(alts(&f), vec![Cause::ForkParentKept]);
    assert!(says(&f, "survives exec"), "{f:#?}");
    // The fork fix only as the alternative's, never as the fix.
    assert!(f.fix.starts_with(fixes::fix(Cause::NeverClosed, false)));
    assert!(f
        .fix
        .contains("\nif it is fork-parent-kept instead: close the accepted socket in the parent"));
}

#[test]
fn an_ignored_sigchld_after_exec_is_not_fork_evidence() {
    // Set by a launcher before its exec, or inherited: it survives exec.
    let (b, _, c) = wrapped_server(ForkSigns {
        sigchld_handled: true,
        ..ForkSigns::default()
    });
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(alts(&f), vec![Cause::ForkParentKept]);
    assert!(
        says(&f, "ignores SIGCHLD; that disposition survives exec"),
        "{f:#?}"
    );
}

#[test]
fn no_sign_at_all_decides_never_closed() {
    let (b, _, c) = wrapped_server(ForkSigns::default());
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed);
    assert!(f.alternatives.is_empty(), "{f:#?}");
    assert_eq!(&*f.fix, fixes::fix(Cause::NeverClosed, false));
}

#[test]
fn a_caught_sigchld_that_reaped_nothing_is_not_fork_evidence() {
    let (b, _, c) = wrapped_server(ForkSigns {
        sigchld_handled: true,
        sigchld_caught: true,
        ..ForkSigns::default()
    });
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert!(f.alternatives.is_empty(), "{f:#?}");
}

#[test]
fn a_sigchld_handler_that_reaped_children_is_the_programs_own() {
    // Exec resets handlers: a caught SIGCHLD was installed by this program.
    let (b, server, c) = wrapped_server(ForkSigns {
        reaped_child_faults: 500,
        sigchld_handled: true,
        sigchld_caught: true,
    });
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    assert_eq!(blamed(&f), vec![(server, 4)]);
    assert_eq!(alts(&f), vec![Cause::NeverClosed]);
    assert!(f.fix.contains("if it is never-closed instead"), "{}", f.fix);
}

#[test]
fn counters_of_a_process_that_did_not_exec_are_its_own() {
    // Forked from 10 without exec (same exe, same layout): fork zeroes them.
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    b.proc(20, 10, "server", "/usr/bin/server", 10).fork_signs = ForkSigns {
        reaped_child_faults: 80,
        ..ForkSigns::default()
    };
    let l = b.listener();
    let c = b.conn();
    b.hold(20, 3, l, None).hold(20, 4, c, None);
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    assert_eq!(alts(&f), vec![Cause::NeverClosed]);
    // The same with ignored SIGCHLD (auto-reaped children count nothing).
    let mut b2 = B::new();
    b2.proc(10, 1, "server", "/usr/bin/server", 10);
    b2.proc(20, 10, "server", "/usr/bin/server", 10).fork_signs = ForkSigns {
        sigchld_handled: true,
        ..ForkSigns::default()
    };
    let l = b2.listener();
    let c = b2.conn();
    b2.hold(20, 3, l, None).hold(20, 4, c, None);
    assert_eq!(b2.finding(c).cause, Cause::ForkParentKept);
}

/// Server 20 (exec'd by 10) with a lone connection `lone` and another one
/// `other`; child 21 is a fork of it (same exe and layout).
fn server_with_child(child_holds_other: bool) -> (B, Inode, Inode) {
    let mut b = B::new();
    b.proc(10, 1, "sh", "/bin/sh", 10);
    b.proc(20, 10, "perl", "/usr/bin/perl", 20);
    b.proc(21, 20, "perl", "/usr/bin/perl", 20);
    let l = b.listener();
    let lone = b.conn();
    let other = b.conn();
    b.hold(20, 3, l, None)
        .hold(20, 4, lone, None)
        .hold(20, 5, other, None);
    if child_holds_other {
        b.hold(21, 5, other, Some(false));
    }
    (b, lone, other)
}

#[test]
fn a_live_forked_child_holding_a_connection_decides_fork() {
    let (b, lone, other) = server_with_child(true);
    let f = b.finding(lone);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    assert!(f.alternatives.is_empty(), "the evidence decides: {f:#?}");
    assert!(says(&f, "hold connections it holds too"), "{f:#?}");
    let g = b.finding(other);
    assert_eq!(g.cause, Cause::ForkParentKept);
    assert_eq!(
        blamed(&g),
        vec![(20, 5)],
        "the child's copy is its own, in use"
    );
}

#[test]
fn a_live_forked_child_without_connections_is_a_sign_not_proof() {
    let (b, lone, _) = server_with_child(false);
    let f = b.finding(lone);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    assert_eq!(alts(&f), vec![Cause::NeverClosed]);
}

#[test]
fn a_parent_holding_a_connection_its_child_accepted_did_not_accept_it() {
    // The child 20 holds the listener and accepted; its parent 10 holds the
    // connection (sent up to it) and forks (its child holds another of its
    // connections), but it holds no listener: fork-parent-kept's "accepted
    // it and forks" does not apply, never-closed does (docs/causes.md).
    let mut b = B::new();
    b.proc(10, 1, "app", "/usr/bin/app", 10);
    b.proc(20, 10, "app", "/usr/bin/app", 10);
    let l = b.listener();
    let c = b.conn();
    let other = b.conn();
    b.hold(20, 3, l, None)
        .hold(20, 5, other, None)
        .hold(10, 5, other, None)
        .hold(10, 7, c, None);
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(10, 7)]);
}

#[test]
fn never_closed_names_who_was_handed_or_made_the_connection() {
    // docs/causes.md, never-closed: "a forked worker that was handed it".
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    b.proc(20, 10, "server", "/usr/bin/server", 10);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None).hold(20, 4, c, None);
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(20, 4)]);
    assert!(
        says(
            &f,
            "pid 20 (server) was handed the connection by pid 10 (server) and never called close()"
        ),
        "{f:#?}"
    );
    // "the maker of an outgoing connection whose peer closed": no listener.
    let mut b = B::new();
    b.proc(10, 1, "client", "/usr/bin/client", 10);
    let c = b.conn();
    b.hold(10, 4, c, None);
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(10, 4)]);
    assert!(says(&f, "pid 10 (client) made this connection"), "{f:#?}");
}

#[test]
fn a_forked_child_holding_only_the_listener_is_a_sign_not_proof() {
    // A listener is no connection: only "a live forked child holds another
    // of its connections" decides fork-parent-kept (docs/causes.md).
    let (mut b, lone, _) = server_with_child(false);
    let listener = b
        .snap
        .sockets
        .iter()
        .find(|s| s.state == TcpState::Listen)
        .map(|s| s.inode)
        .unwrap();
    b.hold(21, 3, listener, Some(false));
    let f = b.finding(lone);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    assert_eq!(alts(&f), vec![Cause::NeverClosed], "{f:#?}");
}

#[test]
fn an_exec_d_child_is_no_fork_sign() {
    let mut b = B::new();
    b.proc(10, 1, "sh", "/bin/sh", 10);
    b.proc(20, 10, "node", "/usr/bin/node", 20);
    b.proc(21, 20, "git", "/usr/bin/git", 21);
    let l = b.listener();
    let c = b.conn();
    b.hold(20, 3, l, None).hold(20, 4, c, None);
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert!(f.alternatives.is_empty());
}

#[test]
fn zombies_count_only_when_they_ran_the_same_program() {
    for (comm, cause) in [
        ("server", Cause::ForkParentKept),
        ("true", Cause::NeverClosed),
    ] {
        let mut b = B::new();
        b.proc(10, 1, "sh", "/bin/sh", 10);
        b.proc(20, 10, "server", "/usr/bin/server", 20);
        let z = b.proc(21, 20, comm, "", 0);
        z.state = 'Z';
        z.exe = None;
        z.layout = None;
        let l = b.listener();
        let c = b.conn();
        b.hold(20, 3, l, None).hold(20, 4, c, None);
        assert_eq!(b.finding(c).cause, cause, "zombie named {comm}");
    }
}

// ------------------------------------------------------------ FD_CLOEXEC

/// Supervisor 10 holds the listener at fd 3 and started service 20 (exec'd)
/// with it at fd 3; the service holds a connection at fd 5.
fn activated(cloexec: Option<bool>) -> (B, Inode) {
    let mut b = B::new();
    b.proc(10, 1, "supervisor", "/usr/bin/python3", 10);
    b.proc(20, 10, "server", "/usr/bin/server", 20);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None)
        .hold(20, 3, l, Some(false))
        .hold(20, 5, c, cloexec);
    (b, c)
}

#[test]
fn a_copy_with_cloexec_after_exec_was_accepted_there() {
    let (b, c) = activated(Some(true));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(20, 5)]);
    assert!(f.alternatives.is_empty(), "{f:#?}");
}

#[test]
fn an_activated_service_that_forks_kept_the_copy_it_accepted() {
    // docs/causes.md, fork-parent-kept: the holder accepted the connection
    // (it holds the listener, handed over by the supervisor, and its copy
    // has FD_CLOEXEC), holds one copy, and a live forked child holds
    // another of its connections.
    let (mut b, c) = activated(Some(true));
    b.proc(21, 20, "server", "/usr/bin/server", 20);
    let other = b.conn();
    b.hold(20, 6, other, Some(true))
        .hold(21, 6, other, Some(true));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    assert_eq!(blamed(&f), vec![(20, 5)]);
    assert!(f.alternatives.is_empty(), "{f:#?}");
}

#[test]
fn without_cloexec_an_activated_service_may_have_accepted_it_itself() {
    let (b, c) = activated(Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
    assert_eq!(alts(&f), vec![Cause::NeverClosed]);
    assert!(f.fix.contains("if it is never-closed instead"));
}

#[test]
fn an_exec_d_holder_at_fd_3_may_be_an_accept_yes_instance() {
    for (fd, alternative) in [(3, true), (4, false)] {
        let mut b = B::new();
        b.proc(10, 1, "activate", "/usr/bin/systemd-socket-activate", 10);
        b.proc(20, 10, "sleep", "/usr/bin/sleep", 20);
        let l = b.listener();
        let c = b.conn();
        b.hold(10, 3, l, None).hold(20, fd, c, Some(false));
        let f = b.finding(c);
        assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
        assert_eq!(blamed(&f), vec![(20, fd)]);
        assert_eq!(f.alternatives.is_empty(), !alternative, "fd {fd}: {f:#?}");
    }
}

#[test]
fn a_cloexec_copy_without_the_listener_was_received_after_exec() {
    let mut b = B::new();
    b.proc(10, 1, "master", "/usr/bin/master", 10);
    b.proc(20, 10, "worker", "/usr/bin/worker", 20);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None).hold(20, 7, c, Some(true));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::PassedFdKept, "{f:#?}");
    assert_eq!(blamed(&f), vec![(20, 7)]);
    // The same copy without FD_CLOEXEC did cross the exec.
    let mut b = B::new();
    b.proc(10, 1, "master", "/usr/bin/master", 10);
    b.proc(20, 10, "worker", "/usr/bin/worker", 20);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None).hold(20, 7, c, Some(false));
    assert_eq!(b.finding(c).cause, Cause::InheritedNoCloexec);
}

#[test]
fn an_unrelated_receiver_is_blamed_before_the_sender_that_kept_its_copy() {
    // docs/causes.md, passed-fd-kept: a holder neither an ancestor nor a
    // descendant of the owner, with a unix socket to receive fds on.
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    b.proc(30, 1, "receiver", "/usr/bin/receiver", 30)
        .other_sockets = 1;
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None)
        .hold(10, 4, c, Some(true))
        .hold(30, 7, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::PassedFdKept, "{f:#?}");
    assert_eq!(blamed(&f), vec![(30, 7), (10, 4)]);
    assert!(
        says(&f, "is neither an ancestor nor a descendant of"),
        "{f:#?}"
    );
    // That line is for a copy made after an exec, not for an unrelated holder.
    assert!(!says(&f, "runs another program"), "{f:#?}");
}

// ------------------------------------------------------------ stdio

/// inetd 10 holds the listener; returns (b, conn).
fn inetd() -> (B, Inode) {
    let mut b = B::new();
    b.proc(10, 1, "inetd", "/usr/sbin/inetd", 10);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None);
    (b, c)
}

#[test]
fn a_handler_on_stdio_is_not_a_dup_mistake() {
    let (mut b, c) = inetd();
    b.proc(20, 10, "sleep", "/usr/bin/sleep", 20);
    b.hold(20, 0, c, Some(false))
        .hold(20, 1, c, Some(false))
        .hold(20, 2, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(20, 0), (20, 1), (20, 2)]);
    assert!(f.alternatives.is_empty());
    assert_eq!(&*f.fix, fixes::STDIO_HANDLER);
    assert!(says(&f, "is the handler"), "{f:#?}");
}

#[test]
fn a_lone_stdio_fd_of_a_handler_is_its_own() {
    let (mut b, c) = inetd();
    b.proc(20, 10, "sleep", "/usr/bin/sleep", 20);
    b.hold(20, 0, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(&*f.fix, fixes::STDIO_HANDLER);
}

#[test]
fn a_re_parented_job_on_stdio_is_not_the_handler() {
    let (mut b, c) = inetd();
    // The handler exited; its job was adopted by a subreaper (5).
    b.proc(5, 1, "subreaper", "/usr/bin/subreaper", 5);
    b.proc(30, 5, "sleep", "/usr/bin/sleep", 30);
    b.hold(30, 1, c, Some(false)).hold(30, 2, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
    assert_eq!(blamed(&f), vec![(30, 1), (30, 2)]);
    assert_eq!(&*f.fix, fixes::STDIO_JOB);
    assert!(says(&f, "re-parented"), "{f:#?}");
}

#[test]
fn a_re_parented_job_on_stdio_holding_other_sockets_is_still_a_job() {
    // socat's internal socketpair leaks into the job at fds 3 and 4: it could
    // receive fds, but a received fd never lands on stdio.
    let (mut b, c) = inetd();
    b.proc(5, 1, "subreaper", "/usr/bin/subreaper", 5);
    b.proc(30, 5, "sleep", "/usr/bin/sleep", 30);
    b.hold(30, 1, c, Some(false));
    b.get(30).other_sockets = 2;
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
    assert_eq!(blamed(&f), vec![(30, 1)]);
    // The same holder at fd 7 with other sockets may have received it.
    let (mut b, c) = inetd();
    b.proc(5, 1, "subreaper", "/usr/bin/subreaper", 5);
    b.proc(30, 5, "sleep", "/usr/bin/sleep", 30);
    b.hold(30, 7, c, Some(false));
    b.get(30).other_sockets = 2;
    assert_eq!(b.finding(c).cause, Cause::PassedFdKept);
}

#[test]
fn a_job_below_a_live_handler_is_blamed_before_it() {
    let (mut b, c) = inetd();
    b.proc(20, 10, "sh", "/bin/sh", 20);
    b.proc(21, 20, "sleep", "/usr/bin/sleep", 21);
    b.hold(20, 0, c, Some(false))
        .hold(20, 1, c, Some(false))
        .hold(21, 1, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
    assert_eq!(blamed(&f), vec![(21, 1), (20, 0), (20, 1)]);
    assert_eq!(&*f.fix, fixes::STDIO_JOB);
}

#[test]
fn a_job_below_a_handler_that_closed_is_still_a_job() {
    // Two execs between inetd and the holder: inetd -> sh (handler) -> sleep.
    let (mut b, c) = inetd();
    b.proc(20, 10, "sh", "/bin/sh", 20);
    b.proc(21, 20, "sleep", "/usr/bin/sleep", 21);
    b.hold(21, 1, c, Some(false)).hold(21, 2, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
    assert_eq!(&*f.fix, fixes::STDIO_JOB);
}

#[test]
fn a_job_exec_d_by_a_forked_handler_that_holds_it_is_a_job() {
    // docs/causes.md, stdio job: got it across an exec "from a holder that
    // is not an owner". One exec only between the server and the job, but
    // its copy came from the forked worker that still holds one: the job is
    // blamed first, then the worker; not a stdio handler of the server.
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    b.proc(20, 10, "server", "/usr/bin/server", 10);
    b.proc(30, 20, "sleep", "/usr/bin/sleep", 30);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None)
        .hold(20, 4, c, Some(false))
        .hold(30, 1, c, Some(false))
        .hold(30, 2, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
    assert_eq!(blamed(&f), vec![(30, 1), (30, 2), (20, 4)]);
    assert_eq!(&*f.fix, fixes::STDIO_JOB);
}

#[test]
fn stdio_plus_another_fd_is_still_a_dup() {
    let (mut b, c) = inetd();
    b.proc(20, 10, "server", "/usr/bin/server", 20);
    // Accepted itself? No: it is no listener holder; fork only below inetd.
    let l2 = b.listener();
    b.hold(20, 3, l2, None)
        .hold(20, 1, c, Some(true))
        .hold(20, 5, c, Some(true));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::DupCopyKept, "{f:#?}");
}

#[test]
fn an_owner_that_moved_the_connection_onto_stdio_is_not_a_dup_mistake() {
    // docs/causes.md, never-closed: "an owner that moved it onto its stdio:
    // several stdio fds are one use, not a dup mistake".
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None)
        .hold(10, 0, c, Some(false))
        .hold(10, 1, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(10, 0), (10, 1)]);
    assert_eq!(&*f.fix, fixes::STDIO_HANDLER);
    assert!(says(&f, "it accepted the connection itself"), "{f:#?}");
}

#[test]
fn an_owner_holding_one_stdio_fd_is_judged_as_any_lone_owner() {
    // One copy on stdio is no "several stdio fds": fork-parent-kept's rule
    // (owner holds the listener and one copy, a live forked child holds
    // another of its connections) decides, as for a copy at fd 4.
    let (mut b, _, other) = server_with_child(true);
    let lone = b.conn();
    b.hold(20, 0, lone, Some(false));
    let f = b.finding(lone);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    assert_eq!(blamed(&f), vec![(20, 0)]);
    assert!(f.alternatives.is_empty(), "{f:#?}");
    assert_eq!(b.finding(other).cause, Cause::ForkParentKept);
}

#[test]
fn a_parent_keeping_its_copy_wins_over_its_stdio_handler() {
    // CGI: the server kept its copy, the handler holds stdio.
    let (mut b, c) = inetd();
    b.hold(10, 4, c, None);
    b.proc(20, 10, "sleep", "/usr/bin/sleep", 20);
    b.hold(20, 0, c, Some(false)).hold(20, 1, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    assert_eq!(blamed(&f)[0], (10, 4));
}

#[test]
fn an_owner_holding_two_ordinary_fds_is_a_dup() {
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None)
        .hold(10, 4, c, Some(true))
        .hold(10, 5, c, Some(true));
    assert_eq!(b.finding(c).cause, Cause::DupCopyKept);
}

// ------------------------------------------------------------ still sending

#[test]
fn a_socket_still_sending_is_counted_apart() {
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    let l = b.listener();
    let sending = b.conn();
    let frozen = b.conn();
    b.hold(10, 3, l, None)
        .hold(10, 4, sending, None)
        .hold(10, 5, frozen, None);
    let key = b
        .snap
        .sockets
        .iter()
        .find(|s| s.inode == sending)
        .unwrap()
        .key();
    b.snap.settle = Some(Settle {
        window_ms: 1000,
        transient: Vec::new(),
        still_sending: vec![key],
    });
    let r = b.report();
    assert_eq!(r.summary.still_sending, 1);
    assert_eq!(r.summary.leaked, 1);
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].socket.inode, frozen);
}

// ------------------------------------------------------------ owners

#[test]
fn a_forked_worker_holding_the_listener_accepted_it_itself() {
    // docs/causes.md, owner: "holds the listener of the connection's port
    // (it accepted it)". A prefork worker got the listener by fork alone:
    // only a listener inherited across an exec makes no owner.
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    b.proc(20, 10, "server", "/usr/bin/server", 10);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None)
        .hold(20, 3, l, None)
        .hold(20, 4, c, None);
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(20, 4)]);
    assert!(says(&f, "pid 20 (server) accepted it itself"), "{f:#?}");
    assert!(!says(&f, "was handed the connection"), "{f:#?}");
}

#[test]
fn a_re_parented_helper_holding_the_listener_did_not_accept() {
    // docs/causes.md: "a listener holder that holds the listener at the same
    // fd number as an older holder running another program inherited it and
    // is not an owner". The helper (its parent exited: re-parented to init)
    // holds the server's listener and connection at the server's fd numbers:
    // a copied fd table, so exec-inherited, blamed before the server.
    // Another exe is another program, whether or not its memory layout could
    // be read (stat hides it from a reader that may not ptrace the process).
    for layout_known in [true, false] {
        let mut b = B::new();
        b.proc(10, 1, "server", "/usr/bin/server", 10);
        let helper = b.proc(30, 1, "helper", "/usr/bin/helper", 30);
        if !layout_known {
            helper.layout = None;
        }
        let l = b.listener();
        let c = b.conn();
        b.hold(10, 3, l, None)
            .hold(10, 4, c, None)
            .hold(30, 3, l, None)
            .hold(30, 4, c, None);
        let f = b.finding(c);
        assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
        assert_eq!(blamed(&f), vec![(30, 4), (10, 4)]);
        assert!(
            says(&f, "the owner pid 10 (server) still holds its copy too"),
            "{f:#?}"
        );
    }
}

#[test]
fn a_service_handed_the_listener_at_another_fd_accepted_its_connections() {
    // docs/causes.md, owner: only a listener inherited across an exec at the
    // same fd number as its ancestor's makes no owner. A supervisor holding
    // the listener at fd 7 that hands it to the service at fd 3 (LISTEN_FDS)
    // leaves the service an owner: its connection, without FD_CLOEXEC, is
    // one it accepted itself, not one that crossed its exec.
    let mut b = B::new();
    b.proc(10, 1, "supervisor", "/usr/bin/python3", 10);
    b.proc(20, 10, "server", "/usr/bin/server", 20);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 7, l, None)
        .hold(20, 3, l, Some(false))
        .hold(20, 5, c, Some(false));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(20, 5)]);
    assert!(f.alternatives.is_empty(), "{f:#?}");
    assert!(says(&f, "pid 20 (server) accepted it itself"), "{f:#?}");
}

#[test]
fn a_re_parented_fork_of_the_owner_is_its_handler() {
    // A worker whose parent exited (re-parented to init) but that holds
    // another of the server's connections at the server's fd number got its
    // table by fork; running the server's program unchanged (same exe and
    // layout), it crossed no exec: a handler (docs/causes.md, "reached from
    // an owner by fork() alone"), never-closed, not exec-inherited.
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    b.proc(30, 1, "server", "/usr/bin/server", 10);
    let l = b.listener();
    let c = b.conn();
    let other = b.conn();
    b.hold(10, 3, l, None)
        .hold(10, 5, other, None)
        .hold(30, 5, other, None)
        .hold(30, 4, c, None);
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(30, 4)]);
    assert!(
        says(
            &f,
            "pid 30 (server) was handed the connection by pid 10 (server)"
        ),
        "{f:#?}"
    );
}

// ------------------------------------------------------------ double-forked helpers

/// A holder with no ancestry to the owner 10 (its parent is init), that
/// holds the connection at fd 4 without O_CLOEXEC and no other socket: the
/// double-forked-helper exception of docs/causes.md applies only when it also
/// runs another program than the owners and started after them.
fn lone_unrelated_holder(pid: Pid, exe: &str, layout: u64) -> Finding {
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    b.proc(pid, 1, "helper", exe, layout);
    let l = b.listener();
    let c = b.conn();
    b.hold(10, 3, l, None).hold(pid, 4, c, Some(false));
    b.finding(c)
}

#[test]
fn a_lone_holder_running_the_owner_s_program_was_passed_the_fd() {
    // The same exe and memory layout as the owner: not "another program",
    // so the exception does not apply: passed.
    let f = lone_unrelated_holder(30, "/usr/bin/server", 10);
    assert_eq!(f.cause, Cause::PassedFdKept, "{f:#?}");
    assert_eq!(blamed(&f), vec![(30, 4)]);
    // The control: another program started after the owner is the helper.
    let f = lone_unrelated_holder(30, "/usr/bin/helper", 30);
    assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
    assert_eq!(blamed(&f), vec![(30, 4)]);
}

#[test]
fn a_lone_holder_older_than_the_owner_was_passed_the_fd() {
    // Another program, but started before the owner (pid 5, start time 5):
    // no process inherits from one that started after it, so it received
    // the fd (and has since closed what it received it on).
    let f = lone_unrelated_holder(5, "/usr/bin/collector", 5);
    assert_eq!(f.cause, Cause::PassedFdKept, "{f:#?}");
    assert_eq!(blamed(&f), vec![(5, 4)]);
}

// ------------------------------------------------------------ what the evidence claims

#[test]
fn an_outgoing_connection_moved_onto_stdio_was_not_accepted() {
    // docs/causes.md: the owner of an outgoing connection (no listener) made
    // it; holding it on stdin and stdout is one use (never-closed). Its
    // evidence must not claim it accepted it on a listener it does not hold.
    let mut b = B::new();
    b.proc(10, 1, "client", "/usr/bin/client", 10);
    let c = b.conn();
    b.hold(10, 0, c, None).hold(10, 1, c, None);
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(blamed(&f), vec![(10, 0), (10, 1)]);
    assert!(says(&f, "outgoing connection"), "{f:#?}");
    assert!(!says(&f, "accepted"), "{f:#?}");
    assert!(!says(&f, "holds the listener"), "{f:#?}");
}

#[test]
fn o_cloexec_is_said_missing_only_when_fdinfo_was_read() {
    // docs/causes.md: close-on-exec comes from /proc/PID/fdinfo/FD. An
    // exec'd helper holding the connection at fd 4: with its flags read
    // (no O_CLOEXEC) the evidence says so; with them unknown it claims
    // nothing about the flag.
    for cloexec in [Some(false), None] {
        let mut b = B::new();
        b.proc(10, 1, "server", "/usr/bin/server", 10);
        b.proc(20, 10, "helper", "/usr/bin/helper", 20);
        let l = b.listener();
        let c = b.conn();
        b.hold(10, 3, l, None)
            .hold(10, 4, c, None)
            .hold(20, 4, c, cloexec);
        let f = b.finding(c);
        assert_eq!(f.cause, Cause::InheritedNoCloexec, "{f:#?}");
        assert_eq!(blamed(&f), vec![(20, 4), (10, 4)]);
        assert_eq!(
            says(&f, "no O_CLOEXEC"),
            cloexec == Some(false),
            "{cloexec:?}: {f:#?}"
        );
    }
}

/// Unrelated owners 10, 11, ... (one SO_REUSEPORT listener each, at fd 3)
/// of a connection a receiver 40 got over its unix socket.
fn reuseport_owners(n: Pid) -> Finding {
    let mut b = B::new();
    b.proc(40, 1, "proxy", "/usr/bin/proxy", 40).other_sockets = 1;
    let c = b.conn();
    for pid in 10..10 + n {
        b.proc(pid, 1, "server", "/usr/bin/server", 10);
        let l = b.listener();
        b.hold(pid, 3, l, None);
    }
    b.hold(40, 5, c, Some(true));
    b.finding(c)
}

#[test]
fn a_list_of_three_owners_names_them_all() {
    let f = reuseport_owners(3);
    assert_eq!(f.cause, Cause::PassedFdKept, "{f:#?}");
    let owners = "pid 10 (server), pid 11 (server), pid 12 (server)";
    let line = f.evidence.iter().find(|e| e.contains(owners));
    assert!(line.is_some_and(|l| !l.contains("more")), "{f:#?}");
    let listeners = f.evidence.iter().find(|e| e.contains("listens on"));
    let listeners = listeners.unwrap_or_else(|| panic!("{f:#?}"));
    for pid in [10, 11, 12] {
        assert!(
            listeners.contains(&format!("pid {pid} (server) fd 3")),
            "{f:#?}"
        );
    }
    assert!(!listeners.contains("more"), "{f:#?}");
}

#[test]
fn a_longer_list_of_owners_counts_the_ones_it_leaves_out() {
    // Five owners: the lines name three and say how many more there are,
    // never a silently shortened list.
    let f = reuseport_owners(5);
    assert_eq!(f.cause, Cause::PassedFdKept, "{f:#?}");
    assert!(
        says(
            &f,
            "pid 10 (server), pid 11 (server), pid 12 (server), 2 more"
        ),
        "{f:#?}"
    );
    let listeners = f.evidence.iter().find(|e| e.contains("listens on"));
    let listeners = listeners.unwrap_or_else(|| panic!("{f:#?}"));
    assert!(listeners.ends_with("; and 2 more"), "{f:#?}");
    assert!(!listeners.contains("pid 13"), "{f:#?}");
}

#[test]
fn fork_evidence_names_the_children_it_saw() {
    // docs/causes.md, fork evidence: a live forked child holding a
    // connection the owner holds too decides fork-parent-kept; the line
    // names that child, the process to look at.
    let (b, lone, _) = server_with_child(true);
    let f = b.finding(lone);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    let line = f.evidence.iter().find(|e| e.contains("live child"));
    assert!(line.is_some_and(|l| l.contains("(21)")), "{f:#?}");
}

// ------------------------------------------------------------ what a report counts

#[test]
fn a_socket_closed_within_the_settle_window_is_transient_not_a_leak() {
    // docs/causes.md, transient sockets: gone from CLOSE_WAIT by the second
    // look, counted in summary.transient, not a finding.
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    let l = b.listener();
    let (gone, kept, gone_too) = (b.conn(), b.conn(), b.conn());
    b.hold(10, 3, l, None)
        .hold(10, 4, gone, None)
        .hold(10, 5, kept, None)
        .hold(10, 6, gone_too, None);
    let key = |inode: Inode| {
        b.snap
            .sockets
            .iter()
            .find(|s| s.inode == inode)
            .unwrap()
            .key()
    };
    let transient = vec![key(gone), key(gone_too)];
    b.snap.settle = Some(Settle {
        window_ms: 1000,
        transient,
        still_sending: Vec::new(),
    });
    let r = b.report();
    assert_eq!(r.summary.transient, 2);
    assert_eq!(r.summary.leaked, 1);
    let found: Vec<Inode> = r.findings.iter().map(|f| f.socket.inode).collect();
    assert_eq!(found, vec![kept]);
}

#[test]
fn a_look_that_missed_a_namespace_in_scope_says_it_is_incomplete() {
    // docs/json-schema.md, scan.incomplete: why this look cannot support
    // "no leak". A --netns scope naming a namespace no table was read for.
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    let l = b.listener();
    b.hold(10, 3, l, None);
    let scope = Scope {
        netns: vec![99],
        ..Scope::everything()
    };
    let r = diagnose(&b.snap, &scope);
    assert!(r.findings.is_empty());
    assert!(
        r.scan.incomplete.iter().any(|g| g.contains("99")),
        "{:?}",
        r.scan.incomplete
    );
    // Every namespace in scope read: nothing missing.
    assert!(b.report().scan.incomplete.is_empty());
}

/// Server 10 holds the listener, its child 20 and an unrelated process 30
/// exist; `conn` is a CLOSE_WAIT socket on the listener's port.
fn scoped_server() -> (B, Inode) {
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    b.proc(20, 10, "server", "/usr/bin/server", 10);
    b.proc(30, 1, "other", "/usr/bin/other", 30);
    let l = b.listener();
    b.hold(10, 3, l, None);
    let c = b.conn();
    (b, c)
}

fn pid_scope(pid: Pid) -> Scope {
    Scope {
        pids: vec![pid],
        ..Scope::everything()
    }
}

fn found_in(b: &B, scope: &Scope) -> Vec<(Inode, Cause)> {
    diagnose(&b.snap, scope)
        .findings
        .iter()
        .map(|f| (f.socket.inode, f.cause))
        .collect()
}

#[test]
fn a_pid_scope_takes_in_the_unheld_sockets_waiting_on_its_listener() {
    // docs/json-schema.md, Scope: a CLOSE_WAIT socket nobody holds (still in
    // the accept queue: inode 0; or with an inode, in flight or held out of
    // sight) is in a pid scope that holds the listener it waits on: a hung
    // server's accept queue is its own leak.
    for accept_queue in [true, false] {
        let (mut b, c) = scoped_server();
        let inode = if accept_queue { 0 } else { c };
        b.snap.sockets.last_mut().unwrap().inode = inode;
        let leak = vec![(inode, Cause::NoVisibleHolder)];
        assert_eq!(found_in(&b, &pid_scope(10)), leak, "{accept_queue}");
        assert_eq!(found_in(&b, &Scope::everything()), leak);
        // Not the scope of a process that holds no listener of its port.
        assert_eq!(found_in(&b, &pid_scope(30)), vec![], "{accept_queue}");
        let r = diagnose(&b.snap, &pid_scope(30));
        assert_eq!(r.summary.by_state.get(&TcpState::CloseWait), None);
    }
}

#[test]
fn a_socket_held_only_outside_a_pid_scope_is_not_in_it() {
    // docs/json-schema.md, Scope: a held socket is in a pid scope when a
    // process in the scope holds it; holding its listener is not enough.
    let (mut b, c) = scoped_server();
    b.hold(30, 4, c, Some(false));
    assert_eq!(found_in(&b, &pid_scope(10)), vec![]);
    assert_eq!(found_in(&b, &pid_scope(30)).len(), 1);
}

#[test]
fn only_unheld_close_wait_sockets_join_a_pid_scope_by_their_listener() {
    // docs/json-schema.md, Scope and summary.by_state: in a snapshot of every
    // state, a connection still in the accept queue (ESTABLISHED, inode 0)
    // and a TIME_WAIT socket on the server's port are held by nobody and
    // are not CLOSE_WAIT: outside a pid scope, counted without one.
    let (mut b, c) = scoped_server();
    b.hold(10, 4, c, None);
    for state in [TcpState::Established, TcpState::TimeWait] {
        let s = b.socket(state);
        b.snap
            .sockets
            .iter_mut()
            .find(|x| x.inode == s)
            .unwrap()
            .inode = 0;
    }
    let by_state = |scope: &Scope| diagnose(&b.snap, scope).summary.by_state;
    let all = by_state(&Scope::everything());
    assert_eq!(all.get(&TcpState::Established), Some(&1));
    assert_eq!(all.get(&TcpState::TimeWait), Some(&1));
    let scoped = by_state(&pid_scope(10));
    assert_eq!(scoped.get(&TcpState::CloseWait), Some(&1));
    assert_eq!(scoped.get(&TcpState::Listen), Some(&1));
    assert_eq!(scoped.get(&TcpState::Established), None);
    assert_eq!(scoped.get(&TcpState::TimeWait), None);
}

#[test]
fn ss_k_is_run_inside_the_socket_s_namespace_when_it_is_not_cwleak_s() {
    // mitigation.rs: `ss -K` destroys the socket from its own network
    // namespace only: for a socket in another namespace than the one cwleak
    // ran in, the command enters it through a holder (nsenter).
    for (own, enters) in [(Some(1), false), (Some(2), true), (None, false)] {
        let mut b = B::new();
        b.proc(10, 1, "server", "/usr/bin/server", 10);
        let l = b.listener();
        let c = b.conn();
        b.hold(10, 3, l, None).hold(10, 4, c, None);
        b.snap.meta.netns = own;
        let f = b.finding(c);
        let now = f.mitigation.text(&f.socket).to_string();
        assert_eq!(
            now.contains("nsenter --net=/proc/10/ns/net ss -K"),
            enters,
            "cwleak in {own:?}, socket in 1: {now}"
        );
        assert!(now.contains("ss -K src 127.0.0.1:8080"), "{now}");
    }
}

#[test]
fn the_fd_limit_is_named_from_half_of_it_open() {
    // A blamed process at half its soft RLIMIT_NOFILE or more: the evidence
    // says how many fds it has open of its limit (docs/json-schema.md,
    // Finding.evidence; accept() fails with EMFILE at the limit).
    for (open, named) in [(511, false), (512, true), (1024, true)] {
        let mut b = B::new();
        let p = b.proc(10, 1, "server", "/usr/bin/server", 10);
        p.fd_limit = Some(1024);
        p.fd_count = open;
        let l = b.listener();
        let c = b.conn();
        b.hold(10, 3, l, None).hold(10, 4, c, None);
        let f = b.finding(c);
        assert!(
            says(&f, "pid 10 (server) is blamed for 1 CLOSE_WAIT socket(s)"),
            "{f:#?}"
        );
        let line = format!("{open} of its 1024 fds are open");
        assert_eq!(says(&f, &line), named, "{open}: {f:#?}");
    }
}

#[test]
fn many_sockets_are_judged_each_once_in_order() {
    // Past 512 sockets they are judged on several threads: every one still
    // gets its own finding, in the order of the socket table.
    let mut b = B::new();
    b.proc(10, 1, "server", "/usr/bin/server", 10);
    let l = b.listener();
    b.hold(10, 3, l, None);
    let conns: Vec<Inode> = (0..600).map(|_| b.conn()).collect();
    for (fd, c) in (4..).zip(&conns) {
        b.hold(10, fd, *c, None);
    }
    let r = b.report();
    let found: Vec<Inode> = r.findings.iter().map(|f| f.socket.inode).collect();
    assert_eq!(found, conns);
    for (fd, f) in (4..).zip(&r.findings) {
        assert_eq!(blamed(f), vec![(10, fd)]);
        assert_eq!(f.cause, Cause::NeverClosed);
    }
}

// ------------------------------------------------------------ precedence

/// Two unrelated owners (SO_REUSEPORT listeners of one port) both hold the
/// connection: the cause whose fix removes the leak comes first.
#[test]
fn unrelated_roots_take_the_cause_first_in_precedence() {
    // 10: one copy, reaped children since its fork (fork-parent-kept);
    // 20: two fds (dup-copy-kept); 30: one copy, no sign (never-closed).
    let build = |with: &[Pid]| {
        let mut b = B::new();
        b.proc(5, 1, "launcher", "/usr/bin/server", 5);
        let c = b.conn();
        for &pid in with {
            b.proc(
                pid,
                5,
                "server",
                "/usr/bin/server",
                if pid == 10 { 5 } else { pid as u64 },
            );
            let l = b.listener();
            b.hold(pid, 3, l, None).hold(pid, 4, c, Some(true));
        }
        if with.contains(&10) {
            b.get(10).fork_signs.reaped_child_faults = 9;
        }
        if with.contains(&20) {
            b.hold(20, 5, c, Some(true));
        }
        b.finding(c)
    };
    let f = build(&[10, 20, 30]);
    assert_eq!(f.cause, Cause::ForkParentKept, "{f:#?}");
    assert_eq!(f.blamed[0].pid, 10);
    let f = build(&[20, 30]);
    assert_eq!(f.cause, Cause::DupCopyKept, "{f:#?}");
    assert_eq!(f.blamed[0].pid, 20);
    assert!(f.blamed.iter().any(|b| b.pid == 30), "every root blamed");
    let f = build(&[30]);
    assert_eq!(f.cause, Cause::NeverClosed);
}

#[test]
fn a_later_root_with_a_cause_earlier_in_precedence_decides() {
    // 10: one copy, no sign (never-closed); 20: two fds (dup-copy-kept).
    let mut b = B::new();
    b.proc(5, 1, "launcher", "/usr/bin/server", 5);
    let c = b.conn();
    for pid in [10, 20] {
        b.proc(pid, 5, "server", "/usr/bin/server", pid as u64);
        let l = b.listener();
        b.hold(pid, 3, l, None).hold(pid, 4, c, Some(true));
    }
    b.hold(20, 5, c, Some(true));
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::DupCopyKept, "{f:#?}");
    assert_eq!(blamed(&f), vec![(20, 4), (20, 5), (10, 4)]);
}

#[test]
fn on_a_tie_the_first_root_in_pid_order_comes_first() {
    // 10 and 20 both hold two fds (dup-copy-kept): docs/causes.md, roots of
    // the same cause are blamed in pid order.
    let mut b = B::new();
    b.proc(5, 1, "launcher", "/usr/bin/server", 5);
    let c = b.conn();
    for pid in [10, 20] {
        b.proc(pid, 5, "server", "/usr/bin/server", pid as u64);
        let l = b.listener();
        b.hold(pid, 3, l, None)
            .hold(pid, 4, c, Some(true))
            .hold(pid, 5, c, Some(true));
    }
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::DupCopyKept, "{f:#?}");
    assert_eq!(blamed(&f), vec![(10, 4), (10, 5), (20, 4), (20, 5)]);
}

// ------------------------------------------------------------ thread-private fd tables

/// A server whose accepting thread (tid 21) has its own fd table: the
/// connections are only there. Returns (b, conn, conn).
fn thread_table_server() -> (B, Inode, Inode) {
    let mut b = B::new();
    b.proc(20, 1, "python3", "/usr/bin/python3", 20).threads = 2;
    let l = b.listener();
    let c = b.conn();
    let d = b.conn();
    b.hold(20, 3, l, None);
    for (fd, inode) in [(4, c), (5, d)] {
        b.get(20).sockets.push(SocketFd {
            fd,
            inode,
            cloexec: None,
            tid: Some(21),
        });
    }
    (b, c, d)
}

#[test]
fn a_thread_s_own_table_is_blamed_with_its_tid() {
    let (b, c, _) = thread_table_server();
    let f = b.finding(c);
    assert_eq!(f.cause, Cause::NeverClosed, "{f:#?}");
    assert_eq!(f.holders.len(), 1);
    assert_eq!((f.holders[0].pid, f.holders[0].tid), (20, Some(21)));
    assert_eq!(
        f.blamed
            .iter()
            .map(|b| (b.pid, b.fd, b.tid))
            .collect::<Vec<_>>(),
        vec![(20, 4, Some(21))]
    );
    // gdb must attach to the thread: close() in the leader would close
    // whatever the leader's table has at fd 4.
    let now = f.mitigation_text();
    assert!(
        now.starts_with("gdb -p 21 -batch -ex 'call (int)close(4)'"),
        "{now}"
    );
}

#[test]
fn a_group_in_one_thread_s_table_closes_them_in_that_thread() {
    let (b, _, _) = thread_table_server();
    let r = b.report();
    assert_eq!(r.groups.len(), 1, "{:#?}", r.groups);
    let now = r.groups[0].mitigation_text();
    assert!(
        now.starts_with("gdb -p 21 -batch -ex 'call (int)close(4)' -ex 'call (int)close(5)'"),
        "{now}"
    );
}

#[test]
fn fds_in_the_process_s_table_and_a_thread_s_are_not_closed_in_one_call() {
    let (mut b, _, _) = thread_table_server();
    let e = b.conn();
    b.hold(20, 6, e, None);
    let r = b.report();
    assert_eq!(r.groups.len(), 1, "{:#?}", r.groups);
    let now = r.groups[0].mitigation_text();
    assert!(now.starts_with("restart pid 20"), "{now}");
}

/// Sockets a look only counted (`serve`: `NetNs::unkept`) join
/// `summary.by_state` when their whole namespace is in scope, and only then:
/// a port scope cannot tell which of them it covers.
#[test]
fn counted_sockets_join_by_state_only_for_a_whole_namespace() {
    let mut b = B::new();
    b.proc(10, 1, "srv", "/usr/bin/srv", 10);
    let (l, c) = (b.listener(), b.conn());
    b.hold(10, 3, l, None).hold(10, 4, c, None);
    b.snap.namespaces.push(crate::model::NetNs {
        inode: 1,
        sockets: 7,
        unkept: [(TcpState::Established, 5)].into_iter().collect(),
        ..crate::model::NetNs::default()
    });
    let by_state = |scope: Scope| {
        let r = diagnose(&b.snap, &scope);
        (
            r.summary.by_state.get(&TcpState::Established).copied(),
            r.summary.by_state.get(&TcpState::CloseWait).copied(),
        )
    };
    assert_eq!(by_state(Scope::everything()), (Some(5), Some(1)));
    let ns = |n| Scope {
        netns: vec![n],
        ..Scope::everything()
    };
    assert_eq!(by_state(ns(1)), (Some(5), Some(1)));
    assert_eq!(by_state(ns(2)), (None, None));
    let port = Scope {
        ports: vec![PORT],
        ..Scope::everything()
    };
    assert_eq!(by_state(port), (None, Some(1)));
}
