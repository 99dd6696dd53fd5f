//! Raw CLI arguments resolved into settings: the scope as numbers, the output
//! decided (colour, width), the source configured.

use crate::check::config_file::{self, FileSettings};
use crate::check::roots::RootSpec;
use crate::check::thresholds::{AllowSpec, Thresholds};
use crate::cli::{
    CheckArgs, ColorArg, FdsArg, FormatArg, ScanArgs, ScopeArgs, SourceArgs, TablesArg,
};
use crate::diagnose::Scope;
use crate::model::Inode;
use crate::report::{Format, RenderOptions};
use crate::source::{self, FdMethod, ProcRoot, SourceConfig, TableMethod, TableStates};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ScanConfig {
    pub source: SourceConfig,
    /// Analyse this snapshot file instead of reading the machine.
    pub from: Option<std::path::PathBuf>,
    /// Which look of the snapshot (0-based); None: the last.
    pub sample: Option<usize>,
    /// With `from`: the cap on its decompressed size.
    pub max_snapshot: u64,
    pub scope: Scope,
    pub settle: Duration,
    pub format: Format,
    pub render: RenderOptions,
    /// `--trace-for`: record this long before the look.
    pub trace_for: Option<Duration>,
}

impl ScanConfig {
    pub fn from_args(a: &ScanArgs) -> Result<Self> {
        let mut source = SourceConfig {
            states: TableStates::Leaks,
            ..source_config(&a.source)
        };
        let scope = scope(&a.scope, &ProcRoot::new(&source.root))?;
        source.tables_for = tables_for(&scope);
        source.netns_files = netns_paths(&a.scope.netns);
        Ok(ScanConfig {
            scope,
            settle: a.settle,
            trace_for: a.trace_for,
            from: a.snapshot.from.clone(),
            sample: a.snapshot.sample_index(),
            max_snapshot: a.snapshot.max_bytes(),
            format: match a.format {
                FormatArg::Text => Format::Text,
                FormatArg::Json => Format::Json,
                FormatArg::Markdown => Format::Markdown,
                FormatArg::Dot => Format::Dot,
            },
            render: RenderOptions {
                color: use_color(a.color),
                width: terminal_width(),
                pretty: a.pretty || std::io::stdout().is_terminal(),
                // A snapshot's unreadable paths were met by its capture.
                read_as_root: a.snapshot.from.is_none() && crate::source::running_as_root(),
            },
            source,
        })
    }
}

/// `cwleak check`, resolved: what to watch, what to tolerate, where to write.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub source: SourceConfig,
    /// Every scope kind but the pids: those come from `roots` when the check
    /// is taken (a pidfile may be written by the wrapped command).
    pub scope: Scope,
    pub roots: Vec<RootSpec>,
    pub settle: Duration,
    pub thresholds: Thresholds,
    /// The cwleak.toml that was read.
    pub config_file: Option<PathBuf>,
    /// Wrap mode: the command to run first (empty: check now).
    pub command: Vec<OsString>,
    /// `--during`: sample every this long while the command runs.
    pub during: Option<Duration>,
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    /// `--trace`: record how every socket fd in scope was made.
    pub trace: bool,
}

const NO_SCOPE: &str = "cwleak check needs a scope: --pid PID, --pidfile FILE, --port PORT, \
--cgroup PATH or --netns NS. A CI machine is shared, and other people's sockets must not fail \
your build (`cwleak scan` looks at the whole machine)";

/// Samples closer than this would spend the run walking /proc.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_SETTLE: Duration = Duration::from_secs(1);

impl CheckConfig {
    pub fn from_args(a: &CheckArgs) -> Result<Self> {
        if a.pids.is_empty()
            && a.pidfiles.is_empty()
            && a.ports.is_empty()
            && a.cgroups.is_empty()
            && a.netns.is_empty()
        {
            bail!(NO_SCOPE);
        }
        let file = config_file(a)?;
        let source = SourceConfig {
            states: TableStates::Leaks,
            ..source_config(&a.source)
        };
        let root = ProcRoot::new(&source.root);
        let netns = resolve_netns_all(&root, &a.netns)?;
        let mount = source::cgroup::cgroup2_mount(&root);
        let interval = a.interval.unwrap_or(DEFAULT_INTERVAL);
        if a.during && interval < MIN_INTERVAL {
            bail!("--interval {interval:?}: too short, use at least 50ms");
        }
        let roots = a
            .pids
            .iter()
            .map(|p| RootSpec::Pid(*p))
            .chain(a.pidfiles.iter().map(|f| RootSpec::Pidfile(f.clone())))
            .collect();
        Ok(CheckConfig {
            scope: Scope {
                pids: Vec::new(),
                with_children: !a.no_children,
                ports: Vec::new(),
                netns,
                cgroups: a
                    .cgroups
                    .iter()
                    .map(|c| normalize_cgroup(mount.as_deref(), c))
                    .collect(),
                local_ports: a.ports.clone(),
            },
            roots,
            settle: a
                .settle
                .or(file.as_ref().and_then(|f| f.settle))
                .unwrap_or(DEFAULT_SETTLE),
            thresholds: thresholds(a, file.as_ref()),
            config_file: file.map(|f| f.path),
            command: a.command.clone(),
            during: a.during.then_some(interval),
            report: a.report.clone(),
            junit: a.junit.clone(),
            trace: a.trace,
            source,
        })
    }
}

/// `--config FILE`, else cwleak.toml found from the current directory.
fn config_file(a: &CheckArgs) -> Result<Option<FileSettings>> {
    if a.no_config {
        return Ok(None);
    }
    let path = match &a.config {
        Some(p) => Some(p.clone()),
        None => {
            let cwd =
                std::env::current_dir().context("finding cwleak.toml: no current directory")?;
            let found = config_file::discover(&cwd);
            if let Some(p) = &found {
                config_file::check_discovered(p)?;
            }
            found
        }
    };
    path.map(|p| config_file::load(&p))
        .transpose()
        .map_err(anyhow::Error::from)
}

/// Flags win over the file; allow rules from both apply.
fn thresholds(a: &CheckArgs, file: Option<&FileSettings>) -> Thresholds {
    let cli = |cause, port| AllowSpec {
        cause,
        port,
        reason: None,
        source: "command line".into(),
    };
    let mut allow: Vec<AllowSpec> = a
        .allow
        .iter()
        .map(|c| cli(Some(*c), None))
        .chain(a.allow_ports.iter().map(|p| cli(None, Some(*p))))
        .collect();
    if let Some(f) = file {
        allow.extend(f.allow.iter().cloned());
    }
    Thresholds {
        max: a.max.or(file.and_then(|f| f.max)).unwrap_or(0),
        max_per_process: a.max_per_process.or(file.and_then(|f| f.max_per_process)),
        allow,
    }
}

/// The path /proc/PID/cgroup shows: "/system.slice/x.service" as given, or
/// made so from a path under the cgroup2 mount or a relative one.
fn normalize_cgroup(mount: Option<&Path>, spec: &str) -> String {
    let under_mount = mount
        .and_then(|m| Path::new(spec).strip_prefix(m).ok())
        .map(|rest| rest.to_string_lossy().into_owned());
    let path = under_mount.unwrap_or_else(|| spec.to_string());
    let trimmed = path.trim_matches('/');
    format!("/{trimmed}")
}

pub fn source_config(a: &SourceArgs) -> SourceConfig {
    SourceConfig {
        root: a.proc_root.clone(),
        method: match a.tables {
            TablesArg::Auto => TableMethod::Auto,
            TablesArg::Proc => TableMethod::Proc,
            TablesArg::SockDiag => TableMethod::SockDiag,
        },
        fds: match a.fds {
            FdsArg::Auto => FdMethod::Auto,
            FdsArg::Proc => FdMethod::Proc,
            FdsArg::Bpf => FdMethod::Bpf,
        },
        threads: a.threads,
        ..SourceConfig::default()
    }
}

/// The namespaces a scope can find sockets in: those of its processes and
/// namespaces. A port or cgroup scope alone can be anywhere: every one.
pub fn tables_for(scope: &Scope) -> source::TableScope {
    source::TableScope {
        netns: scope.netns.clone(),
        pids: scope.pids.clone(),
        with_children: scope.with_children,
    }
}

/// Pids are at most 2^22; namespace inodes are far above that.
const PID_MAX_LIMIT: u64 = 1 << 22;

/// The scope flags as numbers: --netns specs resolved through the proc root.
pub fn scope(a: &ScopeArgs, root: &ProcRoot) -> Result<Scope> {
    let netns = resolve_netns_all(root, &a.netns)?;
    Ok(Scope {
        pids: a.pids.clone(),
        with_children: !a.no_children,
        ports: a.ports.clone(),
        netns,
        ..Scope::default()
    })
}

/// The `--netns` values that are paths (not inodes or pids): namespace files
/// the source reads even when no process sits in the namespace.
pub fn netns_paths(specs: &[String]) -> Vec<std::path::PathBuf> {
    specs
        .iter()
        .filter(|s| s.parse::<u64>().is_err())
        .map(std::path::PathBuf::from)
        .collect()
}

/// Every `--netns` value, resolved.
pub fn resolve_netns_all(root: &ProcRoot, specs: &[String]) -> Result<Vec<Inode>> {
    specs.iter().map(|spec| resolve_netns(root, spec)).collect()
}

pub fn resolve_netns(root: &ProcRoot, spec: &str) -> Result<Inode> {
    if let Ok(n) = spec.parse::<u64>() {
        if n > PID_MAX_LIMIT {
            if !source::netns_known(root, n) {
                bail!(
                    "--netns {spec}: no network namespace with this inode: no process visible \
                     in {} is in one, and none is mounted under /run/netns",
                    root.path().display()
                );
            }
            return Ok(n);
        }
        return source::netns_of_pid(root, n as i32).with_context(|| {
            format!("--netns {spec}: cannot read the network namespace of pid {n}")
        });
    }
    let inode = source::netns_of_path(std::path::Path::new(spec)).map_err(|e| match e {
        source::SourceError::Malformed { message, .. } => {
            anyhow::anyhow!("--netns {spec}: {message}")
        }
        e => anyhow::anyhow!("--netns {spec}: {}", e.full_message()),
    })?;
    if inode == 0 {
        bail!("--netns {spec}: not a namespace file");
    }
    Ok(inode)
}

pub fn use_color(c: ColorArg) -> bool {
    match c {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

pub fn terminal_width() -> usize {
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok());
    from_env
        .or_else(source::tty_width)
        .unwrap_or(80)
        .clamp(40, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve`'s /report is documented as "the last scan, as `cwleak scan
    /// --format json` prints it": its scope (`Scope::everything()`) is the
    /// one a scan without scope flags reports.
    #[test]
    fn a_scan_without_scope_flags_is_scope_everything() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["cwleak", "scan"]).unwrap();
        let crate::cli::Command::Scan(a) = cli.command else {
            panic!("not a scan");
        };
        let scope = ScanConfig::from_args(&a).unwrap().scope;
        assert_eq!(scope, Scope::everything());
        assert!(
            scope.with_children,
            "descendants count unless --no-children"
        );
    }

    #[test]
    fn cgroups_are_named_as_proc_shows_them() {
        let m = Some(Path::new("/sys/fs/cgroup"));
        assert_eq!(
            normalize_cgroup(m, "/sys/fs/cgroup/system.slice/a.service/"),
            "/system.slice/a.service"
        );
        assert_eq!(
            normalize_cgroup(m, "/system.slice/a.service"),
            "/system.slice/a.service"
        );
        assert_eq!(normalize_cgroup(m, "system.slice"), "/system.slice");
        assert_eq!(normalize_cgroup(m, "/sys/fs/cgroup"), "/");
        assert_eq!(
            normalize_cgroup(None, "/sys/fs/cgroup/x"),
            "/sys/fs/cgroup/x"
        );
    }
}
