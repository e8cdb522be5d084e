//! One frame in: decode, defragment, count, dispatch. Shared by capture files and live interfaces.

use crate::defrag::{Defrag, DefragLimits};
use crate::dispatch::Dispatcher;
use xferwatch_wire::{decode, decode_l4, DecodeError, Decoded, LinkType, Transport};

#[derive(Clone, Debug, Default)]
pub struct IngestStats {
    pub frames: u64,
    pub bytes: u64,
    pub packets: u64,
    pub ipv4: u64,
    pub ipv6: u64,
    pub tcp: u64,
    pub udp: u64,
    pub vlan: u64,
    /// Frames that made no flow packet, by reason ([`DecodeError::index`]).
    pub decode: [u64; DecodeError::ALL.len()],
}

impl IngestStats {
    pub fn invalid(&self) -> u64 {
        DecodeError::ALL
            .iter()
            .filter(|e| e.is_error())
            .map(|e| self.decode[e.index()])
            .sum()
    }
    pub fn merge(&mut self, o: &IngestStats) {
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.packets += o.packets;
        self.ipv4 += o.ipv4;
        self.ipv6 += o.ipv6;
        self.tcp += o.tcp;
        self.udp += o.udp;
        self.vlan += o.vlan;
        for (a, b) in self.decode.iter_mut().zip(o.decode.iter()) {
            *a += b;
        }
    }
}

pub struct Ingest {
    pub dispatcher: Dispatcher,
    pub defrag: Defrag,
    pub stats: IngestStats,
    next_idx: u64,
    last_tick_sec: Option<i64>,
    last_ts_us: i64,
    first_ts_us: Option<i64>,
    whole: Vec<u8>,
}

impl Ingest {
    pub fn new(dispatcher: Dispatcher, limits: DefragLimits) -> Self {
        Ingest {
            dispatcher,
            defrag: Defrag::new(limits),
            stats: IngestStats::default(),
            next_idx: 0,
            last_tick_sec: None,
            last_ts_us: 0,
            first_ts_us: None,
            whole: Vec::new(),
        }
    }

    pub fn last_ts_us(&self) -> i64 {
        self.last_ts_us
    }

    pub fn first_ts_us(&self) -> i64 {
        self.first_ts_us.unwrap_or(0)
    }

    /// Processes one captured frame. Time never runs backwards: an older timestamp (files out of
    /// order, clock steps) is treated as the latest time seen, so timeouts stay monotonic.
    pub fn frame(&mut self, link: LinkType, ts_us: i64, frame: &[u8], wire_len: u32) {
        let idx = self.next_idx;
        self.next_idx += 1;
        let ts_us = ts_us.max(self.last_ts_us);
        self.first_ts_us.get_or_insert(ts_us);
        self.last_ts_us = ts_us;
        let sec = ts_us.div_euclid(1_000_000);
        if self.last_tick_sec != Some(sec) {
            if self.last_tick_sec.is_some() {
                self.dispatcher.tick(ts_us, idx);
                self.defrag.expire(ts_us);
            }
            self.last_tick_sec = Some(sec);
        }
        self.stats.frames += 1;
        self.stats.bytes += frame.len() as u64;
        let snapped = (wire_len as usize) > frame.len();
        let decoded = match decode(link, frame, snapped) {
            Ok(Decoded::Fragment(f)) => match self.defrag.add(&f, ts_us, &mut self.whole) {
                Some(w) => {
                    let len = w.data.len();
                    decode_l4(w.protocol, w.src, w.dst, w.vlan, w.data, len)
                }
                None => {
                    self.dispatcher.skipped(idx);
                    return;
                }
            },
            other => other,
        };
        match decoded {
            Ok(Decoded::Packet(p)) => {
                self.stats.packets += 1;
                if p.src.addr.is_v6() {
                    self.stats.ipv6 += 1;
                } else {
                    self.stats.ipv4 += 1;
                }
                match p.transport {
                    Transport::Tcp => self.stats.tcp += 1,
                    Transport::Udp => self.stats.udp += 1,
                }
                if p.vlan != 0 {
                    self.stats.vlan += 1;
                }
                self.dispatcher.packet(idx, ts_us, frame.len() as u32, &p);
            }
            Ok(Decoded::Fragment(_)) => {
                // A fragment inside a reassembled datagram (nested tunnels): not followed further.
                self.stats.decode[DecodeError::IpMalformed.index()] += 1;
                self.dispatcher.skipped(idx);
            }
            Err(e) => {
                self.stats.decode[e.index()] += 1;
                self.dispatcher.skipped(idx);
            }
        }
    }

    /// Live capture: time moved on without packets (wall clock). Ticks the workers once a second so
    /// idle flows time out.
    pub fn advance(&mut self, now_us: i64) {
        if now_us <= self.last_ts_us {
            return;
        }
        let sec = now_us.div_euclid(1_000_000);
        if self.last_tick_sec != Some(sec) {
            let idx = self.next_idx.saturating_sub(1);
            self.dispatcher.tick(now_us, idx);
            self.defrag.expire(now_us);
            self.last_tick_sec = Some(sec);
            self.last_ts_us = now_us;
        }
    }

    pub fn finish(&mut self) {
        self.dispatcher.finish();
    }
}
