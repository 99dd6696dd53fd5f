//! Renderers: text, JSON, markdown and Graphviz, all drawn from one `Report`.

use crate::diagnose::Report;
use std::io::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Dot,
}

#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// ANSI colour (only on a terminal, never with NO_COLOR: the caller decides).
    pub color: bool,
    /// Terminal width to wrap text output to (80 when unknown).
    pub width: usize,
}

pub fn render(report: &Report, format: Format, opts: &RenderOptions, out: &mut dyn Write) -> io::Result<()> {
    let _ = (report, format, opts, out);
    todo!("renderers")
}
