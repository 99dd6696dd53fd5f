//! /proc/PID/net/sockstat (its TCP line) and /proc/PID/net/netstat (the
//! TcpExt counters): what the kernel itself counts, beside the table rows.

use super::ParseResult;
use crate::model::KernelCounts;
use std::collections::BTreeMap;

/// The TcpExt counters worth reading here (names as `nstat` prints them
/// without the `TcpExt` prefix). Each counts events since the namespace was
/// created; `net/ipv4/proc.c` prints them from the namespace's own MIB.
pub const TCP_EXT: [&str; 19] = [
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
    "TW",
    "TWRecycled",
    "TWKilled",
    "ListenOverflows",
    "ListenDrops",
    "TCPAbortOnData",
    "TCPAbortOnClose",
    "TCPAbortOnMemory",
    "TCPAbortOnTimeout",
    "TCPAbortOnLinger",
    "TCPAbortFailed",
    "TCPMemoryPressures",
    "TCPTimeWaitOverflow",
    "TCPReqQFullDoCookies",
    "TCPReqQFullDrop",
    "TCPOrphanQueued",
];

/// The `TCP:` line of sockstat: `TCP: inuse N orphan N tw N alloc N mem N`.
pub fn sockstat(text: &str) -> ParseResult<KernelCounts> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("TCP:"))
        .ok_or("no TCP: line")?;
    let fields: BTreeMap<&str, &str> = pairs(line);
    let get = |k: &str| -> ParseResult<u64> {
        let v = fields.get(k).ok_or_else(|| format!("TCP: no {k}"))?;
        // The kernel prints these as signed ints; a racing percpu sum can
        // dip below 0 for a moment.
        let n: i64 = v.parse().map_err(|e| format!("TCP {k} {v}: {e}"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok(KernelCounts {
        inuse: get("inuse")?,
        orphans: get("orphan")?,
        tw: get("tw")?,
        alloc: get("alloc")?,
        mem_pages: get("mem")?,
    })
}

fn pairs(line: &str) -> BTreeMap<&str, &str> {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    words.chunks_exact(2).map(|c| (c[0], c[1])).collect()
}

/// The `TcpExt:` counters of netstat named in `TCP_EXT` (a header line of
/// names, then a line of values). A counter this kernel lacks is absent.
pub fn tcp_ext(text: &str) -> ParseResult<BTreeMap<String, u64>> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next().ok_or("no TcpExt: lines")?;
    let values = lines.next().ok_or("TcpExt: names without values")?;
    let names: Vec<&str> = names.split_ascii_whitespace().skip(1).collect();
    let values: Vec<&str> = values.split_ascii_whitespace().skip(1).collect();
    if names.len() != values.len() {
        return Err(format!(
            "TcpExt: {} names but {} values",
            names.len(),
            values.len()
        ));
    }
    let mut out = BTreeMap::new();
    for (n, v) in names.iter().zip(&values) {
        if TCP_EXT.contains(n) {
            let v: u64 = v.parse().map_err(|e| format!("TcpExt {n} {v}: {e}"))?;
            out.insert((*n).to_string(), v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // As Linux 6.18 prints them (netstat shortened to a few columns).
    const SOCKSTAT: &str = "sockets: used 40\nTCP: inuse 4 orphan 45 tw 4518 alloc 7 mem 183\n\
                            UDP: inuse 0 mem 0\nFRAG: inuse 0 memory 0\n";
    const NETSTAT: &str =
        "TcpExt: SyncookiesSent SyncookiesRecv TW ListenOverflows Unrelated TCPTimeWaitOverflow\n\
                           TcpExt: 0 0 4368 12 99 3\n\
                           IpExt: InNoRoutes\nIpExt: 0\n";

    #[test]
    fn reads_the_tcp_line() {
        let k = sockstat(SOCKSTAT).unwrap();
        assert_eq!(
            k,
            KernelCounts {
                inuse: 4,
                orphans: 45,
                tw: 4518,
                alloc: 7,
                mem_pages: 183
            }
        );
        assert!(sockstat("sockets: used 1\n").is_err());
        assert!(sockstat("TCP: inuse x orphan 0 tw 0 alloc 0 mem 0\n").is_err());
        let neg = sockstat("TCP: inuse 1 orphan -1 tw 0 alloc 0 mem 0\n").unwrap();
        assert_eq!(neg.orphans, 0);
    }

    #[test]
    fn reads_the_wanted_tcp_ext_counters() {
        let c = tcp_ext(NETSTAT).unwrap();
        assert_eq!(c.len(), 5, "{c:?}");
        assert_eq!(c["TW"], 4368);
        assert_eq!(c["ListenOverflows"], 12);
        assert_eq!(c["TCPTimeWaitOverflow"], 3);
        assert!(!c.contains_key("Unrelated"));
        assert!(tcp_ext("TcpExt: A B\nTcpExt: 1\n").is_err());
        assert!(tcp_ext("IpExt: A\nIpExt: 1\n").is_err());
    }
}
