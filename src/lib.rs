//! cwleak: find TCP sockets stuck in CLOSE_WAIT, name every process and fd
//! that keeps each one alive, and say why.
//!
//! Flow: `source` (the only code that reads the OS) -> `model` -> `graph` ->
//! `diagnose` -> `report`. The CLI (`cli` -> `config` -> `app`) drives it;
//! `check` is the CI gate built on the same pipeline.

// Diagnostics go through `diag!`: a failed write on stderr is ignored.
#![cfg_attr(not(test), deny(clippy::print_stderr))]

pub mod app;
pub mod capture;
pub mod check;
pub mod cli;
pub mod config;
mod diag;
pub mod diagnose;
pub mod exit;
pub mod graph;
pub mod growth;
pub mod model;
pub mod output;
pub mod par;
pub mod parse;
pub mod report;
pub mod serve;
pub mod snapshot;
pub mod source;
pub mod states;
pub mod stop;
pub mod trace;
pub mod trace_for;
pub mod tuning;
pub mod watch;

/// Visible skips for the unit tests, shared with the integration tests.
#[cfg(test)]
#[path = "../tests/support/skip.rs"]
pub(crate) mod skip;
