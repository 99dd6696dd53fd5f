//! `check --trace`: record how the scope's socket fds are made while the
//! command runs (`source::trace`), and hand the history to the diagnosis.
//! Where tracing cannot run, one line says why and the check goes on as
//! without it.

use crate::config::CheckConfig;
use crate::model::{Pid, Snapshot};
use crate::source::trace::{unavailable, Tracer};
use crate::trace::Facts;

pub enum Tracing {
    Off,
    Unavailable(String),
    On(Box<Tracer>),
}

impl Tracing {
    /// Before the command starts: its children are followed from birth.
    pub fn start(cfg: &CheckConfig) -> Tracing {
        if !cfg.trace {
            return Tracing::Off;
        }
        match Tracer::start(Some(std::process::id() as Pid)) {
            Ok(t) => {
                for spec in &cfg.roots {
                    if let crate::check::roots::RootSpec::Pid(pid) = spec {
                        if let Err(e) = t.track(*pid) {
                            crate::diag!("cwleak check: --trace: cannot follow pid {pid}: {e}");
                        }
                    }
                }
                Tracing::On(Box::new(t))
            }
            Err(why) => {
                crate::diag!(
                    "cwleak check: --trace is not available here: {why}; checking without it"
                );
                Tracing::Unavailable(why)
            }
        }
    }

    /// After the look: stop, and keep what explains its sockets.
    pub fn finish(self, snap: &Snapshot) -> Option<Facts> {
        match self {
            Tracing::Off => None,
            Tracing::Unavailable(why) => Some(unavailable(why)),
            Tracing::On(t) => Some(t.finish(snap)),
        }
    }
}
