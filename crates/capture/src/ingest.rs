//! One frame in: decode, defragment, count, dispatch. Shared by capture files and live interfaces.

use crate::defrag::{Defrag, DefragLimits};
use crate::dispatch::Dispatcher;
use xferwatch_wire::{decode, decode_l4, DecodeError, Decoded, Fragment, LinkType, Transport};

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
    /// Frames whose time was before the latest time seen (files out of order, clock steps): they
    /// were taken as happening at that latest time.
    pub time_clamped: u64,
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
        self.time_clamped += o.time_clamped;
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
    /// A reassembled datagram as one frame (its last fragment's link and IP headers, fixed up),
    /// when the workers keep frames.
    rebuilt: Vec<u8>,
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
            rebuilt: Vec::new(),
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
        let read_ts_us = ts_us;
        if ts_us < self.last_ts_us {
            self.stats.time_clamped += 1;
        }
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
        let keep = self.dispatcher.keeps_frames();
        // The frame the workers keep for evidence: the captured one, or for a reassembled
        // datagram one rebuilt from its last fragment (none when that cannot be done).
        let mut kept: Option<(&[u8], u32)> = keep.then_some((frame, wire_len));
        let decoded = match decode(link, frame, snapped) {
            Ok(Decoded::Fragment(f)) => match self.defrag.add(&f, ts_us, &mut self.whole) {
                Some(w) => {
                    let len = w.data.len();
                    if keep && rebuild_frame(frame, &f, w.data, &mut self.rebuilt) {
                        let at = self.rebuilt.len() - len;
                        let rebuilt = &self.rebuilt[..];
                        kept = Some((rebuilt, rebuilt.len() as u32));
                        decode_l4(w.protocol, w.src, w.dst, w.vlan, &rebuilt[at..], len)
                    } else {
                        kept = None;
                        decode_l4(w.protocol, w.src, w.dst, w.vlan, w.data, len)
                    }
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
                let kept = kept.map(|(bytes, wire)| crate::batch::FrameRef {
                    bytes,
                    wire_len: wire,
                    dlt: link.dlt(),
                    ts_us: read_ts_us,
                });
                self.dispatcher
                    .packet(idx, ts_us, frame.len() as u32, &p, kept);
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

/// Builds one frame for a reassembled datagram: the link header of the fragment that completed it,
/// its IP header with the fragmentation undone (IPv4: offset and flags cleared, length and checksum
/// set; IPv6: a leading fragment header removed), then the whole transport datagram. False when the
/// headers do not allow it (an IPv6 fragment header after other extensions, a datagram over 64 KiB).
fn rebuild_frame(frame: &[u8], f: &Fragment<'_>, data: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let hdr = f.header;
    let start = (hdr.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    if hdr.is_empty() || start > frame.len() || start + hdr.len() > frame.len() {
        return false;
    }
    let link = &frame[..start];
    match hdr[0] >> 4 {
        4 if hdr.len() >= 20 => {
            let total = hdr.len() + data.len();
            let Ok(total) = u16::try_from(total) else {
                return false;
            };
            out.extend_from_slice(link);
            let ip = out.len();
            out.extend_from_slice(hdr);
            out[ip + 2..ip + 4].copy_from_slice(&total.to_be_bytes());
            out[ip + 6] = 0;
            out[ip + 7] = 0;
            out[ip + 10] = 0;
            out[ip + 11] = 0;
            let sum = ipv4_checksum(&out[ip..ip + hdr.len()]);
            out[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
        }
        6 if hdr.len() >= 48 && hdr[6] == 44 => {
            let plen = hdr.len() - 48 + data.len();
            let Ok(plen) = u16::try_from(plen) else {
                return false;
            };
            out.extend_from_slice(link);
            let ip = out.len();
            out.extend_from_slice(&hdr[..40]);
            out[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
            out[ip + 6] = hdr[40];
            out.extend_from_slice(&hdr[48..]);
        }
        _ => return false,
    }
    out.extend_from_slice(data);
    true
}

/// The Internet checksum of an IPv4 header whose checksum field is zero.
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in h.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xferwatch_wire::{decode, Decoded, LinkType};

    fn ipv4_fragment(offset8: u16, more: bool, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let total = (20 + body.len()) as u16;
        let flags = if more { 0x2000 } else { 0 } | offset8;
        let mut ip = vec![
            0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6..8].copy_from_slice(&flags.to_be_bytes());
        let sum = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn a_reassembled_ipv4_datagram_becomes_one_valid_frame() {
        // UDP 1000 -> 69, 40 payload bytes, in a 32-byte and a 16-byte fragment.
        let mut udp = vec![0x03, 0xe8, 0x00, 0x45, 0x00, 48, 0, 0];
        udp.extend((0..40u8).map(|i| b'a' + i % 26));
        let first = ipv4_fragment(0, true, &udp[..32]);
        let last = ipv4_fragment(4, false, &udp[32..]);
        let Ok(Decoded::Fragment(f)) = decode(LinkType::Ethernet, &last, false) else {
            panic!("a fragment");
        };
        assert_eq!(f.header.len(), 20);
        let mut out = Vec::new();
        assert!(rebuild_frame(&last, &f, &udp, &mut out));
        assert_eq!(out.len(), 14 + 20 + 48);
        assert_eq!(&out[..14], &first[..14]);
        // Length set, fragmentation cleared, checksum valid (sums to 0xffff).
        assert_eq!(u16::from_be_bytes([out[16], out[17]]), 68);
        assert_eq!(&out[20..22], &[0, 0]);
        assert_eq!(ipv4_checksum(&out[14..34]), 0);
        match decode(LinkType::Ethernet, &out, false) {
            Ok(Decoded::Packet(p)) => {
                assert_eq!(p.dst.port, 69);
                assert_eq!(p.payload, &udp[8..]);
            }
            other => panic!("not a packet: {other:?}"),
        }
    }

    #[test]
    fn what_cannot_be_rebuilt_is_refused() {
        let body = [0u8; 16];
        let frame = ipv4_fragment(2, false, &body);
        let Ok(Decoded::Fragment(f)) = decode(LinkType::Ethernet, &frame, false) else {
            panic!("a fragment");
        };
        let mut out = Vec::new();
        // Over 64 KiB in all.
        assert!(!rebuild_frame(&frame, &f, &vec![0u8; 70_000], &mut out));
        // A header that is not in the frame.
        let other = Fragment {
            header: &body[..],
            ..f
        };
        assert!(!rebuild_frame(&frame, &other, &body, &mut out));
    }
}
