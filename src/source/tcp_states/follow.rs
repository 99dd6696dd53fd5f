//! `serve` follows the TCP sockets of every namespace instead of walking the
//! kernel's socket hash for each namespace at each look. The hash holds the
//! sockets of every namespace, so each walk costs as much as all of them
//! (200,000 sockets elsewhere make a walk of a namespace with 4 sockets cost
//! 50 ms), and each look walked every namespace.
//!
//! A program at the `inet_sock_set_state` tracepoint keeps a hash map of
//! every full TCP socket (its address) to its namespace and state: a change
//! puts the socket there with its new state, a close takes it out. A
//! namespace's sockets that were there before are put in by one walk of the
//! namespace, the first look's (the walk's program inserts each socket it
//! finds, holding the socket's lock, as every state change does, so the map
//! ends up right whichever comes first). From then on, a look reads the
//! map: one pass of a program over its elements for all namespaces
//! (bpf_for_each_map_elem, the program run on demand), which counts the
//! sockets by namespace and state and writes a record (as the walk's) of
//! each CLOSE_WAIT and LISTEN one into an array read back in batches.
//!
//! What the map does not hold is counted otherwise: request sockets
//! (SYN_RECV before the handshake's last ACK) from each listener's queue
//! length, read with its record; timewait mini-sockets from the namespace's
//! `sockstat`. A timewait socket stands for TIME_WAIT or for an orphaned
//! FIN_WAIT2, and only a walk tells which: a namespace that has any gets a
//! dump of those two states, counted, not listed (the kernel skips every
//! other state); one without gets none.
//!
//! The map takes `CAPACITY` sockets; a socket it cannot take is counted,
//! and from then on every look walks again, as without the follower. The
//! same where the kernel refuses a program (no BTF member, no tracepoint):
//! the walks are the fallback.

use super::{bpf_iter, prog};
use super::{read_through, socket_of, state_of, tick_ns, Pass};
use crate::model::{FastMap, Inode, TcpState};
use crate::source::kernel_btf::with_kernel_btf;
use crate::source::trace::bpf as raw_tp;
use crate::source::{bpf_btf, bpf_map};
use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Sockets the map can hold (elements are allocated as sockets come, the
/// bucket array of 16 bytes per entry at creation: 8 MiB).
const CAPACITY: u32 = 1 << 19;
/// CLOSE_WAIT and LISTEN sockets the kept map can hold.
const KEPT_CAPACITY: u32 = 1 << 17;
/// (namespace, state) pairs that can be counted: 1,365 namespaces.
const COUNTS: u32 = 1 << 14;
/// Records a pass can write to begin with; grown when a look finds more.
const FIRST_ROOM: u32 = 1 << 12;

struct Follower {
    kept: OwnedFd,
    lost: OwnedFd,
    counts: OwnedFd,
    out_len: OwnedFd,
    btf: OwnedFd,
    offsets: (prog::RecordOffsets, prog::FollowOffsets),
    /// The pass program and its output array, remade larger when a look
    /// finds more records than it has room for.
    pass: Mutex<Option<PassProg>>,
    /// The walk that also puts what it finds in the map.
    walk: OwnedFd,
    /// The tracepoint's link: sockets are followed while it is held, and
    /// no longer once what is followed is incomplete (no cost to the host
    /// for nothing).
    change: Mutex<Option<OwnedFd>>,
    _socks: OwnedFd,
    /// Namespaces walked once since the tracepoint was attached: the map
    /// holds all their sockets.
    walked: Mutex<HashSet<Inode>>,
}

struct PassProg {
    prog: OwnedFd,
    out: OwnedFd,
    room: u32,
}

static FOLLOWER: OnceLock<Result<Follower, String>> = OnceLock::new();
/// Set when the map missed a socket: every look walks from then on.
static BROKEN: AtomicBool = AtomicBool::new(false);
/// This look's pass of the map, per namespace walked before; taken out by
/// each namespace's read, dropped at the look's end.
static CURRENT: Mutex<Option<FastMap<Inode, Pass>>> = Mutex::new(None);

/// The follower, if a look started it.
fn follower() -> Option<&'static Follower> {
    if BROKEN.load(Ordering::Relaxed) {
        return None;
    }
    FOLLOWER.get()?.as_ref().ok()
}

/// The follower, started on the first call.
fn started() -> Option<&'static Follower> {
    if BROKEN.load(Ordering::Relaxed) {
        return None;
    }
    FOLLOWER
        .get_or_init(|| {
            let f = start();
            if let Err(why) = &f {
                crate::diag!(
                    "cwleak: TCP sockets not followed ({why}): each look walks the kernel's tables"
                );
            }
            f
        })
        .as_ref()
        .ok()
}

fn e(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn start() -> Result<Follower, String> {
    let (f, r, o, tcp_iter) = with_kernel_btf(|btf| {
        let tcp_iter = btf
            .func_id("bpf_iter_tcp")
            .ok_or("no TCP iterator in this kernel")?;
        Ok((
            prog::FollowOffsets::from_btf(btf)?,
            prog::RecordOffsets::from_btf(btf)?,
            prog::Offsets::from_btf(btf)?,
            tcp_iter,
        ))
    })?;
    // Hash maps of 8-byte keys and values (a socket's address to its
    // namespace and state; a namespace and state to a count), and
    // one-slot counters.
    let hash = |entries, name, what| {
        bpf_map::map_create_flags(bpf_map::MAP_HASH, 8, 8, entries, bpf_map::NO_PREALLOC, name)
            .map_err(e(what))
    };
    let counter =
        |name, what| bpf_map::map_create(bpf_map::MAP_ARRAY, 4, 8, 1, name).map_err(e(what));
    let socks = hash(CAPACITY, "cwleak_socks", "creating the socket map")?;
    let kept = hash(KEPT_CAPACITY, "cwleak_kept", "creating the kept map")?;
    let counts = hash(COUNTS, "cwleak_counts", "creating the count map")?;
    let lost = counter("cwleak_lost", "creating the lost counter")?;
    let out_len = counter("cwleak_outlen", "creating the record count")?;
    let btf = bpf_btf::load_blob().map_err(e("loading the program's BTF"))?;
    let maps = prog::FollowMaps {
        socks: socks.as_raw_fd(),
        kept: kept.as_raw_fd(),
        counts: counts.as_raw_fd(),
        lost: lost.as_raw_fd(),
    };
    let change = raw_tp::load(&prog::state_change_program(&f, &maps)?, "cwleak_follow")
        .map_err(e("loading the state change program"))?;
    let change = raw_tp::attach(&change, "inet_sock_set_state")
        .map_err(e("attaching to inet_sock_set_state"))?;
    // Attached before any walk: a change during a walk is not missed.
    let walk = super::with_reads(&r, |r| {
        let walk = prog::program(&o, Some(r), Some((&f, &maps)))?;
        bpf_iter::load(&walk, tcp_iter, "cwleak_states").map_err(e("loading the walk"))
    })?;
    let walk = bpf_iter::link(&walk).map_err(e("attaching the walk"))?;
    let mut follower = Follower {
        kept,
        lost,
        counts,
        out_len,
        btf,
        offsets: (r, f),
        pass: Mutex::new(None),
        walk,
        change: Mutex::new(Some(change)),
        _socks: socks,
        walked: Mutex::new(HashSet::new()),
    };
    let pass = follower.pass_prog(FIRST_ROOM)?;
    follower.pass = Mutex::new(Some(pass));
    Ok(follower)
}

impl Follower {
    fn lost_any(&self) -> bool {
        let mut v = [0u8; 8];
        bpf_map::map_lookup(&self.lost, &0u32.to_ne_bytes(), &mut v)
            .map_or(true, |()| u64::from_ne_bytes(v) != 0)
    }

    fn walked(&self) -> HashSet<Inode> {
        self.walked.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// The pass program with an output array of `room` records.
    fn pass_prog(&self, room: u32) -> Result<PassProg, String> {
        let out = bpf_map::map_create(
            bpf_map::MAP_ARRAY,
            4,
            prog::RECORD as u32,
            room,
            "cwleak_out",
        )
        .map_err(e("creating the record array"))?;
        let maps = prog::PassMaps {
            kept: self.kept.as_raw_fd(),
            out: out.as_raw_fd(),
            out_len: self.out_len.as_raw_fd(),
            out_room: room,
        };
        let prog = super::with_reads(&self.offsets.0, |r| {
            let (insns, callback) = prog::pass_program(r, &self.offsets.1, &maps)?;
            bpf_btf::load_with_callback(&insns, callback, &self.btf, "cwleak_pass")
                .map_err(e("loading the pass program"))
        })?;
        Ok(PassProg { prog, out, room })
    }
}

/// The end of a look: its pass of the map is dropped.
pub struct Look(());

impl Drop for Look {
    fn drop(&mut self) {
        if let Ok(mut c) = CURRENT.lock() {
            *c = None;
        }
    }
}

/// Start a look of `serve`: one pass over the followed sockets for every
/// namespace walked before (`room` says how many records each kept last
/// time). The first call attaches the follower.
pub fn begin_look(room: impl Fn(Inode) -> Option<usize>) -> Look {
    let look = Look(());
    let Some(f) = started() else {
        return look;
    };
    if f.lost_any() {
        crate::diag!("cwleak: the socket map is full: every look walks the kernel's tables again");
        BROKEN.store(true, Ordering::Relaxed);
        if let Ok(mut link) = f.change.lock() {
            drop(link.take());
        }
        return look;
    }
    let walked = f.walked();
    if walked.is_empty() {
        return look;
    }
    match pass(f, &walked, room) {
        // Records past the output's room: it is made larger for the next
        // look; this one walks.
        Ok(None) => {}
        Ok(Some(p)) => {
            if let Ok(mut c) = CURRENT.lock() {
                *c = Some(p);
            }
        }
        // Not taken: each namespace is walked instead, as without it.
        Err(e) => crate::diag!("cwleak: reading the socket map: {e}"),
    }
    look
}

/// One pass over the followed sockets, split by namespace (those walked).
fn pass(
    f: &Follower,
    walked: &HashSet<Inode>,
    room: impl Fn(Inode) -> Option<usize>,
) -> Result<Option<FastMap<Inode, Pass>>, String> {
    let mut guard = f.pass.lock().map_err(|_| "the pass program's lock")?;
    let Some(p) = guard.as_ref() else {
        return Err("no pass program".into());
    };
    bpf_map::map_update(&f.out_len, &0u32.to_ne_bytes(), &0u64.to_ne_bytes())
        .map_err(e("resetting the record count"))?;
    bpf_btf::run(&p.prog).map_err(e("running the pass"))?;
    let mut v = [0u8; 8];
    bpf_map::map_lookup(&f.out_len, &0u32.to_ne_bytes(), &mut v)
        .map_err(e("reading the record count"))?;
    let n = u64::from_ne_bytes(v);
    if n > u64::from(p.room) {
        // Room for this many and a quarter more from the next look on;
        // this one walks.
        let room = u32::try_from(n + n / 4).unwrap_or(u32::MAX);
        *guard = Some(f.pass_prog(room)?);
        return Ok(None);
    }
    let mut out: FastMap<Inode, Pass> = walked
        .iter()
        .map(|&ns| {
            let kept = Vec::with_capacity(room(ns).unwrap_or(0));
            (
                ns,
                Pass {
                    counts: Default::default(),
                    kept: Some(kept),
                    followed: true,
                },
            )
        })
        .collect();
    for k in bpf_map::keys::<8>(&f.counts).map_err(e("reading the counts"))? {
        let ns = Inode::from(u32::from_ne_bytes([k[0], k[1], k[2], k[3]]));
        let Some(pass) = out.get_mut(&ns) else {
            continue;
        };
        let mut v = [0u8; 8];
        bpf_map::map_lookup(&f.counts, &k, &mut v).map_err(e("reading a count"))?;
        let state = u32::from_ne_bytes([k[4], k[5], k[6], k[7]]);
        if let Some(state) = u8::try_from(state).ok().and_then(state_of) {
            // Kept up by the programs: below 0 only if they were wrong.
            pass.counts
                .add_n(state, usize::try_from(i64::from_ne_bytes(v)).unwrap_or(0));
        }
    }
    let tick_ns = tick_ns();
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    bpf_map::array_values(&p.out, prog::RECORD, n, |rec| {
        let ns = Inode::from(u32::from_ne_bytes([rec[68], rec[69], rec[70], rec[71]]));
        let Some(pass) = out.get_mut(&ns) else {
            return;
        };
        let Some(s) = socket_of(rec, ns, tick_ns) else {
            return;
        };
        if s.state == TcpState::Listen {
            // A listener's request sockets, which the map does not hold.
            let q = u32::from_ne_bytes([rec[64], rec[65], rec[66], rec[67]]);
            pass.counts.add_n(TcpState::SynRecv, q as usize);
        }
        if let Some(k) = pass.kept.as_mut() {
            k.push(s);
        }
    })
    .map_err(e("reading the records"))?;
    Ok(Some(out))
}

/// The calling thread's namespace from this look's pass of the map, with
/// its timewait sockets from its `sockstat`; a namespace not walked yet is
/// walked, and its sockets put in the map. None: no follower here (the
/// caller walks as before).
pub fn read_here(netns: Inode, room: Option<usize>) -> Option<Result<Pass, String>> {
    let f = follower()?;
    let taken = CURRENT
        .lock()
        .ok()
        .and_then(|mut c| c.as_mut()?.remove(&netns));
    let mut pass = match taken {
        Some(p) => p,
        None => {
            let walked = read_through(&f.walk, true, netns, room);
            if walked.is_ok() {
                if let Ok(mut w) = f.walked.lock() {
                    w.insert(netns);
                }
            }
            return Some(walked);
        }
    };
    match timewait_here() {
        Ok(0) => {}
        // A timewait socket stands for a TIME_WAIT one or for an orphaned
        // FIN_WAIT2 (its process closed it): only a walk tells which, so
        // those two states are counted by a dump (no records, and the
        // kernel skips the other states).
        Ok(_) => {
            let two = [TcpState::FinWait2, TcpState::TimeWait];
            match crate::source::sock_diag::count_here(netns, &two) {
                Ok(t) => {
                    for s in two {
                        pass.counts.set(s, t.get(s));
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
        Err(e) => return Some(Err(e)),
    }
    Some(Ok(pass))
}

/// The timewait sockets of the calling thread's namespace (`sockstat`'s
/// `tw`).
fn timewait_here() -> Result<usize, String> {
    let path = "/proc/thread-self/net/sockstat";
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    parse_timewait(&text).ok_or_else(|| format!("{path}: no TCP tw count"))
}

fn parse_timewait(sockstat: &str) -> Option<usize> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "tw" {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_timewait_count_of_sockstat() {
        let text =
            "sockets: used 120\nTCP: inuse 5 orphan 0 tw 17 alloc 9 mem 2\nUDP: inuse 1 mem 0\n";
        assert_eq!(parse_timewait(text), Some(17));
        assert_eq!(parse_timewait("UDP: inuse 1 mem 0\n"), None);
    }
}
