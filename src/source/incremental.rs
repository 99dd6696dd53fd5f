//! Incremental looks, for `watch` and `serve`, which look again and again:
//! keep the last walk of every process, keyed by (pid, start time), and walk
//! again only the processes whose fd directory changed. The signature is the
//! size of `/proc/PID/fd`, which is the number of open fds since Linux 6.2:
//! one `stat` instead of a `getdents` and a `readlink` per fd. Every look
//! still reads each process's `stat` (ppid, state, comm change) and every TCP
//! table; only the fd walk is skipped.
//!
//! The count can stay the same while the fds change (one closed, another
//! opened). Three checks keep the answer what a full read would give:
//! - a reused process's fds that point at sockets of interest (CLOSE_WAIT
//!   and their listeners) are read again, one `readlink` each;
//! - a socket of interest that no process holds makes every reused process
//!   that could hold it (same namespace, or no sockets) be walked again;
//! - every `full_every` looks, everything is walked again.
//!
//! On kernels before 6.2 the size is 0 and every process is walked: the
//! same cost as a full read.
//!
//! Where the tables can be read before the walk (live, not scoped to
//! processes), they are: a look that finds no CLOSE_WAIT socket in any
//! namespace has no holder to find, so it walks no fd table at all (neither
//! the iterator nor /proc): a process that changed is counted instead, its
//! `stat` and its open fds (its fd directory's size, or its signature's
//! count where the look signed), and keeps the socket
//! fds of its last walk for the look's statistics. Its cache entry keeps
//! the size it was walked at, so the first look that finds a CLOSE_WAIT
//! socket walks it. Processes whose files could not be read are walked
//! every look, quiet or not, so the look keeps saying so. A quiet look does
//! not count towards the periodic full walk.
//!
//! Where the task_file iterator runs (`--fds auto` on a busy host, `--fds
//! bpf`), a look that walks everything (the first, every `full_every`-th)
//! takes every table from one pass of it instead of /proc. The other looks
//! compare fd pointers instead of fd directory sizes: one pass of a
//! program (`task_files::signatures`) signs each process with the address
//! of the `struct file` each of its fds points at, read from the fd table
//! without following it to its inode (a fraction of a reading pass); the
//! program that signs in place also reads each process's namespace, state
//! and facts (`task_files::Facts`), and a process whose facts are its last
//! walk's keeps that walk's stat fields and O_CLOEXEC flags too. A process
//! whose signature is its last walk's has every fd
//! where it was, so its fds of interest need no `readlink`: a socket of
//! interest is in this look's tables with its inode, so its file has not
//! been freed since, and no other file can have taken its address. The
//! processes whose signature changed are read again through the reading
//! program linked to each of them alone, or one pass over every process
//! when they hold many of the host's files. A file freed and its address
//! taken by a new file at the same fd is the one trade the signature misses:
//! it can only leave a socket of interest without a holder, which the search
//! for holders of unheld sockets (below) reads again. Without the pointers
//! pass (it failed), a look whose checks would cost more than one reading
//! pass (a `readlink` per fd of interest: tens of thousands on a host with
//! as many CLOSE_WAIT sockets) takes every table from that pass, and
//! nothing is then taken from the last look. `--fds bpf` reads through the
//! iterator at every look, `--fds proc` never.

use super::root::ProcRoot;
use super::walk::{self, Walked};
use super::{
    finish, prune, read_tables_first, tables_first, task_files, walk_all, Early, SourceConfig,
    SourceError, Start, TableStates,
};
use crate::model::{
    interesting_inodes, FastMap, Inode, Pid, Process, Snapshot, SocketFd, TcpSocket, TcpState,
};
use crate::parse::link;
// Fx: these hold pids and inodes by the hundred thousand, hashed at every look.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Walk everything again every this many looks by default (a minute of
/// `watch` at its default interval): bounds how long a change the checks
/// cannot see (a process that traded an fd for a socket nobody looks at
/// yet) can go unnoticed.
pub const FULL_EVERY: u64 = 30;

/// A `readlink` of /proc/PID/fd/N against one file of a task_file iterator
/// pass: about 5 µs against 0.5 µs (200k-socket benchmark).
const READLINK_COST: u64 = 10;

/// What one process's last walk found.
#[derive(Debug, Clone)]
struct Entry {
    start_time: u64,
    /// Its open fds when it was walked: its fd directory's size, or the
    /// count its signature gave in a look that signed.
    fd_size: u64,
    fd_count: u32,
    sockets: Vec<Held>,
    /// Its fd pointers' signature when it was walked, where a pass of the
    /// iterator saw it.
    pointers: Option<task_files::Signature>,
    /// Its facts' digest then, where the signing program read them: while
    /// they and the pointers stay the same, its stat fields and O_CLOEXEC
    /// flags are the ones below and in `sockets`.
    facts: Option<u64>,
    stated: Stated,
}

/// What a process's stat said, but its state (which the signing program
/// reads at each look) and its start time (the entry's).
#[derive(Debug, Clone)]
struct Stated {
    ppid: Pid,
    comm: String,
    threads: u32,
    layout: Option<crate::model::Layout>,
    fork_signs: crate::model::ForkSigns,
}

impl Entry {
    /// The facts of a process reused by its fds, and its stat read under
    /// them. Its O_CLOEXEC flags were read under other facts, or none: they
    /// are forgotten (read again where they matter).
    fn learn_facts(&mut self, digest: u64, p: &Process) {
        self.facts = Some(digest);
        self.stated = Stated::of(p);
        for h in &mut self.sockets {
            *h = h.with_cloexec(None);
        }
    }
}

impl Stated {
    fn of(p: &crate::model::Process) -> Stated {
        Stated {
            ppid: p.ppid,
            comm: p.comm.clone(),
            threads: p.threads,
            layout: p.layout,
            fork_signs: p.fork_signs,
        }
    }
}

/// How much of the last look was read again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Processes in the look.
    pub processes: usize,
    /// Processes whose fds were walked (new, changed, or found stale).
    pub walked: usize,
    /// Of those, reused ones the checks found stale and walked again.
    pub rewalked: usize,
    /// Everything was walked (first look, a periodic full walk, or disabled).
    pub full: bool,
    /// The tables had no CLOSE_WAIT socket: processes that changed were
    /// counted (stat and open fds), not walked.
    pub quiet: bool,
    /// Processes were reused by their fd pointers' signature, not by their
    /// fd directory's size.
    pub pointers: bool,
}

/// The cache of an incremental reader. Feed it the same `SourceConfig` each time.
#[derive(Debug, Default)]
pub struct Incremental {
    cache: HashMap<Pid, Entry>,
    looks: u64,
    /// 0: never reuse (every look is a full read).
    full_every: u64,
    /// Sockets of interest nobody held after every candidate was walked
    /// (held by a process cwleak may not read): not a reason to walk again.
    known_unheld: HashSet<Inode>,
    /// The kernel reports fd directory sizes (6.2+): an empty one is empty.
    sizes_work: bool,
    /// Fds of the last look that pointed at sockets of interest: what the
    /// next look's checks read again.
    interest_fds: u64,
    /// Processes whose files the last look could not read: walked at every
    /// look, quiet or not.
    failed: HashSet<Pid>,
    /// The last look kept no cache (`remember`): the next one has no
    /// walks to count socket fds from, so it is not quiet.
    no_cache: bool,
    /// Holders' status, exe, cgroup and limits, kept between looks.
    details: super::details_kept::Kept,
    last: RefreshStats,
}

/// What the pre-walk pass decided for one pid.
enum Plan {
    /// The cached walk, at this fd directory size; with its O_CLOEXEC flags
    /// when its facts are the same (`Entry::facts`).
    Reuse(Box<Walked>, u64, bool),
    Walk(Option<u64>),
}

impl Incremental {
    pub fn new(full_every: u64) -> Self {
        Incremental {
            full_every,
            ..Incremental::default()
        }
    }

    /// A reader that walks everything every time (to measure what reuse
    /// saves), and reads every holder's details every time.
    pub fn disabled() -> Self {
        Incremental::new(0).keep_details_for(std::time::Duration::ZERO)
    }

    /// How long a holder's details (status, exe, cgroup, limits) stand for
    /// it once read (`details_kept::KEPT_FOR` unless told).
    pub fn keep_details_for(mut self, age: std::time::Duration) -> Self {
        self.details = super::details_kept::Kept::new(age);
        self
    }

    pub fn stats(&self) -> RefreshStats {
        self.last
    }

    /// Whether re-reading the fds of interest (a `readlink` each, about ten
    /// times the kernel's cost per file in one pass of the iterator) would
    /// cost more than reading every open file on the host through it. Only
    /// for `--fds auto`: `bpf` always iterates, `proc` never does.
    fn checks_cost_more(&self, cfg: &SourceConfig, root: &ProcRoot) -> bool {
        checks_cost_more(cfg, root, self.interest_fds)
    }

    /// One look, reusing what the previous looks read where nothing changed.
    pub fn read(&mut self, cfg: &SourceConfig) -> Result<Snapshot, SourceError> {
        let start = Start::new(cfg)?;
        // Every state counted at every look (serve): the followed sockets
        // are read once for all namespaces, not walked per namespace.
        let _look = (cfg.follow && cfg.states == TableStates::Counted && start.live)
            .then(|| super::tcp_states::begin_look(super::sock_diag::room_for));
        // The fd pointers first, in a look that will compare them (one
        // with a cache, not due for a full walk): the signing program reads
        // every process's namespace too, which the early tables would
        // otherwise read from /proc, and its state and stat facts.
        let due = self.full_every == 0 || self.looks % self.full_every == 0;
        let mut signed = (!due && !self.cache.is_empty())
            .then(|| task_files::signatures(cfg.fds, &start.root, start.live))
            .flatten();
        // The tables first, where they can be read before the walk: a look
        // that finds no CLOSE_WAIT socket has nothing to find holders of.
        let early = if tables_first(cfg, &start) && self.full_every != 0 {
            let known: FastMap<Pid, Inode> = signed
                .iter()
                .flat_map(|s| &s.facts)
                .filter_map(|(pid, f)| Some((*pid, f.netns?)))
                .collect();
            read_tables_first(cfg, &start, &known)
        } else {
            Early::default()
        };
        // Only where fd directories' sizes count fds: a quiet look takes a
        // changed process's count from it.
        let quiet = self.sizes_work && self.looks > 0 && !self.no_cache && early.no_close_wait();
        // A quiet look does not count towards the periodic full walk.
        let mut full = !quiet && (self.full_every == 0 || self.looks % self.full_every == 0);
        self.looks += u64::from(!quiet);
        // Every table from the iterator when everything is to be walked;
        // otherwise the processes' fd pointers from it, where it runs; or,
        // where it does not sign them, every table from it when the checks
        // would cost more than one pass.
        let mut iterated = if quiet {
            None
        } else if full || self.cache.is_empty() {
            task_files::read(cfg.fds, &start.root, start.live)?
        } else {
            if signed.is_none() {
                signed = task_files::signatures(cfg.fds, &start.root, start.live);
            }
            if signed.is_none() && self.checks_cost_more(cfg, &start.root) {
                task_files::read(cfg.fds, &start.root, start.live)?
            } else {
                None
            }
        };
        // After a look that kept no cache, an iterated look keeps none
        // either: its fds are pruned as soon as the tables are read, as a
        // one-shot look's are, not after the details (a fifth of the fds
        // through the rest of the look, a smaller peak).
        // Only while it is leaky enough to keep none (the CLOSE_WAIT
        // sockets of its early tables standing for its fds of interest):
        // once checks cost less again, the look keeps a cache.
        let close_wait = early.close_wait_count() as u64;
        let prune_now = iterated.is_some()
            && self.no_cache
            && cfg.states != TableStates::All
            && close_wait > 0
            && checks_cost_more(cfg, &start.root, close_wait);
        full |= iterated.is_some();
        let cache = if full {
            HashMap::default()
        } else {
            std::mem::take(&mut self.cache)
        };
        let plans = plan_all(
            &start.root,
            &start.pids,
            cfg.threads,
            &cache,
            Compared {
                sizes_work: self.sizes_work,
                signed: signed.as_ref(),
            },
            &early,
            quiet,
        );
        let mut sizes: HashMap<Pid, u64> = HashMap::default();
        let mut walked = Vec::with_capacity(plans.len());
        let mut to_walk = Vec::new();
        let mut counted = Vec::new();
        let mut cache = cache;
        for (pid, plan) in plans {
            match plan {
                Plan::Reuse(mut w, size, flags_kept) => {
                    sizes.insert(pid, size);
                    if !quiet {
                        take_sockets(&mut w.process, &mut cache, flags_kept);
                    } else if !flags_kept {
                        // A quiet look keeps the cache it found: the stat
                        // just read, and the facts it was read under, go in
                        // it, so that the next looks need not read it again.
                        let now = signed.as_ref().and_then(|s| s.facts.get(&pid));
                        if let (Some(f), Some(e)) = (now, cache.get_mut(&pid)) {
                            e.learn_facts(f.digest, &w.process);
                        }
                    }
                    walked.push(*w);
                }
                // Quiet: counted, not walked, and not kept (not in `sizes`),
                // so the next look that needs its fds walks it. A process
                // whose files could not be read last time is walked, to
                // keep saying so.
                Plan::Walk(Some(size)) if quiet && !self.failed.contains(&pid) => {
                    counted.push((pid, size));
                }
                Plan::Walk(size) => {
                    if let Some(size) = size {
                        sizes.insert(pid, size);
                    }
                    to_walk.push(pid);
                }
            }
        }
        let reused: HashSet<Pid> = walked.iter().map(|w| w.process.pid).collect();
        // The signatures the cache keeps: this look's pointers, or the
        // reading pass's (which signs every process it reads).
        let mut signatures: Option<task_files::Signatures> = iterated
            .as_ref()
            .map(|t| t.iter().map(|(pid, t)| (*pid, t.signature)).collect());
        let mut facts = None;
        if let Some(s) = signed {
            // The changed processes' fds, through the iterator as well.
            if !to_walk.is_empty() {
                iterated = read_changed(cfg, &start.root, start.live, &s.sigs, &to_walk)?;
            }
            signatures = Some(s.sigs);
            facts = Some(s.facts);
        }
        // Details read under these facts stand while they do.
        self.details.vouch(
            facts
                .iter()
                .flatten()
                .map(|(pid, f)| (*pid, f.digest))
                .collect(),
        );
        let by_pointers = signatures.is_some() && !full;
        let (fresh, mut warnings) = walk_all(&start.root, &to_walk, iterated, &early, cfg.threads);
        walked.extend(fresh);
        walked.extend(count_only(
            &start.root,
            &counted,
            &early,
            &cache,
            &mut warnings,
        ));
        walked.sort_unstable_by_key(|w| w.process.pid);
        // Only a quiet look keeps the last walks (below); others are done
        // with them: the reused ones' fds were moved into the look.
        let cache = quiet.then_some(cache);

        let mut rewalked = 0;
        let mut searched_all = full || reused.is_empty();
        let known = &self.known_unheld;
        let root = start.root.clone();
        let mut fell_back = false;
        // Pruned as soon as the tables are read, the whole lists kept
        // aside, compact, for the cache: the look carries a fifth of the
        // fds through details and diagnosis, not every socket fd twice.
        let prune_early = !quiet && !prune_now && cfg.states != TableStates::All;
        let mut aside: Option<HashMap<Pid, Vec<Held>>> = None;
        let mut snap = finish(
            cfg,
            start,
            (walked, warnings),
            prune_now,
            &early,
            Some(&mut self.details),
            |root, walked, sockets, warnings| {
                'refresh: {
                    // A CLOSE_WAIT socket the early tables did not have (in a
                    // namespace only its file leads to): a quiet look listed no
                    // socket fds, so every process is walked after all.
                    if quiet && sockets.iter().any(|s| s.state == TcpState::CloseWait) {
                        let all: Vec<Pid> = walked.iter().map(|w| w.process.pid).collect();
                        let (again, w) = walk_all(root, &all, None, &Early::default(), cfg.threads);
                        warnings.extend(w);
                        *walked = again;
                        sizes.extend(counted.iter().copied());
                        fell_back = true;
                        break 'refresh;
                    }
                    let (stale, unheld_search) =
                        stale(root, walked, sockets, &reused, known, !by_pointers);
                    searched_all |= unheld_search;
                    if stale.is_empty() {
                        break 'refresh;
                    }
                    let (again, w) = walk_all(root, &stale, None, &Early::default(), cfg.threads);
                    rewalked = again.len();
                    warnings.extend(w);
                    let mut again: HashMap<Pid, Walked> =
                        again.into_iter().map(|w| (w.process.pid, w)).collect();
                    let stale: HashSet<Pid> = stale.into_iter().collect();
                    walked.retain_mut(|w| match again.remove(&w.process.pid) {
                        Some(fresh) => {
                            *w = fresh;
                            true
                        }
                        // Gone since: its stale fds must not name holders.
                        None => !stale.contains(&w.process.pid),
                    });
                }
                if prune_early {
                    aside = Some(prune_aside(walked, sockets));
                }
            },
        );
        // The cache keeps every socket fd (a reused walk must know them
        // all); the look keeps only those the diagnosis can use, as a full
        // read of the same states does.
        let prune_later = cfg.states != TableStates::All && !prune_now && !prune_early;
        self.remember(
            cfg,
            &root,
            &mut snap,
            Outcome {
                sizes: &sizes,
                signatures: signatures.as_ref(),
                facts: facts.as_ref(),
                searched_all,
                pruned: prune_now,
                prune: prune_later,
                aside,
            },
        );
        if quiet && !fell_back {
            // The look listed no socket fds: the cache stays the last
            // walks', at the sizes they were walked at, for the processes
            // still there (a counted one is still seen changed next look).
            let mut cache = cache.unwrap_or_default();
            cache.retain(|pid, e| {
                snap.processes
                    .binary_search_by_key(pid, |p| p.pid)
                    .is_ok_and(|i| snap.processes[i].start_time == e.start_time)
            });
            self.cache = cache;
        }
        self.last = RefreshStats {
            processes: snap.processes.len(),
            walked: to_walk.len() + rewalked,
            rewalked,
            full,
            quiet: quiet && !fell_back,
            pointers: by_pointers,
        };
        super::timing_note(&format!("look {:?}", self.last));
        Ok(snap)
    }

    fn remember(
        &mut self,
        cfg: &SourceConfig,
        root: &ProcRoot,
        snap: &mut Snapshot,
        Outcome {
            sizes,
            signatures,
            facts,
            searched_all,
            pruned,
            prune,
            mut aside,
        }: Outcome,
    ) {
        // Only directories' sizes tell whether the kernel reports them (a
        // look that signed, and so read facts, counted by signatures).
        self.sizes_work |= facts.is_none()
            && snap
                .processes
                .iter()
                .any(|p| p.fd_count > 0 && sizes.get(&p.pid).is_some_and(|s| *s > 0));
        let interest = interesting_inodes(&snap.sockets);
        self.interest_fds = snap
            .processes
            .iter()
            .flat_map(|p| &p.sockets)
            .filter(|s| interest.contains(&s.inode))
            .count() as u64;
        let unheld = unheld_inodes(snap);
        self.known_unheld = if searched_all {
            unheld
        } else {
            self.known_unheld.intersection(&unheld).copied().collect()
        };
        // A process whose files could not be read is walked again every
        // look: reused, it would drop out of the look's warnings, and the
        // exporter would stop saying the answer is incomplete.
        self.failed = snap.warnings.iter().filter_map(|w| w.pid).collect();
        // With CLOSE_WAIT sockets whose fds cost more to check than one
        // pass of the iterator, the next look takes every table from the
        // iterator, not from the cache, unless it is quiet (no CLOSE_WAIT
        // left): keeping a cache would hold every socket fd of the host
        // (a fifth of serve's memory at 200k sockets) for, at most, one
        // quiet look, which without it walks (iterates) once instead.
        // A pruned look lacks the fds a reused walk needs: no cache, so the
        // next look iterates again (or, quiet, iterates once).
        // Signed processes need no checks: a cache is kept, however leaky.
        let leaky = snap.sockets.iter().any(|s| s.state == TcpState::CloseWait);
        self.no_cache =
            pruned || (leaky && signatures.is_none() && self.checks_cost_more(cfg, root));
        // Pruned here unless the look did it early: each process's whole
        // list goes to the cache, compact, and the look keeps a copy of the
        // fds it can use.
        let shared = prune.then(|| prune::shared_inodes(snap.processes.iter()));
        let keep = shared
            .as_ref()
            .map(|shared| prune::Keep::new(&snap.sockets, shared));
        let mut cache = HashMap::default();
        for p in &mut snap.processes {
            // A table read through a thread (zombie leader) is walked every
            // time, and so is a process with threads' own tables: its fd
            // directory's size says nothing about theirs.
            let kept = !self.no_cache
                && p.fd_table_tid.is_none()
                && p.state != 'Z'
                && p.sockets.iter().all(|s| s.tid.is_none())
                && !self.failed.contains(&p.pid);
            let fd_size = sizes.get(&p.pid).copied();
            // A process the pass did not report has no open file.
            let pointers = signatures.map(|s| s.get(&p.pid).copied().unwrap_or_default());
            let kept = kept && (fd_size.is_some() || pointers.is_some());
            let sockets = match (&mut aside, &keep) {
                // Pruned already: the whole list was put aside (if it can be
                // kept), before the flags of the fds kept were read.
                (Some(aside), _) => match aside.remove(&p.pid) {
                    Some(mut all) => {
                        with_flags(&mut all, &p.sockets);
                        all
                    }
                    None => continue,
                },
                (None, Some(keep)) => compact(&prune::split(p, keep)),
                (None, None) if kept => compact(&p.sockets),
                (None, None) => continue,
            };
            if kept {
                let entry = Entry {
                    start_time: p.start_time,
                    // 0 is never a match where sizes are not counted.
                    fd_size: fd_size.unwrap_or(0),
                    fd_count: p.fd_count,
                    sockets,
                    pointers,
                    facts: facts.and_then(|f| f.get(&p.pid)).map(|f| f.digest),
                    stated: Stated::of(p),
                };
                cache.insert(p.pid, entry);
            }
        }
        self.cache = cache;
    }
}

/// What a look leaves for `remember`.
struct Outcome<'a> {
    /// Fd directory sizes, of the processes whose size was read.
    sizes: &'a HashMap<Pid, u64>,
    /// Fd pointers' signatures, where a pass of the iterator signed them.
    signatures: Option<&'a task_files::Signatures>,
    /// Processes' facts, in a look that signed (its sizes are then the
    /// signatures' counts of open fds).
    facts: Option<&'a FastMap<Pid, task_files::Facts>>,
    /// Every process that could hold an unheld socket was walked.
    searched_all: bool,
    /// The fds were pruned early and not kept (a look without a cache).
    pruned: bool,
    /// The fds are to be pruned now.
    prune: bool,
    /// The fds were pruned early, each process's whole list put aside.
    aside: Option<HashMap<Pid, Vec<Held>>>,
}

/// Whether a `readlink` of each of `fds` fds of interest costs more than one
/// pass of the task_file iterator over every open file.
fn checks_cost_more(cfg: &SourceConfig, root: &ProcRoot, fds: u64) -> bool {
    match cfg.fds {
        task_files::FdMethod::Bpf => true,
        task_files::FdMethod::Proc => false,
        task_files::FdMethod::Auto => {
            task_files::open_files(root).is_some_and(|n| fds.saturating_mul(READLINK_COST) >= n)
        }
    }
}

/// The fd tables of the processes whose pointers changed, from the
/// iterator: linked to each of them alone when they are few and hold few of
/// the host's files, else one pass over every process. Under `--fds auto`,
/// /proc instead when a `readlink` of each of their fds costs less.
fn read_changed(
    cfg: &SourceConfig,
    root: &ProcRoot,
    live: bool,
    sigs: &task_files::Signatures,
    changed: &[Pid],
) -> Result<Option<task_files::Tables>, SourceError> {
    let files = |pids: &mut dyn Iterator<Item = &Pid>| -> u64 {
        pids.map(|p| sigs.get(p).map_or(0, |s| u64::from(s.files)))
            .sum()
    };
    let theirs = files(&mut changed.iter());
    let all = files(&mut sigs.keys());
    if cfg.fds == task_files::FdMethod::Auto && theirs.saturating_mul(READLINK_COST) < all {
        return Ok(None);
    }
    if changed.len() <= ONE_BY_ONE && theirs.saturating_mul(2) < all {
        if let Some(tables) = task_files::read_processes(root, changed) {
            return Ok(Some(tables));
        }
    }
    task_files::read(cfg.fds, root, live)
}

/// At most this many processes are read by a pass each (three bpf(2)
/// calls per process before its files).
const ONE_BY_ONE: usize = 64;

/// One socket fd as the cache keeps it: 12 bytes, not a `SocketFd`'s 24
/// (a cached process has no thread's own table); 200,000 of them at 200k
/// sockets. The fd's two top bits (no fd reaches 2^30: `fs.nr_open` stops
/// below) say whether O_CLOEXEC was read, and what it was.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct Held {
    inode: Inode,
    fd: u32,
}

const FLAG_READ: u32 = 1 << 31;
const CLOEXEC: u32 = 1 << 30;

impl Held {
    fn of(s: &SocketFd) -> Held {
        Held {
            inode: s.inode,
            fd: s.fd as u32,
        }
        .with_cloexec(s.cloexec)
    }

    /// The same fd, its O_CLOEXEC flag said to be `cloexec`.
    fn with_cloexec(self, cloexec: Option<bool>) -> Held {
        let flags = match cloexec {
            None => 0,
            Some(false) => FLAG_READ,
            Some(true) => FLAG_READ | CLOEXEC,
        };
        Held {
            inode: self.inode,
            fd: self.fd & !(FLAG_READ | CLOEXEC) | flags,
        }
    }

    fn fd(&self) -> i32 {
        (self.fd & !(FLAG_READ | CLOEXEC)) as i32
    }

    fn cloexec(&self) -> Option<bool> {
        (self.fd & FLAG_READ != 0).then_some(self.fd & CLOEXEC != 0)
    }
}

fn compact(sockets: &[SocketFd]) -> Vec<Held> {
    sockets.iter().map(Held::of).collect()
}

/// The O_CLOEXEC flags read for `kept` (a pruned list) into `all`, the
/// process's whole list put aside before they were read.
fn with_flags(all: &mut [Held], kept: &[SocketFd]) {
    let read: FastMap<(i32, Inode), bool> = kept
        .iter()
        .filter_map(|s| Some(((s.fd, s.inode), s.cloexec?)))
        .collect();
    if read.is_empty() {
        return;
    }
    for h in all.iter_mut() {
        if let Some(&c) = read.get(&(h.fd(), h.inode)) {
            *h = h.with_cloexec(Some(c));
        }
    }
}

/// A reused process's socket fds, taken out of the cache (only a quiet
/// look keeps using it): with O_CLOEXEC as last read when `flags_kept` (its
/// close-on-exec bits did not change since), else as a full walk leaves
/// them, the flag read later for the fds that matter.
fn take_sockets(p: &mut crate::model::Process, cache: &mut HashMap<Pid, Entry>, flags_kept: bool) {
    if let Some(e) = cache.get_mut(&p.pid) {
        p.sockets = std::mem::take(&mut e.sockets)
            .into_iter()
            .map(|h| SocketFd {
                fd: h.fd(),
                inode: h.inode,
                cloexec: h.cloexec().filter(|_| flags_kept),
                tid: None,
            })
            .collect();
    }
}

/// Prune every process's socket fds (as a one-shot look does), and put the
/// whole list of each that can be cached (no thread's own table) aside.
fn prune_aside(walked: &mut [Walked], sockets: &[TcpSocket]) -> HashMap<Pid, Vec<Held>> {
    let shared = prune::shared_inodes(walked.iter().map(|w| &w.process));
    let keep = prune::Keep::new(sockets, &shared);
    let mut aside = HashMap::default();
    for w in walked.iter_mut() {
        let cacheable = w.process.sockets.iter().all(|s| s.tid.is_none());
        let all = prune::split(&mut w.process, &keep);
        if cacheable {
            aside.insert(w.process.pid, compact(&all));
        }
    }
    aside
}

/// How many socket fds a cached walk found.
fn socket_count(e: &Entry) -> u32 {
    u32::try_from(e.sockets.len()).unwrap_or(u32::MAX)
}

/// Processes a quiet look counts instead of walking: `stat`, and the open
/// fds their directory's size (or signature) gives; as many socket fds as
/// their last walk found when it is the same process, counted, not listed
/// (no socket is in CLOSE_WAIT: there is no holder to name).
fn count_only(
    root: &ProcRoot,
    counted: &[(Pid, u64)],
    early: &Early,
    cache: &HashMap<Pid, Entry>,
    warnings: &mut Vec<crate::model::Warning>,
) -> Vec<Walked> {
    let mut scratch = walk::Scratch::default();
    counted
        .iter()
        .filter_map(|&(pid, size)| {
            let last = cache.get(&pid);
            let table = task_files::Table {
                tid: pid,
                fd_count: u32::try_from(size).unwrap_or(u32::MAX),
                sockets: Vec::new(),
                signature: task_files::Signature::default(),
            };
            let netns = early.netns_of.get(&pid).copied();
            let mut w = walk::walk_process(
                root,
                pid,
                walk::Fds::Known(table),
                netns,
                true,
                &mut scratch,
                warnings,
            )?;
            if let Some(e) = last.filter(|e| e.start_time == w.process.start_time) {
                w.process.other_sockets = socket_count(e);
                // A socket holder's namespace is read, as a walk reads it.
                if w.process.netns.is_none() && w.process.other_sockets > 0 {
                    w.process.netns = netns.or_else(|| {
                        let t = root.read_link(Some(pid), &w.base.join("ns/net")).ok()?;
                        link::bracket_inode(&t, b"net")
                    });
                }
            }
            Some(w)
        })
        .collect()
}

/// Sockets of interest with a file that no walked process holds.
fn unheld_inodes(snap: &Snapshot) -> HashSet<Inode> {
    let interest = interesting_inodes(&snap.sockets);
    unheld_among(snap.processes.iter(), interest.into_iter())
}

/// Which of `inodes` no socket fd of `processes` points at: each fd looked
/// up in the (shrinking) set of those not found yet, not a set of every
/// socket fd of the host built to look them up in.
fn unheld_among<'a>(
    processes: impl Iterator<Item = &'a crate::model::Process>,
    inodes: impl Iterator<Item = Inode>,
) -> HashSet<Inode> {
    let mut unheld: HashSet<Inode> = inodes.collect();
    for p in processes {
        if unheld.is_empty() {
            break;
        }
        for s in &p.sockets {
            unheld.remove(&s.inode);
        }
    }
    unheld
}

/// Stat every pid, spread over threads like the walk, and decide for each.
fn plan_all(
    root: &ProcRoot,
    pids: &[Pid],
    threads: usize,
    cache: &HashMap<Pid, Entry>,
    by: Compared,
    early: &Early,
    quiet: bool,
) -> Vec<(Pid, Plan)> {
    let mut plans: Vec<(Pid, Plan)> = crate::par::spread(pids, threads, |mine| {
        let mut buf = Vec::new();
        mine.map(|&pid| {
            let netns = early.netns_of.get(&pid).copied();
            (
                pid,
                plan(root, pid, cache.get(&pid), by, netns, !quiet, &mut buf),
            )
        })
        .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    plans.sort_unstable_by_key(|(pid, _)| *pid);
    plans
}

/// What the processes' fds are compared by in a look.
#[derive(Clone, Copy)]
struct Compared<'a> {
    /// The kernel reports fd directory sizes.
    sizes_work: bool,
    /// In a look that signed fd pointers: every process's signature (none:
    /// the pass did not report it, it has no file), and its facts where the
    /// signing program read them. Sizes are then not read.
    signed: Option<&'a task_files::Signed>,
}

/// Reuse the cached walk when the process is the same one (start time) and
/// its fds point where they did (the same fd pointers' signature, in a look
/// that signed them; else the same fd directory size, where 0 counts only
/// on a kernel that reports sizes: before 6.2 it is always 0); otherwise
/// walk it. Any failure here means "walk it": the walk reports failures
/// properly.
fn plan(
    root: &ProcRoot,
    pid: Pid,
    cached: Option<&Entry>,
    by: Compared,
    netns: Option<Inode>,
    list_sockets: bool,
    buf: &mut Vec<u8>,
) -> Plan {
    let base = PathBuf::from(pid.to_string());
    let pointers = by
        .signed
        .map(|s| s.sigs.get(&pid).copied().unwrap_or_default());
    // Its open fds: the signature counts them (a quiet look counts a
    // changed process by them), else its fd directory's size does.
    let size = match pointers {
        Some(sig) if sig.files != u32::MAX => Some(u64::from(sig.files)),
        _ => std::fs::metadata(root.join(base.join("fd")))
            .ok()
            .map(|m| m.size()),
    };
    let Some(cached) = cached else {
        return Plan::Walk(size);
    };
    let unchanged = match pointers {
        Some(now) => cached.pointers == Some(now),
        None => size == Some(cached.fd_size) && (cached.fd_size > 0 || by.sizes_work),
    };
    // The same fds and the same facts: its stat as last read, its state
    // and namespace as the signing program read them now.
    let facts = by.signed.and_then(|s| s.facts.get(&pid));
    let same_facts = unchanged && facts.is_some_and(|f| cached.facts == Some(f.digest));
    let (mut process, netns) = match facts {
        Some(f) if same_facts && f.state != 'Z' => {
            let st = &cached.stated;
            let process = Process {
                pid,
                ppid: st.ppid,
                comm: st.comm.clone(),
                start_time: cached.start_time,
                state: f.state,
                threads: st.threads,
                layout: st.layout,
                fork_signs: st.fork_signs,
                ..Process::default()
            };
            (process, f.netns.or(netns))
        }
        _ => {
            let Ok(stat) = walk::read_stat(root, pid, &base, buf) else {
                return Plan::Walk(size);
            };
            if stat.start_time != cached.start_time || stat.state == 'Z' || !unchanged {
                return Plan::Walk(size);
            }
            (walk::from_stat(pid, stat), netns)
        }
    };
    process.fd_count = cached.fd_count;
    // Listed, the socket fds are moved from the cache after planning
    // (`take_sockets`).
    if !list_sockets {
        process.other_sockets = socket_count(cached);
    }
    if !cached.sockets.is_empty() {
        // A process can change namespace (setns) and keep its fds: read
        // this look (by the early tables, or here).
        match netns {
            Some(n) => process.netns = Some(n),
            None => match root.read_link(Some(pid), &base.join("ns/net")) {
                Ok(t) => process.netns = link::bracket_inode(&t, b"net"),
                Err(_) => return Plan::Walk(size),
            },
        }
    }
    Plan::Reuse(
        Box::new(Walked { process, base }),
        cached.fd_size,
        same_facts,
    )
}

/// Reused processes to walk again: those whose fds of interest no longer
/// point where the cache says (read when `check_fds`: processes reused by
/// their fd pointers need not be), and, when a socket of interest has no
/// holder (new and unknown), every reused process that could be holding
/// it. The bool says whether that search ran.
fn stale(
    root: &ProcRoot,
    walked: &[Walked],
    sockets: &[TcpSocket],
    reused: &HashSet<Pid>,
    known_unheld: &HashSet<Inode>,
    check_fds: bool,
) -> (Vec<Pid>, bool) {
    // Every process walked this look: none can be stale, and the search
    // below would only hash every socket fd of the host.
    if reused.is_empty() {
        return (Vec::new(), false);
    }
    let interest = interesting_inodes(sockets);
    let mut stale: Vec<Pid> = Vec::new();
    let candidates = walked.iter().filter(|w| reused.contains(&w.process.pid));
    for w in candidates.clone().filter(|_| check_fds) {
        let moved = w
            .process
            .sockets
            .iter()
            .filter(|s| interest.contains(&s.inode))
            .any(|s| {
                let rel = w.base.join(format!("fd/{}", s.fd));
                !root
                    .read_link(Some(w.process.pid), &rel)
                    .is_ok_and(|t| link::bracket_inode(&t, b"socket") == Some(s.inode))
            });
        if moved {
            stale.push(w.process.pid);
        }
    }
    let unheld = unheld_among(
        walked.iter().map(|w| &w.process),
        interest
            .iter()
            .copied()
            .filter(|i| !known_unheld.contains(i)),
    );
    let unheld_ns: HashSet<Inode> = sockets
        .iter()
        .filter(|s| s.inode != 0 && unheld.contains(&s.inode))
        .map(|s| s.netns)
        .collect();
    let search = !unheld_ns.is_empty();
    if search {
        stale.extend(
            candidates
                .filter(|w| w.process.netns.is_none_or(|ns| unheld_ns.contains(&ns)))
                .map(|w| w.process.pid),
        );
    }
    stale.sort_unstable();
    stale.dedup();
    (stale, search)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    /// A recorded tree is plain files: its fd directories have a size too,
    /// so the reuse logic can be driven without a live kernel.
    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fork-exited/proc")
    }

    fn cfg(root: PathBuf) -> SourceConfig {
        SourceConfig {
            root,
            threads: 1,
            ..SourceConfig::default()
        }
    }

    /// (pid, fd count, socket fds) of every process.
    type Shape = Vec<(Pid, u32, Vec<(i32, Inode)>)>;

    /// Processes and sockets as a full read gives them (order-free fields only).
    fn shape(s: &Snapshot) -> Shape {
        s.processes
            .iter()
            .map(|p| {
                (
                    p.pid,
                    p.fd_count,
                    p.sockets.iter().map(|s| (s.fd, s.inode)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn an_incremental_look_equals_a_full_one() {
        let root = fixture();
        assert!(
            root.is_dir(),
            "{} is part of the repository",
            root.display()
        );
        let c = cfg(root);
        let Ok(full) = super::super::read(&c) else {
            panic!("fixture unreadable")
        };
        let mut inc = Incremental::new(FULL_EVERY);
        for look in 0..3 {
            let Ok(snap) = inc.read(&c) else {
                panic!("incremental read failed")
            };
            assert_eq!(shape(&snap), shape(&full), "look {look}");
            assert_eq!(snap.sockets, full.sockets);
            let st = inc.stats();
            assert_eq!(st.full, look == 0);
            if look > 0 {
                assert!(st.walked < st.processes, "look {look}: {st:?}");
            }
        }
    }

    /// A holder's status, exe, cgroup and limits are read once and kept
    /// while it is the same process and the reading is young: a change in
    /// them is not read at the next look, an exec (a new name) is, and a
    /// reader that keeps nothing reads everything.
    #[test]
    fn details_are_kept_for_the_same_process_while_young() {
        let dir = tempfile::tempdir().unwrap();
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(fixture())
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(copied.success());
        let root = dir.path().join("proc");
        let c = cfg(root.clone());
        let limit = |s: &Snapshot, pid: Pid| {
            s.processes
                .iter()
                .find(|p| p.pid == pid)
                .and_then(|p| p.fd_limit)
        };
        let mut inc = Incremental::new(FULL_EVERY);
        let first = inc.read(&c).unwrap();
        let Some(pid) = first
            .processes
            .iter()
            .find(|p| p.fd_limit == Some(20_000))
            .map(|p| p.pid)
        else {
            panic!("the fixture has a holder with its fd limit read")
        };
        let edit = |file: &str, from: &str, to: &str| {
            let path = root.join(pid.to_string()).join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(from), "{file}: {text}");
            std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        };
        edit(
            "limits",
            "20000                20000",
            "30000                30000",
        );
        assert_eq!(limit(&inc.read(&c).unwrap(), pid), Some(20_000));
        let mut reading = Incremental::new(FULL_EVERY).keep_details_for(Duration::ZERO);
        assert_eq!(limit(&reading.read(&c).unwrap(), pid), Some(30_000));
        edit("stat", "(record_fixture)", "(after_exec)");
        assert_eq!(limit(&inc.read(&c).unwrap(), pid), Some(30_000));
    }

    /// Reading only CLOSE_WAIT and LISTEN (serve, watch), every look keeps
    /// the fds a full read of those states keeps, and counts the others as
    /// it does; the cache still holds them all, so a later look that reuses
    /// it gives the same.
    #[test]
    fn a_look_of_the_leak_states_keeps_the_fds_a_full_read_keeps() {
        // Established connections beside the listeners: fds to prune.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/healthy/proc");
        let c = SourceConfig {
            states: TableStates::Leaks,
            fds: task_files::FdMethod::Proc,
            ..cfg(root.clone())
        };
        let Ok(full) = super::super::read(&c) else {
            panic!("fixture unreadable")
        };
        let all: usize = super::super::read(&cfg(root))
            .map(|s| s.processes.iter().map(|p| p.sockets.len()).sum())
            .unwrap_or(0);
        let kept: usize = full.processes.iter().map(|p| p.sockets.len()).sum();
        assert!(kept < all, "the fixture has fds to prune: {kept} of {all}");
        let others = |s: &Snapshot| -> Vec<(Pid, u32)> {
            s.processes
                .iter()
                .map(|p| (p.pid, p.other_sockets))
                .collect()
        };
        let mut inc = Incremental::new(FULL_EVERY);
        for look in 0..3 {
            let Ok(snap) = inc.read(&c) else {
                panic!("incremental read failed")
            };
            assert_eq!(shape(&snap), shape(&full), "look {look}");
            assert_eq!(others(&snap), others(&full), "look {look}");
            assert!(look == 0 || !inc.stats().full, "look {look} reused");
        }
        let cached: usize = inc.cache.values().map(|e| e.sockets.len()).sum();
        assert!(cached > kept, "the cache keeps every fd: {cached}");
    }

    #[test]
    fn a_held_fd_keeps_its_number_and_flag_and_takes_flags_read_later() {
        let fd = |fd, cloexec| SocketFd {
            fd,
            inode: 7,
            cloexec,
            tid: None,
        };
        for s in [
            fd(3, None),
            fd(4, Some(false)),
            fd((1 << 30) - 1, Some(true)),
        ] {
            let h = Held::of(&s);
            assert_eq!((h.fd(), h.cloexec()), (s.fd, s.cloexec));
        }
        let mut all = compact(&[fd(3, None), fd(4, None), fd(9, Some(true))]);
        with_flags(&mut all, &[fd(4, Some(true)), fd(3, None)]);
        let got: Vec<(i32, Option<bool>)> = all.iter().map(|h| (h.fd(), h.cloexec())).collect();
        assert_eq!(got, [(3, None), (4, Some(true)), (9, Some(true))]);
    }

    #[test]
    fn facts_learnt_in_a_quiet_look_forget_the_flags_read_before() {
        let old = Process {
            pid: 7,
            comm: "before".into(),
            ..Process::default()
        };
        let mut e = Entry {
            start_time: 1,
            fd_size: 2,
            fd_count: 2,
            sockets: compact(&[SocketFd {
                fd: 3,
                inode: 9,
                cloexec: Some(true),
                tid: None,
            }]),
            pointers: None,
            facts: None,
            stated: Stated::of(&old),
        };
        let now = Process {
            comm: "after".into(),
            ..old
        };
        e.learn_facts(42, &now);
        assert_eq!(e.facts, Some(42));
        assert_eq!(e.stated.comm, "after");
        let h = e.sockets[0];
        assert_eq!((h.fd(), h.cloexec()), (3, None));
    }

    #[test]
    fn a_disabled_reader_walks_everything() {
        let root = fixture();
        assert!(
            root.is_dir(),
            "{} is part of the repository",
            root.display()
        );
        let c = cfg(root);
        let mut inc = Incremental::disabled();
        for _ in 0..2 {
            assert!(inc.read(&c).is_ok());
            let st = inc.stats();
            assert!(st.full);
            assert_eq!(st.walked, st.processes);
        }
    }
}
