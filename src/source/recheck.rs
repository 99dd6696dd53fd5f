//! The settle window's second look: only the sockets that were in CLOSE_WAIT
//! the first time, and only the fds that held them. No second walk.

use super::root::{readlink_at, ProcRoot};
use super::sock_diag::{DumpRequest, Wanted};
use super::tables::{self, NsMember, TableMethod};
use crate::model::{Inode, Pid, Process, Settle, Snapshot, SocketKey, TcpSocket, TcpState};
use crate::parse::link;
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use rustc_hash::{FxHashMap, FxHashSet};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

/// Look again at the CLOSE_WAIT sockets of a live snapshot and fold the answer
/// into it: sockets gone from CLOSE_WAIT become transient, fds closed since
/// the first look stop being holders, and close-wait ages are refreshed.
pub fn settle(snap: &mut Snapshot, method: TableMethod, window_ms: u64) {
    let cw: FxHashSet<SocketKey> = snap
        .sockets
        .iter()
        .filter(|s| s.state == TcpState::CloseWait)
        .map(|s| s.key())
        .collect();
    settle_these(snap, method, window_ms, cw);
}

/// `settle`, for these CLOSE_WAIT sockets only (the others are left as the
/// first look saw them).
pub fn settle_these(
    snap: &mut Snapshot,
    method: TableMethod,
    window_ms: u64,
    cw: FxHashSet<SocketKey>,
) {
    let root = ProcRoot::new(&snap.meta.proc_root);
    let req = DumpRequest::only(&[TcpState::CloseWait], true);
    let members = members_with_close_wait(snap, &cw);
    let mut by_ns: FxHashMap<Inode, Vec<&TcpSocket>> = FxHashMap::default();
    for s in snap.sockets.iter().filter(|s| cw.contains(&s.key())) {
        by_ns.entry(s.netns).or_default().push(s);
    }
    let live = snap.meta.live;
    // The namespaces' dumps side by side (each walks the kernel's whole
    // socket hash), and the fds re-read meanwhile: they do not depend on them.
    let (reads, closed) = std::thread::scope(|s| {
        let closed = s.spawn(|| closed_fds(snap, &root, &cw));
        let reads = crate::par::spread(&members, 0, |ms| {
            ms.filter_map(|candidates| {
                let netns = candidates.first()?.netns;
                let mine = by_ns.get(&netns).map_or(&[][..], Vec::as_slice);
                if let Some(found) = looked_up(&root, live, method, candidates, mine) {
                    return Some((netns, found, true, Vec::new()));
                }
                let mut warnings = Vec::new();
                let (t, read, _) = tables::read_namespace_via(
                    &root,
                    live,
                    method,
                    candidates.iter().cloned(),
                    &req,
                    &mut warnings,
                )?;
                Some((t.namespace.inode, t.sockets, read, warnings))
            })
            .collect::<Vec<_>>()
        });
        (reads, crate::par::join(closed))
    });
    // What the second look saw of each socket, by the digest of its key,
    // in a sorted vector of the exact size: on a host with 40,000 CLOSE_WAIT
    // sockets a map of whole keys was this look's largest allocation.
    let mut still: Vec<(u64, Progress)> = Vec::with_capacity(cw.len());
    let mut warnings = Vec::new();
    // A namespace not read again says nothing about its sockets: they stay
    // as the first look saw them, never counted as transient.
    let mut unread: FxHashSet<Inode> = FxHashSet::default();
    for (netns, sockets, read, w) in reads.into_iter().flatten() {
        warnings.extend(w);
        if !read {
            unread.insert(netns);
        }
        for s in sockets.iter().filter(|s| s.state == TcpState::CloseWait) {
            if cw.contains(&s.key()) {
                still.push((
                    s.key().digest(),
                    Progress {
                        last_ack_ms: s.last_ack_ms,
                        bytes_acked: s.bytes_acked,
                        send_q: s.send_q,
                    },
                ));
            }
        }
    }
    still.sort_unstable_by_key(|(k, _)| *k);
    let seen_again = |k: &SocketKey| -> Option<&Progress> {
        let d = k.digest();
        let i = still.binary_search_by_key(&d, |(k, _)| *k).ok()?;
        Some(&still[i].1)
    };
    for p in &mut snap.processes {
        p.sockets.retain(|s| !closed.contains(&(p.pid, s.fd)));
    }
    let mut still_sending = Vec::new();
    for s in snap
        .sockets
        .iter_mut()
        .filter(|s| s.state == TcpState::CloseWait)
    {
        let Some(now) = seen_again(&s.key()) else {
            continue;
        };
        if sent_since(s, now) {
            still_sending.push(s.key());
        }
        if let Some(age) = now.last_ack_ms {
            s.last_ack_ms = Some(age);
        }
        s.bytes_acked = now.bytes_acked.or(s.bytes_acked);
        s.send_q = now.send_q;
    }
    still_sending.sort_by_key(|k| (k.netns, k.inode, k.local, k.remote));
    let mut transient: Vec<SocketKey> = cw
        .into_iter()
        .filter(|k| seen_again(k).is_none() && !unread.contains(&k.netns))
        .collect();
    transient.sort_by_key(|k| (k.netns, k.inode, k.local, k.remote));
    // Warnings in pid order, as the first look's.
    warnings.sort_by_key(|w| w.pid);
    snap.warnings.extend(warnings);
    snap.settle = Some(Settle {
        window_ms,
        transient,
        still_sending,
    });
}

/// Up to this many sockets of a namespace are looked up one by one (each a
/// hash lookup in the kernel, about a microsecond) rather than found by a
/// dump, which walks every socket of every namespace (tens of milliseconds
/// on a host with 200,000): a few leaks on a busy host cost next to nothing
/// to look at again, and a thousand cost no more than one walk.
const LOOKUP_MAX: usize = 1024;

/// The second look at a namespace's CLOSE_WAIT sockets by lookups, when that
/// is possible and cheaper than a dump: the sockets still in CLOSE_WAIT (the
/// same inode at the same addresses). None: dump instead (reading /proc, a
/// table read otherwise than through sock_diag, too many sockets, or every
/// member failed; the dump then says why in its warnings).
fn looked_up(
    root: &ProcRoot,
    live: bool,
    method: TableMethod,
    candidates: &[NsMember],
    sockets: &[&TcpSocket],
) -> Option<Vec<TcpSocket>> {
    if !live || method == TableMethod::Proc || sockets.is_empty() || sockets.len() > LOOKUP_MAX {
        return None;
    }
    // A socket bound to a device is found only under it, and only a dump
    // says which: without that, a miss would not prove the socket gone.
    let wanted: Vec<Wanted> = sockets
        .iter()
        .map(|s| {
            s.bound_if.map(|bound_if| Wanted {
                local: s.local,
                remote: s.remote,
                bound_if,
            })
        })
        .collect::<Option<_>>()?;
    let answers = candidates
        .iter()
        .find_map(|m| tables::lookup_in(root, m, &wanted, true).ok())?;
    Some(
        sockets
            .iter()
            .zip(answers)
            .filter_map(|(first, now)| {
                now.filter(|n| n.inode == first.inode && n.state == TcpState::CloseWait)
            })
            .collect(),
    )
}

/// A CLOSE_WAIT socket's sending side, as the second look saw it.
struct Progress {
    last_ack_ms: Option<u64>,
    bytes_acked: Option<u64>,
    send_q: u32,
}

/// Whether the owner kept sending between the looks: the peer acknowledged
/// more bytes, or the send queue drained. A frozen sender (a full send queue
/// the peer no longer reads, or nothing sent at all) shows neither.
fn sent_since(first: &crate::model::TcpSocket, now: &Progress) -> bool {
    sent_between(
        (first.bytes_acked, first.send_q),
        (now.bytes_acked, now.send_q),
    )
}

/// `sent_since` on (bytes acked, send queue) of two looks.
pub(super) fn sent_between(first: (Option<u64>, u32), now: (Option<u64>, u32)) -> bool {
    let acked_more = matches!((first.0, now.0), (Some(a), Some(b)) if b > a);
    acked_more || now.1 < first.1
}

/// (pid, fd) pairs that held a CLOSE_WAIT socket and no longer point at it.
/// Each process's fd directory is opened once and its fds read relative to
/// it, with the processes spread over the cores: a server holding 40,000
/// leaked sockets means 40,000 links to read again.
/// Only sockets held by more than one fd: a socket with one holder that is
/// still in CLOSE_WAIT is still held, and closing that one fd would have
/// moved it to LAST_ACK.
fn closed_fds(
    snap: &Snapshot,
    root: &ProcRoot,
    cw: &FxHashSet<SocketKey>,
) -> FxHashSet<(Pid, i32)> {
    let shared = super::prune::shared_inodes(snap.processes.iter());
    let cw_inodes: FxHashSet<Inode> = cw
        .iter()
        .map(|k| k.inode)
        .filter(|i| *i != 0 && shared.contains(i))
        .collect();
    let todo: Vec<&Process> = snap
        .processes
        .iter()
        .filter(|p| p.sockets.iter().any(|s| cw_inodes.contains(&s.inode)))
        .collect();
    crate::par::spread(&todo, 0, |procs| {
        let mut closed = Vec::new();
        for p in procs {
            // One pass per fd table: the process's, then each thread's own.
            let mut tables: Vec<Option<Pid>> = p
                .sockets
                .iter()
                .filter(|s| cw_inodes.contains(&s.inode))
                .map(|s| s.tid)
                .collect();
            tables.sort_unstable();
            tables.dedup();
            for tid in tables {
                let wanted = p
                    .sockets
                    .iter()
                    .filter(|s| cw_inodes.contains(&s.inode) && s.tid == tid);
                let dir = root.join(task_base(p.pid, tid.or(p.fd_table_tid)).join("fd"));
                let Ok(dir) = Dir::open(
                    &dir,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) else {
                    // The process (or thread) is gone: every copy it held is closed.
                    closed.extend(wanted.map(|s| (p.pid, s.fd)));
                    continue;
                };
                // SAFETY: `dir` owns the fd and outlives every use of `dfd`.
                let dfd = unsafe { BorrowedFd::borrow_raw(dir.as_raw_fd()) };
                let mut buf = [0u8; 256];
                for s in wanted {
                    let Ok(name) = CString::new(s.fd.to_string()) else {
                        continue;
                    };
                    let held = readlink_at(dfd, &name, &mut buf)
                        .is_ok_and(|t| link::bracket_inode(t, b"socket") == Some(s.inode));
                    if !held {
                        closed.push((p.pid, s.fd));
                    }
                }
            }
        }
        closed
    })
    .into_iter()
    .flatten()
    .collect()
}

fn task_base(pid: Pid, tid: Option<Pid>) -> PathBuf {
    match tid {
        Some(tid) => PathBuf::from(format!("{pid}/task/{tid}")),
        None => PathBuf::from(pid.to_string()),
    }
}

fn members_with_close_wait(snap: &Snapshot, cw: &FxHashSet<SocketKey>) -> Vec<Vec<NsMember>> {
    let namespaces: FxHashSet<Inode> = cw.iter().map(|k| k.netns).collect();
    let cw_inodes: FxHashSet<Inode> = cw.iter().map(|k| k.inode).collect();
    let member = |netns: Inode, pid: Pid, tid: Option<Pid>| NsMember {
        netns,
        pid,
        base: task_base(pid, tid),
        file: None,
    };
    snap.namespaces
        .iter()
        .filter(|n| namespaces.contains(&n.inode))
        .map(|n| {
            if let Some(file) = &n.file {
                return vec![NsMember::file(n.inode, file.into())];
            }
            // The member of the first look, then the holders of this
            // namespace's CLOSE_WAIT sockets (while one lives, so may the
            // socket), then any other process in it.
            let in_ns = |p: &&Process| p.netns == Some(n.inode);
            let holds = |p: &&Process| p.sockets.iter().any(|s| cw_inodes.contains(&s.inode));
            let tid_of = |pid: Pid| {
                snap.processes
                    .iter()
                    .find(|p| p.pid == pid)
                    .and_then(|p| p.fd_table_tid)
            };
            let first = n.via_pid.map(|pid| (pid, tid_of(pid)));
            let holders = snap.processes.iter().filter(in_ns).filter(holds);
            let others = snap.processes.iter().filter(in_ns);
            let mut seen = FxHashSet::default();
            first
                .into_iter()
                .chain(holders.chain(others).map(|p| (p.pid, p.fd_table_tid)))
                .filter(|(pid, _)| seen.insert(*pid))
                .take(MEMBER_TRIES)
                .map(|(pid, tid)| member(n.inode, pid, tid))
                .collect()
        })
        .filter(|c: &Vec<NsMember>| !c.is_empty())
        .collect()
}

/// How many processes of a namespace to try before calling it unread.
const MEMBER_TRIES: usize = 8;

#[cfg(test)]
mod tests {
    //! The second look driven through a recorded tree: a copy of a fixture is
    //! read once, then changed the way a live system changes during the window
    //! (an fd closed, a process gone, a socket moved to LAST_ACK), then looked
    //! at again.

    use super::*;
    use crate::source::{read, SourceConfig};
    use std::path::Path;

    /// A writable copy of `fixtures/NAME/proc` (symlinks kept as symlinks).
    fn tree(name: &str) -> tempfile::TempDir {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name)
            .join("proc");
        let dir = tempfile::tempdir().expect("tempdir");
        copy(&from, dir.path());
        dir
    }

    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("fixture tree") {
            let e = e.expect("entry");
            let (src, dst) = (e.path(), to.join(e.file_name()));
            let kind = e.file_type().expect("file type");
            if kind.is_symlink() {
                let target = std::fs::read_link(&src).expect("readlink");
                std::os::unix::fs::symlink(target, &dst).expect("symlink");
            } else if kind.is_dir() {
                copy(&src, &dst);
            } else {
                std::fs::copy(&src, &dst).expect("copy");
            }
        }
    }

    fn look(root: &Path) -> Snapshot {
        let snap = read(&SourceConfig {
            root: root.to_path_buf(),
            method: TableMethod::Proc,
            threads: 1,
            ..SourceConfig::default()
        })
        .expect("read the tree");
        assert!(!snap.meta.live, "a recorded tree is not live");
        snap
    }

    /// Points `pid`'s fd at something else (or removes it with `None`).
    fn relink(root: &Path, fd_dir: &str, fd: i32, to: Option<&str>) {
        let link = root.join(fd_dir).join(fd.to_string());
        std::fs::remove_file(&link).expect("remove fd link");
        if let Some(to) = to {
            std::os::unix::fs::symlink(to, &link).expect("symlink");
        }
    }

    /// The tree's one recorded IPv4 table (fork-alive has one namespace)
    /// and the pid it was recorded through.
    fn table(root: &Path) -> (Pid, PathBuf) {
        let mut found: Vec<(Pid, PathBuf)> = std::fs::read_dir(root)
            .expect("tree")
            .filter_map(|e| {
                let e = e.ok()?;
                let pid: Pid = e.file_name().to_str()?.parse().ok()?;
                let t = e.path().join("net/tcp");
                t.is_file().then_some((pid, t))
            })
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        found.remove(0)
    }

    /// Rewrites the state column of `inode`'s row in the tree's net/tcp.
    fn set_state(root: &Path, inode: Inode, hex: &str) {
        set_column(root, inode, 3, hex);
    }

    /// Rewrites column `col` of `inode`'s row in the tree's net/tcp.
    fn set_column(root: &Path, inode: Inode, col: usize, value: &str) {
        let path = table(root).1;
        let text = std::fs::read_to_string(&path).expect("net/tcp");
        let needle = format!(" {inode} ");
        let mut hit = false;
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                if !l.contains(&needle) {
                    return l.to_string();
                }
                hit = true;
                let mut cols: Vec<&str> = l.split_whitespace().collect();
                cols[col] = value;
                cols.join(" ")
            })
            .collect();
        assert!(hit, "no row for inode {inode} in {}", path.display());
        std::fs::write(&path, out.join("\n") + "\n").expect("write net/tcp");
    }

    fn socket_fds(snap: &Snapshot, pid: Pid) -> Vec<(i32, Inode)> {
        let p = snap
            .processes
            .iter()
            .find(|p| p.pid == pid)
            .unwrap_or_else(|| panic!("no process {pid}"));
        let mut v: Vec<(i32, Inode)> = p.sockets.iter().map(|s| (s.fd, s.inode)).collect();
        v.sort_unstable();
        v
    }

    fn key_of(snap: &Snapshot, inode: Inode) -> SocketKey {
        snap.sockets
            .iter()
            .find(|s| s.inode == inode)
            .unwrap_or_else(|| panic!("no socket {inode}"))
            .key()
    }

    fn facts(name: &str) -> serde_json::Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name)
            .join("facts.json");
        serde_json::from_str(&std::fs::read_to_string(path).expect("facts.json")).expect("facts")
    }

    /// fork-alive as its facts recorded it: the server holds every socket,
    /// and each child one of them, at the same fd.
    struct ForkAlive {
        server: Pid,
        /// (child pid, fd, inode), in the facts' order.
        children: Vec<(Pid, i32, Inode)>,
    }

    fn fork_alive() -> ForkAlive {
        let f = facts("fork-alive");
        let pid = |v: &serde_json::Value| v.as_i64().expect("pid") as Pid;
        let server = pid(&f["server"]["pid"]);
        let children = f["sockets"]
            .as_array()
            .expect("sockets")
            .iter()
            .map(|s| {
                let child = s["holders"]
                    .as_array()
                    .expect("holders")
                    .iter()
                    .find(|h| pid(&h["pid"]) != server)
                    .expect("a child holder");
                (
                    pid(&child["pid"]),
                    child["fd"].as_i64().expect("fd") as i32,
                    s["inode"].as_u64().expect("inode"),
                )
            })
            .collect();
        ForkAlive { server, children }
    }

    #[test]
    fn nothing_changed_means_nothing_dropped() {
        let fa = fork_alive();
        let dir = tree("fork-alive");
        let mut snap = look(dir.path());
        let pids: Vec<Pid> = std::iter::once(fa.server)
            .chain(fa.children.iter().map(|c| c.0))
            .collect();
        let before: Vec<_> = pids.iter().map(|&p| socket_fds(&snap, p)).collect();
        settle(&mut snap, TableMethod::Proc, 250);
        let after: Vec<_> = pids.iter().map(|&p| socket_fds(&snap, p)).collect();
        assert_eq!(before, after);
        let settle = snap.settle.expect("a settle record");
        assert_eq!(settle.window_ms, 250);
        assert_eq!(settle.transient, Vec::new());
        assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    }

    #[test]
    fn holders_that_closed_or_exited_are_dropped() {
        let fa = fork_alive();
        let [a, b, c] = [fa.children[0], fa.children[1], fa.children[2]];
        let dir = tree("fork-alive");
        let root = dir.path();
        let mut snap = look(root);
        assert!(socket_fds(&snap, b.0).contains(&(b.1, b.2)));
        // b closed its copy; a reused its fd for another socket; c exited.
        relink(root, &format!("{}/fd", b.0), b.1, None);
        relink(root, &format!("{}/fd", a.0), a.1, Some("socket:[999]"));
        std::fs::remove_dir_all(root.join(c.0.to_string())).expect("rm c");
        settle(&mut snap, TableMethod::Proc, 100);
        for (pid, fd, _) in [a, b, c] {
            assert!(
                !socket_fds(&snap, pid).iter().any(|&(f, _)| f == fd),
                "pid {pid} fd {fd} kept"
            );
        }
        // The server's copies are untouched, and no socket left CLOSE_WAIT.
        let server = socket_fds(&snap, fa.server);
        for &(_, fd, inode) in &fa.children {
            assert!(server.contains(&(fd, inode)), "{server:?}");
        }
        assert_eq!(snap.settle.expect("settle").transient, Vec::new());
    }

    #[test]
    fn a_socket_out_of_close_wait_is_transient() {
        let fa = fork_alive();
        let dir = tree("fork-alive");
        let root = dir.path();
        let mut snap = look(root);
        // The server closed its copy and the child then its own: LAST_ACK.
        let inode = fa.children[0].2;
        set_state(root, inode, "09");
        settle(&mut snap, TableMethod::Proc, 100);
        let settle = snap.settle.clone().expect("settle");
        assert_eq!(settle.transient, vec![key_of(&snap, inode)]);
    }

    #[test]
    fn every_socket_gone_is_transient_in_a_stable_order() {
        let fa = fork_alive();
        let dir = tree("fork-alive");
        let root = dir.path();
        let mut snap = look(root);
        for &(_, _, inode) in &fa.children {
            set_state(root, inode, "09");
        }
        settle(&mut snap, TableMethod::Proc, 100);
        let mut want: Vec<SocketKey> = fa.children.iter().map(|c| key_of(&snap, c.2)).collect();
        want.sort_by_key(|k| (k.netns, k.inode, k.local, k.remote));
        assert_eq!(snap.settle.expect("settle").transient, want);
    }

    #[test]
    fn a_lone_holder_is_not_read_again() {
        // never-closed: one process holds the socket at one fd. Still in
        // CLOSE_WAIT means still held (closing the only fd would have moved
        // it to LAST_ACK), so its fd is not read again and not dropped even
        // when the tree's link is gone.
        let dir = tree("never-closed");
        let root = dir.path();
        let facts = facts("never-closed");
        let sock = &facts["sockets"][0];
        let pid = sock["holders"][0]["pid"].as_i64().expect("pid") as Pid;
        let fd = sock["holders"][0]["fd"].as_i64().expect("fd") as i32;
        let inode = sock["inode"].as_u64().expect("inode");
        let mut snap = look(root);
        assert!(socket_fds(&snap, pid).contains(&(fd, inode)));
        relink(root, &format!("{pid}/fd"), fd, None);
        settle(&mut snap, TableMethod::Proc, 100);
        assert!(socket_fds(&snap, pid).contains(&(fd, inode)));
    }

    /// The owner kept sending during the window (its send queue drained):
    /// the second look's queue replaces the first's, and the socket is
    /// listed as still sending (docs/causes.md, Still sending).
    #[test]
    fn a_send_queue_that_drained_in_the_window_is_still_sending() {
        let fa = fork_alive();
        let dir = tree("fork-alive");
        let root = dir.path();
        let (draining, frozen) = (fa.children[0].2, fa.children[1].2);
        // tx_queue:rx_queue, as /proc/net/tcp prints them.
        set_column(root, draining, 4, "00000400:00000000");
        set_column(root, frozen, 4, "00000400:00000000");
        let mut snap = look(root);
        set_column(root, draining, 4, "00000010:00000000");
        settle(&mut snap, TableMethod::Proc, 100);
        let send_q = |inode: Inode| {
            snap.sockets
                .iter()
                .find(|s| s.inode == inode)
                .map(|s| s.send_q)
        };
        assert_eq!(send_q(draining), Some(0x10));
        assert_eq!(send_q(frozen), Some(0x400));
        let settle = snap.settle.clone().expect("settle");
        assert_eq!(settle.still_sending, vec![key_of(&snap, draining)]);
        assert_eq!(settle.transient, Vec::new());
    }

    /// Only the fds that held a CLOSE_WAIT socket are read again (module
    /// doc: no second walk): the server's listener, closed in the window,
    /// stays as the first look saw it.
    #[test]
    fn only_the_close_wait_fds_are_read_again() {
        let fa = fork_alive();
        let dir = tree("fork-alive");
        let root = dir.path();
        let mut snap = look(root);
        let cw: Vec<Inode> = fa.children.iter().map(|c| c.2).collect();
        let listener = socket_fds(&snap, fa.server)
            .into_iter()
            .find(|(_, inode)| !cw.contains(inode))
            .expect("the server's listener");
        relink(root, &format!("{}/fd", fa.server), listener.0, None);
        settle(&mut snap, TableMethod::Proc, 100);
        assert!(
            socket_fds(&snap, fa.server).contains(&listener),
            "{listener:?}"
        );
    }

    /// A table that cannot be read again says nothing about its sockets:
    /// they are not counted as transient (that would be a false all-clear).
    #[test]
    fn a_missing_table_is_a_warning_and_its_sockets_stay() {
        let dir = tree("fork-alive");
        let root = dir.path();
        let mut snap = look(root);
        let (_, path) = table(root);
        std::fs::remove_file(path).expect("rm net/tcp");
        settle(&mut snap, TableMethod::Proc, 100);
        assert!(
            snap.warnings.iter().any(|w| w.message.contains("net/tcp")),
            "{:?}",
            snap.warnings
        );
        assert!(snap
            .warnings
            .iter()
            .any(|w| w.kind == crate::model::WarningKind::Incomplete));
        assert_eq!(snap.settle.expect("settle").transient.len(), 0);
    }

    /// The process the first look read the namespace through exits during
    /// the window: the table is read through another of its processes.
    #[test]
    fn a_member_that_exits_is_replaced_by_another_process_of_its_namespace() {
        let dir = tree("fork-alive");
        let root = dir.path();
        let mut snap = look(root);
        let ns = &snap.namespaces[0];
        let via = ns.via_pid.expect("read through a process");
        let other = snap
            .processes
            .iter()
            .find(|p| p.pid != via && p.netns == Some(ns.inode) && !p.sockets.is_empty())
            .map(|p| p.pid)
            .expect("another process in the namespace");
        // Live, every process of a namespace shows its table; the recorder
        // kept it under the member only.
        let net = |pid: Pid| root.join(pid.to_string()).join("net");
        std::fs::create_dir_all(net(other)).expect("mkdir net");
        for f in ["tcp", "tcp6"] {
            std::fs::copy(net(via).join(f), net(other).join(f)).expect("copy table");
        }
        std::fs::remove_dir_all(root.join(via.to_string())).expect("rm the member");
        settle(&mut snap, TableMethod::Proc, 100);
        assert!(
            !snap
                .warnings
                .iter()
                .any(|w| w.kind == crate::model::WarningKind::Incomplete),
            "{:?}",
            snap.warnings
        );
        // Every CLOSE_WAIT socket was seen again: none transient.
        assert_eq!(snap.settle.expect("settle").transient.len(), 0);
    }

    #[test]
    fn a_thread_led_table_is_read_through_its_live_thread() {
        // threaded-leader-exit: the leader is a zombie, so the fd table is
        // read at /proc/PID/task/TID/fd. One of its CLOSE_WAIT sockets gets a
        // second fd there, which is then closed during the window: the drop
        // is seen through the thread's fd directory.
        let dir = tree("threaded-leader-exit");
        let root = dir.path();
        let snap = look(root);
        let p = snap
            .processes
            .iter()
            .find(|p| p.fd_table_tid.is_some())
            .expect("a process read through a thread");
        let (pid, tid) = (p.pid, p.fd_table_tid.expect("tid"));
        let base = task_base(pid, Some(tid));
        assert_eq!(base, PathBuf::from(format!("{pid}/task/{tid}")));
        assert_eq!(task_base(pid, None), PathBuf::from(pid.to_string()));
        let fd_dir = root.join(&base).join("fd");
        let (fd, inode) = socket_fds(&snap, pid)
            .into_iter()
            .find(|(_, i)| {
                snap.sockets
                    .iter()
                    .any(|s| s.inode == *i && s.state == TcpState::CloseWait)
            })
            .expect("a CLOSE_WAIT socket of the threaded server");
        // A second copy of the socket at fd 900, seen by a fresh look.
        std::os::unix::fs::symlink(format!("socket:[{inode}]"), fd_dir.join("900"))
            .expect("symlink");
        let mut snap = look(root);
        assert!(socket_fds(&snap, pid).contains(&(900, inode)));
        // Then closed during the window; the first copy stays.
        std::fs::remove_file(fd_dir.join("900")).expect("rm");
        settle(&mut snap, TableMethod::Proc, 100);
        let now = socket_fds(&snap, pid);
        assert!(!now.contains(&(900, inode)), "{now:?}");
        assert!(now.contains(&(fd, inode)), "{now:?}");
        // The namespace's table is read through the live thread too: the
        // zombie leader has none, so reading it there would lose every
        // socket (all transient) with a warning.
        assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
        assert_eq!(snap.settle.expect("settle").transient, Vec::new());
    }
}

#[cfg(test)]
mod progress_tests {
    use super::{sent_since, Progress};
    use crate::model::{Family, TcpSocket, TcpState};

    fn first(bytes_acked: Option<u64>, send_q: u32) -> TcpSocket {
        TcpSocket {
            inode: 1,
            netns: 1,
            family: Family::Ipv4,
            local: "127.0.0.1:80".parse().unwrap(),
            remote: "127.0.0.1:4000".parse().unwrap(),
            state: TcpState::CloseWait,
            recv_q: 0,
            send_q,
            uid: 0,
            last_ack_ms: None,
            bytes_acked,
            timewait: false,
            bound_if: None,
        }
    }

    fn now(bytes_acked: Option<u64>, send_q: u32) -> Progress {
        Progress {
            last_ack_ms: None,
            bytes_acked,
            send_q,
        }
    }

    #[test]
    fn more_bytes_acked_is_still_sending() {
        assert!(sent_since(&first(Some(100), 0), &now(Some(101), 0)));
        assert!(!sent_since(&first(Some(100), 0), &now(Some(100), 0)));
    }

    #[test]
    fn a_draining_send_queue_is_still_sending() {
        // /proc/net/tcp has no tcp_info: the queue alone tells.
        assert!(sent_since(&first(None, 5000), &now(None, 4000)));
        assert!(!sent_since(&first(None, 5000), &now(None, 5000)));
    }

    #[test]
    fn a_frozen_sender_is_not() {
        // A full send queue the peer stopped reading: nothing moves.
        assert!(!sent_since(&first(Some(7), 65536), &now(Some(7), 65536)));
        // Counters from one look only decide nothing.
        assert!(!sent_since(&first(None, 0), &now(Some(9), 0)));
    }
}
