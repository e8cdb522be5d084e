//! IPv4/IPv6 fragment reassembly, bounded. Policy on overlaps: the first copy of a byte wins.
//! Limits (all counted when hit): datagrams in flight, datagrams in flight from one source address,
//! bytes per datagram (65,535 + headers), total buffered bytes, and a timeout in packet time.
//!
//! A full table makes room instead of refusing: the datagram that started longest ago is evicted
//! (a real datagram's fragments arrive within moments of each other, so the oldest incomplete one
//! is the likeliest never to complete). Junk from one address cannot push the others out: a source
//! holding its share ([`DefragLimits::max_per_source`]) has its new datagrams refused, counted.

use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use xferwatch_wire::{Addr, Fragment};

#[derive(Clone, Copy, Debug)]
pub struct DefragLimits {
    pub max_datagrams: usize,
    /// Datagrams in flight from one source address.
    pub max_per_source: usize,
    pub max_total_bytes: usize,
    pub timeout_us: i64,
}

/// Default share of the table one source address may hold.
pub const DEFAULT_MAX_PER_SOURCE: usize = 256;

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_datagrams: 4096,
            max_per_source: DEFAULT_MAX_PER_SOURCE,
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
    /// Incomplete datagrams evicted (oldest first) to admit new ones: the table or its memory was full.
    pub evicted: u64,
    /// New datagrams refused because their source already held `max_per_source`.
    pub source_refused: u64,
}

impl DefragStats {
    pub fn merge(&mut self, o: &DefragStats) {
        self.fragments += o.fragments;
        self.reassembled += o.reassembled;
        self.timeouts += o.timeouts;
        self.overlaps += o.overlaps;
        self.dropped_limit += o.dropped_limit;
        self.malformed += o.malformed;
        self.evicted += o.evicted;
        self.source_refused += o.source_refused;
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
    /// Its place in the age order (unique: stale entries of the order are told by it).
    serial: u64,
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
    /// Datagrams in the order they started, (serial, key); entries of datagrams gone are skipped.
    age: VecDeque<(u64, Key)>,
    serial: u64,
    per_source: FxHashMap<Addr, u32>,
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
            let held = self.per_source.get(&key.src).copied().unwrap_or(0);
            if held as usize >= self.limits.max_per_source {
                self.stats.source_refused += 1;
                return None;
            }
            while self.table.len() >= self.limits.max_datagrams.max(1) {
                if !self.evict_oldest() {
                    break;
                }
            }
            if self.age.len() > 2 * self.limits.max_datagrams + 1024 {
                self.compact_age();
            }
            self.serial += 1;
            self.age.push_back((self.serial, key));
            *self.per_source.entry(key.src).or_default() += 1;
            self.table.insert(
                key,
                Datagram {
                    first_us: now_us,
                    serial: self.serial,
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                },
            );
        }
        // The bytes this fragment adds to its datagram's buffer, made room for by evicting others.
        let grow = self
            .table
            .get(&key)
            .map_or(0, |d| (end as usize).saturating_sub(d.data.len()));
        while self.buffered + grow > self.limits.max_total_bytes {
            if self.oldest_other(&key).is_none() || !self.evict_oldest_except(&key) {
                break;
            }
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
        if d.have.len() >= MAX_PIECES || self.buffered + grow > self.limits.max_total_bytes {
            self.stats.dropped_limit += 1;
            self.remove(&key);
            return None;
        }
        if grow > 0 {
            self.buffered += grow;
            d.data.resize(end as usize, 0);
        }
        // First copy wins: write only the parts not already covered.
        let mut pos = start;
        let mut overlap = false;
        for i in 0..d.have.len() {
            let (hs, he) = d.have[i];
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
        // Join touching and overlapping ranges in place (no allocation per fragment).
        let mut w = 0;
        for r in 1..d.have.len() {
            let (s, e) = d.have[r];
            if s <= d.have[w].1 {
                d.have[w].1 = d.have[w].1.max(e);
            } else {
                w += 1;
                d.have[w] = (s, e);
            }
        }
        d.have.truncate(w + 1);
        let complete = matches!(d.total, Some(t) if d.have.len() == 1 && d.have[0] == (0, t));
        if !complete {
            return None;
        }
        let d = self.remove(&key)?;
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

    /// Takes a datagram out of the table and of its source's count, releasing its bytes.
    fn remove(&mut self, key: &Key) -> Option<Datagram> {
        let d = self.table.remove(key)?;
        self.buffered -= d.data.len().min(self.buffered);
        release_source(&mut self.per_source, key.src);
        Some(d)
    }

    /// The oldest live datagram's key, other than `except`; stale age entries on the way are dropped.
    fn oldest_other(&mut self, except: &Key) -> Option<Key> {
        let mut i = 0;
        while let Some(&(serial, key)) = self.age.get(i) {
            match self.table.get(&key) {
                Some(d) if d.serial == serial => {
                    if key != *except {
                        return Some(key);
                    }
                    i += 1;
                }
                _ => {
                    // Its datagram completed, timed out or was evicted.
                    self.age.remove(i);
                }
            }
        }
        None
    }

    fn evict_oldest_except(&mut self, except: &Key) -> bool {
        let Some(key) = self.oldest_other(except) else {
            return false;
        };
        self.remove(&key);
        self.stats.evicted += 1;
        true
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((serial, key)) = self.age.pop_front() {
            if self.table.get(&key).is_some_and(|d| d.serial == serial) {
                self.remove(&key);
                self.stats.evicted += 1;
                return true;
            }
        }
        false
    }

    /// Drops datagrams older than the timeout.
    pub fn expire(&mut self, now_us: i64) {
        let timeout = self.limits.timeout_us;
        let before = self.table.len();
        let mut freed = 0usize;
        let per_source = &mut self.per_source;
        self.table.retain(|key, d| {
            let keep = d.first_us + timeout > now_us;
            if !keep {
                freed += d.data.len();
                release_source(per_source, key.src);
            }
            keep
        });
        self.buffered -= freed.min(self.buffered);
        self.stats.timeouts += (before - self.table.len()) as u64;
        if self.age.len() > 2 * self.table.len() + 1024 {
            self.compact_age();
        }
    }

    /// Entries of datagrams gone stay in the age order until met; this keeps it within bounds.
    fn compact_age(&mut self) {
        let table = &self.table;
        self.age
            .retain(|(serial, key)| table.get(key).is_some_and(|d| d.serial == *serial));
    }
}

/// One datagram of `src` is gone.
fn release_source(per_source: &mut FxHashMap<Addr, u32>, src: Addr) {
    if let Some(n) = per_source.get_mut(&src) {
        *n -= 1;
        if *n == 0 {
            per_source.remove(&src);
        }
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
            header: &[],
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

    /// Regression (a table full of never-completed first fragments refused every new datagram
    /// for the whole timeout): the oldest is evicted, and the new datagram completes.
    #[test]
    fn full_table_evicts_the_oldest() {
        let mut d = Defrag::new(DefragLimits {
            max_datagrams: 100,
            ..Default::default()
        });
        let mut out = Vec::new();
        for i in 0..1000u32 {
            let mut f = frag(0, true, b"JJJJJJJJ");
            f.src = Addr::v4([198, 51, (i >> 8) as u8, i as u8]);
            f.id = i;
            assert!(d.add(&f, i as i64, &mut out).is_none());
        }
        assert_eq!(d.stats.evicted, 900);
        assert!(d.add(&frag(0, true, b"AAAAAAAA"), 1000, &mut out).is_none());
        assert!(d.add(&frag(8, false, b"BB"), 1001, &mut out).is_some());
        assert_eq!(out, b"AAAAAAAABB");
        assert_eq!(d.stats.evicted, 901);
        assert_eq!(d.table.len(), 99);
        assert!(d.age.len() <= 2 * 100 + 1024);
    }

    /// One source holds at most its share; the others are not refused.
    #[test]
    fn one_source_is_capped() {
        let mut d = Defrag::new(DefragLimits {
            max_datagrams: 100,
            max_per_source: 10,
            ..Default::default()
        });
        let mut out = Vec::new();
        for i in 0..50u32 {
            let mut f = frag(0, true, b"JJJJJJJJ");
            f.src = Addr::v4([198, 51, 100, 66]);
            f.id = i;
            d.add(&f, 0, &mut out);
        }
        assert_eq!((d.stats.source_refused, d.table.len()), (40, 10));
        assert!(d.add(&frag(0, true, b"AAAAAAAA"), 1, &mut out).is_none());
        assert!(d.add(&frag(8, false, b"BB"), 1, &mut out).is_some());
        // Its datagrams time out: its share is free again.
        d.expire(31_000_000);
        assert!(d.per_source.is_empty());
        let mut f = frag(0, true, b"JJJJJJJJ");
        f.src = Addr::v4([198, 51, 100, 66]);
        d.add(&f, 31_000_000, &mut out);
        assert_eq!(d.table.len(), 1);
    }

    /// Memory: datagrams that hold many bytes make room for a new one by eviction too.
    #[test]
    fn memory_cap_evicts_the_oldest() {
        let mut d = Defrag::new(DefragLimits {
            max_total_bytes: 200_000,
            ..Default::default()
        });
        let mut out = Vec::new();
        for i in 0..100u32 {
            // A last fragment far out: each datagram buffers about 60 KB.
            let mut f = frag(60_000, false, b"JJJJJJJJ");
            f.src = Addr::v4([198, 51, 100, i as u8]);
            d.add(&f, i as i64, &mut out);
            assert!(d.buffered <= 200_000);
        }
        assert!(d.stats.evicted >= 96);
        assert!(d.add(&frag(0, true, b"AAAAAAAA"), 200, &mut out).is_none());
        assert!(d.add(&frag(8, false, b"BB"), 201, &mut out).is_some());
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
        assert_eq!(d.stats.evicted, 1);
        d.expire(31_000_000);
        assert_eq!(d.stats.timeouts, 1);
        assert!(d
            .add(&frag(65_530, false, b"AAAAAAAAAA"), 0, &mut out)
            .is_none());
        assert_eq!(d.stats.malformed, 1);
    }
}
