//! Which processes own a connection: the holders of the listening socket its
//! local port was accepted on (same namespace, same or wildcard address).

use crate::graph::{HeldBy, HoldGraph};
use crate::model::{Inode, TcpSocket, TcpState};
use std::collections::HashMap;

pub struct Listeners<'a> {
    by_port: HashMap<(Inode, u16), Vec<&'a TcpSocket>>,
}

impl<'a> Listeners<'a> {
    pub fn new(sockets: &'a [TcpSocket]) -> Self {
        let mut by_port: HashMap<(Inode, u16), Vec<&TcpSocket>> = HashMap::new();
        for s in sockets.iter().filter(|s| s.state == TcpState::Listen) {
            by_port
                .entry((s.netns, s.local.port()))
                .or_default()
                .push(s);
        }
        Listeners { by_port }
    }

    /// The listening sockets a connection could have been accepted from.
    pub fn of(&self, conn: &TcpSocket) -> Vec<&'a TcpSocket> {
        let Some(candidates) = self.by_port.get(&(conn.netns, conn.local.port())) else {
            return Vec::new();
        };
        candidates
            .iter()
            .filter(|l| {
                l.local.ip().is_unspecified() || l.local.ip() == conn.local.ip() || same_v4(l, conn)
            })
            .copied()
            .collect()
    }

    /// Holders of those listening sockets.
    pub fn holders(&self, conn: &TcpSocket, graph: &HoldGraph) -> Vec<(HeldBy, &'a TcpSocket)> {
        self.of(conn)
            .into_iter()
            .flat_map(|l| graph.holders(l.inode).into_iter().map(move |h| (h, l)))
            .collect()
    }
}

/// A v6 socket with a v4-mapped address accepted on a v4-mapped listener.
fn same_v4(l: &TcpSocket, conn: &TcpSocket) -> bool {
    use std::net::IpAddr;
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    };
    v4(l.local.ip()).is_some() && v4(l.local.ip()) == v4(conn.local.ip())
}
