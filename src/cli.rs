//! The command line, as clap definitions only. Doc comments become the help.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Find TCP sockets stuck in CLOSE_WAIT, every process and fd that keeps each
/// one alive, the copy to blame, the cause and the fix.
///
/// A socket stays in CLOSE_WAIT until the last fd referring to it is closed:
/// after fork(), dup(), an exec without O_CLOEXEC or an fd passed over a unix
/// socket, one forgotten copy is enough. cwleak reads /proc and the TCP table
/// of every network namespace (containers included) and names that copy.
///
/// Exit status: 0 no leak, 1 leaks found, 2 error.
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
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout
    Man,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = FormatArg::Text)]
    pub format: FormatArg,

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

    /// Look again after DURATION and report only sockets still in CLOSE_WAIT
    /// (e.g. 0, 500ms, 2s); the others are counted as transient
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub settle: std::time::Duration,

    #[command(flatten)]
    pub source: SourceArgs,

    /// Analyse a snapshot written by `cwleak capture` instead of this machine
    #[arg(long, value_name = "FILE", conflicts_with = "proc_root")]
    pub from: Option<PathBuf>,

    /// With --from: which look of a multi-sample capture (1 = first; default: the last)
    #[arg(long, value_name = "N", requires = "from")]
    pub sample: Option<usize>,

    /// When to colour text output
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
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
pub enum TablesArg {
    Auto,
    Proc,
    SockDiag,
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
