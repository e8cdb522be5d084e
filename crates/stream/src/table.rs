//! The flow table: a hash map from canonical key to a slab slot, plus one intrusive LRU list per timeout
//! class. Every flow of a class has the same timeout, so the list head is always the next to expire:
//! expiry is O(flows expired), a packet is O(1), and the longest-idle flow (eviction) is one of the
//! heads. No allocation per packet once the slab has grown to its working size.

use crate::seq::SeqTracker;
use xferwatch_wire::{Endpoint, FlowKey, L4Packet, Side, Transport};

/// Direction of a packet relative to the flow's client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToServer = 0,
    ToClient = 1,
}

impl Dir {
    pub fn idx(self) -> usize {
        self as usize
    }
    pub fn other(self) -> Dir {
        match self {
            Dir::ToServer => Dir::ToClient,
            Dir::ToClient => Dir::ToServer,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Timeout,
    Closed,
    Evicted,
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Timeout => "timeout",
            EndReason::Closed => "closed",
            EndReason::Evicted => "evicted",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Suricata's `flow.state` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowState {
    New,
    Established,
    Closed,
}

impl FlowState {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowState::New => "new",
            FlowState::Established => "established",
            FlowState::Closed => "closed",
        }
    }
}

/// Timeouts in microseconds of packet time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_new: i64,
    pub tcp_established: i64,
    /// Linger after FIN both ways or RST, for the last ACKs and retransmissions.
    pub tcp_closed: i64,
    pub udp_new: i64,
    pub udp_established: i64,
}

impl Default for Timeouts {
    fn default() -> Self {
        const S: i64 = 1_000_000;
        Timeouts {
            tcp_new: 60 * S,
            tcp_established: 600 * S,
            tcp_closed: 10 * S,
            udp_new: 120 * S,
            udp_established: 300 * S,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FlowTableConfig {
    pub max_flows: usize,
    pub timeouts: Timeouts,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            max_flows: 1_000_000,
            timeouts: Timeouts::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub created: u64,
    pub ended_timeout: u64,
    pub ended_closed: u64,
    pub ended_evicted: u64,
    pub ended_shutdown: u64,
    pub port_reuse: u64,
    pub active: u64,
    pub max_active: u64,
}

impl TableStats {
    /// Adds another worker's counters (`active` and `max_active` add up across shards too).
    pub fn merge(&mut self, o: &TableStats) {
        self.created += o.created;
        self.ended_timeout += o.ended_timeout;
        self.ended_closed += o.ended_closed;
        self.ended_evicted += o.ended_evicted;
        self.ended_shutdown += o.ended_shutdown;
        self.port_reuse += o.port_reuse;
        self.active += o.active;
        self.max_active += o.max_active;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    TcpNew = 0,
    TcpEstablished = 1,
    TcpClosed = 2,
    UdpNew = 3,
    UdpEstablished = 4,
}
const CLASSES: usize = 5;
const NIL: u32 = u32::MAX;

/// The flow index's 32-bit hash of a key (FxHash, folded).
fn key_hash(key: &FlowKey) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    let x = h.finish().wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 32) as u32
}

#[derive(Debug)]
pub struct Flow<A> {
    pub key: FlowKey,
    /// Which end of `key` is the client.
    pub client: Side,
    pub flow_id: u64,
    /// Global index of the flow's first packet: unique, and the order flows are written in at a tie.
    pub first_idx: u64,
    pub start_us: i64,
    pub last_us: i64,
    pub pkts: [u64; 2],
    pub bytes: [u64; 2],
    /// Payload bytes counted once per sequence range (TCP) or per datagram (UDP), on-wire lengths.
    pub payload: [u64; 2],
    pub seq: [SeqTracker; 2],
    pub state: FlowState,
    pub syn_seen: bool,
    pub synack_seen: bool,
    pub fin: [bool; 2],
    pub rst: bool,
    /// Payload lengths larger than what was captured (snaplen): counts stay right, bytes are missing.
    pub snapped: bool,
    pub end_reason: Option<EndReason>,
    pub app: A,
}

/// A flow's place in its timeout class's LRU list. Kept apart from the flows, in one small array:
/// moving a flow to the tail touches its neighbours' links, not their (large) flow records.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    class: Class,
}

impl<A> Flow<A> {
    pub fn transport(&self) -> Transport {
        self.key.transport
    }
    pub fn client_endpoint(&self) -> Endpoint {
        self.key.endpoint(self.client)
    }
    pub fn server_endpoint(&self) -> Endpoint {
        self.key.endpoint(self.client.other())
    }
    pub fn dir_of(&self, sender: Side) -> Dir {
        if sender == self.client {
            Dir::ToServer
        } else {
            Dir::ToClient
        }
    }
    /// Swaps client and server (a fingerprint saw that the first sender was the server).
    pub fn reverse(&mut self) {
        self.client = self.client.other();
        self.pkts.swap(0, 1);
        self.bytes.swap(0, 1);
        self.payload.swap(0, 1);
        self.seq.swap(0, 1);
        self.fin.swap(0, 1);
    }
    pub fn bytes_exact(&self) -> bool {
        match self.key.transport {
            Transport::Tcp => self.seq[0].exact() && self.seq[1].exact(),
            Transport::Udp => true,
        }
    }
    pub fn age_secs(&self) -> i64 {
        (self.last_us - self.start_us).max(0) / 1_000_000
    }
}

struct Slot<A> {
    flow: Option<Flow<A>>,
}

pub struct FlowTable<A> {
    cfg: FlowTableConfig,
    map: crate::index::FlowIndex,
    slots: Vec<Slot<A>>,
    links: Vec<Link>,
    free: Vec<u32>,
    heads: [u32; CLASSES],
    tails: [u32; CLASSES],
    stats: TableStats,
}

fn flow_id(key: &FlowKey, first_idx: u64) -> u64 {
    let mut z = key.symmetric_hash() ^ first_idx.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^= z >> 29;
    // Positive and below 2^53, so every JSON reader keeps it exact.
    (z & ((1u64 << 53) - 1)).max(1)
}

impl<A: Default> FlowTable<A> {
    pub fn new(cfg: FlowTableConfig) -> Self {
        FlowTable {
            cfg,
            map: crate::index::FlowIndex::default(),
            slots: Vec::new(),
            links: Vec::new(),
            free: Vec::new(),
            heads: [NIL; CLASSES],
            tails: [NIL; CLASSES],
            stats: TableStats::default(),
        }
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            active: self.map.len() as u64,
            ..self.stats
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get_mut(&mut self, handle: u32) -> Option<&mut Flow<A>> {
        self.slots
            .get_mut(handle as usize)
            .and_then(|s| s.flow.as_mut())
    }

    fn flow(&mut self, h: u32) -> &mut Flow<A> {
        // Handles come from the map or the lists, which only hold occupied slots.
        self.slots[h as usize].flow.as_mut().expect("occupied slot")
    }

    fn unlink(&mut self, h: u32) {
        let Link { prev, next, class } = self.links[h as usize];
        let class = class as usize;
        if prev == NIL {
            self.heads[class] = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            self.tails[class] = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
    }

    fn push_tail(&mut self, h: u32, class: Class) {
        let c = class as usize;
        let tail = self.tails[c];
        self.links[h as usize] = Link {
            prev: tail,
            next: NIL,
            class,
        };
        if tail == NIL {
            self.heads[c] = h;
        } else {
            self.links[tail as usize].next = h;
        }
        self.tails[c] = h;
    }

    fn timeout_of(&self, class: Class) -> i64 {
        let t = &self.cfg.timeouts;
        match class {
            Class::TcpNew => t.tcp_new,
            Class::TcpEstablished => t.tcp_established,
            Class::TcpClosed => t.tcp_closed,
            Class::UdpNew => t.udp_new,
            Class::UdpEstablished => t.udp_established,
        }
    }

    fn remove(&mut self, h: u32, reason: EndReason) -> Flow<A> {
        self.unlink(h);
        let mut f = self.slots[h as usize].flow.take().expect("occupied slot");
        self.map.remove(key_hash(&f.key), h);
        self.free.push(h);
        let reason = if f.state == FlowState::Closed
            && matches!(reason, EndReason::Timeout | EndReason::Shutdown)
        {
            EndReason::Closed
        } else {
            reason
        };
        match reason {
            EndReason::Timeout => self.stats.ended_timeout += 1,
            EndReason::Closed => self.stats.ended_closed += 1,
            EndReason::Evicted => self.stats.ended_evicted += 1,
            EndReason::Shutdown => self.stats.ended_shutdown += 1,
        }
        f.end_reason = Some(reason);
        f
    }

    /// Accounts one packet. Flows ended as a side effect (eviction when full, port reuse after close)
    /// are pushed to `ended`. Returns the flow's handle and the packet's direction.
    pub fn packet(
        &mut self,
        pkt: &L4Packet<'_>,
        frame_len: u32,
        ts_us: i64,
        idx: u64,
        ended: &mut Vec<Flow<A>>,
    ) -> (u32, Dir) {
        let (key, side) = FlowKey::new(pkt.transport, pkt.src, pkt.dst, pkt.vlan);
        let kh = key_hash(&key);
        let slots = &self.slots;
        let mut handle = self.map.get(kh, |h| {
            slots[h as usize]
                .flow
                .as_ref()
                .is_some_and(|f| f.key == key)
        });
        if let (Some(h), Some(tcp)) = (handle, pkt.tcp) {
            // A fresh SYN on a closed flow is a new connection reusing the 4-tuple.
            let f = self.flow(h);
            if tcp.syn && !tcp.ack_flag && f.state == FlowState::Closed {
                self.stats.port_reuse += 1;
                ended.push(self.remove(h, EndReason::Closed));
                handle = None;
            }
        }
        let h = match handle {
            Some(h) => h,
            None => self.create(key, kh, side, pkt, ts_us, idx, ended),
        };
        let timeouts_class;
        let dir;
        {
            let f = self.flow(h);
            dir = f.dir_of(side);
            let d = dir.idx();
            f.last_us = f.last_us.max(ts_us);
            f.pkts[d] += 1;
            f.bytes[d] += frame_len as u64;
            if pkt.payload_len as usize > pkt.payload.len() {
                f.snapped = true;
            }
            match pkt.tcp {
                Some(tcp) => {
                    if tcp.syn {
                        f.seq[d].on_syn(tcp.seq);
                        if tcp.ack_flag {
                            f.synack_seen = true;
                        } else {
                            f.syn_seen = true;
                        }
                    }
                    f.payload[d] += f.seq[d].on_data(tcp.data_seq(), pkt.payload_len);
                    if tcp.ack_flag {
                        f.seq[1 - d].on_peer_ack(tcp.ack);
                    }
                    if tcp.fin {
                        f.fin[d] = true;
                    }
                    if tcp.rst {
                        f.rst = true;
                    }
                    if f.rst || (f.fin[0] && f.fin[1]) {
                        f.state = FlowState::Closed;
                    } else if f.state == FlowState::New
                        && f.pkts[0] > 0
                        && f.pkts[1] > 0
                        && !tcp.syn
                    {
                        f.state = FlowState::Established;
                    }
                    timeouts_class = match f.state {
                        FlowState::New => Class::TcpNew,
                        FlowState::Established => Class::TcpEstablished,
                        FlowState::Closed => Class::TcpClosed,
                    };
                }
                None => {
                    f.payload[d] += pkt.payload_len as u64;
                    if f.pkts[0] > 0 && f.pkts[1] > 0 {
                        f.state = FlowState::Established;
                        timeouts_class = Class::UdpEstablished;
                    } else {
                        timeouts_class = Class::UdpNew;
                    }
                }
            }
        }
        // Move to the tail of its (possibly new) class: the lists stay ordered by last activity.
        // Already there (consecutive packets of one flow): nothing to do.
        let l = self.links[h as usize];
        if !(l.class == timeouts_class && self.tails[timeouts_class as usize] == h) {
            self.unlink(h);
            self.push_tail(h, timeouts_class);
        }
        (h, dir)
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        key: FlowKey,
        kh: u32,
        side: Side,
        pkt: &L4Packet<'_>,
        ts_us: i64,
        idx: u64,
        ended: &mut Vec<Flow<A>>,
    ) -> u32 {
        if self.map.len() >= self.cfg.max_flows.max(1) {
            if let Some(h) = self.longest_idle() {
                ended.push(self.remove(h, EndReason::Evicted));
            }
        }
        // Client: the SYN sender; the receiver of a SYN+ACK; otherwise the first sender.
        let client = match pkt.tcp {
            Some(t) if t.syn && t.ack_flag => side.other(),
            _ => side,
        };
        let flow = Flow {
            key,
            client,
            flow_id: flow_id(&key, idx),
            first_idx: idx,
            start_us: ts_us,
            last_us: ts_us,
            pkts: [0; 2],
            bytes: [0; 2],
            payload: [0; 2],
            seq: Default::default(),
            state: FlowState::New,
            syn_seen: false,
            synack_seen: false,
            fin: [false; 2],
            rst: false,
            snapped: false,
            end_reason: None,
            app: A::default(),
        };
        let fresh = Link {
            prev: NIL,
            next: NIL,
            class: Class::TcpNew,
        };
        let h = match self.free.pop() {
            Some(h) => {
                self.slots[h as usize].flow = Some(flow);
                self.links[h as usize] = fresh;
                h
            }
            None => {
                self.slots.push(Slot { flow: Some(flow) });
                self.links.push(fresh);
                (self.slots.len() - 1) as u32
            }
        };
        self.map.insert(kh, h);
        let class = if key.transport == Transport::Tcp {
            Class::TcpNew
        } else {
            Class::UdpNew
        };
        self.push_tail(h, class);
        self.stats.created += 1;
        self.stats.max_active = self.stats.max_active.max(self.map.len() as u64);
        h
    }

    fn longest_idle(&mut self) -> Option<u32> {
        let mut best: Option<(i64, u64, u32)> = None;
        for c in 0..CLASSES {
            let h = self.heads[c];
            if h != NIL {
                let f = self.flow(h);
                let k = (f.last_us, f.first_idx, h);
                if best.is_none_or(|b| (k.0, k.1) < (b.0, b.1)) {
                    best = Some(k);
                }
            }
        }
        best.map(|b| b.2)
    }

    /// Ends every flow idle for longer than its timeout at packet time `now_us`. Flows are pushed in
    /// order of their first packet, so the output does not depend on how flows were spread.
    pub fn expire(&mut self, now_us: i64, ended: &mut Vec<Flow<A>>) {
        let start = ended.len();
        for c in [
            Class::TcpNew,
            Class::TcpEstablished,
            Class::TcpClosed,
            Class::UdpNew,
            Class::UdpEstablished,
        ] {
            let timeout = self.timeout_of(c);
            loop {
                let h = self.heads[c as usize];
                if h == NIL {
                    break;
                }
                let last = self.flow(h).last_us;
                if last.saturating_add(timeout) > now_us {
                    break;
                }
                ended.push(self.remove(h, EndReason::Timeout));
            }
        }
        ended[start..].sort_by_key(|f| f.first_idx);
    }

    /// Ends every flow (end of input or shutdown), in order of their first packet.
    pub fn drain(&mut self, ended: &mut Vec<Flow<A>>) {
        let order = self.drain_order();
        for (_, h) in order {
            ended.push(self.remove(h, EndReason::Shutdown));
        }
    }

    /// Every flow's (first packet, handle), in the order [`FlowTable::drain`] ends them; with
    /// [`FlowTable::end_one`] a caller can end them a chunk at a time and keep memory flat.
    pub fn drain_order(&mut self) -> Vec<(u64, u32)> {
        let mut order: Vec<(u64, u32)> = self
            .map
            .handles()
            .map(|h| {
                (
                    self.slots[h as usize]
                        .flow
                        .as_ref()
                        .map_or(0, |f| f.first_idx),
                    h,
                )
            })
            .collect();
        order.sort_unstable();
        order
    }

    /// Ends one flow for shutdown (a handle from [`FlowTable::drain_order`]).
    pub fn end_one(&mut self, h: u32) -> Option<Flow<A>> {
        self.slots.get(h as usize)?.flow.as_ref()?;
        Some(self.remove(h, EndReason::Shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xferwatch_wire::{Addr, TcpInfo};

    fn pkt(
        src: u8,
        sport: u16,
        dst: u8,
        dport: u16,
        tcp: Option<TcpInfo>,
        payload: &[u8],
    ) -> L4Packet<'_> {
        L4Packet {
            transport: if tcp.is_some() {
                Transport::Tcp
            } else {
                Transport::Udp
            },
            src: Endpoint {
                addr: Addr::v4([10, 0, 0, src]),
                port: sport,
            },
            dst: Endpoint {
                addr: Addr::v4([10, 0, 0, dst]),
                port: dport,
            },
            vlan: 0,
            tcp,
            payload,
            payload_len: payload.len() as u32,
        }
    }
    fn flags(seq: u32, ack: u32, syn: bool, ackf: bool, fin: bool, rst: bool) -> Option<TcpInfo> {
        Some(TcpInfo {
            seq,
            ack,
            syn,
            ack_flag: ackf,
            fin,
            rst,
        })
    }

    #[test]
    fn handshake_data_close_linger() {
        let mut t: FlowTable<()> = FlowTable::new(FlowTableConfig::default());
        let mut ended = Vec::new();
        let s = 1_000_000;
        t.packet(
            &pkt(
                2,
                40000,
                1,
                21,
                flags(100, 0, true, false, false, false),
                b"",
            ),
            60,
            s,
            0,
            &mut ended,
        );
        // SYN+ACK from the server
        let (h, d) = t.packet(
            &pkt(
                1,
                21,
                2,
                40000,
                flags(500, 101, true, true, false, false),
                b"",
            ),
            60,
            s,
            1,
            &mut ended,
        );
        assert_eq!(d, Dir::ToClient);
        t.packet(
            &pkt(
                2,
                40000,
                1,
                21,
                flags(101, 501, false, true, false, false),
                b"hello",
            ),
            65,
            s,
            2,
            &mut ended,
        );
        t.packet(
            &pkt(
                2,
                40000,
                1,
                21,
                flags(101, 501, false, true, false, false),
                b"hello",
            ),
            65,
            s,
            3,
            &mut ended,
        );
        assert_eq!(t.get_mut(h).unwrap().payload, [5, 0]);
        assert_eq!(t.get_mut(h).unwrap().state, FlowState::Established);
        t.packet(
            &pkt(
                2,
                40000,
                1,
                21,
                flags(106, 501, false, true, true, false),
                b"",
            ),
            60,
            s,
            4,
            &mut ended,
        );
        t.packet(
            &pkt(
                1,
                21,
                2,
                40000,
                flags(501, 107, false, true, true, false),
                b"",
            ),
            60,
            s,
            5,
            &mut ended,
        );
        t.expire(s + 5_000_000, &mut ended);
        assert!(ended.is_empty(), "lingers");
        t.expire(s + 11_000_000, &mut ended);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].end_reason, Some(EndReason::Closed));
        assert_eq!(ended[0].client_endpoint().port, 40000);
        assert!(ended[0].bytes_exact());
    }

    #[test]
    fn synack_first_orients_to_receiver() {
        let mut t: FlowTable<()> = FlowTable::new(FlowTableConfig::default());
        let mut ended = Vec::new();
        let (h, d) = t.packet(
            &pkt(1, 80, 2, 5555, flags(1, 11, true, true, false, false), b""),
            60,
            0,
            0,
            &mut ended,
        );
        assert_eq!(d, Dir::ToClient);
        assert_eq!(t.get_mut(h).unwrap().client_endpoint().port, 5555);
    }

    #[test]
    fn full_table_evicts_longest_idle() {
        let cfg = FlowTableConfig {
            max_flows: 2,
            ..Default::default()
        };
        let mut t: FlowTable<()> = FlowTable::new(cfg);
        let mut ended = Vec::new();
        t.packet(&pkt(1, 1, 2, 53, None, b"a"), 60, 10, 0, &mut ended);
        t.packet(&pkt(1, 2, 2, 53, None, b"a"), 60, 20, 1, &mut ended);
        t.packet(&pkt(1, 1, 2, 53, None, b"a"), 60, 30, 2, &mut ended); // refresh the first
        t.packet(&pkt(1, 3, 2, 53, None, b"a"), 60, 40, 3, &mut ended);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].end_reason, Some(EndReason::Evicted));
        assert_eq!(ended[0].client_endpoint().port, 2);
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats().ended_evicted, 1);
    }

    #[test]
    fn udp_timeouts_and_drain_order() {
        let mut t: FlowTable<()> = FlowTable::new(FlowTableConfig::default());
        let mut ended = Vec::new();
        t.packet(&pkt(1, 9, 2, 53, None, b"a"), 60, 0, 5, &mut ended);
        t.packet(&pkt(1, 8, 2, 53, None, b"a"), 60, 0, 3, &mut ended);
        t.expire(119_000_000, &mut ended);
        assert!(ended.is_empty());
        t.drain(&mut ended);
        assert_eq!(
            ended.iter().map(|f| f.first_idx).collect::<Vec<_>>(),
            vec![3, 5]
        );
        assert!(ended
            .iter()
            .all(|f| f.end_reason == Some(EndReason::Shutdown)));
    }
}
