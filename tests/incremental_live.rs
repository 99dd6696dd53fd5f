//! The incremental source against the live kernel, in the cases its fd-count
//! signature cannot see: a process that trades one fd for another keeps
//! its count. The test process itself holds the sockets (loopback only), so
//! it controls its own fd table exactly; the tests take turns (`ONE_AT_A_TIME`),
//! so no other test thread opens fds meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use cwleak::model::{Inode, Snapshot};
#[path = "support/skip.rs"]
mod skip;

use cwleak::source::{FdMethod, Incremental, SourceConfig};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Held for the whole of each test: the fd table is the test's alone.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn me() -> i32 {
    i32::try_from(std::process::id()).expect("pid")
}

/// Our (fd, inode) pairs for sockets, sorted.
fn mine(s: &Snapshot) -> Vec<(i32, Inode)> {
    let mut v: Vec<(i32, Inode)> = s
        .processes
        .iter()
        .find(|p| p.pid == me())
        .expect("this process in the snapshot")
        .sockets
        .iter()
        .map(|s| (s.fd, s.inode))
        .collect();
    v.sort_unstable();
    v
}

fn inode_of(fd: RawFd) -> Inode {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("fd link");
    let text = link.to_string_lossy();
    text.strip_prefix("socket:[")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("fd {fd} is {text}"))
}

/// Whether the kernel's own table shows `inode` in CLOSE_WAIT.
fn kernel_says_close_wait(inode: Inode) -> bool {
    let table = std::fs::read_to_string("/proc/self/net/tcp").expect("net/tcp");
    table.lines().skip(1).any(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        cols.get(3) == Some(&"08") && cols.get(9).and_then(|i| i.parse().ok()) == Some(inode)
    })
}

/// This process's socket fds as its own /proc/self/fd lists them: the truth
/// the looks are checked against.
fn own_sockets() -> Vec<(i32, Inode)> {
    let mut v: Vec<(i32, Inode)> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(e.path()).ok()?;
            let inode = link
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            Some((fd, inode))
        })
        .collect();
    v.sort_unstable();
    v
}

/// A server-side socket in CLOSE_WAIT: accepted, and the client has closed.
fn close_wait(listener: &TcpListener) -> TcpStream {
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    drop(client);
    let inode = inode_of(server.as_raw_fd());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kernel_says_close_wait(inode) {
        assert!(
            Instant::now() < deadline,
            "socket {inode} never reached CLOSE_WAIT"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// One walking thread: while a look reads this process's fd directory, no
/// other thread of the look has a file open, so its size is this test's.
/// Fd tables from /proc: the reuse of the last look is what is tested (where
/// the task_file iterator runs, every look is a full one).
fn cfg() -> SourceConfig {
    SourceConfig {
        threads: 1,
        fds: FdMethod::Proc,
        ..SourceConfig::default()
    }
}

/// The look has socket `inode` of namespace `netns`, and names this
/// process's fd of `held` as its holder.
fn assert_held_here(snap: &Snapshot, netns: Inode, held: &TcpStream, inode: Inode) {
    assert!(
        snap.sockets
            .iter()
            .any(|s| s.inode == inode && s.netns == netns),
        "the CLOSE_WAIT socket {inode} of namespace {netns} is in the look"
    );
    assert!(
        mine(snap).contains(&(held.as_raw_fd(), inode)),
        "holder fd {} of {inode} not found: {:?}",
        held.as_raw_fd(),
        mine(snap)
    );
}

/// Whether fd directories' sizes count their fds (Linux 6.2+); before,
/// every look walks, and the test that needs them is skipped.
fn fd_dirs_have_sizes(test: &str) -> bool {
    let sized = std::fs::metadata("/proc/self/fd").map_or(0, |m| m.len()) > 0;
    if !sized {
        skip::skip(test, "fd directories have no size on this kernel");
    }
    sized
}

fn dup(fd: RawFd) -> OwnedFd {
    // SAFETY: dup returns a new fd we own, or -1.
    let n = unsafe { libc::dup(fd) };
    assert!(n >= 0, "dup: {}", std::io::Error::last_os_error());
    // SAFETY: `n` is a fresh fd nobody else owns.
    unsafe { OwnedFd::from_raw_fd(n) }
}

#[test]
fn fds_traded_at_the_same_count_are_still_seen() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let devnull = std::fs::File::open("/dev/null").expect("/dev/null");
    // Far apart periodic full walks: only the checks can catch the trades.
    let mut inc = Incremental::new(1000);

    // 1. A CLOSE_WAIT socket held through two fds; one of them then becomes
    //    /dev/null (dup2): same count, one holder fewer.
    let first = close_wait(&listener);
    let copy = dup(first.as_raw_fd());
    let inode = inode_of(first.as_raw_fd());
    let snap = inc.read(&cfg()).expect("first look");
    assert!(mine(&snap).contains(&(copy.as_raw_fd(), inode)));
    // SAFETY: both fds are open; dup2 replaces `copy`'s target atomically.
    assert!(unsafe { libc::dup2(devnull.as_raw_fd(), copy.as_raw_fd()) } >= 0);
    let snap = inc.read(&cfg()).expect("second look");
    assert!(
        !mine(&snap).contains(&(copy.as_raw_fd(), inode)),
        "{:?}",
        mine(&snap)
    );
    assert_eq!(mine(&snap), own_sockets());
    assert!(inc.stats().rewalked >= 1, "{:?}", inc.stats());

    // 2. A new CLOSE_WAIT socket opened while another fd is closed: same
    //    count, a socket the cache has never seen.
    let spare = std::fs::File::open("/dev/null").expect("/dev/null");
    let snap = inc.read(&cfg()).expect("third look");
    assert!(!inc.stats().full);
    let before = mine(&snap);
    let second = close_wait(&listener);
    drop(spare);
    let snap = inc.read(&cfg()).expect("look after the trade");
    assert!(inc.stats().rewalked >= 1, "{:?}", inc.stats());
    let inode2 = inode_of(second.as_raw_fd());
    assert!(
        mine(&snap).contains(&(second.as_raw_fd(), inode2)),
        "new socket missed: before {before:?}, now {:?}",
        mine(&snap)
    );
    assert_eq!(mine(&snap), own_sockets());
    drop((first, copy, second, devnull, listener));
}

/// With the task_file iterator, every look signs every process by the
/// files its fds point at, and reads again those whose signature changed:
/// a trade at the same count (dup2 over an fd), a new socket and a closed
/// one are all seen, and the processes that did not change are reused.
#[test]
fn with_the_iterator_a_look_reads_again_the_processes_whose_fds_moved() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !skip::is_root() {
        skip::skip(
            "incremental_live::with_the_iterator_a_look_reads_again_the_processes_whose_fds_moved",
            "the task_file iterator needs root",
        );
        return;
    }
    let cfg = SourceConfig {
        fds: FdMethod::Bpf,
        ..cfg()
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let devnull = std::fs::File::open("/dev/null").expect("/dev/null");
    let mut inc = Incremental::new(1000);
    let first = close_wait(&listener);
    let copy = dup(first.as_raw_fd());
    let inode = inode_of(first.as_raw_fd());
    let snap = inc.read(&cfg).expect("first look");
    assert!(inc.stats().full, "{:?}", inc.stats());
    assert!(mine(&snap).contains(&(copy.as_raw_fd(), inode)));
    assert_eq!(mine(&snap), own_sockets());
    // SAFETY: both fds are open; dup2 replaces `copy`'s target atomically.
    assert!(unsafe { libc::dup2(devnull.as_raw_fd(), copy.as_raw_fd()) } >= 0);
    let second = close_wait(&listener);
    let snap = inc.read(&cfg).expect("second look");
    let st = inc.stats();
    // Not everything read again: signed, and this process (at least) walked.
    assert!(st.pointers && !st.full, "{st:?}");
    assert!(st.walked >= 1 && st.walked < st.processes, "{st:?}");
    let inode2 = inode_of(second.as_raw_fd());
    assert!(!mine(&snap).contains(&(copy.as_raw_fd(), inode)));
    assert!(mine(&snap).contains(&(second.as_raw_fd(), inode2)));
    assert_eq!(mine(&snap), own_sockets());
    // The same trade with nothing else changed: the count is the same, the
    // signature is not.
    // SAFETY: both fds are open.
    assert!(unsafe { libc::dup2(first.as_raw_fd(), copy.as_raw_fd()) } >= 0);
    let snap = inc.read(&cfg).expect("look after the second trade");
    assert!(mine(&snap).contains(&(copy.as_raw_fd(), inode)));
    assert_eq!(mine(&snap), own_sockets());
    // The first socket's fds close: no holder of it is left.
    let (first_fd, copy_fd) = (first.as_raw_fd(), copy.as_raw_fd());
    drop((first, copy));
    let snap = inc.read(&cfg).expect("look after the close");
    assert!(inc.stats().pointers, "{:?}", inc.stats());
    assert!(!mine(&snap)
        .iter()
        .any(|&(fd, i)| fd == first_fd || fd == copy_fd || i == inode));
    assert_eq!(mine(&snap), own_sockets());
    drop((second, devnull, listener));
}

/// A process in a network namespace of its own (`unshare --net`, loopback
/// up), killed and reaped on drop.
/// What the tests that iterate in a namespace of their own begin with:
/// their turn, root and fd directories that count fds (else the test is
/// skipped: None), a namespace held by a child, and a config that iterates
/// and reads only that namespace's tables.
fn iterating_in_a_namespace(
    test: &str,
) -> Option<(
    std::sync::MutexGuard<'static, ()>,
    NetnsHolder,
    SourceConfig,
)> {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !skip::is_root() {
        skip::skip(test, "needs root for the iterator and a network namespace");
        return None;
    }
    if !fd_dirs_have_sizes(test) {
        return None;
    }
    let (ns, netns) = NetnsHolder::start();
    let cfg = SourceConfig {
        fds: FdMethod::Bpf,
        tables_for: cwleak::source::TableScope {
            netns: vec![netns],
            ..Default::default()
        },
        ..cfg()
    };
    Some((turn, ns, cfg))
}

struct NetnsHolder(std::process::Child);

impl NetnsHolder {
    fn start() -> (NetnsHolder, Inode) {
        let ours = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let child = std::process::Command::new("unshare")
            .args(["--net", "sh", "-c", "ip link set lo up && exec sleep 600"])
            .spawn()
            .expect("unshare");
        let holder = NetnsHolder(child);
        let path = format!("/proc/{}/ns/net", holder.0.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let link = std::fs::read_link(&path).expect("child's netns");
            // Up once sleep runs: its comm says so (lo was raised before).
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", holder.0.id()))
                .unwrap_or_default();
            if link != ours && comm.trim() == "sleep" {
                let text = link.to_string_lossy().into_owned();
                let inode = text
                    .strip_prefix("net:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|i| i.parse().ok())
                    .expect("net:[inode]");
                return (holder, inode);
            }
            assert!(Instant::now() < deadline, "the namespace never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A CLOSE_WAIT socket in this namespace, held by the test process.
    fn close_wait(&self) -> (TcpListener, TcpStream, Inode) {
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.0.id())).expect("ns file");
        close_wait_in(ns)
    }
}

/// A CLOSE_WAIT socket in the namespace of `ns`, held by the test process:
/// made by a thread that enters the namespace (sockets belong to the
/// namespace they are made in, whoever holds them after).
fn close_wait_in(ns: std::fs::File) -> (TcpListener, TcpStream, Inode) {
    {
        std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with an open namespace fd.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0,
                "setns: {}",
                std::io::Error::last_os_error()
            );
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind in the namespace");
            let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            drop(client);
            let inode = inode_of(server.as_raw_fd());
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let table = std::fs::read_to_string("/proc/thread-self/net/tcp").expect("net/tcp");
                let cw = table.lines().skip(1).any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.get(3) == Some(&"08")
                        && cols.get(9).and_then(|i| i.parse().ok()) == Some(inode)
                });
                if cw {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "socket {inode} never reached CLOSE_WAIT"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            (listener, server, inode)
        })
        .join()
        .expect("socket thread")
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Tables first: a look whose tables hold no CLOSE_WAIT socket walks no fd
/// table that changed (it counts the process's open fds from its fd
/// directory's size), and the next look that finds one walks the processes
/// that changed meanwhile and names the holder.
#[test]
fn a_look_without_close_wait_counts_fds_and_the_next_finds_the_holder() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let test =
        "incremental_live::a_look_without_close_wait_counts_fds_and_the_next_finds_the_holder";
    if !skip::is_root() {
        skip::skip(test, "needs root for a network namespace of its own");
        return;
    }
    let (ns, netns) = NetnsHolder::start();
    let cfg = SourceConfig {
        tables_for: cwleak::source::TableScope {
            netns: vec![netns],
            ..Default::default()
        },
        ..cfg()
    };
    let mut inc = Incremental::new(1000);
    let snap = inc.read(&cfg).expect("first look");
    assert!(
        !inc.stats().quiet,
        "the first look walks: {:?}",
        inc.stats()
    );
    assert_eq!(snap.namespaces.len(), 1);
    let me_fds = |s: &Snapshot| {
        s.processes
            .iter()
            .find(|p| p.pid == me())
            .map(|p| p.fd_count)
            .expect("this process in the look")
    };
    // Our fd count changes; nothing in the namespace is in CLOSE_WAIT.
    let extra: Vec<std::fs::File> = (0..5)
        .map(|_| std::fs::File::open("/dev/null").expect("/dev/null"))
        .collect();
    let truth = std::fs::read_dir("/proc/self/fd").expect("fd dir").count();
    let snap = inc.read(&cfg).expect("quiet look");
    let st = inc.stats();
    if !fd_dirs_have_sizes(test) {
        return;
    }
    assert!(st.quiet, "no CLOSE_WAIT socket in the namespace: {st:?}");
    // The directory listing itself held one more fd than the look sees.
    assert_eq!(me_fds(&snap) as usize, truth - 1, "{st:?}");
    // Socket fds are counted, not listed: as many as we hold.
    let me_now = snap
        .processes
        .iter()
        .find(|p| p.pid == me())
        .expect("this process");
    assert_eq!(
        me_now.sockets.len() + me_now.other_sockets as usize,
        own_sockets().len()
    );
    assert!(snap
        .sockets
        .iter()
        .all(|s| s.state != cwleak::model::TcpState::CloseWait));
    // A CLOSE_WAIT socket in the namespace, held here: the next look walks us.
    let (listener, server, inode) = ns.close_wait();
    let snap = inc.read(&cfg).expect("look with a CLOSE_WAIT socket");
    assert!(!inc.stats().quiet, "{:?}", inc.stats());
    assert_held_here(&snap, netns, &server, inode);
    assert_eq!(mine(&snap), own_sockets());
    drop((extra, listener, server, ns));
}

/// With the task_file iterator (`--fds bpf`) every look with a CLOSE_WAIT
/// socket reads every fd table from it, but a look without one keeps its
/// walks for the next: a look whose tables hold no CLOSE_WAIT socket is
/// quiet there too.
#[test]
fn with_the_iterator_a_look_without_close_wait_keeps_the_next_quiet() {
    let test = "incremental_live::with_the_iterator_a_look_without_close_wait_keeps_the_next_quiet";
    let Some((_turn, ns, cfg)) = iterating_in_a_namespace(test) else {
        return;
    };
    let mut inc = Incremental::new(1000);
    inc.read(&cfg).expect("first look");
    assert!(
        !inc.stats().quiet,
        "the first look walks: {:?}",
        inc.stats()
    );
    let snap = inc.read(&cfg).expect("second look");
    assert!(inc.stats().quiet, "{:?}", inc.stats());
    assert!(snap.processes.iter().any(|p| p.pid == me()));
    drop(ns);
}

/// A quiet look's early tables come from the namespaces processes sit in; a
/// namespace only a file leads to (`--netns PATH`, /run/netns) is read after
/// the walk. A CLOSE_WAIT socket found there makes the look walk every
/// process after all, and its holder is named.
#[test]
fn a_close_wait_socket_behind_a_namespace_file_ends_a_quiet_look() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let test = "incremental_live::a_close_wait_socket_behind_a_namespace_file_ends_a_quiet_look";
    if !skip::is_root() {
        skip::skip(test, "needs root for network namespaces of its own");
        return;
    }
    // A: a process sits in it. B: only an open file of this process keeps
    // it alive once its process is gone.
    let (a, netns_a) = NetnsHolder::start();
    let (b, netns_b) = NetnsHolder::start();
    let file_b = std::fs::File::open(format!("/proc/{}/ns/net", b.0.id())).expect("ns file");
    drop(b);
    let path_b = std::path::PathBuf::from(format!("/proc/self/fd/{}", file_b.as_raw_fd()));
    let cfg = SourceConfig {
        tables_for: cwleak::source::TableScope {
            netns: vec![netns_a, netns_b],
            ..Default::default()
        },
        netns_files: vec![path_b],
        netns_dir: None,
        ..cfg()
    };
    let mut inc = Incremental::new(1000);
    let snap = inc.read(&cfg).expect("first look");
    assert_eq!(snap.namespaces.len(), 2, "{:?}", snap.namespaces);
    // Made through a second open file: this process's fd count changes, so
    // a quiet look would count it, not walk it.
    let (listener, server, inode) = close_wait_in(
        std::fs::File::open(format!("/proc/self/fd/{}", file_b.as_raw_fd())).expect("ns file"),
    );
    let snap = inc
        .read(&cfg)
        .expect("look with a CLOSE_WAIT socket behind the file");
    assert!(!inc.stats().quiet, "{:?}", inc.stats());
    assert_held_here(&snap, netns_b, &server, inode);
    drop((listener, server, file_b, a));
}

/// This process's socket fds in a look, and the socket fds it only counted.
fn mine_counted(s: &Snapshot) -> (Vec<(i32, Inode)>, u32) {
    let p = s
        .processes
        .iter()
        .find(|p| p.pid == me())
        .expect("this process in the look");
    (mine(s), p.other_sockets)
}

/// With the task_file iterator and only the leak states read (`watch`,
/// `serve`), a look prunes its fds as soon as its tables are read: it holds
/// what a one-shot look of the same states holds. Its whole lists are kept
/// (signed by their fd pointers, however leaky the host), so the first look
/// that finds no CLOSE_WAIT socket left is quiet.
#[test]
fn a_pruned_look_holds_what_a_one_shot_look_holds_and_quiet_comes_back() {
    let test =
        "incremental_live::a_pruned_look_holds_what_a_one_shot_look_holds_and_quiet_comes_back";
    let Some((_turn, ns, cfg)) = iterating_in_a_namespace(test) else {
        return;
    };
    let cfg = SourceConfig {
        states: cwleak::source::TableStates::Leaks,
        ..cfg
    };
    let (listener, server, inode) = ns.close_wait();
    let copy = dup(server.as_raw_fd());
    // A socket of the host's namespace: not in the tables read, only counted.
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut inc = Incremental::new(1000);
    inc.read(&cfg).expect("first look");
    let pruned = inc.read(&cfg).expect("second look");
    assert!(inc.stats().pointers, "{:?}", inc.stats());
    let one_shot = cwleak::source::read(&cfg).expect("one-shot look");
    let (held, counted) = mine_counted(&pruned);
    assert!(held.contains(&(server.as_raw_fd(), inode)), "{held:?}");
    assert!(held.contains(&(copy.as_raw_fd(), inode)), "{held:?}");
    assert!(
        !held.iter().any(|&(fd, _)| fd == other.as_raw_fd()),
        "{held:?}"
    );
    assert!(counted >= 1, "the host socket is counted: {counted}");
    assert_eq!((held, counted), mine_counted(&one_shot));
    // No CLOSE_WAIT socket left: the next look is quiet, and so is the
    // one after.
    drop((server, copy));
    inc.read(&cfg).expect("look after the close");
    assert!(inc.stats().quiet, "{:?}", inc.stats());
    inc.read(&cfg).expect("next look");
    assert!(inc.stats().quiet, "{:?}", inc.stats());
    drop((listener, other, ns));
}

/// A child holding one CLOSE_WAIT socket at two fds (0, and 5 without
/// O_CLOEXEC) flips FD_CLOEXEC of fd 5 on SIGUSR1 and says so: a look that
/// reuses it (its fds did not move) must still see the flag as it is now,
/// not as the look before read it.
#[test]
fn with_the_iterator_a_reused_process_shows_its_close_on_exec_flag_as_it_is() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let test = "incremental_live::with_the_iterator_a_reused_process_shows_its_close_on_exec_flag_as_it_is";
    if !skip::is_root() {
        skip::skip(test, "the task_file iterator needs root");
        return;
    }
    use std::io::BufRead;
    let cfg = SourceConfig {
        fds: FdMethod::Bpf,
        ..cfg()
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = close_wait(&listener);
    let inode = inode_of(server.as_raw_fd());
    let script = "import fcntl, os, signal\n\
        os.dup2(0, 5)\n\
        def flip(*_):\n\
        \x20   fcntl.fcntl(5, fcntl.F_SETFD, fcntl.fcntl(5, fcntl.F_GETFD) ^ fcntl.FD_CLOEXEC)\n\
        \x20   print('flipped', flush=True)\n\
        signal.signal(signal.SIGUSR1, flip)\n\
        print('ready', flush=True)\n\
        while True:\n\
        \x20   signal.pause()\n";
    let child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::from(OwnedFd::from(server)))
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            skip::skip(test, &format!("no python3: {e}"));
            return;
        }
    };
    let pid = i32::try_from(child.id()).expect("pid");
    let mut said = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut next_line = || {
        let mut line = String::new();
        said.read_line(&mut line).expect("the child's answer");
        line.trim().to_string()
    };
    // The flags of its two fds of the socket, as a look shows them.
    let flags = |snap: &Snapshot| -> Vec<(i32, Option<bool>)> {
        let mut v: Vec<(i32, Option<bool>)> = snap
            .processes
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| {
                p.sockets
                    .iter()
                    .filter(|s| s.inode == inode)
                    .map(|s| (s.fd, s.cloexec))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_eq!(next_line(), "ready");
        let mut inc = Incremental::new(1000);
        let snap = inc.read(&cfg).expect("first look");
        assert_eq!(flags(&snap), [(0, Some(false)), (5, Some(false))]);
        let snap = inc.read(&cfg).expect("second look");
        assert_eq!(flags(&snap), [(0, Some(false)), (5, Some(false))]);
        for now in [true, false] {
            // SAFETY: kill(2) on our own child.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
            assert_eq!(next_line(), "flipped");
            let snap = inc.read(&cfg).expect("look after a flip");
            let st = inc.stats();
            assert!(st.pointers && !st.full, "{st:?}");
            assert_eq!(flags(&snap), [(0, Some(false)), (5, Some(now))]);
        }
    }));
    let _ = child.kill();
    let _ = child.wait();
    drop(listener);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
