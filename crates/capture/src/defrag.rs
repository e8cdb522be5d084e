//! IPv4/IPv6 fragment reassembly, bounded. Policy on overlaps: the first copy of a byte wins.
//! Limits (all counted when hit): datagrams in flight, bytes per datagram (65,535 + headers), total
//! buffered bytes, and a timeout in packet time.

use rustc_hash::FxHashMap;
use xferwatch_wire::{Addr, Fragment};

#[derive(Clone, Copy, Debug)]
pub struct DefragLimits {
    pub max_datagrams: usize,
    pub max_total_bytes: usize,
    pub timeout_us: i64,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_datagrams: 4096,
            max_total_bytes: 32 << 20,
            timeout_us: 30_000_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct DefragStats {
    pub fragments: u64,
    pub reassembled: u64,
    pub timeouts: u64,
    pub overlaps: u64,
    pub dropped_limit: u64,
    pub malformed: u64,
}

impl DefragStats {
    pub fn merge(&mut self, o: &DefragStats) {
        self.fragments += o.fragments;
        self.reassembled += o.reassembled;
        self.timeouts += o.timeouts;
        self.overlaps += o.overlaps;
        self.dropped_limit += o.dropped_limit;
        self.malformed += o.malformed;
    }
}

#[derive(Hash, PartialEq, Eq, Clone, Copy)]
struct Key {
    src: Addr,
    dst: Addr,
    id: u32,
    protocol: u8,
    vlan: u16,
}

struct Datagram {
    first_us: i64,
    data: Vec<u8>,
    /// Covered byte ranges, sorted and disjoint.
    have: Vec<(u32, u32)>,
    total: Option<u32>,
}

/// Largest reassembled IP payload accepted.
const MAX_DATAGRAM: u32 = 65_535;
const MAX_PIECES: usize = 64;

#[derive(Default)]
pub struct Defrag {
    limits: DefragLimits,
    table: FxHashMap<Key, Datagram>,
    buffered: usize,
    pub stats: DefragStats,
}

/// A reassembled datagram's transport payload and addressing.
pub struct Whole<'a> {
    pub src: Addr,
    pub dst: Addr,
    pub vlan: u16,
    pub protocol: u8,
    pub data: &'a [u8],
}

impl Defrag {
    pub fn new(limits: DefragLimits) -> Self {
        Defrag {
            limits,
            ..Default::default()
        }
    }

    /// Adds a fragment; when it completes a datagram, the whole payload is written to `out` and returned.
    pub fn add<'o>(
        &mut self,
        f: &Fragment<'_>,
        now_us: i64,
        out: &'o mut Vec<u8>,
    ) -> Option<Whole<'o>> {
        self.stats.fragments += 1;
        let start = f.offset;
        let end = start.saturating_add(f.data.len() as u32);
        if end > MAX_DATAGRAM || (f.more && !f.data.len().is_multiple_of(8)) {
            self.stats.malformed += 1;
            return None;
        }
        let key = Key {
            src: f.src,
            dst: f.dst,
            id: f.id,
            protocol: f.protocol,
            vlan: f.vlan,
        };
        if !self.table.contains_key(&key) {
            if self.table.len() >= self.limits.max_datagrams
                || self.buffered + f.data.len() > self.limits.max_total_bytes
            {
                self.stats.dropped_limit += 1;
                return None;
            }
            self.table.insert(
                key,
                Datagram {
                    first_us: now_us,
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                },
            );
        }
        let d = self.table.get_mut(&key)?;
        if !f.more {
            match d.total {
                Some(t) if t != end => {
                    self.stats.malformed += 1;
                }
                _ => d.total = Some(end),
            }
        }
        if d.have.len() >= MAX_PIECES || self.buffered + f.data.len() > self.limits.max_total_bytes
        {
            self.stats.dropped_limit += 1;
            let gone = self.table.remove(&key).map(|d| d.data.len()).unwrap_or(0);
            self.buffered -= gone.min(self.buffered);
            return None;
        }
        if d.data.len() < end as usize {
            self.buffered += end as usize - d.data.len();
            d.data.resize(end as usize, 0);
        }
        // First copy wins: write only the parts not already covered.
        let mut pos = start;
        let mut overlap = false;
        let have = d.have.clone();
        for &(hs, he) in &have {
            if he <= pos || hs >= end {
                continue;
            }
            overlap = true;
            if hs > pos {
                let a = (pos - start) as usize;
                let b = (hs - start) as usize;
                d.data[pos as usize..hs as usize].copy_from_slice(&f.data[a..b]);
            }
            pos = pos.max(he);
        }
        if pos < end {
            let a = (pos - start) as usize;
            d.data[pos as usize..end as usize].copy_from_slice(&f.data[a..]);
        }
        if overlap {
            self.stats.overlaps += 1;
        }
        d.have.push((start, end));
        d.have.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(d.have.len());
        for &(s, e) in &d.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        d.have = merged;
        let complete = matches!(d.total, Some(t) if d.have.len() == 1 && d.have[0] == (0, t));
        if !complete {
            return None;
        }
        let d = self.table.remove(&key)?;
        self.buffered -= d.data.len().min(self.buffered);
        self.stats.reassembled += 1;
        out.clear();
        out.extend_from_slice(&d.data);
        Some(Whole {
            src: f.src,
            dst: f.dst,
            vlan: f.vlan,
            protocol: f.protocol,
            data: out,
        })
    }

    /// Drops datagrams older than the timeout.
    pub fn expire(&mut self, now_us: i64) {
        let timeout = self.limits.timeout_us;
        let before = self.table.len();
        let mut freed = 0usize;
        self.table.retain(|_, d| {
            let keep = d.first_us + timeout > now_us;
            if !keep {
                freed += d.data.len();
            }
            keep
        });
        self.buffered -= freed.min(self.buffered);
        self.stats.timeouts += (before - self.table.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(offset: u32, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            src: Addr::v4([1, 1, 1, 1]),
            dst: Addr::v4([2, 2, 2, 2]),
            vlan: 0,
            protocol: 17,
            id: 7,
            offset,
            more,
            data,
        }
    }

    #[test]
    fn out_of_order_and_overlap_first_wins() {
        let mut d = Defrag::new(DefragLimits::default());
        let mut out = Vec::new();
        assert!(d.add(&frag(8, false, b"BBBB"), 0, &mut out).is_none());
        assert!(d.add(&frag(0, true, b"AAAAAAAA"), 0, &mut out).is_some());
        assert_eq!(out, b"AAAAAAAABBBB");
        assert!(d.add(&frag(0, true, b"CCCCCCCC"), 0, &mut out).is_none());
        assert!(d.add(&frag(0, true, b"CCCCCCCC"), 0, &mut out).is_none());
        assert!(d.add(&frag(4, false, b"DDDDDDDD"), 0, &mut out).is_some());
        assert_eq!(out, b"CCCCCCCCDDDD");
        assert_eq!(d.stats.overlaps, 2);
    }

    #[test]
    fn timeout_and_limits() {
        let mut d = Defrag::new(DefragLimits {
            max_datagrams: 1,
            ..Default::default()
        });
        let mut out = Vec::new();
        d.add(&frag(0, true, b"AAAAAAAA"), 0, &mut out);
        let mut other = frag(0, true, b"AAAAAAAA");
        other.id = 8;
        d.add(&other, 0, &mut out);
        assert_eq!(d.stats.dropped_limit, 1);
        d.expire(31_000_000);
        assert_eq!(d.stats.timeouts, 1);
        assert!(d
            .add(&frag(65_530, false, b"AAAAAAAAAA"), 0, &mut out)
            .is_none());
        assert_eq!(d.stats.malformed, 1);
    }
}
