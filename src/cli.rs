//! The command line, as clap definitions only. Doc comments become the help.

use crate::diagnose::Cause;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Find TCP sockets stuck in CLOSE_WAIT, every process and fd that keeps each
/// one alive, the copy to blame, the cause and the fix.
///
/// A socket stays in CLOSE_WAIT until the last fd referring to it is closed:
/// after fork(), dup(), an exec without O_CLOEXEC or an fd passed over a unix
/// socket, one forgotten copy is enough. cwleak reads /proc and the TCP table
/// of every network namespace (containers included) and names that copy.
///
/// Exit status: 0 no leak, 1 leaks found, 2 error or no leak seen by a look
/// that could not see enough (hidden processes, a table not read); `check --
/// CMD` also passes CMD's own failure through (see `cwleak check --help`).
#[derive(Debug, Parser)]
#[command(name = "cwleak", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find CLOSE_WAIT sockets and explain each: holders, blamed copy, cause, fix
    Scan(ScanArgs),
    /// CI gate: fail when the processes you own leak CLOSE_WAIT sockets
    /// (optionally around a test command: `cwleak check --pid PID -- CMD...`)
    Check(Box<CheckArgs>),
    /// Save everything the diagnosis reads to a file, to analyse later anywhere
    /// with `cwleak scan --from FILE`.
    ///
    /// The file holds processes, parents, socket fds (with O_CLOEXEC), network
    /// namespaces, their TCP tables and TCP sysctls, kernel and host name. By
    /// default only program names are kept: command lines often carry
    /// passwords and tokens. With --cmdline, full command lines are kept with
    /// values that look like secrets masked (--password=..., token=...,
    /// user:pass@ in URLs).
    Capture(CaptureArgs),
    /// Count TCP sockets in each of the twelve states, host-wide and per
    /// network namespace, with the processes, ports and peers behind them
    ///
    /// TIME_WAIT and orphaned sockets (FIN_WAIT1/2, LAST_ACK, CLOSING) have no
    /// process any more: they are attributed to the service port, the local
    /// one for connections this host accepted, the remote one for connections
    /// it opened. Exit status: 0, or 2 on error.
    States(StatesArgs),
    /// TCP settings of each network namespace beside the live counts, with
    /// findings that say what each setting does and does not do
    ///
    /// Findings, never a recipe: TIME_WAIT near tcp_max_tw_buckets, one
    /// destination near the size of the local port range, SYN_RECV or accept
    /// queues near their limits, orphans near tcp_max_orphans, tcp_tw_recycle,
    /// and what tcp_fin_timeout and tcp_tw_reuse really change. No sysctl
    /// fixes CLOSE_WAIT (see `cwleak scan`). Exit status: 0 whatever the
    /// findings (1 with --fail-on when one is severe enough), 2 on error.
    Sysctl(SysctlArgs),
    /// Look again every few seconds and show, per process holding CLOSE_WAIT
    /// sockets, how the count moves: a leak is a count that only goes up
    ///
    /// On a terminal a table is redrawn in place (pid, command, count now,
    /// change since the first look and per minute, oldest socket, cause,
    /// cgroup; growing processes on top). Into a pipe or a file, one logfmt
    /// line per change (appeared, grew, shrank, gone). A socket counts once
    /// two looks in a row saw it in CLOSE_WAIT. Ctrl-C, --count or --duration
    /// stop it with a summary. Exit status: 0 (1 with --fail-on-growth when a
    /// process ends holding more than at its first look), 2 on error.
    Watch(WatchArgs),
    /// Export CLOSE_WAIT leaks to Prometheus: /metrics, /report (the scan
    /// JSON), /healthz
    ///
    /// Scans run on their own schedule (--interval), never per request, so
    /// scrapers cannot make cwleak load the host. Listens on loopback unless
    /// told otherwise. Stops cleanly on SIGINT or SIGTERM (status 0); status 2
    /// when it cannot listen. See docs/fleet.md for metric names, a
    /// DaemonSet, a systemd unit and alert rules.
    Serve(ServeArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per command
    /// into a directory (`cwleak man --dir /usr/local/share/man/man1`)
    Man {
        /// Write cwleak.1 and cwleak-SUBCOMMAND.1 for every subcommand into
        /// DIR (created if missing) instead of printing cwleak.1
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Look again after DURATION and report only sockets still in CLOSE_WAIT
    /// (e.g. 0, 500ms, 2s); the others are counted as transient. Not with
    /// --from: a snapshot's looks were settled when `capture --settle` took them
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration, conflicts_with = "from")]
    pub settle: std::time::Duration,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub snapshot: FromArgs,

    /// Indent JSON output (the default on a terminal; into a pipe or a file
    /// it is compact, one line, which is faster to write and to parse)
    #[arg(long)]
    pub pretty: bool,

    /// When to colour text output
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    pub color: ColorArg,

    /// Before the scan, record for DURATION (e.g. 30s), in the kernel (BPF;
    /// root and BTF), how the processes holding TCP sockets in scope (or the
    /// --pid roots and their descendants) make, copy and close socket fds:
    /// a leak made meanwhile gets the line of code that made it, and its
    /// cause from that history (basis "traced"). Ctrl-C ends the recording
    /// early. Without root or BTF: says why and scans as usual
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "from")]
    pub trace_for: Option<std::time::Duration>,
}

/// Which sockets a command looks at (scan, watch).
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Only sockets held by this process and its descendants (repeatable)
    #[arg(short, long = "pid", value_name = "PID")]
    pub pids: Vec<i32>,

    /// With --pid: the named processes only, not their descendants
    #[arg(long, requires = "pids")]
    pub no_children: bool,

    /// Only sockets whose local or remote port is PORT (repeatable)
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Only sockets of this network namespace: an inode number, a path such as
    /// /run/netns/NAME or /proc/PID/ns/net, or a pid (repeatable)
    #[arg(long = "netns", value_name = "NS")]
    pub netns: Vec<String>,
}

/// Reading a saved snapshot instead of the machine (scan, states, sysctl).
#[derive(Debug, Args)]
pub struct FromArgs {
    /// Read a snapshot written by `cwleak capture` instead of this machine
    /// (how to read the machine, --proc-root, --tables, --fds, does not apply)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["proc_root", "tables", "fds"])]
    pub from: Option<PathBuf>,

    /// With --from: which look of a multi-sample capture (1 = first; default: the last)
    #[arg(long, value_name = "N", requires = "from",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub sample: Option<usize>,

    /// With --from: refuse a snapshot larger than SIZE once decompressed
    /// (a decompression bomb costs neither the memory nor the time) [default: 1G]
    #[arg(long, value_name = "SIZE", requires = "from", value_parser = parse_size)]
    pub max_snapshot_size: Option<u64>,
}

impl FromArgs {
    /// The 0-based look asked for (None: the last).
    pub fn sample_index(&self) -> Option<usize> {
        self.sample.map(|n| n.saturating_sub(1))
    }

    /// The cap on the snapshot's decompressed size, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_snapshot_size
            .unwrap_or(crate::snapshot::DEFAULT_MAX_BYTES)
    }
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Where to write the snapshot; compressed when it ends in .gz or .zst
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// How many looks to record (growth and persistence can be judged later)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub samples: u32,

    /// Time between looks
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub interval: std::time::Duration,

    /// Settle window of each look, as for `scan`
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub settle: std::time::Duration,

    /// Keep full command lines (secrets masked) of the processes that matter
    #[arg(long)]
    pub cmdline: bool,

    #[command(flatten)]
    pub source: SourceArgs,
}

/// Exit status of `cwleak check`, shown under its --help.
pub const CHECK_EXIT_STATUS: &str = "\
Exit status:
  0    no CLOSE_WAIT leak in scope beyond the thresholds
  1    leaks in scope beyond the thresholds
  2    cwleak could not check: bad arguments or cwleak.toml, no scope, a --pid that
       does not exist, a --netns that is not a network namespace, every process in
       scope exited before the check, a report that could not be written, or
       missing data: no leak seen, but the look could not see everything in scope
       (hidden processes, a table not read); a check never passes on it
  N    with -- CMD: CMD's own non-zero exit status, passed through (128+S when
       signal S killed it); the check still runs and writes its reports
  130, 143
       with -- CMD: cwleak got SIGINT or SIGTERM while CMD ran and CMD exited 0:
       no check taken, no report (a cancelled run never passes)
  126  with -- CMD: CMD could not be executed
  127  with -- CMD: CMD was not found";

const SCOPE: &str = "Scope (at least one; kinds combine with AND)";

/// `cwleak check`: scope, thresholds, timing, reports, and the wrapped command.
///
/// Checks the processes and ports you name (never the whole machine: a CI host
/// is shared) for sockets left in CLOSE_WAIT, and fails when there are more
/// than the thresholds allow. With `-- CMD ARGS...` it runs CMD first (your
/// tests), waits for it, then checks. Thresholds and allow rules are also read
/// from cwleak.toml (the current directory or a parent, up to the repository
/// root); flags win over the file.
#[derive(Debug, Args)]
#[command(after_help = CHECK_EXIT_STATUS)]
pub struct CheckArgs {
    /// The process and its descendants (repeatable); it must exist when cwleak starts
    #[arg(short, long = "pid", value_name = "PID", help_heading = SCOPE)]
    pub pids: Vec<i32>,

    /// A file holding the pid of the process to check (and its descendants),
    /// read when the check is taken (repeatable)
    #[arg(long = "pidfile", value_name = "FILE", help_heading = SCOPE)]
    pub pidfiles: Vec<PathBuf>,

    /// With --pid/--pidfile: those processes only, not their descendants
    #[arg(long, help_heading = SCOPE)]
    pub no_children: bool,

    /// Sockets whose local port is PORT: your service's port (repeatable)
    #[arg(long = "port", value_name = "PORT", help_heading = SCOPE)]
    pub ports: Vec<u16>,

    /// Processes in this cgroup or below: a systemd unit or a container, as in
    /// /proc/PID/cgroup or under /sys/fs/cgroup (repeatable)
    #[arg(long = "cgroup", value_name = "PATH", help_heading = SCOPE)]
    pub cgroups: Vec<String>,

    /// Sockets of this network namespace: a path (/run/netns/NAME), a pid or an
    /// inode (repeatable)
    #[arg(long = "netns", value_name = "NS", help_heading = SCOPE)]
    pub netns: Vec<String>,

    /// Persistent CLOSE_WAIT sockets tolerated in scope, allowed ones not
    /// counted [default: 0]
    #[arg(long, value_name = "N", help_heading = "Thresholds")]
    pub max: Option<usize>,

    /// Persistent CLOSE_WAIT sockets tolerated per blamed process [default: no limit]
    #[arg(long, value_name = "N", help_heading = "Thresholds")]
    pub max_per_process: Option<usize>,

    /// Accept leaks with this cause: listed and marked allowed, not counted (repeatable)
    #[arg(long = "allow", value_name = "CAUSE", value_parser = cause_parser(), help_heading = "Thresholds")]
    pub allow: Vec<Cause>,

    /// Accept leaks on sockets whose local or remote port is PORT (repeatable)
    #[arg(long = "allow-port", value_name = "PORT", help_heading = "Thresholds")]
    pub allow_ports: Vec<u16>,

    /// Read thresholds from FILE instead of looking for cwleak.toml
    #[arg(long, value_name = "FILE", help_heading = "Thresholds")]
    pub config: Option<PathBuf>,

    /// Do not look for cwleak.toml
    #[arg(long, conflicts_with = "config", help_heading = "Thresholds")]
    pub no_config: bool,

    /// Look, wait DURATION, look again: only sockets in CLOSE_WAIT both times
    /// count [default: 1s, or cwleak.toml's]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Timing")]
    pub settle: Option<Duration>,

    /// With -- CMD: also sample while CMD runs and report how leaks grew
    /// (first seen, peak count per blamed process)
    #[arg(long, requires = "command", help_heading = "Timing")]
    pub during: bool,

    /// With --during: time between samples [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "during", help_heading = "Timing")]
    pub interval: Option<Duration>,

    /// Record, in the kernel (BPF; root and BTF), every call by which the
    /// processes in scope make, copy or close socket fds, with its stack: each
    /// holder then shows the line of code that made its copy, and the cause
    /// comes from that history (basis "traced"). Without root or BTF: says
    /// why and checks as usual
    #[arg(long, help_heading = "Timing")]
    pub trace: bool,

    /// Write the JSON report (the scan schema, plus `check`) to FILE
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub report: Option<PathBuf>,

    /// Write a JUnit XML file (one test case per blamed process) to FILE
    #[arg(long, value_name = "FILE", help_heading = "Reports")]
    pub junit: Option<PathBuf>,

    #[command(flatten)]
    pub source: SourceArgs,

    /// The command to run before the check (your tests), after `--`
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// `--allow CAUSE`: the cause names, listed in --help and completions.
fn cause_parser() -> impl TypedValueParser<Value = Cause> {
    PossibleValuesParser::new(Cause::ALL.map(Cause::name))
        .try_map(|s| Cause::parse(&s).ok_or_else(|| format!("unknown cause {s:?}")))
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Read everything (processes, fds, network tables) under DIR instead of
    /// /proc, e.g. a recorded fixture tree
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,

    /// How to read TCP tables: sock_diag netlink when live (auto), or the
    /// /proc/PID/net/tcp{,6} files
    #[arg(long, value_enum, default_value_t = TablesArg::Auto)]
    pub tables: TablesArg,

    /// How to read every process's fd table: the kernel's task_file BPF
    /// iterator on a busy live host (auto), readlink of each /proc/PID/fd
    /// entry (proc), or the iterator whenever the host is live (bpf)
    #[arg(long, value_enum, default_value_t = FdsArg::Auto)]
    pub fds: FdsArg,

    /// Threads for the /proc walk (0: one per core)
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    pub threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Text,
    Json,
    Markdown,
    Dot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FdsArg {
    Auto,
    Proc,
    Bpf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TablesArg {
    Auto,
    Proc,
    SockDiag,
}

#[derive(Debug, Args)]
pub struct StatesArgs {
    /// Output format (with --watch, json prints one document per line)
    #[arg(short, long, value_enum, default_value_t = TextJsonArg::Text)]
    pub format: TextJsonArg,

    /// Break each state down by process, port (the service port), netns or
    /// remote (peer address); comma-separated or repeated [default: process,port]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "WHAT")]
    pub by: Vec<ByArg>,

    /// Entries shown per breakdown
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub top: usize,

    /// Look again every DURATION (e.g. 2s) and show the change since the
    /// previous look, until Ctrl-C; one line per look when stdout is not a terminal
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "from")]
    pub watch: Option<Duration>,

    /// With --watch: stop after N looks
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Only sockets held by this process and its descendants (repeatable);
    /// TIME_WAIT and orphans belong to no process, so they are left out
    #[arg(short, long = "pid", value_name = "PID")]
    pub pids: Vec<i32>,

    /// With --pid: the named processes only, not their descendants
    #[arg(long, requires = "pids")]
    pub no_children: bool,

    /// Only sockets whose local or remote port is PORT (repeatable)
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Only this network namespace: an inode number, a path such as
    /// /run/netns/NAME or /proc/PID/ns/net, or a pid (repeatable)
    #[arg(long = "netns", value_name = "NS")]
    pub netns: Vec<String>,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub snapshot: FromArgs,

    /// When to colour text output
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
}

#[derive(Debug, Args)]
pub struct SysctlArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = TextJsonArg::Text)]
    pub format: TextJsonArg,

    /// Exit with status 1 when a finding is at least this severe (default:
    /// status 0 whatever the findings)
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<SeverityArg>,

    /// Only this network namespace: an inode number, a path such as
    /// /run/netns/NAME or /proc/PID/ns/net, or a pid (repeatable)
    #[arg(long = "netns", value_name = "NS")]
    pub netns: Vec<String>,

    /// Read the kernel's TcpExt counters again after DURATION, to report
    /// overflows happening now (0 reads them once)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub window: Duration,

    /// The directory holding sysctl.conf and sysctl.d/ to compare with the
    /// running values
    #[arg(long, value_name = "DIR", default_value = "/etc")]
    pub etc: PathBuf,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub snapshot: FromArgs,

    /// When to colour text output
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TextJsonArg {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ByArg {
    Process,
    Port,
    Netns,
    Remote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeverityArg {
    Warn,
    Critical,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Time between looks
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Stop after N looks
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Stop after DURATION (e.g. 10m)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Exit with status 1 when a process ends holding more CLOSE_WAIT
    /// sockets than at its first look
    #[arg(long)]
    pub fail_on_growth: bool,

    #[command(flatten)]
    pub scope: ScopeArgs,

    #[command(flatten)]
    pub source: SourceArgs,

    /// When to colour the table
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    pub color: ColorArg,

    /// Record, in the kernel (BPF; root and BTF), how the watched processes
    /// make, copy and close socket fds, with the stack of each call: a
    /// process's line then names the call and source line that made its
    /// leaked copies (made=). Followed: the --pid roots and their
    /// descendants; without --pid, every process holding a listener or a
    /// CLOSE_WAIT socket in scope at some look, and its descendants from
    /// then on. Without root or BTF: says why and watches as usual
    #[arg(long)]
    pub trace: bool,

    /// Walk every process's fds at every look, reusing nothing (to measure
    /// what reuse saves)
    #[arg(long, hide = true)]
    pub full_walk: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on. Loopback by default: any other address
    /// exposes process names and cgroups to the network (a warning says so).
    /// Port 0 picks a free port; the address is printed on stderr either way
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9477")]
    pub listen: std::net::SocketAddr,

    /// Time between scans
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Blamed processes given their own series (most sockets first); the
    /// others are summed into one series with pid="other"
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// Settle window of each scan, as for `scan` (at most half the interval)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,

    /// Follow every namespace's TCP sockets as they change state (a BPF
    /// program at the kernel's inet_sock_set_state tracepoint) instead of
    /// walking each namespace's socket table at every scan: cheaper with many
    /// sockets or many namespaces, at about 0.1 µs of kernel time per TCP
    /// state change on the host. Needs root; where the kernel refuses, scans
    /// walk as without it (a line on stderr says why)
    #[arg(long)]
    pub follow_sockets: bool,

    #[command(flatten)]
    pub source: SourceArgs,
}

/// "1048576", "512K", "64M", "2G", "2GiB" (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (try 512M, 2G)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{s}' (use K, M, G or T)"
            ))
        }
    };
    value
        .checked_mul(1 << shift)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("'{s}' is out of range"))
}

/// "0", "500ms", "2s", "1.5s", "1m".
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (try 0, 500ms, 2s, 1m)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        _ => return Err(format!("unknown unit '{unit}' in '{s}' (use ms, s or m)")),
    };
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("'{s}' is out of range (0 to 24h)"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap().as_millis(), 0);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("1.5s").unwrap().as_millis(), 1500);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
