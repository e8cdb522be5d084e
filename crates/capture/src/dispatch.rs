//! Sharding: one bounded queue per worker, packets batched per worker and sent when a batch is full or
//! every `FLUSH_EVERY` packets (so idle workers still learn that time moved on).

use crate::batch::{Batch, FrameRef, Item, PacketRec};
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
use std::sync::Arc;
use xferwatch_wire::{Addr, L4Packet};

/// Picks the worker that owns a packet: the caller decides what must live together. It must be
/// symmetric (both directions of a flow go to one worker) and depend on the packet only, so the
/// assignment is the same for every run.
pub type ShardFn = Arc<dyn Fn(Addr, Addr, u16) -> u64 + Send + Sync>;

/// A symmetric hash of a set of addresses (order does not matter) and a VLAN id.
pub fn shard_hash(addrs: &[Addr], vlan: u16) -> u64 {
    let mut acc: u64 = 0;
    for a in addrs {
        let o = a.octets();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for chunk in o.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(w))
                .wrapping_mul(0x100_0000_01b3)
                .rotate_left(23);
        }
        // Commutative combination: the hash is the same whichever side sent the packet.
        acc = acc.wrapping_add(mix64(h));
    }
    mix64(acc ^ vlan as u64)
}

fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const BATCH_ITEMS: usize = 512;
const BATCH_BYTES: usize = 256 * 1024;
const FLUSH_EVERY: u64 = 8192;

/// How long a live capture thread waits for room in a full worker queue before it drops the batch.
/// Meanwhile packets wait in the kernel's capture ring (`capture.buffer_size`, 128 MiB by default,
/// tens of times a worker queue), so a burst the workers fall behind on is absorbed there instead
/// of being lost here; a worker stuck for longer than this loses its batches (counted), and the
/// kernel drops (counted) what its ring cannot hold.
pub const LIVE_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Replay keeps backpressure (nothing is dropped); live capture waits for a full queue at most
/// `LIVE_QUEUE_WAIT` (250 ms), then drops the batch and counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Replay,
    Live,
}

pub struct Dispatcher {
    mode: Mode,
    shard: ShardFn,
    senders: Vec<Sender<Batch>>,
    recycle: Receiver<Batch>,
    pending: Vec<Batch>,
    since_flush: u64,
    last_idx: u64,
    /// Batches dropped because a worker's queue was full (live mode), and the packets in them.
    pub dropped_batches: u64,
    pub dropped_packets: u64,
    /// Packets for a worker that is gone (its thread ended): lost, counted, never silently.
    pub dead_worker_packets: u64,
    /// Live mode: batches that found their worker's queue full and waited for room, and the
    /// time spent waiting (microseconds).
    pub queue_waits: u64,
    pub queue_wait_us: u64,
    /// Whole frames travel with their packets (evidence pcaps need them).
    keep_frames: bool,
    /// The capture interface of every packet (1-based; 0: none).
    iface: u16,
}

impl Dispatcher {
    pub fn new(
        mode: Mode,
        shard: ShardFn,
        senders: Vec<Sender<Batch>>,
        recycle: Receiver<Batch>,
    ) -> Self {
        let pending = senders.iter().map(|_| Batch::default()).collect();
        Dispatcher {
            mode,
            shard,
            senders,
            recycle,
            pending,
            since_flush: 0,
            last_idx: 0,
            dropped_batches: 0,
            dropped_packets: 0,
            dead_worker_packets: 0,
            queue_waits: 0,
            queue_wait_us: 0,
            keep_frames: false,
            iface: 0,
        }
    }

    /// Packets from now on come from capture interface `iface` (1-based; 0: none).
    pub fn set_iface(&mut self, iface: u16) {
        self.iface = iface;
    }

    /// Whole frames travel with their packets from now on (see [`Dispatcher::packet`]).
    pub fn keep_frames(&mut self, keep: bool) {
        self.keep_frames = keep;
    }

    pub fn keeps_frames(&self) -> bool {
        self.keep_frames
    }

    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    fn fresh(&self) -> Batch {
        match self.recycle.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Batch {
                items: Vec::with_capacity(BATCH_ITEMS),
                data: Vec::with_capacity(BATCH_BYTES),
                ..Default::default()
            },
        }
    }

    fn send(&mut self, w: usize, end: bool) {
        let replacement = self.fresh();
        let mut b = std::mem::replace(&mut self.pending[w], replacement);
        b.through = self.last_idx;
        b.end = end;
        let dead = match self.mode {
            Mode::Replay => self.senders[w].send(b).err().map(|e| e.0),
            Mode::Live => match self.senders[w].try_send(b) {
                Ok(()) => None,
                Err(TrySendError::Full(b)) => {
                    self.queue_waits += 1;
                    let t0 = std::time::Instant::now();
                    let r = self.senders[w].send_timeout(b, LIVE_QUEUE_WAIT);
                    self.queue_wait_us += t0.elapsed().as_micros() as u64;
                    match r {
                        Ok(()) => None,
                        Err(SendTimeoutError::Timeout(b)) => {
                            self.dropped_batches += 1;
                            self.dropped_packets += b.packets();
                            None
                        }
                        Err(SendTimeoutError::Disconnected(b)) => Some(b),
                    }
                }
                Err(TrySendError::Disconnected(b)) => Some(b),
            },
        };
        if let Some(b) = dead {
            self.dead_worker_packets += b.packets();
        }
    }

    /// Queues one decoded packet for the worker that owns its flow.
    /// `frame`: the captured frame, kept with the packet when frames are kept; the payload is
    /// then taken from inside it (one copy), or copied after it when it lies elsewhere.
    pub fn packet(
        &mut self,
        idx: u64,
        ts_us: i64,
        frame_len: u32,
        p: &L4Packet<'_>,
        frame: Option<FrameRef<'_>>,
    ) {
        let w = ((self.shard)(p.src.addr, p.dst.addr, p.vlan) % self.senders.len() as u64) as usize;
        self.last_idx = idx;
        let b = &mut self.pending[w];
        let (mut frame_off, mut frame_cap, mut frame_wire, mut dlt, mut frame_ts_us) =
            (0, 0, 0, 0, 0);
        let frame = frame.filter(|_| self.keep_frames);
        let off = match frame {
            Some(f) => {
                frame_off = b.data.len() as u32;
                frame_cap = f.bytes.len() as u32;
                frame_wire = f.wire_len.max(frame_cap);
                dlt = f.dlt;
                frame_ts_us = f.ts_us;
                b.data.extend_from_slice(f.bytes);
                let inside = (p.payload.as_ptr() as usize).wrapping_sub(f.bytes.as_ptr() as usize);
                if inside <= f.bytes.len() && inside + p.payload.len() <= f.bytes.len() {
                    frame_off + inside as u32
                } else {
                    let off = b.data.len() as u32;
                    b.data.extend_from_slice(p.payload);
                    off
                }
            }
            None => {
                let off = b.data.len() as u32;
                b.data.extend_from_slice(p.payload);
                off
            }
        };
        b.items.push(Item::Packet(PacketRec {
            idx,
            ts_us,
            frame_len,
            transport: p.transport,
            src: p.src,
            dst: p.dst,
            vlan: p.vlan,
            tcp: p.tcp,
            payload_off: off,
            payload_cap: p.payload.len() as u32,
            payload_len: p.payload_len,
            frame_off,
            frame_cap,
            frame_wire,
            dlt,
            frame_ts_us,
            iface: self.iface,
        }));
        if b.items.len() >= BATCH_ITEMS || b.data.len() >= BATCH_BYTES {
            self.send(w, false);
        }
        self.since_flush += 1;
        if self.since_flush >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// A packet that made no flow packet still moves the timeline.
    pub fn skipped(&mut self, idx: u64) {
        self.last_idx = idx;
    }

    /// Packet time crossed a second boundary: every worker checks its timeouts here.
    pub fn tick(&mut self, ts_us: i64, idx: u64) {
        for b in &mut self.pending {
            b.items.push(Item::Tick { ts_us, idx });
        }
    }

    /// Sends every pending batch, even empty ones, so every worker's watermark advances.
    pub fn flush(&mut self) {
        self.since_flush = 0;
        for w in 0..self.senders.len() {
            self.send(w, false);
        }
    }

    /// Sends the final batches. Workers end all their flows when they see `end`.
    pub fn finish(&mut self) {
        self.last_idx = u64::MAX;
        for w in 0..self.senders.len() {
            // The end marker must arrive even in live mode.
            let replacement = Batch::default();
            let mut b = std::mem::replace(&mut self.pending[w], replacement);
            b.through = u64::MAX;
            b.end = true;
            if let Err(e) = self.senders[w].send(b) {
                self.dead_worker_packets += e.0.packets();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use xferwatch_wire::{Endpoint, Transport};

    fn udp(payload: &[u8]) -> L4Packet<'_> {
        let ep = |b, port| Endpoint {
            addr: Addr::v4([10, 0, 0, b]),
            port,
        };
        L4Packet {
            transport: Transport::Udp,
            src: ep(1, 1000),
            dst: ep(2, 69),
            vlan: 0,
            tcp: None,
            payload,
            payload_len: payload.len() as u32,
        }
    }

    /// A live dispatcher with one worker queue of one batch, filled: the next batch finds it full.
    fn full_live() -> (Dispatcher, Receiver<Batch>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (_keep, recycle) = crossbeam_channel::unbounded();
        let mut d = Dispatcher::new(Mode::Live, Arc::new(|_, _, _| 0), vec![tx], recycle);
        d.packet(0, 0, 60, &udp(b"a"), None);
        d.flush();
        (d, rx)
    }

    #[test]
    fn live_waits_for_a_worker_that_catches_up() {
        let (mut d, rx) = full_live();
        let drain = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut n = 0;
            while let Ok(b) = rx.recv_timeout(Duration::from_millis(500)) {
                n += b.packets();
            }
            n
        });
        d.packet(1, 0, 60, &udp(b"b"), None);
        d.flush();
        assert_eq!((d.dropped_batches, d.dropped_packets), (0, 0));
        assert_eq!(d.queue_waits, 1);
        assert!(d.queue_wait_us >= 20_000, "waited {} us", d.queue_wait_us);
        drop(d);
        assert_eq!(drain.join().unwrap(), 2, "both packets reach the worker");
    }

    #[test]
    fn live_drops_and_counts_past_the_wait_bound() {
        let (mut d, _rx) = full_live();
        let t0 = Instant::now();
        d.packet(1, 0, 60, &udp(b"b"), None);
        d.packet(2, 0, 60, &udp(b"c"), None);
        d.flush();
        let waited = t0.elapsed();
        assert_eq!((d.dropped_batches, d.dropped_packets), (1, 2));
        assert!(waited >= LIVE_QUEUE_WAIT, "{waited:?}");
        assert!(waited < LIVE_QUEUE_WAIT * 8, "{waited:?}");
        assert_eq!(d.dead_worker_packets, 0);
    }
}
