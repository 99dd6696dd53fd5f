//! `cwleak sysctl`: the TCP settings of each network namespace set against
//! its live counts, as findings that say what is true (and what each setting
//! does not do), never as a recipe.
//!
//! `observe`, `rules` and `report::build` are pure: they read a `Snapshot`
//! whose namespaces carry their sysctls (the source reads them with
//! `SourceConfig::sysctls`). `cmd` drives the source and the output.

mod cmd;
pub mod explain;
pub mod finding;
pub mod observe;
pub mod render;
pub mod report;
pub mod rules;
pub mod settings;

pub use cmd::run;
pub use finding::{Finding, Rule, Severity};
pub use report::{build, TuningReport};
