//! The one seam to the OS. Everything read from the kernel enters here, through
//! a proc root given as a value: the live `/proc`, a recorded fixture tree, or
//! (see `snapshot`) a saved capture. After this module, all code is pure.

pub mod error;
pub mod sock_diag;

pub use error::SourceError;
