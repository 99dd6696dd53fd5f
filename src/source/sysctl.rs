//! TCP settings of a network namespace. /proc/sys/net shows the namespace of
//! the thread that opens it, so another namespace's values are read from a
//! short-lived thread that setns()es into it (`enter`); a fixture tree's are
//! read from ROOT/sys/net as recorded.

use super::root::ProcRoot;
use super::SourceError;
use crate::model::Inode;
use std::collections::BTreeMap;
use std::path::Path;

/// (name as `sysctl` spells it, path under /proc/sys).
pub const TCP_SYSCTLS: [(&str, &str); 20] = [
    ("net.ipv4.tcp_fin_timeout", "net/ipv4/tcp_fin_timeout"),
    ("net.ipv4.tcp_tw_reuse", "net/ipv4/tcp_tw_reuse"),
    // Recent kernels: how old (ms) a TIME_WAIT socket must be for tcp_tw_reuse.
    ("net.ipv4.tcp_tw_reuse_delay", "net/ipv4/tcp_tw_reuse_delay"),
    ("net.ipv4.tcp_max_tw_buckets", "net/ipv4/tcp_max_tw_buckets"),
    ("net.ipv4.tcp_syncookies", "net/ipv4/tcp_syncookies"),
    (
        "net.ipv4.ip_local_port_range",
        "net/ipv4/ip_local_port_range",
    ),
    ("net.core.somaxconn", "net/core/somaxconn"),
    (
        "net.ipv4.tcp_max_syn_backlog",
        "net/ipv4/tcp_max_syn_backlog",
    ),
    ("net.ipv4.tcp_keepalive_time", "net/ipv4/tcp_keepalive_time"),
    (
        "net.ipv4.tcp_keepalive_intvl",
        "net/ipv4/tcp_keepalive_intvl",
    ),
    (
        "net.ipv4.tcp_keepalive_probes",
        "net/ipv4/tcp_keepalive_probes",
    ),
    ("net.ipv4.tcp_orphan_retries", "net/ipv4/tcp_orphan_retries"),
    ("net.ipv4.tcp_max_orphans", "net/ipv4/tcp_max_orphans"),
    ("net.ipv4.tcp_tw_recycle", "net/ipv4/tcp_tw_recycle"),
    ("net.ipv4.tcp_timestamps", "net/ipv4/tcp_timestamps"),
    ("net.ipv4.tcp_rfc1337", "net/ipv4/tcp_rfc1337"),
    (
        "net.ipv4.tcp_abort_on_overflow",
        "net/ipv4/tcp_abort_on_overflow",
    ),
    // Host-wide (the initial namespace only shows it), in pages.
    ("net.ipv4.tcp_mem", "net/ipv4/tcp_mem"),
    ("net.ipv4.tcp_wmem", "net/ipv4/tcp_wmem"),
    (
        "net.ipv4.ip_local_reserved_ports",
        "net/ipv4/ip_local_reserved_ports",
    ),
];

/// Read the settings of one namespace. Missing files (tcp_tw_recycle since
/// Linux 4.12) are simply absent from the map.
pub fn read(
    root: &ProcRoot,
    live: bool,
    own: Option<Inode>,
    netns: Inode,
    ns_file: &Path,
) -> Result<BTreeMap<String, String>, SourceError> {
    if !live || own == Some(netns) {
        return Ok(read_under(&root.join("sys")));
    }
    let sys = root.join("sys");
    super::enter::in_netns(ns_file, move || read_under(&sys))
        .map_err(|message| SourceError::Netlink { netns, message })
}

fn read_under(sys: &Path) -> BTreeMap<String, String> {
    TCP_SYSCTLS
        .iter()
        .filter_map(|(name, rel)| {
            let v = std::fs::read_to_string(sys.join(rel)).ok()?;
            Some((
                name.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            ))
        })
        .collect()
}
