//! Which processes own a connection: the holders of the listening socket its
//! local port was accepted on (same namespace, same or wildcard address).

use crate::graph::{HeldBy, HoldGraph};
use crate::model::{FastMap, Inode, TcpSocket, TcpState};
use std::net::IpAddr;

/// Where a connection was accepted: namespace, local port, local address
/// (v4-mapped as v4). Connections with one address share their listeners.
pub type ListenAddress = (Inode, u16, IpAddr);

/// Listeners indexed by exact address and by port (wildcards): a host with
/// thousands of addresses on one port (virtual hosting, the benchmark's
/// 127.1.X.Y:5000) would make a per-port list a linear search per socket.
/// Each list holds indices into the snapshot's sockets, ascending.
pub struct Listeners<'a> {
    sockets: &'a [TcpSocket],
    exact: FastMap<ListenAddress, Vec<usize>>,
    wildcard: FastMap<(Inode, u16), Vec<usize>>,
    inodes: crate::model::InodeSet,
}

impl<'a> Listeners<'a> {
    pub fn new(sockets: &'a [TcpSocket]) -> Self {
        let mut exact: FastMap<_, Vec<usize>> = FastMap::default();
        let mut wildcard: FastMap<_, Vec<usize>> = FastMap::default();
        let mut inodes = crate::model::InodeSet::default();
        for (i, s) in sockets.iter().enumerate() {
            if s.state != TcpState::Listen {
                continue;
            }
            inodes.insert(s.inode);
            let port = s.local.port();
            if s.local.ip().is_unspecified() {
                wildcard.entry((s.netns, port)).or_default().push(i);
            } else {
                exact
                    .entry((s.netns, port, canonical(s.local.ip())))
                    .or_default()
                    .push(i);
            }
        }
        Listeners {
            sockets,
            exact,
            wildcard,
            inodes,
        }
    }

    /// Whether `inode` is a listening socket.
    pub fn is_listener(&self, inode: Inode) -> bool {
        self.inodes.contains(&inode)
    }

    pub fn address(&self, conn: &TcpSocket) -> ListenAddress {
        (conn.netns, conn.local.port(), canonical(conn.local.ip()))
    }

    /// The listening sockets a connection could have been accepted from:
    /// same address first (a v4-mapped v6 address is its v4 one), then wildcards.
    pub fn of(&self, conn: &TcpSocket) -> Vec<&'a TcpSocket> {
        let port = conn.local.port();
        let exact = self.exact.get(&self.address(conn)).into_iter().flatten();
        let wild = self.wildcard.get(&(conn.netns, port)).into_iter().flatten();
        // In snapshot order, whichever list a listener came from.
        let mut found: Vec<usize> = exact.chain(wild).copied().collect();
        found.sort_unstable();
        found.into_iter().map(|i| &self.sockets[i]).collect()
    }

    /// Holders of those listening sockets.
    pub fn holders(&self, conn: &TcpSocket, graph: &HoldGraph) -> Vec<(HeldBy, &'a TcpSocket)> {
        self.of(conn)
            .into_iter()
            .flat_map(|l| graph.holders(l.inode).iter().map(move |h| (*h, l)))
            .collect()
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
