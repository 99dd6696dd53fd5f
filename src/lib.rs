//! cwleak: find TCP sockets stuck in CLOSE_WAIT, name every process and fd
//! that keeps each one alive, and say why.
//!
//! Flow: `source` (the only code that reads the OS) -> `model` -> `graph` ->
//! `diagnose` -> `report`. The CLI (`cli` -> `config` -> `app`) drives it.

pub mod app;
pub mod capture;
pub mod cli;
pub mod config;
pub mod diagnose;
pub mod exit;
pub mod graph;
pub mod model;
pub mod parse;
pub mod report;
pub mod snapshot;
pub mod source;
