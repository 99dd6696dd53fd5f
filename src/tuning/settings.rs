//! The TCP settings of one namespace, typed, as the source read them
//! (`NetNs::sysctls`, names as `sysctl` prints them). A setting that is
//! missing or does not parse is None: rules that need it stay silent.

use crate::states::side::PortRange;
use std::collections::BTreeMap;

pub const FIN_TIMEOUT: &str = "net.ipv4.tcp_fin_timeout";
pub const TW_REUSE: &str = "net.ipv4.tcp_tw_reuse";
pub const TW_REUSE_DELAY: &str = "net.ipv4.tcp_tw_reuse_delay";
pub const TW_RECYCLE: &str = "net.ipv4.tcp_tw_recycle";
pub const MAX_TW_BUCKETS: &str = "net.ipv4.tcp_max_tw_buckets";
pub const SYNCOOKIES: &str = "net.ipv4.tcp_syncookies";
pub const PORT_RANGE: &str = "net.ipv4.ip_local_port_range";
pub const SOMAXCONN: &str = "net.core.somaxconn";
pub const MAX_SYN_BACKLOG: &str = "net.ipv4.tcp_max_syn_backlog";
pub const MAX_ORPHANS: &str = "net.ipv4.tcp_max_orphans";
pub const KEEPALIVE_TIME: &str = "net.ipv4.tcp_keepalive_time";
pub const KEEPALIVE_INTVL: &str = "net.ipv4.tcp_keepalive_intvl";
pub const KEEPALIVE_PROBES: &str = "net.ipv4.tcp_keepalive_probes";
pub const ORPHAN_RETRIES: &str = "net.ipv4.tcp_orphan_retries";
pub const TIMESTAMPS: &str = "net.ipv4.tcp_timestamps";
pub const RFC1337: &str = "net.ipv4.tcp_rfc1337";
pub const ABORT_ON_OVERFLOW: &str = "net.ipv4.tcp_abort_on_overflow";
pub const TCP_MEM: &str = "net.ipv4.tcp_mem";
pub const TCP_WMEM: &str = "net.ipv4.tcp_wmem";
pub const RESERVED_PORTS: &str = "net.ipv4.ip_local_reserved_ports";

/// tcp_fin_timeout's default (TCP_FIN_TIMEOUT), and the fixed length of
/// TIME_WAIT (TCP_TIMEWAIT_LEN): both 60 s, which is half of the confusion.
pub const DEFAULT_FIN_TIMEOUT: u64 = 60;
pub const TIME_WAIT_SECONDS: u64 = 60;
/// tcp_tw_reuse's default since Linux 4.20: loopback only.
pub const DEFAULT_TW_REUSE: u64 = 2;

#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    raw: &'a BTreeMap<String, String>,
}

impl<'a> Settings<'a> {
    pub fn new(raw: &'a BTreeMap<String, String>) -> Self {
        Settings { raw }
    }

    /// The value as read ("32768 60999"), or None when it was not read.
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.raw.get(name).map(String::as_str)
    }

    pub fn num(&self, name: &str) -> Option<u64> {
        self.raw(name)?.trim().parse().ok()
    }

    /// The `i`th of a setting of several numbers (tcp_mem, tcp_wmem).
    pub fn nth(&self, name: &str, i: usize) -> Option<u64> {
        self.raw(name)?.split_whitespace().nth(i)?.parse().ok()
    }

    pub fn port_range(&self) -> Option<PortRange> {
        PortRange::parse(self.raw(PORT_RANGE)?)
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// What a tcp_tw_reuse value means.
pub fn tw_reuse_words(v: u64) -> &'static str {
    match v {
        0 => "off",
        1 => "on for all outgoing connections",
        2 => "loopback only, the default",
        _ => "an unknown value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values() {
        let raw: BTreeMap<String, String> = [
            (FIN_TIMEOUT.to_string(), "30".to_string()),
            (PORT_RANGE.to_string(), "40000 40019".to_string()),
            (SOMAXCONN.to_string(), "many".to_string()),
        ]
        .into();
        let s = Settings::new(&raw);
        assert_eq!(s.num(FIN_TIMEOUT), Some(30));
        assert_eq!(s.num(SOMAXCONN), None);
        assert_eq!(s.num(TW_REUSE), None);
        assert_eq!(s.port_range().unwrap().size(), 20);
        assert_eq!(s.raw(PORT_RANGE), Some("40000 40019"));
    }
}
