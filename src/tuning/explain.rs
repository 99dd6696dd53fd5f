//! Every TCP setting `cwleak sysctl` reads, explained for this kernel and
//! namespace whether or not anything is wrong: what it does, what it is often
//! believed to do and does not, and what it means here. Then the popular
//! "TIME_WAIT recipe" walked line by line. Pure: settings and counts in,
//! text out. Sources: Documentation/networking/ip-sysctl.rst and
//! net/ipv4/tcp_*.c of the kernel (see docs/tcp-states.md).

use super::observe::Observed;
use super::settings::*;
use crate::states::numbers::grouped;
use crate::states::side::PortRange;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explained {
    /// As `sysctl` names it.
    pub setting: String,
    /// As read; null when this kernel or namespace does not have it.
    pub value: Option<String>,
    /// What it does (on this kernel, with this value).
    pub does: String,
    /// What it is often believed to do and does not.
    pub does_not: String,
    /// What it means here, with the live counts; empty when nothing to add.
    pub here: String,
}

/// One line of the popular recipe and what it would do here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeLine {
    /// The line as the recipe writes it.
    pub line: String,
    pub setting: String,
    /// The value in this namespace; null when this kernel lacks the setting.
    pub value_here: Option<String>,
    /// What applying the line does here.
    pub verdict: String,
}

/// The lines copied from blog post to blog post "to fix TIME_WAIT".
pub const RECIPE: [(&str, &str); 8] = [
    (SYNCOOKIES, "1"),
    (TW_REUSE, "1"),
    (TW_RECYCLE, "1"),
    (FIN_TIMEOUT, "30"),
    (KEEPALIVE_TIME, "1200"),
    (PORT_RANGE, "1024 65000"),
    (MAX_SYN_BACKLOG, "8192"),
    (MAX_TW_BUCKETS, "5000"),
];

/// Every setting, in a fixed order.
pub const ORDER: [&str; 20] = [
    MAX_TW_BUCKETS,
    TW_REUSE,
    TW_REUSE_DELAY,
    TW_RECYCLE,
    TIMESTAMPS,
    FIN_TIMEOUT,
    RFC1337,
    PORT_RANGE,
    RESERVED_PORTS,
    SYNCOOKIES,
    MAX_SYN_BACKLOG,
    SOMAXCONN,
    ABORT_ON_OVERFLOW,
    KEEPALIVE_TIME,
    KEEPALIVE_INTVL,
    KEEPALIVE_PROBES,
    ORPHAN_RETRIES,
    MAX_ORPHANS,
    TCP_MEM,
    TCP_WMEM,
];

struct Ctx<'a> {
    s: Settings<'a>,
    o: &'a Observed,
}

pub fn explain_all(s: Settings, o: &Observed) -> Vec<Explained> {
    let c = Ctx { s, o };
    ORDER
        .iter()
        .map(|name| {
            let (does, does_not, here) = c.words(name);
            Explained {
                setting: (*name).to_string(),
                value: s.raw(name).map(String::from),
                does,
                does_not,
                here,
            }
        })
        .collect()
}

pub fn recipe(s: Settings, o: &Observed) -> Vec<RecipeLine> {
    let c = Ctx { s, o };
    RECIPE
        .iter()
        .map(|(name, v)| RecipeLine {
            line: format!("{name} = {v}"),
            setting: (*name).to_string(),
            value_here: s.raw(name).map(String::from),
            verdict: c.verdict(name, v),
        })
        .collect()
}

type Words = (String, String, String);

fn w(does: &str, does_not: &str, here: String) -> Words {
    (does.into(), does_not.into(), here)
}

impl Ctx<'_> {
    fn tw(&self) -> u64 {
        self.o.states.get(crate::model::TcpState::TimeWait)
    }

    fn stamps_on(&self) -> bool {
        self.s.num(TIMESTAMPS).is_none_or(|v| v != 0)
    }

    /// Listening ports inside a range.
    fn listening_in(&self, r: PortRange) -> Vec<u16> {
        self.o
            .listening_ports
            .iter()
            .copied()
            .filter(|p| r.contains(*p))
            .collect()
    }

    fn words(&self, name: &str) -> Words {
        let s = self.s;
        let o = self.o;
        match name {
            MAX_TW_BUCKETS => w(
                "The most timewait sockets this namespace keeps: TIME_WAIT, and orphaned \
                 FIN_WAIT2 sockets handed to timewait. Past it, a closing connection skips \
                 TIME_WAIT and TcpExtTCPTimeWaitOverflow counts it.",
                "Lowering it does not free anything that matters (a timewait socket is a few \
                 hundred bytes) and throws away TIME_WAIT's protection against late segments; \
                 ip-sysctl.rst asks never to lower it artificially, only to raise it.",
                format!(
                    "{} timewait sockets here ({} TIME_WAIT, {} FIN_WAIT2 handed to timewait){}.",
                    grouped(o.kernel.map_or(o.tw_buckets, |k| k.tw)),
                    grouped(self.tw()),
                    grouped(o.fin_wait2_timewait),
                    if o.kernel.is_some() {
                        ", as the kernel counts them"
                    } else {
                        ""
                    }
                ),
            ),
            TW_REUSE => {
                let v = s.num(TW_REUSE);
                let stamps = if self.stamps_on() {
                    "TCP timestamps are on here, so it can apply"
                } else {
                    "tcp_timestamps is 0 here, so it never applies"
                };
                w(
                    "Lets connect() take over the local port of a TIME_WAIT socket to the same \
                     destination when TCP timestamps prove it safe: both ends use timestamps \
                     and the TIME_WAIT socket is older than tcp_tw_reuse_delay (1 s where that \
                     setting does not exist). 0: off; 1: on for every outgoing connection; 2 \
                     (the default since Linux 4.20): on for loopback only. TcpExtTWRecycled \
                     counts each port taken over.",
                    "Outgoing connections only: it does nothing for connections this host \
                     accepts, and it ends no TIME_WAIT socket early; it only reuses one when a \
                     new connection needs that exact port.",
                    format!(
                        "{}{stamps}. TIME_WAIT: {} on connections accepted here, {} on \
                         connections opened here ({} to loopback).",
                        v.map_or_else(String::new, |v| format!("{v}: {}; ", tw_reuse_words(v))),
                        grouped(o.time_wait_incoming),
                        grouped(o.time_wait_outgoing),
                        grouped(o.time_wait_outgoing_loopback)
                    ),
                )
            }
            TW_REUSE_DELAY => w(
                "How old (ms) a TIME_WAIT socket must be before tcp_tw_reuse may take over its \
                 port.",
                "It does not shorten TIME_WAIT for anyone else.",
                if s.raw(TW_REUSE_DELAY).is_none() {
                    "Not on this kernel: the age is fixed at 1 s.".into()
                } else {
                    String::new()
                },
            ),
            TW_RECYCLE => w(
                "Made the kernel drop SYNs whose TCP timestamp was lower than the last one seen \
                 from the same address, to end TIME_WAIT faster.",
                "It broke clients behind NAT (one address, unrelated timestamps), and everyone \
                 once Linux 4.10 randomized timestamps per connection; Linux 4.12 removed it.",
                match s.num(TW_RECYCLE) {
                    None => "Not on this kernel (removed in Linux 4.12): a sysctl.conf line \
                             setting it fails here."
                        .into(),
                    Some(0) => "This kernel still has it (older than 4.12); it is off.".into(),
                    Some(v) => format!("It is {v} here: clients behind NAT lose connections."),
                },
            ),
            TIMESTAMPS => w(
                "TCP timestamps (RFC 7323), with a random offset per connection (1, the \
                 default). tcp_tw_reuse and PAWS rely on them.",
                "Turning them off does not help TIME_WAIT; it disables tcp_tw_reuse.",
                String::new(),
            ),
            FIN_TIMEOUT => {
                let v = s.num(FIN_TIMEOUT);
                let handed = match v {
                    Some(v) if v <= TIME_WAIT_SECONDS => format!(
                        "At {v} s (<= 60) an orphaned FIN_WAIT2 is handed to timewait: `ss` \
                         shows it as FIN-WAIT-2 with a timewait timer, and it counts in \
                         tcp_max_tw_buckets, not tcp_max_orphans."
                    ),
                    Some(v) => format!(
                        "At {v} s (> 60) an orphaned FIN_WAIT2 stays a full socket (an orphan) \
                         for the first {} s (tcp_keepalive_timer), then is handed to timewait.",
                        v - TIME_WAIT_SECONDS
                    ),
                    None => String::new(),
                };
                w(
                    "How long an orphaned connection (closed by this side, no process left) \
                     waits in FIN_WAIT2 for the peer's FIN (__tcp_close, tcp_rcv_state_process; \
                     at least 3.5 retransmission timeouts, tcp_fin_time).",
                    "It does not shorten TIME_WAIT (60 s, TCP_TIMEWAIT_LEN, compiled in), and it \
                     does not touch a FIN_WAIT2 socket a process still holds (shutdown() \
                     without close() waits for the peer forever).",
                    format!(
                        "{handed} Here: {} orphaned FIN_WAIT2 full sockets, {} handed to \
                         timewait.",
                        grouped(o.orphan_fin_wait2),
                        grouped(o.fin_wait2_timewait)
                    )
                    .trim_start()
                    .to_string(),
                )
            }
            RFC1337 => w(
                "0 (the default): an RST received in TIME_WAIT ends the TIME_WAIT socket at \
                 once (tcp_timewait_state_process). 1: such RSTs are ignored, as RFC 1337 \
                 advises.",
                "TIME_WAIT does not always last 60 s: with 0, a peer's RST ends it early, and a \
                 new SYN with a higher sequence number (or timestamp) may reuse a server-side \
                 TIME_WAIT at once.",
                String::new(),
            ),
            PORT_RANGE => self.port_range_words(),
            RESERVED_PORTS => w(
                "Ports inside ip_local_port_range that connect() and bind(0) never pick; a \
                 service can still bind them explicitly.",
                "It does not reserve anything outside ip_local_port_range.",
                String::new(),
            ),
            SYNCOOKIES => w(
                "1 (the default): when a listener's SYN queue is full, answer SYNs with a \
                 cookie instead of keeping state (TcpExtSyncookiesSent); 2: always; 0: off, a \
                 full SYN queue drops SYNs (TcpExtTCPReqQFullDrop).",
                "It does nothing for a full accept queue (SYNs are dropped there whatever this \
                 says), and it is no performance setting: a cookie keeps few TCP options.",
                String::new(),
            ),
            MAX_SYN_BACKLOG => w(
                "With tcp_syncookies=0, SYNs from peers not proven before are dropped once fewer \
                 than a quarter of it remains free in a listener's SYN queue.",
                "No effect with syncookies on, and none past a listener's own backlog: the SYN \
                 queue is full at min(listen() backlog, somaxconn) whatever this says.",
                match s.num(SYNCOOKIES) {
                    Some(0) => "tcp_syncookies is 0 here, so it applies.".into(),
                    Some(_) => "tcp_syncookies is on here, so it has no effect.".into(),
                    None => String::new(),
                },
            ),
            SOMAXCONN => w(
                "Caps the backlog a program passes to listen(): a listener's accept queue and \
                 SYN queue hold min(backlog, somaxconn); `ss -lnt` shows it as the listener's \
                 Send-Q. 4096 by default since Linux 5.4, 128 before.",
                "Raising it changes nothing for a program that asks for less (nginx 511, many \
                 runtimes 128) and nothing for a listener until it calls listen() again.",
                self.o.listeners.first().map_or_else(String::new, |l| {
                    format!(
                        "Fullest listener {}: {} queued of {}.",
                        l.local,
                        grouped(l.accept_queue),
                        grouped(l.backlog)
                    )
                }),
            ),
            ABORT_ON_OVERFLOW => w(
                "0 (the default): when the accept queue is full, the final ACK of a handshake is \
                 dropped and the client's retransmission may find room later. 1: the connection \
                 is reset instead.",
                "It does not make the queue longer; 1 turns a slow server into failing clients.",
                String::new(),
            ),
            KEEPALIVE_TIME => w(
                "Seconds a connection is idle before the first keepalive probe, for sockets that \
                 set SO_KEEPALIVE (TCP_KEEPIDLE overrides it per socket).",
                "Nothing for sockets without SO_KEEPALIVE, which is most; it closes no \
                 TIME_WAIT or CLOSE_WAIT socket, and has nothing to do with HTTP keep-alive.",
                String::new(),
            ),
            KEEPALIVE_INTVL => w(
                "Seconds between keepalive probes (SO_KEEPALIVE sockets only).",
                "Nothing for sockets without SO_KEEPALIVE.",
                String::new(),
            ),
            KEEPALIVE_PROBES => w(
                "Unanswered probes after which a keepalive socket is reset (SO_KEEPALIVE \
                 sockets only).",
                "Nothing for sockets without SO_KEEPALIVE.",
                String::new(),
            ),
            ORPHAN_RETRIES => w(
                "How many retransmissions an orphan gets before the kernel drops it; 0 means 8 \
                 (tcp_orphan_retries() in tcp_timer.c).",
                "It does not bound FIN_WAIT2 (tcp_fin_timeout does).",
                String::new(),
            ),
            MAX_ORPHANS => w(
                "The most orphans (full sockets closed by their application, still sending \
                 their last data or FIN) the host keeps; past it tcp_check_oom() resets them \
                 (TcpExtTCPAbortOnMemory). Orphans are also reset past tcp_mem[2]. An orphan \
                 that keeps retransmitting counts double or more.",
                "TIME_WAIT and FIN_WAIT2 handed to timewait are not orphans. Raising it costs \
                 unswappable memory: up to tcp_wmem[2] per orphan, not a fixed 64 KiB.",
                match (o.kernel, s.raw(MAX_ORPHANS)) {
                    (Some(k), _) => format!(
                        "The kernel counts {} orphans host-wide; {} in this namespace's table.",
                        grouped(k.orphans),
                        grouped(o.orphans)
                    ),
                    (None, None) => "Host-wide: only the initial namespace shows it.".into(),
                    (None, Some(_)) => format!("{} orphans in this table.", grouped(o.orphans)),
                },
            ),
            TCP_MEM => w(
                "Three numbers in pages, host-wide: below the first TCP memory is not limited; \
                 past the second the kernel is under pressure and shrinks buffers \
                 (TcpExtTCPMemoryPressures); past the third allocations fail and orphans are \
                 reset.",
                "It is not per socket (tcp_rmem and tcp_wmem are).",
                match (o.kernel, s.nth(TCP_MEM, 2)) {
                    (Some(k), Some(max)) => format!(
                        "{} pages in use host-wide, tcp_mem[2] is {}.",
                        grouped(k.mem_pages),
                        grouped(max)
                    ),
                    (_, None) => "Host-wide: only the initial namespace shows it.".into(),
                    _ => String::new(),
                },
            ),
            TCP_WMEM => w(
                "Send buffer per socket in bytes: minimum, default, and the maximum autotuning \
                 grows to. The maximum is also what one orphan can still hold unsent.",
                "Bigger is not faster on a fast local network; it is memory per connection.",
                String::new(),
            ),
            _ => w("", "", String::new()),
        }
    }

    fn port_range_words(&self) -> Words {
        let mut here = Vec::new();
        if let Some(r) = self.s.port_range() {
            here.push(format!("{} ports ({}-{}).", grouped(r.size()), r.lo, r.hi));
            if r.lo % 2 == r.hi % 2 {
                here.push(format!(
                    "Both ends have the same parity ({} and {}): ip-sysctl.rst asks for one \
                     even and one odd.",
                    r.lo, r.hi
                ));
            }
            let inside = self.listening_in(r);
            if !inside.is_empty() {
                let shown: Vec<String> = inside.iter().take(8).map(u16::to_string).collect();
                here.push(format!(
                    "Listening ports inside the range: {}: an outgoing connection can take one \
                     while its service is down; reserve them with ip_local_reserved_ports.",
                    shown.join(", ")
                ));
            }
        }
        w(
            "The local ports connect() (and bind() to port 0) pick from. The kernel prefers \
             ports of the range's lower end's parity for connect() and leaves the others for \
             bind(0) (__inet_hash_connect, since Linux 4.2): connect() tries half the range \
             first, the rest when that is full.",
            "Each (source address, destination address, destination port) has the whole range \
             to itself, so it matters only for many connections to one destination; widening it \
             makes nothing faster.",
            here.join(" "),
        )
    }

    fn verdict(&self, name: &str, v: &str) -> String {
        let s = self.s;
        let now = s.raw(name);
        let same = now.is_some_and(|n| n.split_whitespace().eq(v.split_whitespace()));
        let already = if same { "Already so here. " } else { "" };
        match name {
            SYNCOOKIES => format!(
                "{already}Cookies answer SYNs when a SYN queue is full; they do nothing for \
                 TIME_WAIT."
            ),
            TW_REUSE => format!(
                "{already}Lets outgoing connections take over TIME_WAIT ports to the same \
                 destination (timestamps {}); nothing for connections accepted here ({} of the \
                 TIME_WAIT sockets here).",
                if self.stamps_on() {
                    "on"
                } else {
                    "off: it will not apply"
                },
                grouped(self.o.time_wait_incoming)
            ),
            TW_RECYCLE => match now {
                None => "Fails: this kernel has no tcp_tw_recycle (removed in Linux 4.12). On \
                         older kernels it broke clients behind NAT."
                    .into(),
                Some(_) => "Breaks clients behind NAT (and all clients since Linux 4.10's \
                            per-connection timestamps): leave it 0."
                    .into(),
            },
            FIN_TIMEOUT => format!(
                "{already}Shortens only orphaned FIN_WAIT2 ({} here), not TIME_WAIT (60 s, fixed).",
                grouped(self.o.orphan_fin_wait2 + self.o.fin_wait2_timewait)
            ),
            KEEPALIVE_TIME => format!(
                "{already}Probes idle SO_KEEPALIVE sockets after 20 minutes instead of 2 hours; \
                 no effect on TIME_WAIT, or on sockets without SO_KEEPALIVE."
            ),
            PORT_RANGE => {
                let mut out = format!(
                    "{already}63,977 ports per destination instead of {}; 1024 and 65000 are \
                     both even, against ip-sysctl.rst's advice of different parity.",
                    s.port_range()
                        .map_or_else(|| "?".into(), |r| grouped(r.size()))
                );
                if let Some(r) = PortRange::parse(v) {
                    let inside = self.listening_in(r);
                    if !inside.is_empty() {
                        let shown: Vec<String> =
                            inside.iter().take(8).map(u16::to_string).collect();
                        out.push_str(&format!(
                            " It would cover ports listened on here: {}.",
                            shown.join(", ")
                        ));
                    } else {
                        out.push_str(
                            " It covers the ports of many common services (3306, 5432, 6379, \
                             8080...): reserve those you run.",
                        );
                    }
                }
                out
            }
            MAX_SYN_BACKLOG => format!(
                "{already}{}",
                match s.num(SYNCOOKIES) {
                    Some(0) =>
                        "Applies here (tcp_syncookies=0), up to each listener's own \
                                backlog; nothing for TIME_WAIT.",
                    _ =>
                        "No effect with syncookies on, and none past each listener's own \
                          backlog; nothing for TIME_WAIT.",
                }
            ),
            MAX_TW_BUCKETS => format!(
                "{already}Caps timewait sockets at 5,000 (now {}): the others close without \
                 TIME_WAIT's protection (TcpExtTCPTimeWaitOverflow); ip-sysctl.rst asks never \
                 to lower it artificially.",
                grouped(self.o.kernel.map_or(self.o.tw_buckets, |k| k.tw))
            ),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_setting_is_explained_even_on_an_idle_namespace() {
        let r = raw(&[
            (TW_REUSE, "2"),
            (FIN_TIMEOUT, "60"),
            (PORT_RANGE, "32768 60999"),
        ]);
        let o = Observed::default();
        let all = explain_all(Settings::new(&r), &o);
        assert_eq!(all.len(), ORDER.len());
        for e in &all {
            assert!(!e.does.is_empty() && !e.does_not.is_empty(), "{e:?}");
        }
        let recycle = all.iter().find(|e| e.setting == TW_RECYCLE).unwrap();
        assert_eq!(recycle.value, None);
        assert!(
            recycle.here.contains("removed in Linux 4.12"),
            "{recycle:?}"
        );
        let range = all.iter().find(|e| e.setting == PORT_RANGE).unwrap();
        assert!(range.does.contains("parity"), "{range:?}");
        let fin = all.iter().find(|e| e.setting == FIN_TIMEOUT).unwrap();
        assert!(fin.here.contains("handed to timewait"), "{fin:?}");
    }

    #[test]
    fn the_recipe_is_walked_line_by_line() {
        let r = raw(&[
            (SYNCOOKIES, "1"),
            (PORT_RANGE, "32768 60999"),
            (TIMESTAMPS, "1"),
        ]);
        let o = Observed {
            listening_ports: vec![22, 8080],
            ..Observed::default()
        };
        let lines = recipe(Settings::new(&r), &o);
        assert_eq!(lines.len(), RECIPE.len());
        assert!(lines[0].verdict.starts_with("Already so here."));
        let recycle = &lines[2];
        assert_eq!(recycle.value_here, None);
        assert!(recycle.verdict.starts_with("Fails"), "{recycle:?}");
        let range = lines.iter().find(|l| l.setting == PORT_RANGE).unwrap();
        assert!(range.verdict.contains("both even"), "{range:?}");
        assert!(range.verdict.contains("8080"), "{range:?}");
        assert!(!range.verdict.contains(" 22"), "{range:?}");
        let buckets = lines.iter().find(|l| l.setting == MAX_TW_BUCKETS).unwrap();
        assert!(buckets.verdict.contains("never"), "{buckets:?}");
    }
}
