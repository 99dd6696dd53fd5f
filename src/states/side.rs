//! Which end of a connection names the service. A TIME_WAIT socket has no
//! process, so the port is what it can be attributed to, and only one of its
//! two ports means something: the local port when this namespace listens on
//! it (incoming connections), the remote port when this namespace listens on
//! that one (a connection to itself), else the end outside the ephemeral port
//! range (an outgoing connection's remote service port), else the lower one.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// A port of this host: a connection it accepted (or a listener).
    Local,
    /// The peer's port: a connection this host opened.
    Remote,
}

/// net.ipv4.ip_local_port_range: the ports connect() picks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// The kernel's default, used when the setting was not read.
    pub const LINUX_DEFAULT: PortRange = PortRange {
        lo: 32768,
        hi: 60999,
    };

    /// "32768 60999" (as /proc/sys prints it, tab or spaces).
    pub fn parse(s: &str) -> Option<PortRange> {
        let mut it = s.split_whitespace().map(str::parse::<u16>);
        let (lo, hi) = (it.next()?.ok()?, it.next()?.ok()?);
        (lo <= hi && it.next().is_none()).then_some(PortRange { lo, hi })
    }

    pub fn contains(self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }

    /// How many ports connect() can choose from.
    pub fn size(self) -> u64 {
        u64::from(self.hi - self.lo) + 1
    }
}

/// A set of ports as a 64 Kibit bitmap (8 KiB): the listening ports of one namespace.
#[derive(Debug, Clone)]
pub struct PortSet {
    bits: Vec<u64>,
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet {
            bits: vec![0; 1024],
        }
    }
}

impl PortSet {
    pub fn insert(&mut self, port: u16) {
        self.bits[usize::from(port >> 6)] |= 1 << (port & 63);
    }

    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }
}

/// The port that names the service of a connection, and whose it is.
pub fn service_port(local: u16, remote: u16, listening: &PortSet, range: PortRange) -> (u16, Side) {
    if listening.contains(local) {
        return (local, Side::Local);
    }
    // A connection to one of this namespace's own listeners (over loopback),
    // or to the same service elsewhere: either way the remote port is it.
    if listening.contains(remote) {
        return (remote, Side::Remote);
    }
    match (range.contains(local), range.contains(remote)) {
        (true, false) => (remote, Side::Remote),
        (false, true) => (local, Side::Local),
        // Both or neither ephemeral: services usually have the lower number.
        _ if remote < local => (remote, Side::Remote),
        _ => (local, Side::Local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_proc_prints_them() {
        assert_eq!(
            PortRange::parse("32768\t60999"),
            Some(PortRange::LINUX_DEFAULT)
        );
        assert_eq!(PortRange::parse("40000 40019").unwrap().size(), 20);
        assert_eq!(PortRange::parse("5 4"), None);
        assert_eq!(PortRange::parse("1"), None);
        assert_eq!(PortRange::parse("1 2 3"), None);
    }

    #[test]
    fn the_service_end_is_chosen() {
        let r = PortRange::LINUX_DEFAULT;
        let mut l = PortSet::default();
        l.insert(443);
        l.insert(40000);
        // Accepted on a listening port, even one inside the ephemeral range.
        assert_eq!(service_port(443, 51000, &l, r), (443, Side::Local));
        assert_eq!(service_port(40000, 51000, &l, r), (40000, Side::Local));
        // Opened by this host.
        assert_eq!(service_port(51000, 5432, &l, r), (5432, Side::Remote));
        // To its own listener on an ephemeral port (both ends in the range).
        assert_eq!(service_port(37358, 40000, &l, r), (40000, Side::Remote));
        // Accepted, listener gone since.
        assert_eq!(service_port(8080, 51000, &l, r), (8080, Side::Local));
        // Neither ephemeral: the lower port.
        assert_eq!(service_port(2000, 1000, &l, r), (1000, Side::Remote));
        assert_eq!(service_port(1000, 2000, &l, r), (1000, Side::Local));
        assert!(l.contains(443) && !l.contains(444) && !l.contains(0));
        l.insert(65535);
        assert!(l.contains(65535));
    }
}
