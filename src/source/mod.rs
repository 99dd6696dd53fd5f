//! The one seam to the OS. Everything read from the kernel enters here, through
//! a proc root given as a value: the live `/proc`, or a recorded fixture tree.
//! After this module, all code is pure.

mod bpf_asm;
mod bpf_btf;
mod bpf_iter;
mod bpf_map;
mod bpf_sys;
pub mod cgroup;
pub mod cmdline;
mod details;
mod details_kept;
mod early_tables;
mod enter;
pub mod error;
pub mod exits;
mod fdtable;
mod flags;
pub mod incremental;
mod kernel_btf;
pub mod kernel_counts;
pub mod netns_files;
mod prune;
pub mod recheck;
pub mod root;
pub mod settled;
pub mod sock_diag;
pub mod sysctl;
pub mod sysctl_conf;
pub mod table_scope;
pub mod tables;
mod task_files;
pub(crate) mod tcp_states;
pub mod trace;
mod walk;

pub use error::SourceError;
pub use incremental::Incremental;
pub use root::ProcRoot;
pub use table_scope::TableScope;
pub use tables::TableMethod;
pub use task_files::FdMethod;

use crate::model::{
    FastMap, Inode, InodeSet, Meta, Pid, Process, Snapshot, TcpSocket, TcpState, Warning,
};
use crate::par::{spread, spread_mut, thread_count};
use early_tables::Early;
use sock_diag::DumpRequest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tables::NsMember;
use walk::{Scratch, Walked};

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub root: PathBuf,
    pub method: TableMethod,
    /// How every process's fd table is read.
    pub fds: FdMethod,
    /// Threads for the fd walk (0 = one per core).
    pub threads: usize,
    /// Read command lines (masked) of the processes that matter.
    pub cmdline: bool,
    /// Read the TCP sysctls of every namespace.
    pub sysctls: bool,
    /// Which TCP states to read from the tables.
    pub states: TableStates,
    /// With `Counted` states, live: follow the TCP sockets of every
    /// namespace instead of walking each at every look (`serve
    /// --follow-sockets`).
    pub follow: bool,
    /// Which namespaces' tables to read (default: all).
    pub tables_for: TableScope,
    /// Read each namespace's net/sockstat TCP line and TcpExt counters.
    pub kernel_counts: bool,
    /// Namespace files to read even when no process sits in them
    /// (`--netns PATH`); live only.
    pub netns_files: Vec<PathBuf>,
    /// The directory of named namespaces (`ip netns add`), read on a live
    /// system; None: only namespaces with a process in them and `netns_files`.
    pub netns_dir: Option<PathBuf>,
}

/// `All` for the whole picture (`states`, captures); `Leaks` when only
/// CLOSE_WAIT sockets and the listeners that own them matter: the kernel then
/// skips every other socket, which on a busy host is most of the dump.
/// `Counted` (`serve`): every socket counted by state, records only for those
/// `Leaks` reads (`NetNs::unkept` holds the counts of the others): the
/// counts of the whole picture without a record per socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableStates {
    #[default]
    All,
    Leaks,
    Counted,
}

impl TableStates {
    /// What the diagnosis needs: CLOSE_WAIT sockets and the listeners they came from.
    pub const LEAKS: [TcpState; 2] = [TcpState::CloseWait, TcpState::Listen];

    fn request(self) -> DumpRequest {
        match self {
            TableStates::All => DumpRequest::all(),
            // One dump with tcp_info (the ages of CLOSE_WAIT sockets): the
            // listeners' tcp_info is a few thousand records at most.
            TableStates::Leaks => DumpRequest::only(&Self::LEAKS, true),
            // One dump: cheaper than a second walk for the CLOSE_WAIT
            // sockets' tcp_info (tables::dump_diag), by a fifth at 200k sockets.
            TableStates::Counted => DumpRequest::counting(&Self::LEAKS, true),
        }
    }

    /// The states a snapshot holds; None means all of them.
    pub fn read(self) -> Option<Vec<TcpState>> {
        match self {
            TableStates::All | TableStates::Counted => None,
            TableStates::Leaks => Some(Self::LEAKS.to_vec()),
        }
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            root: PathBuf::from("/proc"),
            method: TableMethod::Auto,
            fds: FdMethod::Auto,
            threads: 0,
            cmdline: false,
            sysctls: false,
            states: TableStates::All,
            follow: false,
            tables_for: TableScope::default(),
            kernel_counts: false,
            netns_files: Vec::new(),
            netns_dir: Some(PathBuf::from(netns_files::NAMED_DIR)),
        }
    }
}

/// With `CWLEAK_TIMINGS` set, the time of each phase goes to stderr (for
/// `bench/run.sh`; not part of any output format).
pub fn phase_done(label: &str, since: &mut Instant) {
    timing_note(&format!("{label} {:.4} s", since.elapsed().as_secs_f64()));
    *since = Instant::now();
}

/// One line on stderr with `CWLEAK_TIMINGS` set.
fn timing_note(note: &str) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("CWLEAK_TIMINGS").is_some()) {
        crate::diag!("cwleak timing: {note}");
    }
}

/// Read one look at the machine through `cfg.root`.
pub fn read(cfg: &SourceConfig) -> Result<Snapshot, SourceError> {
    let start = Start::new(cfg)?;
    if !task_files::wanted(cfg.fds, &start.root, start.live) {
        return Ok(full_look(cfg, start, None, &Early::default()));
    }
    if !tables_first(cfg, &start) {
        let iterated = task_files::read_wanted(cfg.fds, &start.root, start.live)?;
        return Ok(full_look(cfg, start, iterated, &Early::default()));
    }
    // The tables are read while the iterator runs.
    let (iterated, early) = std::thread::scope(|s| {
        let iterating = s.spawn(|| task_files::read_wanted(cfg.fds, &start.root, start.live));
        let early = read_tables_first(cfg, &start, &FastMap::default());
        timing_note(&format!(
            "namespaces' tables beside the iterator {:.4} s",
            start.started.elapsed().as_secs_f64()
        ));
        (crate::par::join(iterating), early)
    });
    Ok(full_look(cfg, start, iterated?, &early))
}

/// Whether a look can read the tables before the walk: live, and not
/// scoped to processes (their namespaces are only known after the walk).
fn tables_first(cfg: &SourceConfig, start: &Start) -> bool {
    start.live && cfg.tables_for.pids.is_empty()
}

/// The tables of every namespace a process sits in (of `--netns`, when
/// given), read before the walk (`early_tables`); `known`: namespaces of
/// processes already known this look.
fn read_tables_first(cfg: &SourceConfig, start: &Start, known: &FastMap<Pid, Inode>) -> Early {
    early_tables::read(
        &start.root,
        &start.pids,
        known,
        &cfg.tables_for.netns,
        cfg.method,
        &cfg.states.request(),
        cfg.threads,
    )
}

/// A look that reads every fd table: from the task_file iterator's
/// `iterated` tables, or /proc for any process they lack.
fn full_look(
    cfg: &SourceConfig,
    start: Start,
    iterated: Option<task_files::Tables>,
    early: &Early,
) -> Snapshot {
    let mut t = start.started;
    timing_note(match iterated {
        Some(_) => "fd tables: task_file iterator",
        None => "fd tables: /proc/PID/fd",
    });
    phase_done("fd tables", &mut t);
    let walk = walk_all(&start.root, &start.pids, iterated, early, cfg.threads);
    phase_done("walk", &mut t);
    // Only records of CLOSE_WAIT sockets and listeners: the other socket fds
    // are counted. (Incremental looks from a cache keep every fd: they reuse
    // fd lists between looks.)
    let prune = cfg.states != TableStates::All;
    finish(cfg, start, walk, prune, early, None, |_, _, _, _| {})
}

/// The beginning of every look, full or incremental: the root, its pids,
/// whether it is a live kernel, and when the look started.
struct Start {
    started: Instant,
    root: ProcRoot,
    pids: Vec<Pid>,
    live: bool,
    meta: Meta,
}

impl Start {
    fn new(cfg: &SourceConfig) -> Result<Start, SourceError> {
        let started = Instant::now();
        let root = ProcRoot::new(&cfg.root);
        let pids = root.pids()?;
        if pids.is_empty() {
            return Err(SourceError::NotProc {
                path: cfg.root.clone(),
            });
        }
        let live = is_live_proc(&root);
        let meta = read_meta(&root, live);
        Ok(Start {
            started,
            root,
            pids,
            live,
            meta,
        })
    }
}

/// Everything after the walk: tables, details, shared fd tables. `refine`
/// sees the walk and the tables before the details are read, so an
/// incremental look can walk again the processes its tables contradict.
fn finish(
    cfg: &SourceConfig,
    start: Start,
    (mut walked, mut warnings): (Vec<Walked>, Vec<Warning>),
    prune: bool,
    early: &Early,
    kept: Option<&mut details_kept::Kept>,
    mut refine: impl FnMut(&ProcRoot, &mut Vec<Walked>, &[TcpSocket], &mut Vec<Warning>),
) -> Snapshot {
    let Start {
        started,
        root,
        live,
        mut meta,
        ..
    } = start;
    let mut t = Instant::now();
    let mut members = namespace_members(&walked);
    if live {
        // Under hidepid, or as a user who can read no other process, the
        // own namespace is the one table sock_diag still gives.
        add_own_namespace(&root, meta.netns, &mut members);
        warnings.extend(hidden_processes(&root));
        // Namespaces no process sits in: only their files lead to them.
        for (netns, file) in netns_files::discover(cfg.netns_dir.as_deref(), &cfg.netns_files) {
            members
                .entry(netns)
                .or_insert_with(|| NsMember::file(netns, file));
        }
    }
    // A namespace named by --netns is read even when no process in it holds
    // a socket (the walk reads ns/net only for holders): find any member.
    for &netns in &cfg.tables_for.netns {
        if let std::collections::btree_map::Entry::Vacant(e) = members.entry(netns) {
            if let Some(m) = any_member(&root, &walked, netns) {
                e.insert(m);
            }
        }
    }
    if let Some(keep) = cfg.tables_for.namespaces(&walked) {
        members.retain(|netns, _| keep.contains(netns));
    }
    let req = cfg.states.request();
    meta.states = cfg.states.read();
    let members: Vec<NsMember> = members.into_values().collect();
    let look = TablesLook {
        cfg,
        root: &root,
        live,
        own: meta.netns,
        req,
        early,
        kept: kept.as_deref(),
    };
    let (mut reads, mut ahead, shared) = look.read(&members, &walked, prune);
    let total: usize = reads.iter().map(|(t, _)| t.sockets.len()).sum();
    // The records of the namespace with the most become the look's, the
    // others' put before and after them in place, in namespace order: one
    // copy of 40,000 records at the look's peak, not two.
    let big = (0..reads.len()).max_by_key(|&i| reads[i].0.sockets.len());
    let mut sockets = big
        .map(|i| std::mem::take(&mut reads[i].0.sockets))
        .unwrap_or_default();
    sockets.reserve_exact(total - sockets.len());
    let mut at = 0;
    let mut namespaces = Vec::with_capacity(reads.len());
    for (i, (t, w)) in reads.into_iter().enumerate() {
        if big.is_some_and(|b| i < b) {
            let n = t.sockets.len();
            sockets.splice(at..at, t.sockets);
            at += n;
        } else {
            sockets.extend(t.sockets);
        }
        namespaces.push(t.namespace);
        warnings.extend(w);
    }
    phase_done("tables", &mut t);
    refine(&root, &mut walked, &sockets, &mut warnings);
    if let Some(shared) = shared {
        let mut processes: Vec<&mut Process> = walked.iter_mut().map(|w| &mut w.process).collect();
        prune::socket_fds(&mut processes, &sockets, &shared);
    }

    let interest = crate::model::interesting_inodes(&sockets);
    let wanted = processes_of_interest(&walked, &interest);
    let flags = flags::FlagPolicy::new(&walked, &sockets);
    read_all_details(
        cfg,
        &root,
        &mut walked,
        &wanted,
        &flags,
        Already {
            ahead: &mut ahead,
            kept,
        },
        &mut warnings,
    );
    phase_done("details", &mut t);
    let mut processes: Vec<_> = walked.into_iter().map(|w| w.process).collect();
    if live && !fdtable::link_shared_tables(&mut processes, &interest) {
        warnings.push(Warning {
            pid: None,
            path: None,
            kind: crate::model::WarningKind::PermissionDenied,
            message: "kcmp(KCMP_FILES) refused: processes sharing one fd table (CLONE_FILES) may be listed as separate holders".into(),
        });
    }
    phase_done("shared fd tables", &mut t);
    let stats = crate::model::ScanStats {
        processes: processes.len(),
        fds: processes.iter().map(|p| p.fd_count as usize).sum(),
        socket_fds: processes
            .iter()
            .map(|p| p.sockets.len() + p.other_sockets as usize)
            .sum(),
        namespaces: namespaces.len(),
        tcp_sockets: namespaces.iter().map(|n| n.sockets).sum(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    meta.proc_root = cfg.root.display().to_string();
    // Threads found them in no set order; reports list them by process.
    warnings.sort_by_key(|w| w.pid);
    Snapshot {
        meta,
        processes,
        namespaces,
        sockets,
        warnings,
        stats,
        settle: None,
    }
}

/// Phase two with what runs beside it: every namespace's table (side by
/// side), and on a core the dumps leave free, the holders' own files and the
/// inodes held twice (for the pruning that follows).
struct TablesLook<'a> {
    cfg: &'a SourceConfig,
    root: &'a ProcRoot,
    live: bool,
    own: Option<Inode>,
    req: DumpRequest,
    early: &'a Early,
    /// Details kept from earlier looks: not read ahead again.
    kept: Option<&'a details_kept::Kept>,
}

type NamespaceRead = (tables::TableRead, Vec<Warning>);

impl TablesLook<'_> {
    fn read(
        &self,
        members: &[NsMember],
        walked: &[Walked],
        prune: bool,
    ) -> (
        Vec<NamespaceRead>,
        FastMap<Pid, details::ProcFiles>,
        Option<InodeSet>,
    ) {
        // A dump keeps one core busy in the kernel; when there are fewer dumps
        // than cores, a spare core reads the holders' own files meanwhile.
        let spare = thread_count(self.cfg.threads, usize::MAX) > members.len();
        let stop = AtomicBool::new(false);
        let shared = || prune.then(|| prune::shared_inodes(walked.iter().map(|w| &w.process)));
        std::thread::scope(|s| {
            let spare = spare.then(|| {
                s.spawn(|| {
                    let shared = shared();
                    (
                        details::read_ahead(self.root, walked, self.kept, &stop),
                        shared,
                    )
                })
            });
            let reads = self.namespaces(members, walked);
            stop.store(true, Ordering::Relaxed);
            let (ahead, shared) = spare
                .map(crate::par::join)
                .unwrap_or_else(|| (FastMap::default(), shared()));
            (reads, ahead, shared)
        })
    }

    /// Each dump walks the kernel's whole table (all namespaces' sockets):
    /// with many namespaces, that is the work to spread over the cores.
    fn namespaces(&self, members: &[NsMember], walked: &[Walked]) -> Vec<NamespaceRead> {
        let mut reads: Vec<NamespaceRead> = spread(members, self.cfg.threads, |ms| {
            ms.filter_map(|member| self.namespace(member, walked))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect();
        // In namespace order, whichever thread read them.
        reads.sort_by_key(|(t, _)| t.namespace.inode);
        reads
    }

    /// One namespace, read through `member` or, should it exit before its
    /// dump, through another walked process of the namespace.
    fn namespace(&self, member: &NsMember, walked: &[Walked]) -> Option<NamespaceRead> {
        let (root, cfg) = (self.root, self.cfg);
        let (mut t, mut warnings, member) = match self.early.take(member.netns) {
            Some(read) => read,
            None => {
                let mut warnings = Vec::new();
                let candidates = std::iter::once(member.clone()).chain(alternates(member, walked));
                let (t, _, member) = tables::read_namespace_via(
                    root,
                    self.live,
                    cfg.method,
                    candidates,
                    &self.req,
                    &mut warnings,
                )?;
                (t, warnings, member)
            }
        };
        if cfg.sysctls {
            let ns_file = member.ns_file(root);
            match sysctl::read(root, self.live, self.own, member.netns, &ns_file) {
                Ok(values) => t.namespace.sysctls = values,
                Err(e) => warnings.push(e.to_warning()),
            }
        }
        if cfg.kernel_counts {
            match kernel_counts::read(root, &member.place(), member.netns) {
                Ok(c) => {
                    t.namespace.kernel = Some(c.kernel);
                    t.namespace.counters = c.counters;
                }
                // A recorded tree may predate these files: nothing to say.
                Err(_) if !self.live => {}
                Err(e) => warnings.push(e.to_warning()),
            }
        }
        Some((t, warnings))
    }
}

/// Details read before the details phase: during this look's table dumps
/// (`ahead`), or at earlier looks (`kept`, for `watch` and `serve`).
struct Already<'a> {
    ahead: &'a mut FastMap<Pid, details::ProcFiles>,
    kept: Option<&'a mut details_kept::Kept>,
}

/// Details of the processes of interest, spread over the same threads as the
/// walk: each is a handful of small /proc reads, thousands on a big host.
fn read_all_details(
    cfg: &SourceConfig,
    root: &ProcRoot,
    walked: &mut [Walked],
    wanted: &HashSet<Pid>,
    flags: &flags::FlagPolicy,
    Already { ahead, kept }: Already,
    warnings: &mut Vec<Warning>,
) {
    let now = Instant::now();
    // Each process: what was read ahead or is kept from an earlier look
    // (read here otherwise), and the reading to keep for the next looks.
    type Todo<'a> = (
        &'a mut Walked,
        Option<details::ProcFiles>,
        Option<details_kept::Reading>,
    );
    let mut todo: Vec<Todo> = walked
        .iter_mut()
        .filter(|w| wanted.contains(&w.process.pid))
        .map(|w| {
            let (files, reading) = match ahead.remove(&w.process.pid) {
                // Read this look: kept for the next ones, when they keep.
                Some(f) => {
                    let reading = kept.as_deref().and_then(|k| k.reading(w, &f, now));
                    (Some(f), reading)
                }
                None => (
                    kept.as_deref()
                        .and_then(|k| k.get(w, now))
                        .map(|f| f.with_netns(root, w)),
                    None,
                ),
            };
            (w, files, reading)
        })
        .collect();
    let keeping = kept.as_deref();
    let one = |(w, early, reading): &mut Todo, warnings: &mut Vec<Warning>| {
        let files = match early.take() {
            Some(f) => f,
            None => {
                let f = details::read_files(root, w, &mut Vec::new());
                if let Some(k) = keeping {
                    *reading = k.reading(w, &f, now);
                }
                f
            }
        };
        files.apply(w, warnings);
        details::read_flags(root, w, flags, warnings);
        if cfg.cmdline {
            match cmdline::read(root, w.process.pid, cmdline::DEADLINE) {
                Ok(c) => w.process.cmdline = Some(c),
                Err(e) if e.is_vanished() => {}
                Err(e) => warnings.push(e.to_warning()),
            }
        }
    };
    if todo.len() < 64 {
        for w in &mut todo {
            one(w, warnings);
        }
    } else {
        // Small chunks: the processes read ahead cost next to nothing, the
        // others a dozen /proc reads each, and they come in runs.
        let found = crate::par::spread_mut(&mut todo, 8, cfg.threads, |chunks| {
            let mut warnings = Vec::new();
            for (_, chunk) in chunks {
                for w in chunk {
                    one(w, &mut warnings);
                }
            }
            warnings
        });
        warnings.extend(found.into_iter().flatten());
    }
    if let Some(kept) = kept {
        let fresh = todo
            .into_iter()
            .filter_map(|(w, _, r)| Some((w.process.pid, r?)))
            .collect();
        kept.update(fresh, |pid| wanted.contains(&pid));
    }
}

/// Walk every pid, spread over threads; results sorted by pid. With
/// `iterated` fd tables, the walk takes a process's fds from them instead of
/// reading its fd directory. A process they lack is read from /proc: it may
/// have been born since, or be hidden from the iterator but not from /proc.
fn walk_all(
    root: &ProcRoot,
    pids: &[Pid],
    iterated: Option<task_files::Tables>,
    early: &Early,
    threads: usize,
) -> (Vec<Walked>, Vec<Warning>) {
    let mut tables = iterated.unwrap_or_default();
    let live = is_live_proc(root);
    let mut work: Vec<(Pid, walk::Fds)> = pids
        .iter()
        .map(|&pid| {
            let fds = tables
                .remove(&pid)
                .map_or(walk::Fds::Read, walk::Fds::Known);
            (pid, fds)
        })
        .collect();
    let results = spread_mut(&mut work, 4, threads, |chunks| {
        let mut scratch = Scratch::default();
        let mut warnings = Vec::new();
        let mut walked = Vec::new();
        for (_, chunk) in chunks {
            for (pid, fds) in chunk {
                let fds = std::mem::replace(fds, walk::Fds::Read);
                walked.extend(walk::walk_process(
                    root,
                    *pid,
                    fds,
                    early.netns_of.get(pid).copied(),
                    live,
                    &mut scratch,
                    &mut warnings,
                ));
            }
        }
        (walked, warnings)
    });
    let mut walked = Vec::with_capacity(pids.len());
    let mut warnings = Vec::new();
    for (w, warn) in results {
        walked.extend(w);
        warnings.extend(warn);
    }
    // Each walking thread warns once when kcmp is refused; once is enough.
    let mut refused = false;
    warnings
        .retain(|w| w.message != walk::THREADS_UNREAD || !std::mem::replace(&mut refused, true));
    walked.sort_unstable_by_key(|w| w.process.pid);
    (walked, warnings)
}

/// One member per network namespace that holds sockets: the lowest pid whose
/// view is readable (a zombie leader's is not, so use its live thread's).
fn namespace_members(walked: &[Walked]) -> BTreeMap<Inode, NsMember> {
    let mut members = BTreeMap::new();
    for w in walked {
        if let Some(netns) = w.process.netns {
            members.entry(netns).or_insert_with(|| NsMember {
                netns,
                pid: w.process.pid,
                base: w.base.clone(),
                file: None,
            });
        }
    }
    members
}

/// How many processes of a namespace the first look tries before calling it
/// unread.
const MEMBER_TRIES: usize = 8;

/// Other walked processes of `member`'s namespace, to read it through
/// (none for a namespace read through its file).
fn alternates<'a>(
    member: &'a NsMember,
    walked: &'a [Walked],
) -> impl Iterator<Item = NsMember> + 'a {
    walked
        .iter()
        .filter(move |w| {
            member.file.is_none()
                && w.process.netns == Some(member.netns)
                && w.process.pid != member.pid
        })
        .take(MEMBER_TRIES - 1)
        .map(move |w| NsMember {
            netns: member.netns,
            pid: w.process.pid,
            base: w.base.clone(),
            file: None,
        })
}

/// The first walked process in network namespace `netns`, whatever it holds.
fn any_member(root: &ProcRoot, walked: &[Walked], netns: Inode) -> Option<NsMember> {
    walked.iter().find_map(|w| {
        let inode = w.process.netns.or_else(|| {
            let t = root
                .read_link(Some(w.process.pid), &w.base.join("ns/net"))
                .ok()?;
            crate::parse::link::bracket_inode(&t, b"net")
        })?;
        (inode == netns).then(|| NsMember {
            netns,
            pid: w.process.pid,
            base: w.base.clone(),
            file: None,
        })
    })
}

/// A live proc filesystem always has a pid 1 (the namespace's init, visible
/// to it and to whoever may ptrace it): missing, the listing is filtered
/// (`hidepid=2`/`invisible`), and other users' processes are not in it.
fn hidden_processes(root: &ProcRoot) -> Option<Warning> {
    if root.join("1").exists() {
        return None;
    }
    let how = proc_mount_options(root)
        .and_then(|o| {
            o.split(',')
                .find(|o| o.starts_with("hidepid="))
                .map(str::to_string)
        })
        .map_or_else(String::new, |o| format!(" (mounted {o})"));
    Some(Warning {
        pid: None,
        path: Some(root.path().display().to_string()),
        kind: crate::model::WarningKind::Incomplete,
        message: format!(
            "this /proc hides other users' processes{how}: their sockets cannot be attributed and \
             network namespaces only they are in were not read; run as root (or as a member of \
             the proc mount's gid= group)"
        ),
    })
}

/// The super options of the proc mount at `root` (its last mountinfo line).
fn proc_mount_options(root: &ProcRoot) -> Option<String> {
    let text = root
        .read_string(None, std::path::Path::new("self/mountinfo"))
        .ok()?;
    let at = root.path().to_str()?;
    text.lines()
        .filter(|l| l.split(' ').nth(4) == Some(at))
        .filter_map(|l| {
            let (_, after) = l.split_once(" - ")?;
            let mut f = after.split(' ');
            (f.next()? == "proc").then(|| f.nth(1).map(str::to_string))?
        })
        .next_back()
}

/// cwleak's own network namespace is read even when no process it can see
/// holds a socket there: holders it cannot see (another user's fd tables
/// when not root, processes of another pid namespace) still leave their
/// sockets in its tables, where they show as held by nobody visible instead
/// of not at all.
fn add_own_namespace(root: &ProcRoot, own: Option<Inode>, members: &mut BTreeMap<Inode, NsMember>) {
    let Some(netns) = own else { return };
    if members.contains_key(&netns) {
        return;
    }
    // Our pid as this proc mount numbers it.
    let Some(pid) = root
        .read_link(None, std::path::Path::new("self"))
        .ok()
        .and_then(|t| std::str::from_utf8(&t).ok()?.parse::<Pid>().ok())
    else {
        return;
    };
    members.insert(
        netns,
        NsMember {
            netns,
            pid,
            base: PathBuf::from(pid.to_string()),
            file: None,
        },
    );
}

/// Holders of interesting sockets and all their ancestors.
fn processes_of_interest(walked: &[Walked], interest: &InodeSet) -> HashSet<Pid> {
    let parent: HashMap<Pid, Pid> = walked
        .iter()
        .map(|w| (w.process.pid, w.process.ppid))
        .collect();
    let mut wanted = HashSet::new();
    for w in walked {
        if w.process
            .sockets
            .iter()
            .any(|s| interest.contains(&s.inode))
        {
            let mut pid = w.process.pid;
            while pid > 0 && wanted.insert(pid) {
                pid = parent.get(&pid).copied().unwrap_or(0);
            }
        }
    }
    wanted
}

/// Live means the root is a mounted proc filesystem: kcmp, setns and re-checks
/// then make sense. A fixture tree is only files.
fn is_live_proc(root: &ProcRoot) -> bool {
    nix::sys::statfs::statfs(root.path())
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

fn read_meta(root: &ProcRoot, live: bool) -> Meta {
    let text = |rel: &str| {
        root.read_string(None, std::path::Path::new(rel))
            .ok()
            .map(|s| s.trim().to_string())
    };
    Meta {
        hostname: text("sys/kernel/hostname"),
        kernel: text("sys/kernel/osrelease"),
        taken_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)),
        proc_root: String::new(),
        live,
        clk_tck: clock_ticks(),
        uptime_s: text("uptime").and_then(|u| u.split_whitespace().next()?.parse().ok()),
        netns: if live { tables::own_netns(root) } else { None },
        states: None,
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// What a process's stat says about its identity and liveness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub comm: String,
    /// Zombie: it has exited and only waits for its parent to reap it.
    pub zombie: bool,
    /// Clock ticks since boot: with the pid, it names one process for good.
    pub start_time: u64,
}

/// `pid`'s stat, read through the root; None when there is no such process.
pub fn process_stat(root: &ProcRoot, pid: Pid) -> Result<Option<ProcStat>, SourceError> {
    let rel = PathBuf::from(format!("{pid}/stat"));
    let mut buf = Vec::new();
    match root.read_into(Some(pid), &rel, &mut buf) {
        Err(e) if e.is_vanished() => return Ok(None),
        other => other?,
    }
    let s = crate::parse::proc_files::stat(&buf)
        .map_err(|m| SourceError::malformed(Some(pid), root.join(&rel), m))?;
    Ok(Some(ProcStat {
        comm: s.comm,
        zombie: s.state == 'Z' || s.state == 'X',
        start_time: s.start_time,
    }))
}

/// Whether `root` is a mounted proc filesystem (a live system), not a recorded tree.
/// cwleak runs with euid 0 (what a "permission denied" then means differs).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn is_live(root: &ProcRoot) -> bool {
    is_live_proc(root)
}

/// The network namespace inode of `pid`, read through the root.
pub fn netns_of_pid(root: &ProcRoot, pid: Pid) -> Result<Inode, SourceError> {
    let rel = PathBuf::from(format!("{pid}/ns/net"));
    let target = root.read_link(Some(pid), &rel)?;
    crate::parse::link::bracket_inode(&target, b"net")
        .ok_or_else(|| SourceError::malformed(Some(pid), root.join(&rel), "not a net:[inode] link"))
}

/// The inode of a network namespace file (/run/netns/NAME, /proc/PID/ns/net).
/// Anything else (a plain file, another kind of namespace) is refused: its
/// inode would name no table, and a scope on it would pass on nothing read.
pub fn netns_of_path(path: &std::path::Path) -> Result<Inode, SourceError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let file = std::fs::File::open(path).map_err(|e| SourceError::io(None, path, e))?;
    let not =
        |what: &str| SourceError::malformed(None, path, format!("not a network namespace: {what}"));
    let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| SourceError::io(None, path, e.into()))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(not(
            "not a namespace file (expected /run/netns/NAME or /proc/PID/ns/net)",
        ));
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns a value.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        return Err(not(match kind {
            libc::CLONE_NEWNS => "a mount namespace",
            libc::CLONE_NEWPID => "a pid namespace",
            libc::CLONE_NEWUTS => "a UTS namespace",
            libc::CLONE_NEWIPC => "an IPC namespace",
            libc::CLONE_NEWUSER => "a user namespace",
            libc::CLONE_NEWCGROUP => "a cgroup namespace",
            libc::CLONE_NEWTIME => "a time namespace",
            _ => "another kind of namespace",
        }));
    }
    file.metadata()
        .map(|m| m.ino())
        .map_err(|e| SourceError::io(None, path, e))
}

/// Whether network namespace `inode` exists as far as `root` shows: some
/// process is in it, or (live) it is mounted under /run/netns. An inode no
/// one is in names no table: a scope on it could only pass on nothing.
pub fn netns_known(root: &ProcRoot, inode: Inode) -> bool {
    let in_use = root.pids().unwrap_or_default().into_iter().any(|pid| {
        root.read_link(Some(pid), &PathBuf::from(format!("{pid}/ns/net")))
            .ok()
            .and_then(|t| crate::parse::link::bracket_inode(&t, b"net"))
            == Some(inode)
    });
    in_use
        || (is_live_proc(root)
            && ["/run/netns", "/var/run/netns"].iter().any(|dir| {
                std::fs::read_dir(dir).is_ok_and(|d| {
                    d.filter_map(Result::ok)
                        .any(|e| netns_of_path(&e.path()).is_ok_and(|i| i == inode))
                })
            }))
}

/// Rows of the terminal on stdout, if it is one.
pub fn tty_height() -> Option<usize> {
    tty_size().map(|(_, rows)| rows)
}

/// Columns of the terminal on stdout, if it is one.
pub fn tty_width() -> Option<usize> {
    tty_size().map(|(cols, _)| cols)
}

/// (columns, rows) of the terminal on stdout, if it is one.
fn tty_size() -> Option<(usize, usize)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((usize::from(ws.ws_col), usize::from(ws.ws_row)))
}
