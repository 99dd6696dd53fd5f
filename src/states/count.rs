//! Counting sockets per TCP state with a plain array indexed by state: one
//! add per socket, no string, no hashing, no allocation.

use crate::model::{Inode, TcpSocket, TcpState};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const STATES: usize = TcpState::ALL.len();

/// The state's slot in a count array (kernel number - 1).
pub fn index(s: TcpState) -> usize {
    usize::from(s.kernel_number()) - 1
}

/// A count for each of the twelve states. Serialized as {"ESTABLISHED": n, ...}
/// with every state present, zeros included, in the kernel's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts([u64; STATES]);

impl StateCounts {
    pub fn add(&mut self, s: TcpState) {
        self.0[index(s)] += 1;
    }

    pub fn add_n(&mut self, s: TcpState, n: u64) {
        self.0[index(s)] += n;
    }

    pub fn get(&self, s: TcpState) -> u64 {
        self.0[index(s)]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn merge(&mut self, other: &StateCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// (state, count) in the kernel's order, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        TcpState::ALL.iter().map(|&s| (s, self.get(s)))
    }

    /// States with at least one socket, most sockets first (ties in kernel order).
    pub fn nonzero_by_count(&self) -> Vec<(TcpState, u64)> {
        let mut v: Vec<(TcpState, u64)> = self.iter().filter(|&(_, n)| n > 0).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Per-state difference `self - before`.
    pub fn change_since(&self, before: &StateCounts) -> StateChange {
        let mut d = [0i64; STATES];
        for (i, slot) in d.iter_mut().enumerate() {
            *slot = signed(self.0[i]) - signed(before.0[i]);
        }
        StateChange(d)
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Per-state change between two looks, serialized like `StateCounts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateChange([i64; STATES]);

impl StateChange {
    pub fn get(&self, s: TcpState) -> i64 {
        self.0[index(s)]
    }

    pub fn total(&self) -> i64 {
        self.0.iter().sum()
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&d| d == 0)
    }
}

/// Who a socket belongs to, decided from its inode and state alone (plus
/// whether a process was found holding it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    /// At least one process holds an fd to it.
    Process,
    /// No file: the application closed it and the kernel finishes the close
    /// (TIME_WAIT, FIN_WAIT1/2, LAST_ACK, CLOSING), or a handshake is in
    /// progress on a listener (SYN_RECV).
    Kernel,
    /// No file yet: a connection completed by the kernel and waiting in a
    /// listener's accept queue (ESTABLISHED, or CLOSE_WAIT when the client
    /// gave up before accept()).
    AcceptQueue,
    /// An inode no process we could read holds (permissions, a process that
    /// exited meanwhile, an fd in flight over a unix socket).
    Unknown,
}

impl Owner {
    pub fn of(state: TcpState, inode: Inode, held: bool) -> Owner {
        match (inode, state) {
            (0, TcpState::Established | TcpState::CloseWait) => Owner::AcceptQueue,
            (0, _) => Owner::Kernel,
            _ if held => Owner::Process,
            _ => Owner::Unknown,
        }
    }
}

/// An orphan in the kernel's sense (what tcp_max_orphans limits): a full
/// socket closed by the application, still finishing its close. A timewait
/// mini-socket is not one, even in FIN_WAIT2: with tcp_fin_timeout <= 60 the
/// kernel hands an orphaned FIN_WAIT2 to the timewait machinery
/// (tcp_time_wait(sk, TCP_FIN_WAIT2, tmo) in tcp_close and tcp_rcv_state_process),
/// where it counts against tcp_max_tw_buckets.
pub fn is_orphan(s: &TcpSocket) -> bool {
    s.inode == 0
        && !s.timewait
        && matches!(
            s.state,
            TcpState::FinWait1 | TcpState::FinWait2 | TcpState::LastAck | TcpState::Closing
        )
}

/// A timewait mini-socket: TIME_WAIT, or an orphaned FIN_WAIT2 handed to
/// timewait. The kernel's `tw` in /proc/net/sockstat counts these.
pub fn is_tw_bucket(s: &TcpSocket) -> bool {
    s.timewait || s.state == TcpState::TimeWait
}

/// Sockets per owner class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owners {
    pub process: u64,
    pub kernel: u64,
    pub accept_queue: u64,
    pub unknown: u64,
}

impl Owners {
    pub fn add(&mut self, o: Owner) {
        match o {
            Owner::Process => self.process += 1,
            Owner::Kernel => self.kernel += 1,
            Owner::AcceptQueue => self.accept_queue += 1,
            Owner::Unknown => self.unknown += 1,
        }
    }
}

// ------------------------------------------------------------------- serde

fn serialize_map<S: Serializer, T: Serialize>(
    values: impl Iterator<Item = (TcpState, T)>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    let mut map = ser.serialize_map(Some(STATES))?;
    for (s, v) in values {
        map.serialize_entry(s.name(), &v)?;
    }
    map.end()
}

impl Serialize for StateCounts {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        serialize_map(self.iter(), ser)
    }
}

impl Serialize for StateChange {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        serialize_map(TcpState::ALL.iter().map(|&s| (s, self.get(s))), ser)
    }
}

/// Reads {"STATE": n}; a state left out counts 0, an unknown name is an error.
struct CountsVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de> + Copy + Default> Visitor<'de> for CountsVisitor<T> {
    type Value = [T; STATES];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map from TCP state names to counts")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = [T::default(); STATES];
        while let Some((name, n)) = map.next_entry::<String, T>()? {
            let s = TcpState::ALL
                .iter()
                .find(|s| s.name() == name)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown TCP state {name}")))?;
            out[index(*s)] = n;
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for StateCounts {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(CountsVisitor(std::marker::PhantomData))
            .map(StateCounts)
    }
}

impl<'de> Deserialize<'de> for StateChange {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(CountsVisitor(std::marker::PhantomData))
            .map(StateChange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_kernel_numbering() {
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(index(*s), i);
        }
    }

    #[test]
    fn json_has_all_twelve_states_with_kernel_names() {
        let mut c = StateCounts::default();
        c.add(TcpState::TimeWait);
        c.add_n(TcpState::Established, 3);
        let v = serde_json::to_value(c).unwrap();
        let m = v.as_object().unwrap();
        assert_eq!(m.len(), 12);
        assert_eq!(m["TIME_WAIT"], 1);
        assert_eq!(m["ESTABLISHED"], 3);
        assert_eq!(m["NEW_SYN_RECV"], 0);
        assert_eq!(serde_json::from_value::<StateCounts>(v).unwrap(), c);
        assert!(serde_json::from_str::<StateCounts>(r#"{"TIMEWAIT": 1}"#).is_err());
    }

    #[test]
    fn change_is_signed_per_state() {
        let mut a = StateCounts::default();
        let mut b = StateCounts::default();
        a.add_n(TcpState::TimeWait, 10);
        b.add_n(TcpState::TimeWait, 4);
        b.add(TcpState::Listen);
        let d = b.change_since(&a);
        assert_eq!(d.get(TcpState::TimeWait), -6);
        assert_eq!(d.get(TcpState::Listen), 1);
        assert_eq!(d.total(), -5);
        assert!(a.change_since(&a).is_zero());
    }

    #[test]
    fn owners_from_inode_and_state() {
        use TcpState::*;
        assert_eq!(Owner::of(TimeWait, 0, false), Owner::Kernel);
        assert_eq!(Owner::of(FinWait2, 0, false), Owner::Kernel);
        assert_eq!(Owner::of(SynRecv, 0, false), Owner::Kernel);
        assert_eq!(Owner::of(Established, 0, false), Owner::AcceptQueue);
        assert_eq!(Owner::of(CloseWait, 0, false), Owner::AcceptQueue);
        assert_eq!(Owner::of(FinWait2, 7, true), Owner::Process);
        assert_eq!(Owner::of(Established, 7, false), Owner::Unknown);
        let sock = |state, inode, timewait| TcpSocket {
            state,
            inode,
            timewait,
            ..crate::states::testdata::sock(1, state, inode, "127.0.0.1:1", "127.0.0.1:2")
        };
        assert!(is_orphan(&sock(FinWait1, 0, false)) && is_orphan(&sock(LastAck, 0, false)));
        assert!(is_orphan(&sock(Closing, 0, false)) && is_orphan(&sock(FinWait2, 0, false)));
        assert!(!is_orphan(&sock(TimeWait, 0, true)) && !is_orphan(&sock(FinWait2, 9, false)));
        // An orphaned FIN_WAIT2 handed to timewait: a bucket, not an orphan.
        let tw_fw2 = sock(FinWait2, 0, true);
        assert!(!is_orphan(&tw_fw2) && is_tw_bucket(&tw_fw2));
        assert!(is_tw_bucket(&sock(TimeWait, 0, true)));
    }

    #[test]
    fn nonzero_sorted_by_count() {
        let mut c = StateCounts::default();
        c.add_n(TcpState::Listen, 2);
        c.add_n(TcpState::TimeWait, 9);
        c.add_n(TcpState::Established, 2);
        assert_eq!(
            c.nonzero_by_count(),
            vec![
                (TcpState::TimeWait, 9),
                (TcpState::Established, 2),
                (TcpState::Listen, 2)
            ]
        );
    }
}
