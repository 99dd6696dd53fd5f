//! Live scans: each test builds a real leak with the `scenario` example
//! (real processes and sockets on loopback), runs the real `cwleak` binary
//! scoped to that scenario's process tree, and checks exact holders, blame
//! and cause. The machine may have other CLOSE_WAIT sockets: every check is
//! scoped with `--pid <driver>` (or `--port`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use support::*;

fn assert_summary(r: &Value, leaked: usize, cause: &str) {
    assert_eq!(
        r["summary"]["leaked"], leaked,
        "summary: {:#}",
        r["summary"]
    );
    assert_eq!(
        r["summary"]["by_cause"][cause], leaked,
        "summary.by_cause: {:#}",
        r["summary"]
    );
}

/// Scenarios where each socket has one holder who is also the one to blame.
fn assert_single_holder_blamed(r: &Value, s: &Scenario, cause_name: &str) {
    for sock in s.sockets() {
        let f = finding(r, sock.inode);
        assert_socket(f, &sock);
        assert_eq!(blamed(f), sock.holders, "blamed; finding: {f:#}");
        assert_eq!(cause(f), cause_name, "cause; finding: {f:#}");
    }
}

// ------------------------------------------------------------ fork

#[test]
fn fork_exited_blames_the_parent() {
    let s = Scenario::start("fork-exited");
    let server = s.pid("server");
    let fds = s.fds("server");
    let socks = s.sockets();
    assert_eq!(socks.len(), 3);
    for (sock, fd) in socks.iter().zip(&fds) {
        assert_eq!(sock.holders, vec![(server, *fd)], "facts: {}", s.facts);
    }

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    assert_single_holder_blamed(&r, &s, "fork-parent-kept");
    assert_summary(&r, 3, "fork-parent-kept");
    assert_eq!(r["schema_version"], 1);
    assert_eq!(code, 1);
}

#[test]
fn fork_alive_blames_the_parent_first() {
    let s = Scenario::start("fork-alive");
    let server = s.pid("server");
    let children = s.facts["children"].as_array().expect("children").clone();
    let socks = s.sockets();
    assert_eq!(socks.len(), 3);

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    for ((sock, fd), child) in socks.iter().zip(s.fds("server")).zip(&children) {
        let child = child["pid"].as_i64().expect("child pid") as Pid;
        assert_eq!(
            sock.holders,
            sorted(vec![(server, fd), (child, fd)]),
            "facts: {}",
            s.facts
        );
        let f = finding(&r, sock.inode);
        assert_socket(f, sock);
        assert_eq!(
            blamed(f).first(),
            Some(&(server, fd)),
            "blamed; finding: {f:#}"
        );
        assert_eq!(cause(f), "fork-parent-kept", "finding: {f:#}");
    }
    assert_summary(&r, 3, "fork-parent-kept");
    assert_eq!(code, 1);
}

// ------------------------------------------------------------ exec

#[test]
fn helper_inherits_blames_the_helper() {
    let s = Scenario::start("helper-inherits");
    let helper = s.pid("helper");
    let fd = s.fds("helper")[0];
    let sock = &s.sockets()[0];
    assert_eq!(sock.holders, vec![(helper, fd)], "facts: {}", s.facts);

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    let f = finding(&r, sock.inode);
    assert_socket(f, sock);
    assert_eq!(blamed(f), vec![(helper, fd)], "finding: {f:#}");
    assert_eq!(cause(f), "inherited-no-cloexec", "finding: {f:#}");
    assert_eq!(f["holders"][0]["comm"], "sleep", "finding: {f:#}");
    assert_eq!(f["holders"][0]["cloexec"], false, "finding: {f:#}");
    // The server closed its copy: no owner is said to hold one.
    assert!(
        !evidence_of(f)
            .iter()
            .any(|e| e.contains("still holds its copy")),
        "finding: {f:#}"
    );
    assert_summary(&r, 1, "inherited-no-cloexec");
    assert_eq!(code, 1);
}

fn evidence_of(f: &Value) -> Vec<String> {
    f["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect()
}

#[test]
fn helper_inherits_kept_blames_the_helper_first() {
    let s = Scenario::start("helper-inherits-kept");
    let (server, helper) = (s.pid("server"), s.pid("helper"));
    let fd = s.fds("helper")[0];
    let sock = &s.sockets()[0];
    assert_eq!(
        sock.holders,
        sorted(vec![(server, fd), (helper, fd)]),
        "facts: {}",
        s.facts
    );

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    let f = finding(&r, sock.inode);
    assert_socket(f, sock);
    assert_eq!(blamed(f).first(), Some(&(helper, fd)), "finding: {f:#}");
    assert_eq!(cause(f), "inherited-no-cloexec", "finding: {f:#}");
    // The server kept its copy too, and the evidence says so.
    assert!(
        evidence_of(f).iter().any(|e| e.starts_with("the owner ")
            && e.contains(&format!("pid {server} "))
            && e.contains("still holds its copy too")),
        "finding: {f:#}"
    );
    assert_eq!(code, 1);
}

#[test]
fn cgi_blames_the_parent_that_kept_its_copy() {
    let s = Scenario::start("cgi");
    let (server, cgi) = (s.pid("server"), s.pid("cgi"));
    let fd = s.fds("server")[0];
    let sock = &s.sockets()[0];
    assert_eq!(
        sock.holders,
        sorted(vec![(server, fd), (cgi, 0), (cgi, 1)]),
        "facts: {}",
        s.facts
    );

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    let f = finding(&r, sock.inode);
    assert_socket(f, sock);
    assert_eq!(blamed(f).first(), Some(&(server, fd)), "finding: {f:#}");
    assert_eq!(cause(f), "fork-parent-kept", "finding: {f:#}");
    assert_eq!(code, 1);
}

// ------------------------------------------------------------ one process

#[test]
fn never_closed_blames_the_server() {
    let s = Scenario::start("never-closed");
    let server = s.pid("server");
    let socks = s.sockets();
    assert_eq!(socks.len(), 2);
    for (sock, fd) in socks.iter().zip(s.fds("server")) {
        assert_eq!(sock.holders, vec![(server, fd)], "facts: {}", s.facts);
    }

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    assert_single_holder_blamed(&r, &s, "never-closed");
    assert_summary(&r, 2, "never-closed");
    assert_eq!(code, 1);
}

#[test]
fn dup_copy_is_one_process_holding_twice() {
    let s = Scenario::start("dup");
    let server = s.pid("server");
    let fds = s.fds("server");
    let sock = &s.sockets()[0];
    assert_eq!(
        sock.holders,
        vec![(server, fds[0]), (server, fds[1])],
        "facts: {}",
        s.facts
    );

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    let f = finding(&r, sock.inode);
    assert_socket(f, sock);
    let b = blamed(f);
    assert!(!b.is_empty(), "nobody blamed; finding: {f:#}");
    assert!(
        b.iter()
            .all(|&(pid, fd)| pid == server && fds.contains(&fd)),
        "blamed must be the server's own fds {fds:?}; finding: {f:#}"
    );
    assert_eq!(cause(f), "dup-copy-kept", "finding: {f:#}");
    assert_eq!(code, 1);
}

#[test]
fn scm_rights_blames_the_receiver() {
    let s = Scenario::start("scm-rights");
    let (server, receiver) = (s.pid("server"), s.pid("receiver"));
    let fd = s.fds("receiver")[0];
    let sock = &s.sockets()[0];
    assert_eq!(sock.holders, vec![(receiver, fd)], "facts: {}", s.facts);

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    let f = finding(&r, sock.inode);
    assert_socket(f, sock);
    assert!(!pids(&holders(f)).contains(&server), "finding: {f:#}");
    assert_eq!(blamed(f), vec![(receiver, fd)], "finding: {f:#}");
    assert_eq!(cause(f), "passed-fd-kept", "finding: {f:#}");
    // The receiver is a sibling running the same program: the evidence is
    // its place in the tree, not an exec it never made.
    let ev: Vec<&str> = f["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        ev.iter().any(|e| e.starts_with(&format!("pid {receiver} "))
            && e.contains("is neither an ancestor nor a descendant of")),
        "{ev:#?}"
    );
    assert!(
        !ev.iter().any(|e| e.contains("runs another program")),
        "{ev:#?}"
    );
    assert_eq!(code, 1);
}

#[test]
fn scm_rights_sender_that_kept_its_copy_is_blamed_after_the_receiver() {
    let s = Scenario::start("scm-rights-kept");
    let (server, receiver) = (s.pid("server"), s.pid("receiver"));
    let (sfd, rfd) = (s.fds("server")[0], s.fds("receiver")[0]);
    let sock = &s.sockets()[0];
    assert_eq!(
        sock.holders,
        sorted(vec![(server, sfd), (receiver, rfd)]),
        "facts: {}",
        s.facts
    );

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    let f = finding(&r, sock.inode);
    assert_socket(f, sock);
    assert_eq!(cause(f), "passed-fd-kept", "finding: {f:#}");
    // The receiver first (it closes what it received), then the sender
    // that kept its copy after sendmsg().
    assert_eq!(
        blamed(f),
        vec![(receiver, rfd), (server, sfd)],
        "finding: {f:#}"
    );
    assert_eq!(code, 1);
}

#[test]
fn client_side_blames_the_client() {
    let s = Scenario::start("client-side");
    let client = s.pid("client");
    let sock = &s.sockets()[0];
    assert_eq!(
        sock.holders,
        vec![(client, s.fds("client")[0])],
        "facts: {}",
        s.facts
    );
    assert_eq!(sock.remote.port(), s.port());

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    assert_single_holder_blamed(&r, &s, "never-closed");
    assert_eq!(code, 1);
}

#[test]
fn prefork_blames_the_worker_that_accepted() {
    let s = Scenario::start("prefork");
    let master = s.pid("master");
    let workers: Vec<Pid> = s.facts["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["pid"].as_i64().expect("worker pid") as Pid)
        .collect();
    let socks = s.sockets();
    assert_eq!(socks.len(), 2);
    for sock in &socks {
        assert_eq!(sock.holders.len(), 1, "facts: {}", s.facts);
        assert!(workers.contains(&sock.holders[0].0), "facts: {}", s.facts);
    }

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    assert_single_holder_blamed(&r, &s, "never-closed");
    for sock in &socks {
        let f = finding(&r, sock.inode);
        assert!(!pids(&holders(f)).contains(&master), "finding: {f:#}");
    }
    assert_eq!(code, 1);
}

// ------------------------------------------------------------ threads

fn assert_threaded(s: &Scenario) {
    let tgid = s.pid("server");
    let tids: Vec<Pid> = s.facts["server"]["tids"]
        .as_array()
        .expect("tids")
        .iter()
        .map(|t| t.as_i64().expect("tid") as Pid)
        .collect();
    assert!(!tids.contains(&tgid));
    let socks = s.sockets();
    assert_eq!(socks.len(), 2);

    let (code, r) = scan(s);
    assert_exactly_scenario_sockets(&r, s);
    for (sock, fd) in socks.iter().zip(s.fds("server")) {
        assert_eq!(sock.holders, vec![(tgid, fd)], "facts: {}", s.facts);
        let f = finding(&r, sock.inode);
        assert_socket(f, sock);
        for (pid, _) in holders(f) {
            assert!(
                !tids.contains(&pid),
                "a thread id {pid} as holder; finding: {f:#}"
            );
        }
        assert_eq!(blamed(f), vec![(tgid, fd)], "finding: {f:#}");
        assert_eq!(cause(f), "never-closed", "finding: {f:#}");
    }
    assert_eq!(code, 1);
}

#[test]
fn threaded_holder_is_the_process_not_the_thread() {
    assert_threaded(&Scenario::start("threaded"));
}

#[test]
fn threaded_zombie_leader_still_found_by_tgid() {
    let s = Scenario::start("threaded-leader-exit");
    assert_eq!(s.facts["server"]["leader_exited"], true);
    assert_threaded(&s);
}

// ------------------------------------------------------------ namespaces and families

#[test]
fn netns_socket_reported_in_its_namespace() {
    let s = Scenario::start("netns");
    let netns = s.facts["netns"].as_u64().expect("netns");
    assert_ne!(Some(netns), s.facts["host_netns"].as_u64());

    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    assert_single_holder_blamed(&r, &s, "never-closed");
    let f = finding(&r, s.inodes()[0]);
    assert_eq!(f["socket"]["netns"].as_u64(), Some(netns), "finding: {f:#}");
    assert_eq!(code, 1);
}

#[test]
fn ipv6_loopback() {
    let s = Scenario::start("ipv6");
    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    assert_single_holder_blamed(&r, &s, "never-closed");
    let f = finding(&r, s.inodes()[0]);
    assert_eq!(f["socket"]["family"], "ipv6", "finding: {f:#}");
    let local: std::net::SocketAddr = f["socket"]["local"]
        .as_str()
        .expect("local")
        .parse()
        .expect("local");
    assert_eq!(local.ip(), std::net::Ipv6Addr::LOCALHOST, "finding: {f:#}");
    assert_eq!(code, 1);
}

#[test]
fn ipv4_mapped_on_dual_stack_listener() {
    let s = Scenario::start("mapped");
    let (code, r) = scan(&s);
    assert_exactly_scenario_sockets(&r, &s);
    assert_single_holder_blamed(&r, &s, "never-closed");
    let f = finding(&r, s.inodes()[0]);
    assert_eq!(f["socket"]["family"], "ipv6", "finding: {f:#}");
    let local: std::net::SocketAddr = f["socket"]["local"]
        .as_str()
        .expect("local")
        .parse()
        .expect("local");
    assert_eq!(
        local.ip(),
        "::ffff:127.0.0.1".parse::<std::net::IpAddr>().expect("ip"),
        "finding: {f:#}"
    );
    assert_eq!(code, 1);
}

// ------------------------------------------------------------ no holder

#[test]
fn accept_queue_has_no_visible_holder() {
    let s = Scenario::start("accept-queue");
    let sock = &s.sockets()[0];
    assert_eq!(sock.inode, 0);

    let mut scope = args(["--port".to_string(), s.port().to_string()]);
    scope.extend(own_netns());
    let (code, r) = cwleak_json(&scope);
    let ours: Vec<&Value> = findings_for_port(&r, s.port())
        .into_iter()
        .filter(|f| f["socket"]["remote"].as_str() == Some(sock.remote.to_string().as_str()))
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one finding for {} -> {}\nreport: {r:#}",
        sock.remote,
        sock.local
    );
    let f = ours[0];
    assert_eq!(f["socket"]["state"], "CLOSE_WAIT", "finding: {f:#}");
    assert_eq!(f["socket"]["inode"], 0, "finding: {f:#}");
    assert_eq!(holders(f), vec![], "finding: {f:#}");
    assert_eq!(cause(f), "no-visible-holder", "finding: {f:#}");
    assert_eq!(code, 1);
}

// ------------------------------------------------------------ no leak

#[test]
fn healthy_connections_are_not_leaks() {
    let s = Scenario::start("healthy");
    let (code, r) = scan(&s);
    assert_eq!(findings(&r).len(), 0, "report: {r:#}");
    assert_eq!(r["summary"]["leaked"], 0, "summary: {:#}", r["summary"]);
    // A live scan asks the kernel for CLOSE_WAIT and LISTEN only.
    assert_eq!(
        r["scan"]["states_read"],
        serde_json::json!(["CLOSE_WAIT", "LISTEN"])
    );
    let by_state = &r["summary"]["by_state"];
    assert!(by_state["ESTABLISHED"].is_null(), "by_state: {by_state:#}");
    assert!(
        by_state["LISTEN"].as_u64() >= Some(1),
        "by_state: {by_state:#}"
    );
    assert_eq!(code, 0);
}

/// Whether inode's socket is still in CLOSE_WAIT, as /proc/net/tcp says.
fn in_close_wait(inode: u64) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.get(3) == Some(&"08") && cols.get(9) == Some(&inode.to_string().as_str())
    })
}

/// cwleak is stopped (SIGSTOP) inside its settle window, the server closes
/// its copy, the socket is seen to leave CLOSE_WAIT, and only then does
/// cwleak go on to its second look: the close lands inside the window by
/// construction, whatever the machine's speed.
#[test]
fn settle_drops_a_socket_closed_within_the_window() {
    if !support::skip::is_root() {
        support::skip::skip(
            "settle_drops_a_socket_closed_within_the_window",
            "needs root to read another process's /proc/PID/syscall",
        );
        return;
    }
    let s = Scenario::start_with("transient", &["--close-on-sigusr1"]);
    let inode = s.inodes()[0];
    assert!(in_close_wait(inode));
    let mut a = args(["scan", "--format", "json", "--settle", "3s"]);
    a.extend(s.scope());
    let cw = support::window::stop_in_settle(&a);
    // SAFETY: plain syscall to the scenario's server, alive until dropped.
    unsafe { libc::kill(s.pid("server"), libc::SIGUSR1) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while in_close_wait(inode) {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never closed its copy"
        );
        std::thread::yield_now();
    }
    let (status, stdout) = cw.resume();
    assert_eq!(status.code(), Some(0), "{stdout}");
    let r: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(findings_for_port(&r, s.port()).len(), 0, "report: {r:#}");
    assert_eq!(r["summary"]["leaked"], 0, "summary: {:#}", r["summary"]);
    assert_eq!(r["summary"]["transient"], 1, "summary: {:#}", r["summary"]);
}

#[test]
fn settle_keeps_a_persistent_leak() {
    let s = Scenario::start("never-closed");
    let mut a = s.scope();
    a.extend(args(["--settle", "1500ms"]));
    let (code, r) = cwleak_json(&a);
    assert_exactly_scenario_sockets(&r, &s);
    assert_eq!(r["summary"]["transient"], 0, "summary: {:#}", r["summary"]);
    // The sockets were in CLOSE_WAIT before the first look, and the ages
    // are those of the second look, a whole window later.
    for f in findings(&r) {
        let age = f["socket"]["close_wait_ms"].as_u64();
        assert!(age >= Some(1500), "age from the first look: {f:#}");
    }
    assert_eq!(code, 1);
}

// ------------------------------------------------------------ scope

#[test]
fn port_scope_selects_the_scenario_sockets() {
    let s = Scenario::start("never-closed");
    let mut scope = args(["--port".to_string(), s.port().to_string()]);
    scope.extend(own_netns());
    let (code, r) = cwleak_json(&scope);
    assert_exactly_scenario_sockets(&r, &s);
    assert_single_holder_blamed(&r, &s, "never-closed");
    assert_eq!(code, 1);
}

// ------------------------------------------------------------ formats

#[test]
fn text_names_the_blamed_pid_and_cause() {
    let s = Scenario::start("never-closed");
    let run = cwleak_scan("text", &s.scope());
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let server = s.pid("server").to_string();
    assert!(
        run.stdout.contains(&server),
        "no pid {server} in:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("never-closed"),
        "no cause in:\n{}",
        run.stdout
    );
}

#[test]
fn markdown_names_the_blamed_pid() {
    let s = Scenario::start("helper-inherits");
    let run = cwleak_scan("markdown", &s.scope());
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    let helper = s.pid("helper").to_string();
    assert!(
        run.stdout.contains(&helper),
        "no pid {helper} in:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("inherited-no-cloexec"),
        "no cause in:\n{}",
        run.stdout
    );
}

#[test]
fn dot_is_a_digraph() {
    let s = Scenario::start("fork-alive");
    let run = cwleak_scan("dot", &s.scope());
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert!(
        run.stdout.trim_start().starts_with("digraph"),
        "not a digraph:\n{}",
        run.stdout
    );
}

// ------------------------------------------------------------ the driver itself

/// Dropping a scenario leaves no process behind, exec'd helpers included.
#[test]
fn scenario_driver_reaps_everything() {
    let pids: Vec<Pid> = {
        let s = Scenario::start("cgi");
        let p = vec![s.driver(), s.pid("server"), s.pid("cgi")];
        for &pid in &p {
            assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        }
        p
    };
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived its scenario"
        );
    }
}
