//! What travels on a worker queue: decoded packet records plus their payload bytes in one buffer.

use xferwatch_wire::{Endpoint, L4Packet, TcpInfo, Transport};

/// A decoded packet without borrowed data: the payload lives in the batch's buffer.
#[derive(Clone, Copy, Debug)]
pub struct PacketRec {
    /// Global packet number across all inputs (0-based): the order of the timeline.
    pub idx: u64,
    pub ts_us: i64,
    /// Captured frame length, the bytes Suricata counts per flow direction.
    pub frame_len: u32,
    pub transport: Transport,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub vlan: u16,
    pub tcp: Option<TcpInfo>,
    pub payload_off: u32,
    pub payload_cap: u32,
    pub payload_len: u32,
    /// The captured frame in the batch's buffer when frames are kept (evidence): offset, bytes
    /// (0: not kept), length on the wire and pcap link type.
    pub frame_off: u32,
    pub frame_cap: u32,
    pub frame_wire: u32,
    pub dlt: u32,
    /// The frame's own capture time (`ts_us` is the timeline's, which never runs backwards).
    pub frame_ts_us: i64,
    /// The capture interface (1-based, as the engine numbers them; 0: none).
    pub iface: u16,
}

/// A frame handed to the dispatcher with its packet, to be kept for evidence.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    pub bytes: &'a [u8],
    pub wire_len: u32,
    pub dlt: u32,
    /// Its capture time as read.
    pub ts_us: i64,
}

#[derive(Clone, Copy, Debug)]
pub enum Item {
    Packet(PacketRec),
    /// Packet time advanced past a second boundary at packet `idx` (sent to every worker).
    Tick {
        ts_us: i64,
        idx: u64,
    },
}

#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Item>,
    pub data: Vec<u8>,
    /// Every packet up to this global index that belongs to this worker is in this or an earlier batch.
    pub through: u64,
    /// The last batch: the input ended.
    pub end: bool,
}

impl Batch {
    /// Packets in the batch (ticks are not packets).
    pub fn packets(&self) -> u64 {
        self.items
            .iter()
            .filter(|i| matches!(i, Item::Packet(_)))
            .count() as u64
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.data.clear();
        self.through = 0;
        self.end = false;
    }

    /// The captured frame of a record, when frames are kept.
    pub fn frame(&self, r: &PacketRec) -> Option<&[u8]> {
        if r.frame_cap == 0 {
            return None;
        }
        let start = r.frame_off as usize;
        self.data.get(start..start + r.frame_cap as usize)
    }

    /// The packet view of a record of this batch.
    pub fn l4<'a>(&'a self, r: &PacketRec) -> L4Packet<'a> {
        let start = r.payload_off as usize;
        let end = start + r.payload_cap as usize;
        L4Packet {
            transport: r.transport,
            src: r.src,
            dst: r.dst,
            vlan: r.vlan,
            tcp: r.tcp,
            payload: self.data.get(start..end).unwrap_or(&[]),
            payload_len: r.payload_len,
        }
    }
}
