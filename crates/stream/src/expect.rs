//! Expected flows: a protocol parser announces a connection that will come (an FTP data channel, a
//! TFTP transfer from a new server port) and the flow table's owner asks, when a flow's first packet
//! arrives, whether it was announced. Protocol-agnostic: the payload `T` is the parser's business.
//!
//! Bounded: a cap per host pair and overall, and every entry has a time to live in packet time.
//! At a cap the oldest entry makes room for the new one (counted as evicted): an announcement is
//! followed by its connection within moments, so the newest are the ones worth keeping, and one
//! announcer flooding its host pair (an FTP control connection naming 100 k data channels) can
//! only push out its own entries — the per-pair cap is the cap per announcer. Evicted payloads
//! are handed back by the next [`Expectations::expire`], with the expired ones.

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
    /// Oldest entries dropped to admit newer ones (a cap was reached).
    pub evicted: u64,
}

impl ExpectStats {
    pub fn merge(&mut self, o: &ExpectStats) {
        self.created += o.created;
        self.matched += o.matched;
        self.expired += o.expired;
        self.refused += o.refused;
        self.evicted += o.evicted;
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

/// Where entries are filed: (transport, listener port).
type PortKey = (u8, u16);

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
    /// Each host pair's live entries, oldest first: (key, serial).
    per_pair: HashMap<(Addr, Addr), VecDeque<(PortKey, u64)>>,
    /// Payloads of evicted entries, until the next [`Expectations::expire`] hands them back.
    evicted: Vec<T>,
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
            evicted: Vec::new(),
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
    /// announcement, a retransmitted request). At a cap the oldest entry (of the host pair, or of
    /// all) is evicted to make room; the payload comes back only when the caps are zero.
    pub fn insert(&mut self, x: Expect<T>, now_us: i64) -> Result<(), Expect<T>> {
        let key = (x.transport as u8, x.listener.port);
        let pair = (x.listener.addr, x.peer);
        if let Some(v) = self.by_port.get_mut(&key) {
            if let Some(e) = v
                .iter_mut()
                .find(|e| e.x.listener == x.listener && e.x.peer == x.peer)
            {
                let old = e.serial;
                self.serial += 1;
                e.x = x;
                e.serial = self.serial;
                e.expires_us = now_us + self.limits.ttl_us;
                self.order.push_back((e.expires_us, key, e.serial));
                // Now the pair's newest.
                if let Some(q) = self.per_pair.get_mut(&pair) {
                    q.retain(|&(_, s)| s != old);
                    q.push_back((key, self.serial));
                }
                self.stats.created += 1;
                return Ok(());
            }
        }
        if self.limits.max_total == 0 || self.limits.max_per_pair == 0 {
            self.stats.refused += 1;
            return Err(x);
        }
        while self
            .per_pair
            .get(&pair)
            .is_some_and(|q| q.len() >= self.limits.max_per_pair)
        {
            let Some((k, serial)) = self.per_pair.get(&pair).and_then(|q| q.front().copied())
            else {
                break;
            };
            self.evict(k, serial);
        }
        while self.len >= self.limits.max_total {
            let Some((_, k, serial)) = self.order.pop_front() else {
                break;
            };
            // Markers of matched or replaced entries are stale: only a live serial counts.
            self.evict(k, serial);
        }
        self.serial += 1;
        let expires_us = now_us + self.limits.ttl_us;
        self.by_port.entry(key).or_default().push(Entry {
            x,
            serial: self.serial,
            expires_us,
        });
        self.order.push_back((expires_us, key, self.serial));
        self.per_pair
            .entry(pair)
            .or_default()
            .push_back((key, self.serial));
        self.len += 1;
        self.stats.created += 1;
        Ok(())
    }

    /// Removes the live entry `serial` under `key`, if it is there.
    fn remove_entry(&mut self, key: (u8, u16), serial: u64) -> Option<Entry<T>> {
        let v = self.by_port.get_mut(&key)?;
        let i = v.iter().position(|e| e.serial == serial)?;
        let e = v.swap_remove(i);
        if v.is_empty() {
            self.by_port.remove(&key);
        }
        self.forget_pair(&e.x, e.serial);
        Some(e)
    }

    fn evict(&mut self, key: (u8, u16), serial: u64) {
        if let Some(e) = self.remove_entry(key, serial) {
            self.stats.evicted += 1;
            self.evicted.push(e.x.data);
        }
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
                self.forget_pair(&e.x, e.serial);
                self.stats.matched += 1;
                return Some((e.x, which));
            }
        }
        None
    }

    fn forget_pair(&mut self, x: &Expect<T>, serial: u64) {
        self.len -= 1;
        let pair = (x.listener.addr, x.peer);
        if let Some(q) = self.per_pair.get_mut(&pair) {
            // At most max_per_pair entries, the oldest usually first.
            if let Some(i) = q.iter().position(|&(_, s)| s == serial) {
                q.remove(i);
            }
            if q.is_empty() {
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

    /// Drops entries whose time is up; their payloads go to `expired` (to release what they hold),
    /// after those of the entries evicted since the last call.
    pub fn expire(&mut self, now_us: i64, expired: &mut Vec<T>) {
        expired.append(&mut self.evicted);
        while let Some(&(at, key, serial)) = self.order.front() {
            if at > now_us {
                break;
            }
            self.order.pop_front();
            // A replaced or matched entry left a stale marker: only the live serial counts.
            if let Some(e) = self.remove_entry(key, serial) {
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
        out.append(&mut self.evicted);
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
        // One pair announcing five: its two oldest make room, the newest three stay.
        for p in 0..5u16 {
            t.insert(x(ep([1, 1, 1, 1], 1000 + p), [2, 2, 2, 2], p as u32), 0)
                .unwrap();
        }
        assert_eq!((t.len(), t.stats.evicted, t.stats.refused), (3, 2, 0));
        let cli = ep([2, 2, 2, 2], 5555);
        assert!(t
            .take(Transport::Tcp, cli, ep([1, 1, 1, 1], 1001))
            .is_none());
        assert!(t
            .take(Transport::Tcp, cli, ep([1, 1, 1, 1], 1004))
            .is_some());
        // Twenty more pairs against a total of 10: the oldest of all make room.
        for p in 0..20u16 {
            t.insert(
                x(ep([3, 3, 3, p as u8], 1000), [2, 2, 2, 2], 100 + p as u32),
                50,
            )
            .unwrap();
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.stats.evicted, 2 + 12);
        let mut gone = Vec::new();
        t.expire(100, &mut gone);
        // The evicted payloads come back first: the first pair's two oldest, then the oldest of
        // all (its last two among them).
        assert_eq!(gone.len(), 14);
        assert_eq!(&gone[..3], &[0, 1, 2]);
        assert_eq!(t.len(), 10);
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

    /// Regression (one FTP control connection announcing 100 k data channels): its flood only
    /// pushes out its own entries, another pair's stays, and its newest announcement is matched.
    #[test]
    fn one_announcer_cannot_crowd_out_the_others() {
        let mut t = Expectations::new(ExpectLimits {
            max_total: 1000,
            max_per_pair: 64,
            ttl_us: 600_000_000,
        });
        let other = ep([198, 51, 100, 20], 30000);
        t.insert(x(other, [10, 0, 0, 3], 1), 0).unwrap();
        let flooder = [198, 51, 100, 10];
        for i in 0..100_000u32 {
            t.insert(
                x(ep(flooder, 1024 + (i % 60000) as u16), [10, 0, 0, 2], i),
                1,
            )
            .unwrap();
        }
        assert_eq!(t.len(), 65);
        assert_eq!(t.stats.evicted, 100_000 - 64);
        assert!(t
            .take(Transport::Tcp, ep([10, 0, 0, 3], 5000), other)
            .is_some());
        let newest = ep(flooder, 1024 + (99_999 % 60000) as u16);
        let (e, _) = t
            .take(Transport::Tcp, ep([10, 0, 0, 2], 5000), newest)
            .unwrap();
        assert_eq!(e.data, 99_999);
        let mut gone = Vec::new();
        t.expire(2, &mut gone);
        assert_eq!(gone.len(), 100_000 - 64, "evicted payloads handed back");
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
