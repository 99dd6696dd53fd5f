//! Running `cwleak sysctl`: read (or load) one look with its settings, judge
//! it, render it, and map `--fail-on` to the exit status.

use super::finding::Severity;
use super::render;
use super::report::build;
use crate::cli::{SeverityArg, SysctlArgs, TextJsonArg};
use crate::config::{resolve_netns_all, source_config, terminal_width, use_color};
use crate::exit::Exit;
use crate::report::RenderOptions;
use crate::source::ProcRoot;
use anyhow::{Context, Result};

pub fn run(a: &SysctlArgs) -> Result<Exit> {
    let mut source = source_config(&a.source);
    source.sysctls = true;
    let root = ProcRoot::new(&source.root);
    let netns = resolve_netns_all(&root, &a.netns)?;
    let snap = match &a.snapshot.from {
        Some(path) => crate::capture::load(path, a.snapshot.sample_index())?,
        None => crate::source::read(&source)
            .with_context(|| format!("reading {}", source.root.display()))?,
    };
    let mut report = build(&snap, &netns);
    report.scan.from = a.snapshot.from.as_ref().map(|p| p.display().to_string());
    let opts = RenderOptions {
        color: use_color(a.color),
        width: terminal_width(),
        pretty: false,
        ..RenderOptions::default()
    };
    crate::app::write_out(|out| match a.format {
        TextJsonArg::Json => render::json(&report, out),
        TextJsonArg::Text => render::text(&report, &opts, out),
    })?;
    Ok(exit_for(report.worst(), a.fail_on))
}

/// 0 whatever the findings, unless `--fail-on` names a severity reached.
pub fn exit_for(worst: Option<Severity>, fail_on: Option<SeverityArg>) -> Exit {
    let threshold = match fail_on {
        None => return Exit::Clean,
        Some(SeverityArg::Warn) => Severity::Warn,
        Some(SeverityArg::Critical) => Severity::Critical,
    };
    if worst.is_some_and(|w| w >= threshold) {
        Exit::Leaks
    } else {
        Exit::Clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_fail_only_when_asked() {
        assert_eq!(exit_for(Some(Severity::Critical), None), Exit::Clean);
        assert_eq!(
            exit_for(Some(Severity::Warn), Some(SeverityArg::Warn)).code(),
            1
        );
        assert_eq!(
            exit_for(Some(Severity::Info), Some(SeverityArg::Warn)),
            Exit::Clean
        );
        assert_eq!(
            exit_for(Some(Severity::Warn), Some(SeverityArg::Critical)),
            Exit::Clean
        );
        assert_eq!(
            exit_for(Some(Severity::Critical), Some(SeverityArg::Critical)).code(),
            1
        );
        assert_eq!(exit_for(None, Some(SeverityArg::Warn)), Exit::Clean);
    }
}
