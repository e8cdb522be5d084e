//! The flow table: a hash map from canonical key to a slab slot, plus one intrusive LRU list per timeout
//! class and protection. Every flow of a list has the same timeout, so the list head is always the
//! next to expire: expiry is O(flows expired), a packet is O(1), and every eviction candidate is one
//! of the heads. No allocation per packet once the slab has grown to its working size.
//!
//! Under pressure, junk goes first. The owner marks the flows that matter ([`FlowTable::set_protected`]:
//! the sensor's file-transfer sessions); a full table evicts, longest idle first within each tier,
//! (1) half-open and lingering flows (TCP before its handshake completed, one-way UDP, closed TCP),
//! (2) the other unprotected flows, (3) protected flows only when nothing else is left. Above a
//! high-water mark the table enters emergency mode: unprotected flows get the shorter emergency
//! timeouts until it falls below the low-water mark (hysteresis). Both are counted in [`TableStats`]
//! and each transition is logged once.

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

/// Emergency mode: when a worker's share of the table is `enter_percent` full, unprotected flows
/// (half-open, unidentified, anything not carrying a protected session) get these shorter timeouts,
/// until the table is down to `leave_percent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emergency {
    pub enter_percent: u8,
    pub leave_percent: u8,
    /// TCP before its handshake completed, and one-way UDP (microseconds of packet time).
    pub new: i64,
    /// Unprotected TCP and UDP with traffic both ways.
    pub established: i64,
    /// Closed TCP lingering.
    pub closed: i64,
}

impl Default for Emergency {
    fn default() -> Self {
        const S: i64 = 1_000_000;
        Emergency {
            enter_percent: 90,
            leave_percent: 70,
            new: 5 * S,
            established: 60 * S,
            closed: S,
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
    pub emergency: Emergency,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            max_flows: 200_000,
            timeouts: Timeouts::default(),
            emergency: Emergency::default(),
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
    /// Evictions by tier: half-open or lingering, other unprotected, protected.
    pub evicted_half_open: u64,
    pub evicted_unprotected: u64,
    pub evicted_protected: u64,
    /// Emergency mode entered and left (each worker counts its own share of the table).
    pub emergency_entered: u64,
    pub emergency_left: u64,
    /// Flows ended by an emergency timeout (they would still be open with the normal ones).
    pub emergency_timeouts: u64,
    /// Workers in emergency mode now.
    pub emergency: u64,
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
        self.evicted_half_open += o.evicted_half_open;
        self.evicted_unprotected += o.evicted_unprotected;
        self.evicted_protected += o.evicted_protected;
        self.emergency_entered += o.emergency_entered;
        self.emergency_left += o.emergency_left;
        self.emergency_timeouts += o.emergency_timeouts;
        self.emergency += o.emergency;
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
const ALL_CLASSES: [Class; CLASSES] = [
    Class::TcpNew,
    Class::TcpEstablished,
    Class::TcpClosed,
    Class::UdpNew,
    Class::UdpEstablished,
];
/// One LRU list per class for unprotected flows, then one per class for protected flows.
const LISTS: usize = 2 * CLASSES;
const NIL: u32 = u32::MAX;

/// Flows one [`FlowTable::expire`] call ends at most. A flood's flows time out together (a million
/// SYNs of one second, or the moment emergency timeouts apply): ended all at once, their records
/// and events would double the memory the table holds. The rest end at the next calls (once per
/// second of packet time), and being the longest idle, they are also the first evicted.
pub const MAX_EXPIRED_PER_CALL: usize = 4096;

/// The list of a flow of `class`, protected or not.
fn list_of(class: Class, protected: bool) -> u8 {
    class as u8 + if protected { CLASSES as u8 } else { 0 }
}

/// Eviction tiers, first evicted first: half-open and lingering, the other unprotected flows, then
/// the protected ones.
const TIERS: [&[u8]; 3] = [
    &[
        Class::TcpNew as u8,
        Class::UdpNew as u8,
        Class::TcpClosed as u8,
    ],
    &[Class::TcpEstablished as u8, Class::UdpEstablished as u8],
    &[5, 6, 7, 8, 9],
];

/// Asks the CPU to start loading every cache line of `r` into its caches.
/// A prefetch is a hint: it reads nothing the program sees, never faults and changes nothing.
#[inline(always)]
#[allow(
    unsafe_code,
    reason = "_mm_prefetch is a target-feature intrinsic, hence unsafe to call, though it never dereferences"
)]
fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // Every line `r` touches: it need not start on a line boundary.
        let p = (r as *const T).cast::<i8>();
        let skew = p as usize % 64;
        let n = (skew + std::mem::size_of::<T>()).div_ceil(64);
        let first = p.wrapping_sub(skew);
        for i in 0..n {
            // SAFETY: SSE is part of x86_64; a prefetch never faults and reads nothing the
            // program sees, whatever the address (these lines hold `r`).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(i * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

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
    /// Set by the owner ([`FlowTable::set_protected`]): evicted last, normal timeouts in emergency.
    protected: bool,
    pub end_reason: Option<EndReason>,
    pub app: A,
}

/// A flow's place in its timeout class's LRU list. Kept apart from the flows, in one small array:
/// moving a flow to the tail touches its neighbours' links, not their (large) flow records.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    /// Index of its list: [`list_of`] its class and protection.
    list: u8,
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
    pub fn protected(&self) -> bool {
        self.protected
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
    heads: [u32; LISTS],
    tails: [u32; LISTS],
    /// In emergency mode (above the high-water mark, not yet below the low one).
    emergency: bool,
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
            heads: [NIL; LISTS],
            tails: [NIL; LISTS],
            emergency: false,
            stats: TableStats::default(),
        }
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            active: self.map.len() as u64,
            emergency: self.emergency as u64,
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

    /// Every flow in the table, in slot order (rare, whole-table work only).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Flow<A>> {
        self.slots.iter_mut().filter_map(|s| s.flow.as_mut())
    }

    fn flow(&mut self, h: u32) -> &mut Flow<A> {
        // Handles come from the map or the lists, which only hold occupied slots.
        self.slots[h as usize].flow.as_mut().expect("occupied slot")
    }

    /// Marks a flow as one that matters (or no longer): it is evicted only when no unprotected flow
    /// is left and keeps its normal timeouts in emergency mode. Takes effect at once.
    pub fn set_protected(&mut self, h: u32, on: bool) {
        let Some(f) = self.slots.get_mut(h as usize).and_then(|s| s.flow.as_mut()) else {
            return;
        };
        if f.protected == on {
            return;
        }
        f.protected = on;
        let class = ALL_CLASSES[(self.links[h as usize].list as usize) % CLASSES];
        // The flow was just active (its packet is being handled): the tail keeps the list in order
        // of last activity.
        self.unlink(h);
        self.push_tail(h, list_of(class, on));
    }

    /// In emergency mode now.
    pub fn in_emergency(&self) -> bool {
        self.emergency
    }

    fn unlink(&mut self, h: u32) {
        let Link { prev, next, list } = self.links[h as usize];
        let list = list as usize;
        if prev == NIL {
            self.heads[list] = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            self.tails[list] = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
    }

    fn push_tail(&mut self, h: u32, list: u8) {
        let c = list as usize;
        let tail = self.tails[c];
        self.links[h as usize] = Link {
            prev: tail,
            next: NIL,
            list,
        };
        if tail == NIL {
            self.heads[c] = h;
        } else {
            self.links[tail as usize].next = h;
        }
        self.tails[c] = h;
    }

    /// The timeout of a list's flows: the normal one, or in emergency mode, for unprotected flows,
    /// the emergency one when it is shorter.
    fn timeout_of(&self, list: usize, emergency: bool) -> i64 {
        let t = &self.cfg.timeouts;
        let class = ALL_CLASSES[list % CLASSES];
        let normal = match class {
            Class::TcpNew => t.tcp_new,
            Class::TcpEstablished => t.tcp_established,
            Class::TcpClosed => t.tcp_closed,
            Class::UdpNew => t.udp_new,
            Class::UdpEstablished => t.udp_established,
        };
        if !emergency || list >= CLASSES {
            return normal;
        }
        let e = &self.cfg.emergency;
        normal.min(match class {
            Class::TcpNew | Class::UdpNew => e.new,
            Class::TcpEstablished | Class::UdpEstablished => e.established,
            Class::TcpClosed => e.closed,
        })
    }

    /// Enters or leaves emergency mode as the table's fill says (hysteresis between the marks).
    fn check_emergency(&mut self) {
        let max = self.cfg.max_flows.max(1);
        let e = self.cfg.emergency;
        let len = self.map.len();
        // Compared as len * 100 against max * percent, without overflow for any configured size.
        let (len100, pct_of_max) = (len as u128 * 100, |p: u8| max as u128 * p as u128);
        if !self.emergency && len100 >= pct_of_max(e.enter_percent) {
            self.emergency = true;
            self.stats.emergency_entered += 1;
            tracing::warn!(
                flows = len,
                max_flows = max,
                "flow table {}% full: emergency mode, shorter timeouts for unprotected flows",
                e.enter_percent
            );
        } else if self.emergency && len100 <= pct_of_max(e.leave_percent) {
            self.emergency = false;
            self.stats.emergency_left += 1;
            tracing::info!(
                flows = len,
                max_flows = max,
                "flow table down to {}%: emergency mode left",
                e.leave_percent
            );
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

    /// The index hash of the flow a packet (by its addresses) belongs to, for the prefetches.
    pub fn hash_of(transport: Transport, src: Endpoint, dst: Endpoint, vlan: u16) -> u32 {
        key_hash(&FlowKey::new(transport, src, dst, vlan).0)
    }

    /// First stage of a prefetch for a packet a few places ahead (hash from
    /// [`FlowTable::hash_of`]): the index entry its lookup reads.
    pub fn prefetch_entry(&self, kh: u32) {
        prefetch(self.map.home_entry(kh));
    }

    /// Second stage, a few packets later, when the entry is in cache: the flow record the entry
    /// names and its list link. With many interleaved flows these are cache misses otherwise,
    /// one after the other; ahead of time they overlap with the work on earlier packets.
    pub fn prefetch_flow(&self, kh: u32) {
        if let Some(h) = self.map.first_with(kh) {
            if let Some(s) = self.slots.get(h as usize) {
                prefetch(s);
            }
            if let Some(l) = self.links.get(h as usize) {
                prefetch(l);
            }
        }
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
        let kh = Self::hash_of(pkt.transport, pkt.src, pkt.dst, pkt.vlan);
        self.packet_hashed(pkt, kh, frame_len, ts_us, idx, ended)
    }

    /// [`FlowTable::packet`] for a packet whose index hash `kh` ([`FlowTable::hash_of`]) the
    /// caller already has (the worker computes it once, for its prefetch).
    pub fn packet_hashed(
        &mut self,
        pkt: &L4Packet<'_>,
        kh: u32,
        frame_len: u32,
        ts_us: i64,
        idx: u64,
        ended: &mut Vec<Flow<A>>,
    ) -> (u32, Dir) {
        let (key, side) = FlowKey::new(pkt.transport, pkt.src, pkt.dst, pkt.vlan);
        debug_assert_eq!(kh, key_hash(&key), "the hash of another packet");
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
        let list = list_of(
            timeouts_class,
            self.slots[h as usize]
                .flow
                .as_ref()
                .is_some_and(|f| f.protected),
        );
        let l = self.links[h as usize];
        if !(l.list == list && self.tails[list as usize] == h) {
            self.unlink(h);
            self.push_tail(h, list);
        }
        (h, dir)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the hot-path insert takes what the lookup computed (key, hash, side)"
    )]
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
            if let Some((h, tier)) = self.victim() {
                match tier {
                    0 => self.stats.evicted_half_open += 1,
                    1 => self.stats.evicted_unprotected += 1,
                    _ => self.stats.evicted_protected += 1,
                }
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
            protected: false,
            end_reason: None,
            app: A::default(),
        };
        let fresh = Link {
            prev: NIL,
            next: NIL,
            list: Class::TcpNew as u8,
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
        self.push_tail(h, class as u8);
        self.stats.created += 1;
        self.stats.max_active = self.stats.max_active.max(self.map.len() as u64);
        self.check_emergency();
        h
    }

    /// The flow to evict: the longest idle of the first tier that has any, and the tier.
    fn victim(&mut self) -> Option<(u32, usize)> {
        for (tier, lists) in TIERS.iter().enumerate() {
            let mut best: Option<(i64, u64, u32)> = None;
            for &l in lists.iter() {
                let h = self.heads[l as usize];
                if h != NIL {
                    let f = self.flow(h);
                    let k = (f.last_us, f.first_idx, h);
                    if best.is_none_or(|b| (k.0, k.1) < (b.0, b.1)) {
                        best = Some(k);
                    }
                }
            }
            if let Some(b) = best {
                return Some((b.2, tier));
            }
        }
        None
    }

    /// Ends every flow idle for longer than its timeout at packet time `now_us`, at most
    /// [`MAX_EXPIRED_PER_CALL`] of them (the rest at the next call). Flows are pushed in order of
    /// their first packet, so the output does not depend on how flows were spread.
    pub fn expire(&mut self, now_us: i64, ended: &mut Vec<Flow<A>>) {
        let start = ended.len();
        self.check_emergency();
        for list in 0..LISTS {
            let timeout = self.timeout_of(list, self.emergency);
            let normal = self.timeout_of(list, false);
            loop {
                let h = self.heads[list];
                if h == NIL {
                    break;
                }
                let last = self.flow(h).last_us;
                if last.saturating_add(timeout) > now_us
                    || ended.len() - start >= MAX_EXPIRED_PER_CALL
                {
                    break;
                }
                if last.saturating_add(normal) > now_us {
                    self.stats.emergency_timeouts += 1;
                }
                ended.push(self.remove(h, EndReason::Timeout));
            }
        }
        self.check_emergency();
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

    fn syn(src: u8, sport: u16) -> L4Packet<'static> {
        pkt(
            src,
            sport,
            1,
            80,
            flags(7, 0, true, false, false, false),
            b"",
        )
    }

    /// Opens an established TCP flow from 10.0.0.`src`:`sport` at `ts`; returns its handle.
    fn established(t: &mut FlowTable<()>, src: u8, sport: u16, ts: i64, idx: u64) -> u32 {
        let mut ended = Vec::new();
        t.packet(&syn(src, sport), 60, ts, idx, &mut ended);
        let synack = pkt(
            1,
            80,
            src,
            sport,
            flags(50, 8, true, true, false, false),
            b"",
        );
        t.packet(&synack, 60, ts, idx + 1, &mut ended);
        let ack = pkt(
            src,
            sport,
            1,
            80,
            flags(8, 51, false, true, false, false),
            b"x",
        );
        let (h, _) = t.packet(&ack, 60, ts, idx + 2, &mut ended);
        assert!(ended.is_empty());
        assert_eq!(t.get_mut(h).unwrap().state, FlowState::Established);
        h
    }

    /// Regression (SYN flood evicting an upload in progress): a full table evicts half-open flows
    /// first, then unprotected ones, protected flows last — whatever their idle times.
    #[test]
    fn eviction_order_half_open_then_unprotected_then_protected() {
        let mut t: FlowTable<()> = FlowTable::new(FlowTableConfig {
            max_flows: 4,
            ..Default::default()
        });
        let mut ended = Vec::new();
        // Oldest first: a protected transfer, an unprotected established flow, then SYNs.
        let transfer = established(&mut t, 2, 1000, 0, 0);
        t.set_protected(transfer, true);
        established(&mut t, 3, 1000, 10, 10);
        t.packet(&syn(4, 1000), 60, 20, 20, &mut ended);
        t.packet(&syn(5, 1000), 60, 30, 30, &mut ended);
        assert!(ended.is_empty());
        // Each new SYN evicts: first the two older SYN flows (tier 1), though the two
        // established flows are idle longer.
        for (i, want) in [(6u8, 4u8), (7, 5), (8, 6), (9, 7)] {
            t.packet(&syn(i, 1000), 60, 40 + i as i64, 40 + i as u64, &mut ended);
            let e = ended.pop().expect("an eviction");
            assert_eq!(e.end_reason, Some(EndReason::Evicted));
            assert_eq!(e.client_endpoint().addr, Addr::v4([10, 0, 0, want]));
        }
        assert_eq!(t.stats().evicted_half_open, 4);
        // With nothing half-open left but the newest, the unprotected established flow goes
        // before the protected one.
        let mut t2: FlowTable<()> = FlowTable::new(FlowTableConfig {
            max_flows: 2,
            ..Default::default()
        });
        let transfer = established(&mut t2, 2, 1000, 0, 0);
        t2.set_protected(transfer, true);
        established(&mut t2, 3, 1000, 10, 10);
        t2.packet(&syn(4, 1000), 60, 20, 20, &mut ended);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].client_endpoint().addr, Addr::v4([10, 0, 0, 3]));
        assert_eq!(t2.stats().evicted_unprotected, 1);
        // Only protected flows (and the SYN) left: now the protected one goes, counted apart.
        ended.clear();
        let h5 = t2.packet(&syn(5, 1000), 60, 30, 30, &mut ended).0;
        assert_eq!(ended[0].client_endpoint().addr, Addr::v4([10, 0, 0, 4]));
        t2.set_protected(h5, true);
        ended.clear();
        t2.packet(&syn(6, 1000), 60, 40, 40, &mut ended);
        assert_eq!(ended[0].client_endpoint().addr, Addr::v4([10, 0, 0, 2]));
        assert_eq!(t2.stats().evicted_protected, 1);
        assert!(ended[0].protected());
    }

    /// Emergency mode: entered at the high-water mark, left only at the low one; meanwhile
    /// unprotected flows get the emergency timeouts, protected ones keep theirs.
    #[test]
    fn emergency_mode_hysteresis() {
        let s = 1_000_000;
        let mut t: FlowTable<()> = FlowTable::new(FlowTableConfig {
            max_flows: 10,
            ..Default::default()
        });
        let mut ended = Vec::new();
        let transfer = established(&mut t, 2, 1000, 0, 0);
        t.set_protected(transfer, true);
        for i in 0..7u8 {
            t.packet(&syn(10 + i, 1000), 60, 0, 10 + i as u64, &mut ended);
        }
        assert_eq!(t.len(), 8);
        assert!(!t.in_emergency());
        t.packet(&syn(30, 1000), 60, 2 * s, 30, &mut ended);
        assert!(t.in_emergency(), "9 of 10 flows: 90 %");
        assert_eq!(t.stats().emergency_entered, 1);
        // At 6 s the SYN flows older than the 5 s emergency timeout end (not the 60 s normal one);
        // the protected transfer stays. Three flows left, below 70 %: emergency mode is left.
        t.packet(&syn(31, 1000), 60, 6 * s, 31, &mut ended);
        t.expire(6 * s, &mut ended);
        assert_eq!(ended.len(), 7, "the seven oldest SYN flows timed out early");
        assert!(ended
            .iter()
            .all(|f| f.end_reason == Some(EndReason::Timeout)));
        assert_eq!(t.stats().emergency_timeouts, 7);
        assert_eq!(t.len(), 3);
        assert!(!t.in_emergency());
        assert_eq!(t.stats().emergency_left, 1);
        // Hysteresis: back up to 8 (80 %) does not re-enter; 9 does, once.
        ended.clear();
        for i in 0..5u8 {
            t.packet(&syn(40 + i, 1000), 60, 7 * s, 40 + i as u64, &mut ended);
        }
        assert_eq!(t.len(), 8);
        assert!(!t.in_emergency());
        t.packet(&syn(50, 1000), 60, 7 * s, 50, &mut ended);
        assert!(t.in_emergency());
        // Down to 8 of 10 (the SYN of 2 s is past 5 s): still in emergency mode.
        t.expire(7 * s, &mut ended);
        assert_eq!(ended.len(), 1);
        assert_eq!(t.len(), 8);
        assert!(t.in_emergency(), "80 %: still above the low-water mark");
        // Down to 7 (the SYN of 6 s): 70 %, left.
        t.expire(11 * s + 1, &mut ended);
        assert_eq!(t.len(), 7);
        assert!(!t.in_emergency());
        // Out of emergency mode the normal timeouts apply again: the SYNs of 7 s stay.
        t.expire(13 * s, &mut ended);
        assert_eq!(t.len(), 7);
        assert_eq!(t.stats().emergency_entered, 2);
        assert_eq!(t.stats().emergency_left, 2);
        // The protected transfer kept its normal 10-minute timeout throughout.
        assert!(t.get_mut(transfer).is_some());
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
