//! From a snapshot to findings: who holds each CLOSE_WAIT socket, whose copy is
//! the forgotten one, why, and the fix.

pub mod finding;
pub use finding::*;
