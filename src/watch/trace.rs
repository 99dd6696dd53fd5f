//! `watch --trace`: record, in the kernel, how the watched processes make,
//! copy and close their socket fds, and give each look the history of its
//! leaked sockets' holders (`source::trace`).
//!
//! Who is followed (filtered in the kernel; children are added as they
//! fork, before they run):
//! - with `--pid`: the roots and their descendants;
//! - without: every process that holds a listener or a CLOSE_WAIT socket
//!   in scope at some look (a server is followed from the look that first
//!   sees its listener), and its descendants from then on.
//!
//! The pid map has a fixed size (processes beyond it are counted in
//! `untracked_processes`), the ring buffer too (lost records counted).
//! Sockets made before a process was followed have no origin: their
//! findings stay inferred. Where tracing cannot run, one line says why and
//! the watch goes on as without it.

use crate::diagnose::Scope;
use crate::model::Snapshot;
use crate::source::trace::{close_wait_fds, Followed, Tracer};
use crate::trace::{Facts, TraceInfo};

pub enum Tracing {
    Off,
    Unavailable,
    On {
        tracer: Box<Tracer>,
        followed: Followed,
        /// Follow the holders of sockets in scope (no `--pid`).
        by_sockets: bool,
        last: Option<TraceInfo>,
    },
}

impl Tracing {
    pub fn start(trace: bool, scope: &Scope) -> Tracing {
        if !trace {
            return Tracing::Off;
        }
        match Tracer::start(None) {
            Ok(t) => {
                for pid in &scope.pids {
                    if let Err(e) = t.track(*pid) {
                        crate::diag!("cwleak watch: --trace: cannot follow pid {pid}: {e}");
                    }
                }
                Tracing::On {
                    tracer: Box::new(t),
                    followed: Followed::default(),
                    by_sockets: scope.pids.is_empty(),
                    last: None,
                }
            }
            Err(why) => {
                crate::diag!(
                    "cwleak watch: --trace is not available here: {}; watching without it",
                    crate::report::wrap::clean(&why)
                );
                Tracing::Unavailable
            }
        }
    }

    /// What is recorded about the holders of the look's CLOSE_WAIT sockets;
    /// and, without `--pid`, follow from now on the processes holding
    /// sockets in scope that are not followed yet.
    pub fn facts(&mut self, snap: &Snapshot, scope: &Scope) -> Option<Facts> {
        let Tracing::On {
            tracer,
            followed,
            by_sockets,
            last,
        } = self
        else {
            return None;
        };
        if *by_sockets {
            tracer.follow_holders(followed, snap, |s| crate::trace::followed_socket(scope, s));
        }
        let facts = tracer.facts(&close_wait_fds(snap));
        *last = Some(facts.info.clone());
        Some(facts)
    }

    /// For the summary: what the trace recorded and lost.
    pub fn info(&self) -> Option<&TraceInfo> {
        match self {
            Tracing::On { last, .. } => last.as_ref(),
            _ => None,
        }
    }
}
