//! `cwleak states`: how many TCP sockets sit in each of the twelve states,
//! host-wide and per network namespace, and who they belong to (processes,
//! service ports, remote addresses, namespaces).
//!
//! `build` is pure: it counts a `Snapshot` with arrays indexed by state and
//! never touches the OS. `cmd` and `watch` drive the source and the output.

mod build;
mod cmd;
pub mod config;
pub mod count;
mod holders;
pub mod numbers;
pub mod render;
pub mod report;
#[cfg(test)]
mod schema_tests;
pub mod side;
mod tally;
#[cfg(test)]
pub(crate) mod testdata;
mod watch;

pub use build::{build, with_descendants, Options};
pub use cmd::{look, run};
pub use count::{Owner, Owners, StateChange, StateCounts};
pub use report::*;
pub use watch::counter_change;
