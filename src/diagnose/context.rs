//! What the rules ask of the snapshot: owners of a connection, roles of
//! holders, signs of forking, and the names to print.

use super::classify::{join_fds, Role};
use super::finding::{Alternative, Cause, Line};
use super::listeners::{ListenAddress, Listeners};
use crate::graph::{HeldBy, HoldGraph};
use crate::model::{FastMap, Inode, Pid, Process, Snapshot, TcpSocket};
use std::rc::Rc;

pub struct Ctx<'a> {
    pub snap: &'a Snapshot,
    pub graph: HoldGraph<'a>,
    pub listeners: Listeners<'a>,
}

/// What one judging thread remembers between sockets: every distinct line
/// of text the findings hold (once), and what depends only on a connection's
/// listeners (owners, the "listens on" line), which thousands of sockets
/// accepted on one port share: a prefork server's listener has as many
/// holders as workers, too many to look at again for every socket.
#[derive(Default)]
pub struct Memo {
    lines: rustc_hash::FxHashSet<Line>,
    /// By local address first: no listener list to build for a known address.
    by_address: FastMap<ListenAddress, Rc<Owners>>,
    by_listeners: FastMap<ListenerKey, Rc<Owners>>,
    /// An owner's verdict on a connection it alone holds depends on it alone.
    lone_owner: FastMap<Pid, LoneOwner>,
    scratch: String,
    /// Judging only to count (whose, which cause): every line is this
    /// empty one, and the listeners' and those `fmt` makes are not formatted.
    blame_only: Option<Line>,
}

/// A connection's local port and the listeners it could come from.
type ListenerKey = (u16, Vec<Inode>);

/// The owners of a connection's listeners, and the evidence line naming them.
pub struct Owners {
    pub pids: Vec<Pid>,
    pub evidence: Vec<Line>,
}

impl Memo {
    /// A memo for judging that keeps only whose copy and which cause.
    pub fn blame_only() -> Memo {
        Memo {
            blame_only: Some(Line::from("")),
            ..Memo::default()
        }
    }

    /// The shared copy of `text`.
    pub fn line(&mut self, text: &str) -> Line {
        if let Some(empty) = &self.blame_only {
            return empty.clone();
        }
        if let Some(l) = self.lines.get(text) {
            return l.clone();
        }
        let l = Line::from(text);
        self.lines.insert(l.clone());
        l
    }

    /// The shared copy of a formatted line, formatted without allocating.
    pub fn fmt(&mut self, args: std::fmt::Arguments) -> Line {
        use std::fmt::Write;
        if self.blame_only.is_some() {
            return self.line("");
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        // Writing into a String cannot fail.
        let _ = buf.write_fmt(args);
        let l = self.line(&buf);
        self.scratch = buf;
        l
    }

    /// `Ctx::owners` and `Ctx::listener_evidence` of `sock`.
    pub fn owners(&mut self, ctx: &Ctx, sock: &TcpSocket) -> Rc<Owners> {
        let address = ctx.listeners.address(sock);
        if let Some(o) = self.by_address.get(&address) {
            return o.clone();
        }
        let key = (
            sock.local.port(),
            ctx.listeners.of(sock).iter().map(|l| l.inode).collect(),
        );
        let owners = match self.by_listeners.get(&key) {
            Some(o) => o.clone(),
            None => {
                let evidence = if self.blame_only.is_some() {
                    Vec::new()
                } else {
                    ctx.listener_evidence(sock)
                };
                let o = Rc::new(Owners {
                    pids: ctx.owners(sock),
                    evidence: evidence.iter().map(|l| self.line(l)).collect(),
                });
                self.by_listeners.insert(key, o.clone());
                o
            }
        };
        self.by_address.insert(address, owners.clone());
        owners
    }

    /// The verdict on an owner that alone holds a connection at one fd.
    pub fn lone_owner(&mut self, pid: Pid, make: impl FnOnce() -> LoneOwnerText) -> LoneOwner {
        if let Some(v) = self.lone_owner.get(&pid) {
            return v.clone();
        }
        let t = make();
        let v = LoneOwner {
            cause: t.cause,
            evidence: t.evidence.iter().map(|l| self.line(l)).collect(),
            alternatives: t
                .alternatives
                .iter()
                .map(|(cause, why)| Alternative {
                    cause: *cause,
                    why: self.line(why),
                })
                .collect(),
        };
        self.lone_owner.insert(pid, v.clone());
        v
    }
}

/// What is said of an owner that alone holds a connection at one fd.
#[derive(Clone)]
pub struct LoneOwner {
    pub cause: Cause,
    pub evidence: Vec<Line>,
    pub alternatives: Vec<Alternative>,
}

/// The same, before its lines are shared.
pub struct LoneOwnerText {
    pub cause: Cause,
    pub evidence: Vec<String>,
    pub alternatives: Vec<(Cause, String)>,
}

impl<'a> Ctx<'a> {
    /// The graph of who holds the sockets of interest, and their listeners.
    pub fn of(snap: &'a Snapshot) -> Self {
        let inodes = crate::model::interesting_inodes(&snap.sockets);
        Ctx {
            snap,
            graph: HoldGraph::build(snap, &inodes),
            listeners: Listeners::new(&snap.sockets),
        }
        // Big hosts: the inode set goes before the findings are made.
    }

    /// Processes that accepted connections on this socket's local port: the
    /// holders of its listener, minus those that only inherited the listener
    /// across an exec (same fd number as the ancestor they got it from).
    pub fn owners(&self, sock: &TcpSocket) -> Vec<Pid> {
        let lh = self.listeners.holders(sock, &self.graph);
        let mut pids: Vec<Pid> = lh.iter().map(|(h, _)| h.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        // Holds listener `l` at the same fd number as `q` does.
        let same_fd = |p: Pid, q: Pid| {
            lh.iter().any(|(h, l)| {
                h.pid == p
                    && lh
                        .iter()
                        .any(|(hq, lq)| hq.pid == q && lq.inode == l.inode && hq.fd == h.fd)
            })
        };
        let inherited = |p: Pid| {
            if let Some(a) = self
                .graph
                .ancestors(p)
                .into_iter()
                .find(|a| pids.contains(a))
            {
                return same_fd(p, a) && self.exec_between(a, p).is_some();
            }
            // Re-parented (a double-forked helper): an older holder of the same
            // listener at the same fd, running another program, is where it came from.
            pids.iter().any(|q| {
                *q != p && self.started_before(*q, p) && same_fd(p, *q) && self.other_program(p, *q)
            })
        };
        pids.iter().copied().filter(|p| !inherited(*p)).collect()
    }

    /// The first process on the way from `descendant` up to (not including)
    /// `ancestor` that runs another program than its parent.
    pub fn exec_between(&self, ancestor: Pid, descendant: Pid) -> Option<Pid> {
        let mut path = vec![descendant];
        path.extend(
            self.graph
                .ancestors(descendant)
                .into_iter()
                .take_while(|p| *p != ancestor),
        );
        path.into_iter()
            .find(|p| self.graph.execd(*p) == Some(true))
    }

    fn started_before(&self, a: Pid, b: Pid) -> bool {
        match (self.graph.process(a), self.graph.process(b)) {
            (Some(a), Some(b)) => (a.start_time, a.pid) < (b.start_time, b.pid),
            _ => false,
        }
    }

    /// Whether `a` runs another program image than `b`: another exe, or a
    /// memory layout fork would have copied unchanged (a fresh exec).
    pub fn other_program(&self, a: Pid, b: Pid) -> bool {
        let (Some(pa), Some(pb)) = (self.graph.process(a), self.graph.process(b)) else {
            return false;
        };
        match (&pa.exe, &pb.exe) {
            (Some(x), Some(y)) if x != y => true,
            _ => matches!((pa.layout, pb.layout), (Some(x), Some(y)) if x != y),
        }
    }

    /// The process that started first (the likely creator of an outgoing connection).
    pub fn oldest(&self, pids: &[Pid]) -> Option<Pid> {
        pids.iter().copied().min_by_key(|p| {
            (
                self.graph.process(*p).map_or(u64::MAX, |p| p.start_time),
                *p,
            )
        })
    }

    /// How `pid` came to hold the socket at `fds`.
    pub fn role(
        &self,
        pid: Pid,
        fds: &[i32],
        owners: &[Pid],
        creator: Option<Pid>,
        holders: &[HeldBy],
        sock: &TcpSocket,
    ) -> Role {
        if owners.contains(&pid) || creator == Some(pid) {
            return Role::Owner;
        }
        // FD_CLOEXEC set on every copy it holds: none crossed an exec.
        let all_cloexec = holders
            .iter()
            .filter(|h| h.pid == pid)
            .all(|h| h.cloexec == Some(true));
        let stdio_only = fds.iter().all(|fd| *fd <= 2);
        let related = match creator {
            Some(c) => self.graph.related(c, pid),
            None => owners.iter().any(|o| self.graph.related(*o, pid)),
        };
        if !related {
            let sources: Vec<Pid> = if owners.is_empty() {
                creator.into_iter().collect()
            } else {
                owners.to_vec()
            };
            let exec_inherited = || match (all_cloexec, stdio_only) {
                (true, _) => Role::CopiedAfterExec,
                (false, false) => Role::ExecInherited { exec_pid: pid },
                // Re-parented away from the owners: not the handler they started.
                (false, true) => Role::StdioJob { exec_pid: pid },
            };
            if let Some(o) = sources
                .iter()
                .find(|o| self.shares_fd_table_shape(pid, **o, sock.inode))
            {
                // Re-parented (its parent exited) but holding the owner's other
                // sockets at the same fd numbers: it inherited them by fork.
                return if self.other_program(pid, *o) {
                    exec_inherited()
                } else {
                    Role::Handler
                };
            }
            if self.inherited_without_trace(pid, fds, &sources, holders) {
                return exec_inherited();
            }
            return Role::Passed;
        }
        // Where its copy came from: the nearest ancestor that owns or holds it.
        let source = self.graph.ancestors(pid).into_iter().find(|a| {
            owners.contains(a) || creator == Some(*a) || holders.iter().any(|h| h.pid == *a)
        });
        let Some(source) = source else {
            return Role::Owner;
        };
        let Some(exec_pid) = self.exec_between(source, pid) else {
            return Role::Handler;
        };
        if all_cloexec {
            // Made after its exec: accepted on a listener it was handed
            // (socket activation), or received.
            return if self.holds_listener_of(pid, sock) {
                Role::Owner
            } else {
                Role::CopiedAfterExec
            };
        }
        if stdio_only {
            // Handed over as stdin/stdout/stderr by the process that accepted
            // it, to the program it exec'd (inetd, CGI, socat EXEC): the
            // handler. Below another exec, or from a holder that did not
            // accept it: a job that inherited a handler's stdio.
            let from_owner = owners.contains(&source) || creator == Some(source);
            return if from_owner && self.execs_between(source, pid) == 1 {
                Role::StdioHandler { from: source }
            } else {
                Role::StdioJob { exec_pid }
            };
        }
        Role::ExecInherited { exec_pid }
    }

    /// How many processes on the way from `descendant` up to (not
    /// including) `ancestor` run another program than their parent.
    pub fn execs_between(&self, ancestor: Pid, descendant: Pid) -> usize {
        std::iter::once(descendant)
            .chain(
                self.graph
                    .ancestors(descendant)
                    .into_iter()
                    .take_while(|p| *p != ancestor),
            )
            .filter(|p| self.graph.execd(*p) == Some(true))
            .count()
    }

    /// Whether `pid` holds a listener `sock` could have been accepted on.
    pub fn holds_listener_of(&self, pid: Pid, sock: &TcpSocket) -> bool {
        self.listeners
            .holders(sock, &self.graph)
            .iter()
            .any(|(h, _)| h.pid == pid)
    }

    /// An unrelated holder that cannot have received the fd: it has no other
    /// socket to receive it on (SCM_RIGHTS needs a unix socket), its copy
    /// lacks O_CLOEXEC (pidfd_getfd always sets it), and it runs another
    /// program than the owners: a double-forked helper whose parent exited.
    fn inherited_without_trace(
        &self,
        pid: Pid,
        fds: &[i32],
        sources: &[Pid],
        holders: &[HeldBy],
    ) -> bool {
        let Some(p) = self.graph.process(pid) else {
            return false;
        };
        let no_cloexec = holders
            .iter()
            .filter(|h| h.pid == pid)
            .all(|h| h.cloexec == Some(false));
        // A received fd takes the lowest free number, never a stdio one a
        // program still uses: a copy on stdio only was inherited (a job of a
        // handler), whatever other sockets it holds.
        let stdio_only = fds.iter().all(|fd| *fd <= 2);
        let only_this =
            stdio_only || (p.other_sockets == 0 && p.sockets.iter().all(|s| fds.contains(&s.fd)));
        !sources.is_empty()
            && no_cloexec
            && only_this
            && sources
                .iter()
                .all(|o| self.other_program(pid, *o) && self.started_before(*o, pid))
    }

    /// Whether `a` holds another socket than `inode` at the same fd number as
    /// `b` does: the mark of a table copied by fork, which SCM_RIGHTS never leaves.
    pub fn shares_fd_table_shape(&self, a: Pid, b: Pid, inode: crate::model::Inode) -> bool {
        let (Some(pa), Some(pb)) = (self.graph.process(a), self.graph.process(b)) else {
            return false;
        };
        pa.sockets.iter().filter(|s| s.inode != inode).any(|s| {
            pb.sockets
                .iter()
                .any(|t| t.fd == s.fd && t.inode == s.inode)
        })
    }

    /// What /proc shows now about whether `pid` forks per connection.
    pub fn fork_evidence(&self, pid: Pid) -> ForkEvidence {
        let mut ev = ForkEvidence::default();
        let Some(p) = self.graph.process(pid) else {
            return ev;
        };
        let children = self.graph.children(pid);
        // Forks without exec: they run its program unchanged. A
        // clone(CLONE_FILES) child shares the table: no copy of its own.
        let forks: Vec<&Process> = children
            .iter()
            .copied()
            .filter(|c| c.state != 'Z' && self.graph.execd(c.pid) == Some(false))
            .filter(|c| c.shares_fd_table_with != Some(pid))
            .collect();
        // Connections it holds (not listeners), that a forked child holds too.
        let mine: crate::model::InodeSet = p
            .sockets
            .iter()
            .map(|s| s.inode)
            .filter(|i| !self.listeners.is_listener(*i))
            .collect();
        let (sharing, other): (Vec<&Process>, Vec<&Process>) = forks
            .into_iter()
            .partition(|c| c.sockets.iter().any(|s| mine.contains(&s.inode)));
        if !sharing.is_empty() {
            ev.decisive.push(format!(
                "{} live child(ren) ({}) run its program unchanged (forked, no exec) and hold connections it holds too",
                sharing.len(),
                short_list(&sharing.iter().map(|c| c.pid).collect::<Vec<_>>())
            ));
        }
        if !other.is_empty() {
            ev.own.push(format!(
                "{} live child(ren) ({}) run its program unchanged (forked, no exec)",
                other.len(),
                short_list(&other.iter().map(|c| c.pid).collect::<Vec<_>>())
            ));
        }
        // A zombie keeps its comm: the same name as the parent's means it
        // exited without exec'ing another program.
        let zombies = children
            .iter()
            .filter(|c| c.state == 'Z' && c.comm == p.comm)
            .count();
        if zombies > 0 {
            ev.own.push(format!(
                "{zombies} exited child(ren) of the same name not yet reaped"
            ));
        }
        let signs = p.fork_signs;
        // fork() starts a process with zeroed counters and exec keeps them:
        // they are this program's own only when it has not exec'd since.
        let own_counters = self.graph.execd(pid) == Some(false);
        let ignored = signs.sigchld_handled && !signs.sigchld_caught;
        if signs.reaped_child_faults > 0 {
            let line = format!(
                "it has reaped children (their {} page faults are counted in its stat)",
                signs.reaped_child_faults
            );
            if own_counters || signs.sigchld_caught {
                let why = if own_counters {
                    "since it was forked (it runs its parent's program)"
                } else {
                    "and catches SIGCHLD (a handler this program installed: exec resets handlers)"
                };
                ev.own.push(format!("{line} {why}"));
            } else {
                ev.inherited.push(format!(
                    "{line}; that count survives exec (a launcher that ran commands before exec'ing it leaves it), so it does not show that this program forks"
                ));
            }
        } else if signs.sigchld_caught {
            // A reaper installed, but nothing reaped: no child has exited.
            ev.weak
                .push("it catches SIGCHLD but has reaped no child".to_string());
        }
        if ignored {
            if own_counters {
                ev.own.push(
                    "it ignores SIGCHLD (children reaped automatically) since it was forked"
                        .to_string(),
                );
            } else {
                // Set by this program, or inherited: an ignored signal stays
                // ignored across fork and exec (a launcher that set it, in
                // this process before its exec or in a parent).
                ev.inherited.push(
                    "it ignores SIGCHLD; that disposition survives exec, so it does not show that this program forks"
                        .to_string(),
                );
            }
        }
        ev
    }

    pub fn listener_evidence(&self, sock: &TcpSocket) -> Vec<String> {
        let lh = self.listeners.holders(sock, &self.graph);
        if lh.is_empty() {
            return match self.listeners.of(sock).first() {
                Some(l) => vec![format!("the listener {} is held by no visible process", l.local)],
                None => vec![format!(
                    "no socket listens on local port {}: this is an outgoing connection (or its listener is closed)",
                    sock.local.port()
                )],
            };
        }
        let mut shown: Vec<String> = lh
            .iter()
            .map(|(h, l)| {
                format!("{} fd {}", self.name(h.pid), h.fd) + &format!(" listens on {}", l.local)
            })
            .collect();
        shown.dedup();
        let more = shown.len().saturating_sub(3);
        shown.truncate(3);
        let mut line = shown.join("; ");
        if more > 0 {
            line.push_str(&format!("; and {more} more"));
        }
        vec![line]
    }

    pub fn passed_evidence(&self, pid: Pid, owners: &[Pid], creator: Option<Pid>) -> String {
        let others: Vec<Pid> = if owners.is_empty() {
            creator.into_iter().collect()
        } else {
            owners.to_vec()
        };
        format!(
            "{} is neither an ancestor nor a descendant of {}: the fd reached it over a unix socket (SCM_RIGHTS) or pidfd_getfd()",
            self.name(pid),
            self.names(&others)
        )
    }

    /// Why a process holding the socket on stdio only is its user, not a dup mistake.
    pub fn stdio_evidence(&self, pid: Pid, fds: &[i32], role: &Role, owners: &[Pid]) -> String {
        let on = format!(
            "{} holds it only as its stdin/stdout/stderr (fd {})",
            self.name(pid),
            join_fds(fds)
        );
        match role {
            Role::StdioHandler { from } => format!(
                "{on}, handed over across exec by {}, which accepted it (it holds the listener of this port): {} is the handler, and a dup2() onto stdio is how a handler is given the connection; its copy is its own to close",
                self.name(*from),
                self.name(pid)
            ),
            Role::Owner if owners.contains(&pid) => format!(
                "{on}; it accepted the connection itself (it holds the listener) and moved it onto stdio: one use of it, not a forgotten duplicate"
            ),
            _ => format!(
                "{on}: dup2() onto stdio is how a program is given a connection, not a forgotten duplicate"
            ),
        }
    }

    /// Why a process holding the socket on stdio only is a job, not the handler.
    pub fn stdio_job_evidence(
        &self,
        pid: Pid,
        exec_pid: Pid,
        holders: &[HeldBy],
        owners: &[Pid],
    ) -> String {
        let fds = join_fds(
            &holders
                .iter()
                .filter(|h| h.pid == pid)
                .map(|h| h.fd)
                .collect::<Vec<_>>(),
        );
        let related = owners.iter().any(|o| self.graph.related(*o, pid));
        let why = if !related {
            let parent = self
                .graph
                .parent(pid)
                .map(|p| format!(" (its parent is {})", self.name(p)))
                .unwrap_or_default();
            format!(
                "it is not a descendant of {}, which accepted it{parent}: it was re-parented after the process that started it exited, so it is not the handler the owner started but a job that inherited the handler's stdio",
                self.names(owners)
            )
        } else {
            format!(
                "{} exec'd below the handler of the connection: it is a job that inherited the handler's stdio",
                self.name(exec_pid)
            )
        };
        format!(
            "{} holds it only as its stdout/stderr/stdin (fd {fds}); {why}",
            self.name(pid)
        )
    }

    pub fn exec_evidence(&self, pid: Pid, exec_pid: Pid, holders: &[HeldBy]) -> Vec<String> {
        let fds: Vec<i32> = holders
            .iter()
            .filter(|h| h.pid == pid)
            .map(|h| h.fd)
            .collect();
        let cloexec_known = holders
            .iter()
            .any(|h| h.pid == pid && h.cloexec == Some(false));
        let exe_of = |p: Pid| {
            self.graph
                .process(p)
                .and_then(|p| p.exe.clone())
                .unwrap_or_else(|| "an unknown program".to_string())
        };
        let parent = self
            .graph
            .parent(exec_pid)
            .map(|pp| format!(", not {}'s {}", self.name(pp), exe_of(pp)))
            .unwrap_or_default();
        let mut ev = vec![format!(
            "{} runs {}{parent} (it exec'd), and still holds fd {}{}",
            self.name(exec_pid),
            exe_of(exec_pid),
            join_fds(&fds),
            if cloexec_known {
                ", which has no O_CLOEXEC"
            } else {
                ""
            }
        )];
        if exec_pid != pid {
            ev.push(format!(
                "{} inherited it from {}",
                self.name(pid),
                self.name(exec_pid)
            ));
        }
        ev
    }

    pub fn name(&self, pid: Pid) -> String {
        match self.graph.process(pid) {
            Some(p) => format!("pid {} ({})", pid, p.comm),
            None => format!("pid {pid}"),
        }
    }

    pub fn names(&self, pids: &[Pid]) -> String {
        let mut names: Vec<String> = pids.iter().take(3).map(|p| self.name(*p)).collect();
        if pids.len() > 3 {
            names.push(format!("{} more", pids.len() - 3));
        }
        names.join(", ")
    }
}

/// Signs of forking, by what they prove.
#[derive(Debug, Default)]
pub struct ForkEvidence {
    /// Live forked children holding connections it holds too: it forks per connection now.
    pub decisive: Vec<String>,
    /// Signs of this program's own children (not inherited across exec).
    pub own: Vec<String>,
    /// Signs that survive exec: they may come from a launcher.
    pub inherited: Vec<String>,
    /// Signs that show no child has exited.
    pub weak: Vec<String>,
}

fn short_list(pids: &[Pid]) -> String {
    let mut s: Vec<String> = pids.iter().take(5).map(|p| p.to_string()).collect();
    if pids.len() > 5 {
        s.push("...".to_string());
    }
    s.join(", ")
}
