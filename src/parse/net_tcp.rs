//! /proc/PID/net/tcp and tcp6: one socket per line, addresses in hex as the
//! kernel's native-endian 32-bit words.

use super::ParseResult;
use crate::model::{Family, Inode, TcpSocket, TcpState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Parse a whole table. Lines that do not parse are returned as errors beside
/// the sockets that did, so one bad line does not lose the table.
pub fn parse_table(text: &str, family: Family, netns: Inode) -> (Vec<TcpSocket>, Vec<String>) {
    let mut sockets = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line, family, netns) {
            Ok(s) => sockets.push(s),
            Err(e) => errors.push(format!("line {}: {e}", n + 1)),
        }
    }
    (sockets, errors)
}

pub fn parse_line(line: &str, family: Family, netns: Inode) -> ParseResult<TcpSocket> {
    let mut f = line.split_ascii_whitespace();
    let mut next = |what: &str| f.next().ok_or_else(|| format!("missing {what}"));
    next("sl")?;
    let local = parse_endpoint(next("local_address")?, family)?;
    let remote = parse_endpoint(next("rem_address")?, family)?;
    let st = u8::from_str_radix(next("st")?, 16).map_err(|e| format!("st: {e}"))?;
    let state = TcpState::from_kernel(st).ok_or_else(|| format!("unknown state {st:#x}"))?;
    let (tx, rx) = next("queues")?.split_once(':').ok_or("queues: no ':'")?;
    let send_q = hex_u32(tx, "tx_queue")?;
    let recv_q = hex_u32(rx, "rx_queue")?;
    // tr 3: the timewait timer, which only timewait mini-sockets run
    // (get_timewait4_sock in net/ipv4/tcp_ipv4.c).
    let timer = next("tr:tm")?.split(':').next().unwrap_or("");
    let timewait = timer == "03";
    next("retrnsmt")?;
    let uid = next("uid")?.parse().map_err(|e| format!("uid: {e}"))?;
    next("timeout")?;
    let inode = next("inode")?.parse().map_err(|e| format!("inode: {e}"))?;
    Ok(TcpSocket {
        inode,
        netns,
        family,
        local,
        remote,
        state,
        recv_q,
        send_q,
        uid,
        last_ack_ms: None,
        bytes_acked: None,
        timewait,
        bound_if: None,
    })
}

fn hex_u32(s: &str, what: &str) -> ParseResult<u32> {
    u32::from_str_radix(s, 16).map_err(|e| format!("{what}: {e}"))
}

fn parse_endpoint(s: &str, family: Family) -> ParseResult<SocketAddr> {
    let (addr, port) = s
        .split_once(':')
        .ok_or_else(|| format!("address {s}: no ':'"))?;
    let port = u16::from_str_radix(port, 16).map_err(|e| format!("port {port}: {e}"))?;
    let ip = match (family, addr.len()) {
        (Family::Ipv4, 8) => IpAddr::V4(Ipv4Addr::from(hex_u32(addr, "address")?.to_ne_bytes())),
        (Family::Ipv6, 32) => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let word = addr.get(i * 8..i * 8 + 8).ok_or("address: short")?;
                chunk.copy_from_slice(&hex_u32(word, "address")?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return Err(format!("address {addr}: wrong length for {family:?}")),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Rows in the exact format of /proc/net/tcp and tcp6 (Linux 6.18, x86_64).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 35110 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F4 08 00000000:00000005 00:00000000 00000000  1000        0 36001 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 35200 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F91 0000000000000000FFFF00000100007F:9C40 08 00000000:00000000 00:00000000 00000000     0        0 35201 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn parses_ipv4_rows() {
        let (rows, errs) = parse_table(TCP, Family::Ipv4, 7);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].state, TcpState::Listen);
        assert_eq!(rows[0].local.to_string(), "127.0.0.1:8080");
        assert_eq!(rows[0].recv_q, 2);
        let cw = &rows[1];
        assert_eq!(cw.state, TcpState::CloseWait);
        assert_eq!(cw.remote.to_string(), "127.0.0.1:54004");
        assert_eq!((cw.inode, cw.uid, cw.recv_q, cw.netns), (36001, 1000, 5, 7));
        assert!(!cw.timewait);
    }

    #[test]
    fn parses_ipv6_and_mapped_rows() {
        let (rows, errs) = parse_table(TCP6, Family::Ipv6, 7);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(rows[0].local.to_string(), "[::1]:8081");
        assert_eq!(rows[1].local.to_string(), "[::ffff:127.0.0.1]:8081");
        assert_eq!(rows[1].state, TcpState::CloseWait);
    }

    #[test]
    fn timewait_timer_marks_mini_sockets() {
        // An orphaned FIN_WAIT2 handed to timewait: state 05, timer 03, inode 0.
        let line = "   2: 0100007F:D2F4 0100007F:1F90 05 00000000:00000000 03:00000BB8 00000000     0        0 0 3 0000000000000000";
        let s = parse_line(line, Family::Ipv4, 7).unwrap();
        assert_eq!(s.state, TcpState::FinWait2);
        assert!(s.timewait);
    }

    #[test]
    fn bad_lines_are_reported_not_fatal() {
        let text = format!("{TCP}   2: garbage\n   3: 0100007F:1F90 0100007F:D2F4 FF 0:0\n");
        let (rows, errs) = parse_table(&text, Family::Ipv4, 7);
        assert_eq!(rows.len(), 2);
        assert_eq!(errs.len(), 2);
    }
}
