//! Expected flows: a protocol parser announces a connection that will come (an FTP data channel, a
//! TFTP transfer from a new server port) and the flow table's owner asks, when a flow's first packet
//! arrives, whether it was announced. Protocol-agnostic: the payload `T` is the parser's business.
//!
//! Bounded: a cap per host pair and overall; a full table refuses (counted) rather than grows.
//! Every entry has a time to live in packet time.

use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;
use xferwatch_wire::{Addr, Endpoint, Transport};

#[derive(Clone, Copy, Debug)]
pub struct ExpectLimits {
    /// Entries kept at once, all host pairs together.
    pub max_total: usize,
    /// Entries kept at once for one (listener address, peer address) pair.
    pub max_per_pair: usize,
    /// How long an entry waits for its flow, microseconds of packet time.
    pub ttl_us: i64,
}

impl Default for ExpectLimits {
    fn default() -> Self {
        ExpectLimits {
            max_total: 65_536,
            max_per_pair: 64,
            ttl_us: 600_000_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpectStats {
    pub created: u64,
    pub matched: u64,
    pub expired: u64,
    pub refused: u64,
}

impl ExpectStats {
    pub fn merge(&mut self, o: &ExpectStats) {
        self.created += o.created;
        self.matched += o.matched;
        self.expired += o.expired;
        self.refused += o.refused;
    }
}

/// A flow that is expected: its `listener` side (the one that will be connected to, or, for UDP, the
/// one whose port is fixed) and the address of the peer that will talk to it.
#[derive(Clone, Debug)]
pub struct Expect<T> {
    pub transport: Transport,
    pub listener: Endpoint,
    /// Another address the listener may have (the address written in an FTP announcement when it
    /// differs from the one observed: NAT, or a third party).
    pub listener_alt: Option<Addr>,
    pub peer: Addr,
    /// The peer's port when it is known (TFTP: the server's new port is not).
    pub peer_port: Option<u16>,
    pub data: T,
}

struct Entry<T> {
    x: Expect<T>,
    serial: u64,
    expires_us: i64,
}

/// Which side of the new flow matched the announced listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerIs {
    /// The flow's server (the side that did not send the first packet).
    Server,
    /// The flow's client (for UDP, where the listener may speak first).
    Client,
}

/// A standing expectation: any flow between two hosts whose listening side uses a port above 1023
/// (an FTP channel gone TLS: its announcements are unreadable, its data connections are not).
/// It stays until its owner removes it.
struct Wildcard<T> {
    transport: Transport,
    listener: Addr,
    peer: Addr,
    owner: u64,
    data: T,
}

/// Standing expectations kept at most.
const MAX_WILDCARDS: usize = 1024;

pub struct Expectations<T> {
    limits: ExpectLimits,
    wild: Vec<Wildcard<T>>,
    /// Keyed by (transport, listener port).
    by_port: HashMap<(u8, u16), Vec<Entry<T>>>,
    /// (expiry, key, serial) in insertion order: the TTL is fixed, so this is also expiry order.
    order: VecDeque<(i64, (u8, u16), u64)>,
    per_pair: HashMap<(Addr, Addr), u32>,
    len: usize,
    serial: u64,
    pub stats: ExpectStats,
}

impl<T> Expectations<T> {
    pub fn new(limits: ExpectLimits) -> Self {
        Expectations {
            limits,
            wild: Vec::new(),
            by_port: HashMap::default(),
            order: VecDeque::new(),
            per_pair: HashMap::default(),
            len: 0,
            serial: 0,
            stats: ExpectStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.wild.is_empty()
    }

    /// Registers a standing expectation for `owner`; false (counted as refused) when full.
    pub fn insert_wildcard(
        &mut self,
        transport: Transport,
        listener: Addr,
        peer: Addr,
        owner: u64,
        data: T,
    ) -> bool {
        if self.wild.len() >= MAX_WILDCARDS {
            self.stats.refused += 1;
            return false;
        }
        self.stats.created += 1;
        self.wild.push(Wildcard {
            transport,
            listener,
            peer,
            owner,
            data,
        });
        true
    }

    /// Removes `owner`'s standing expectations; their payloads go to `out`.
    pub fn remove_wildcards(&mut self, owner: u64, out: &mut Vec<T>) {
        let mut i = 0;
        while i < self.wild.len() {
            if self.wild[i].owner == owner {
                out.push(self.wild.swap_remove(i).data);
            } else {
                i += 1;
            }
        }
    }

    /// Registers an expectation. An entry for the same listener and peer is replaced (a repeated
    /// announcement, a retransmitted request). Returns the payload back when a cap refuses it.
    pub fn insert(&mut self, x: Expect<T>, now_us: i64) -> Result<(), Expect<T>> {
        let key = (x.transport as u8, x.listener.port);
        let pair = (x.listener.addr, x.peer);
        if let Some(v) = self.by_port.get_mut(&key) {
            if let Some(e) = v
                .iter_mut()
                .find(|e| e.x.listener == x.listener && e.x.peer == x.peer)
            {
                self.serial += 1;
                e.x = x;
                e.serial = self.serial;
                e.expires_us = now_us + self.limits.ttl_us;
                self.order.push_back((e.expires_us, key, e.serial));
                self.stats.created += 1;
                return Ok(());
            }
        }
        let n = self.per_pair.get(&pair).copied().unwrap_or(0);
        if self.len >= self.limits.max_total || n as usize >= self.limits.max_per_pair {
            self.stats.refused += 1;
            return Err(x);
        }
        self.serial += 1;
        let expires_us = now_us + self.limits.ttl_us;
        self.by_port.entry(key).or_default().push(Entry {
            x,
            serial: self.serial,
            expires_us,
        });
        self.order.push_back((expires_us, key, self.serial));
        *self.per_pair.entry(pair).or_default() += 1;
        self.len += 1;
        self.stats.created += 1;
        Ok(())
    }

    /// A new flow's first packet: was it announced? `client` sent the first packet. The entry is used up.
    pub fn take(
        &mut self,
        transport: Transport,
        client: Endpoint,
        server: Endpoint,
    ) -> Option<(Expect<T>, ListenerIs)> {
        let try_side = |l: Endpoint, peer: Endpoint, e: &Expect<T>| {
            e.transport == transport
                && e.listener.port == l.port
                && (e.listener.addr == l.addr || e.listener_alt == Some(l.addr))
                && e.peer == peer.addr
                && e.peer_port.is_none_or(|p| p == peer.port)
        };
        for (l, peer, which) in [
            (server, client, ListenerIs::Server),
            (client, server, ListenerIs::Client),
        ] {
            let key = (transport as u8, l.port);
            let Some(v) = self.by_port.get_mut(&key) else {
                continue;
            };
            // The newest announcement wins.
            if let Some(i) = v.iter().rposition(|e| try_side(l, peer, &e.x)) {
                let e = v.swap_remove(i);
                if v.is_empty() {
                    self.by_port.remove(&key);
                }
                self.forget_pair(&e.x);
                self.stats.matched += 1;
                return Some((e.x, which));
            }
        }
        None
    }

    fn forget_pair(&mut self, x: &Expect<T>) {
        self.len -= 1;
        let pair = (x.listener.addr, x.peer);
        if let Some(n) = self.per_pair.get_mut(&pair) {
            *n -= 1;
            if *n == 0 {
                self.per_pair.remove(&pair);
            }
        }
    }

    /// Like [`Expectations::take`], then standing expectations: a flow whose server (port above 1023)
    /// and client match one gets a copy of its payload, and the expectation stays.
    pub fn take_any(
        &mut self,
        transport: Transport,
        client: Endpoint,
        server: Endpoint,
    ) -> Option<(Expect<T>, ListenerIs)>
    where
        T: Clone,
    {
        if let Some(hit) = self.take(transport, client, server) {
            return Some(hit);
        }
        // The listening side of a standing expectation is the flow's server (the side that was
        // connected to), never the side that opened the connection.
        {
            let (l, peer, which) = (server, client, ListenerIs::Server);
            if l.port < 1024 {
                return None;
            }
            if let Some(w) = self
                .wild
                .iter()
                .find(|w| w.transport == transport && w.listener == l.addr && w.peer == peer.addr)
            {
                self.stats.matched += 1;
                return Some((
                    Expect {
                        transport,
                        listener: l,
                        listener_alt: None,
                        peer: peer.addr,
                        peer_port: None,
                        data: w.data.clone(),
                    },
                    which,
                ));
            }
        }
        None
    }

    /// Drops entries whose time is up; their payloads go to `expired` (to release what they hold).
    pub fn expire(&mut self, now_us: i64, expired: &mut Vec<T>) {
        while let Some(&(at, key, serial)) = self.order.front() {
            if at > now_us {
                break;
            }
            self.order.pop_front();
            let Some(v) = self.by_port.get_mut(&key) else {
                continue;
            };
            // A replaced or matched entry left a stale marker: only the live serial counts.
            if let Some(i) = v.iter().position(|e| e.serial == serial) {
                let e = v.swap_remove(i);
                if v.is_empty() {
                    self.by_port.remove(&key);
                }
                self.forget_pair(&e.x);
                self.stats.expired += 1;
                expired.push(e.x.data);
            }
        }
        // Stale markers of matched entries must not pile up when nothing expires.
        if self.order.len() > 4 * self.limits.max_total.max(1024) {
            let live: std::collections::HashSet<u64> = self
                .by_port
                .values()
                .flat_map(|v| v.iter().map(|e| e.serial))
                .collect();
            self.order.retain(|(_, _, s)| live.contains(s));
        }
    }

    /// Every entry, e.g. at shutdown.
    pub fn drain(&mut self, out: &mut Vec<T>) {
        for (_, v) in self.by_port.drain() {
            for e in v {
                out.push(e.x.data);
            }
        }
        self.order.clear();
        self.per_pair.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(a: [u8; 4], port: u16) -> Endpoint {
        Endpoint {
            addr: Addr::v4(a),
            port,
        }
    }

    fn x(listener: Endpoint, peer: [u8; 4], data: u32) -> Expect<u32> {
        Expect {
            transport: Transport::Tcp,
            listener,
            listener_alt: None,
            peer: Addr::v4(peer),
            peer_port: None,
            data,
        }
    }

    #[test]
    fn matches_either_side_once() {
        let mut t = Expectations::new(ExpectLimits::default());
        let srv = ep([198, 51, 100, 10], 40000);
        t.insert(x(srv, [10, 0, 0, 2], 7), 0).unwrap();
        let cli = ep([10, 0, 0, 2], 5555);
        assert!(t.take(Transport::Udp, cli, srv).is_none());
        let (e, side) = t.take(Transport::Tcp, cli, srv).unwrap();
        assert_eq!((e.data, side), (7, ListenerIs::Server));
        assert!(t.take(Transport::Tcp, cli, srv).is_none());
        assert_eq!(t.stats.matched, 1);
        // The listener sending first (UDP style).
        t.insert(x(srv, [10, 0, 0, 2], 8), 0).unwrap();
        let (e, side) = t.take(Transport::Tcp, srv, cli).unwrap();
        assert_eq!((e.data, side), (8, ListenerIs::Client));
        assert!(t.is_empty());
    }

    #[test]
    fn caps_and_ttl() {
        let lim = ExpectLimits {
            max_total: 10,
            max_per_pair: 3,
            ttl_us: 100,
        };
        let mut t = Expectations::new(lim);
        for p in 0..5u16 {
            let _ = t.insert(x(ep([1, 1, 1, 1], 1000 + p), [2, 2, 2, 2], p as u32), 0);
        }
        assert_eq!((t.len(), t.stats.refused), (3, 2));
        for p in 0..20u16 {
            let _ = t.insert(x(ep([3, 3, 3, p as u8], 1000), [2, 2, 2, 2], 0), 50);
        }
        assert_eq!(t.len(), 10);
        let mut gone = Vec::new();
        t.expire(100, &mut gone);
        assert_eq!(gone.len(), 3);
        t.expire(150, &mut gone);
        assert!(t.is_empty());
        assert_eq!(t.stats.expired, 10);
    }

    #[test]
    fn wildcards_match_high_ports_and_stay() {
        let mut t = Expectations::new(ExpectLimits::default());
        let srv = Addr::v4([198, 51, 100, 10]);
        let cli = Addr::v4([10, 0, 0, 2]);
        assert!(t.insert_wildcard(Transport::Tcp, srv, cli, 99, 5));
        let c = Endpoint {
            addr: cli,
            port: 50000,
        };
        assert!(t
            .take_any(Transport::Tcp, c, ep([198, 51, 100, 10], 443))
            .is_none());
        assert!(t
            .take_any(Transport::Tcp, c, ep([198, 51, 100, 11], 40000))
            .is_none());
        for port in [40000, 40001] {
            let (x, side) = t
                .take_any(Transport::Tcp, c, ep([198, 51, 100, 10], port))
                .unwrap();
            assert_eq!((x.data, side), (5, ListenerIs::Server));
        }
        // The listener opening a connection to the peer is not a match.
        assert!(t
            .take_any(
                Transport::Tcp,
                ep([198, 51, 100, 10], 40002),
                ep([10, 0, 0, 2], 50000)
            )
            .is_none());
        let mut gone = Vec::new();
        t.remove_wildcards(99, &mut gone);
        assert_eq!(gone, vec![5]);
        assert!(t.is_empty());
    }

    #[test]
    fn repeated_announcement_replaces() {
        let mut t = Expectations::new(ExpectLimits::default());
        let l = ep([1, 1, 1, 1], 2000);
        t.insert(x(l, [2, 2, 2, 2], 1), 0).unwrap();
        t.insert(x(l, [2, 2, 2, 2], 2), 10).unwrap();
        assert_eq!(t.len(), 1);
        let mut gone = Vec::new();
        t.expire(600_000_005, &mut gone);
        assert!(gone.is_empty(), "refreshed entry lives on");
        t.expire(600_000_010, &mut gone);
        assert_eq!(gone, vec![2]);
    }
}
