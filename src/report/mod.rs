//! Renderers: text, JSON, markdown and Graphviz, all drawn from one `Report`.
//!
//! Every renderer is pure: it reads the report and writes to `out`, never
//! panics on odd data (dangling indexes, empty lists, hostile process names),
//! and returns only the io errors of `out` (the caller treats a closed pipe as
//! success).

mod dot;
mod holders;
mod json;
mod markdown;
pub mod origin;
pub(crate) mod ranges;
pub(crate) mod style;
mod text;
pub(crate) mod units;
pub(crate) mod wrap;

#[cfg(test)]
pub(crate) mod testdata;

use crate::diagnose::Report;
use std::io::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Dot,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Text, Format::Json, Format::Markdown, Format::Dot];

    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Markdown => "markdown",
            Format::Dot => "dot",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// ANSI colour (only on a terminal, never with NO_COLOR: the caller decides).
    pub color: bool,
    /// Terminal width to wrap text output to (80 when unknown).
    pub width: usize,
    /// Indented JSON (the default on a terminal); compact otherwise.
    pub pretty: bool,
    /// The look was taken here by root: "permission denied" is then not
    /// cured by running as root, and the hint says what else it can be.
    pub read_as_root: bool,
}

/// What to do about paths that could not be read, for the one who read them.
pub fn unreadable_hint(read_as_root: bool) -> &'static str {
    if read_as_root {
        "cwleak ran as root, so something else refused: a process outside its user namespace \
         (cwleak in a container), /proc mounted with hidepid=, or a security policy \
         (Yama ptrace_scope 3, AppArmor, SELinux)"
    } else {
        "run cwleak as root to read them"
    }
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            color: false,
            width: 80,
            pretty: false,
            read_as_root: false,
        }
    }
}

pub fn render(
    report: &Report,
    format: Format,
    opts: &RenderOptions,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Text => text::render(report, opts, out),
        Format::Json => json::render(report, opts.pretty, out),
        Format::Markdown => markdown::render(report, out),
        Format::Dot => dot::render(report, out),
    }?;
    out.flush()
}
