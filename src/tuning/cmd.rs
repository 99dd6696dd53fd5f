//! Running `cwleak sysctl`: read (or load) one look with its settings, judge
//! it, render it, and map `--fail-on` to the exit status.

use super::finding::Severity;
use super::render;
use super::report::{build_with, Extra};
use crate::cli::{SeverityArg, SysctlArgs, TextJsonArg};
use crate::config::{resolve_netns_all, source_config, terminal_width, use_color};
use crate::exit::Exit;
use crate::model::{Inode, Snapshot};
use crate::report::RenderOptions;
use crate::source::ProcRoot;
use anyhow::{Context, Result};

pub fn run(a: &SysctlArgs) -> Result<Exit> {
    let mut source = source_config(&a.source);
    source.sysctls = true;
    source.kernel_counts = true;
    source.netns_files = crate::config::netns_paths(&a.netns);
    let root = ProcRoot::new(&source.root);
    let netns = resolve_netns_all(&root, &a.netns)?;
    let (snap, extra) = match &a.snapshot.from {
        Some(path) => {
            let snap =
                crate::capture::load(path, a.snapshot.sample_index(), a.snapshot.max_bytes())?;
            let extra = earlier_look(a, path, &snap)?;
            (snap, extra)
        }
        None => {
            let mut snap = crate::source::read(&source)
                .with_context(|| format!("reading {}", source.root.display()))?;
            let extra = live_extra(&root, &mut snap, &netns, a)?;
            (snap, extra)
        }
    };
    let mut report = build_with(&snap, &netns, &extra);
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

/// From a capture of several looks: the counters of the look before the one
/// judged, so that overflows between the two show as movement.
fn earlier_look(a: &SysctlArgs, path: &std::path::Path, snap: &Snapshot) -> Result<Extra> {
    let max = a.snapshot.max_bytes();
    let index = match a.snapshot.sample_index() {
        Some(i) => i,
        None => crate::snapshot::read_keeping(path, crate::snapshot::Keep::Last, max)?
            .looks
            .saturating_sub(1),
    };
    if index == 0 {
        return Ok(Extra::default());
    }
    let before = crate::capture::load(path, Some(index - 1), max)?;
    Ok(Extra {
        window_ms: snap
            .meta
            .taken_at_ms
            .saturating_sub(before.meta.taken_at_ms),
        earlier: before
            .namespaces
            .into_iter()
            .filter(|n| !n.counters.is_empty())
            .map(|n| (n.inode, n.counters))
            .collect(),
        ..Extra::default()
    })
}

/// The counters again after the window, and the host's configuration files.
fn live_extra(
    root: &ProcRoot,
    snap: &mut Snapshot,
    scope: &[Inode],
    a: &SysctlArgs,
) -> Result<Extra> {
    let mut extra = Extra::default();
    // This host's /etc against a recorded tree would compare unrelated
    // things: only when live, or when --etc names the tree's own files.
    if snap.meta.live || a.etc != std::path::Path::new("/etc") {
        let (conf, warnings) = crate::source::sysctl_conf::read(&a.etc, root);
        extra.conf = conf;
        snap.warnings.extend(warnings);
    }
    if a.window.is_zero() || !snap.meta.live {
        return Ok(extra);
    }
    crate::stop::install()?;
    if !crate::stop::sleep_until(std::time::Instant::now() + a.window) {
        // Interrupted: judge what was read, without movement.
        return Ok(extra);
    }
    extra.window_ms = u64::try_from(a.window.as_millis()).unwrap_or(u64::MAX);
    for n in snap
        .namespaces
        .iter()
        .filter(|n| scope.is_empty() || scope.contains(&n.inode))
        .filter(|n| !n.counters.is_empty())
    {
        // A namespace gone meanwhile has no movement to report.
        if let Ok(c) = crate::source::kernel_counts::reread(root, n) {
            extra.later.insert(n.inode, c.counters);
        }
    }
    Ok(extra)
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
