//! Counts the bytes of one TCP direction once per sequence range: retransmissions and overlaps add
//! nothing, out-of-order segments add their new bytes, and holes that never fill are detected.
//!
//! Sequence numbers are unwrapped into 64-bit stream positions, so streams beyond 4 GiB count right.
//! The set of covered ranges is a fixed array of [`MAX_SEQ_RANGES`]; when a segment would need more,
//! the nearest ranges are joined, the bytes in between are not counted and the count stops being exact.

/// Most disjoint covered ranges remembered per direction (holes + 1).
pub const MAX_SEQ_RANGES: usize = 6;

#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    started: bool,
    last_seq: u32,
    last_pos: u64,
    /// Position where the stream's data must start (ISN + 1), when the SYN was seen.
    expected_start: Option<u64>,
    /// The covered ranges, `len` of them: the first one here while it is the only one (most
    /// streams never have a hole), all of them in `spill` once a hole appeared (and from then on).
    one: (u64, u64),
    spill: Option<Box<[(u64, u64); MAX_SEQ_RANGES]>>,
    len: u8,
    max_peer_ack: u64,
    overflowed: bool,
}

/// Positions start at 2^40 so that data a little before the first seen segment stays representable.
const ORIGIN: u64 = 1 << 40;

impl SeqTracker {
    fn pos(&mut self, seq: u32) -> u64 {
        if !self.started {
            self.started = true;
            self.last_seq = seq;
            self.last_pos = ORIGIN;
            return ORIGIN;
        }
        let delta = seq.wrapping_sub(self.last_seq) as i32 as i64;
        (self.last_pos as i64 + delta).max(0) as u64
    }

    fn advance(&mut self, seq: u32, pos: u64) {
        if pos > self.last_pos {
            self.last_pos = pos;
            self.last_seq = seq;
        }
    }

    /// A SYN (or SYN+ACK) with initial sequence number `isn`: data starts at `isn + 1`.
    pub fn on_syn(&mut self, isn: u32) {
        if self.expected_start.is_some() {
            return;
        }
        let data_seq = isn.wrapping_add(1);
        let p = self.pos(data_seq);
        self.advance(data_seq, p);
        self.expected_start = Some(p);
    }

    /// The sequence number of the stream's first data byte (ISN + 1), when the SYN was seen.
    pub fn data_start_seq(&self) -> Option<u32> {
        let p = self.expected_start?;
        Some(
            self.last_seq
                .wrapping_add(p.wrapping_sub(self.last_pos) as u32),
        )
    }

    /// A segment carrying `len` payload bytes at `seq`; returns how many of them are new.
    pub fn on_data(&mut self, seq: u32, len: u32) -> u64 {
        if len == 0 {
            return 0;
        }
        let s = self.pos(seq);
        let e = s + len as u64;
        let end_seq = seq.wrapping_add(len);
        self.advance(end_seq, e);
        self.insert(s, e)
    }

    /// The peer acknowledged up to `ack`: bytes below it were sent, so if we never saw them there is a hole.
    pub fn on_peer_ack(&mut self, ack: u32) {
        if !self.started {
            return;
        }
        let delta = ack.wrapping_sub(self.last_seq) as i32 as i64;
        let p = (self.last_pos as i64 + delta).max(0) as u64;
        // Only believe acks near what we have seen: a wild value is a broken stack, not evidence.
        if p <= self.last_pos + (1 << 30) && p > self.max_peer_ack {
            self.max_peer_ack = p;
        }
    }

    fn ranges(&self) -> &[(u64, u64)] {
        let n = self.len as usize;
        match self.spill.as_deref() {
            Some(b) => &b[..n.min(MAX_SEQ_RANGES)],
            None => &std::slice::from_ref(&self.one)[..n.min(1)],
        }
    }

    fn ranges_mut(&mut self) -> &mut [(u64, u64)] {
        let n = self.len as usize;
        match self.spill.as_deref_mut() {
            Some(b) => &mut b[..n.min(MAX_SEQ_RANGES)],
            None => &mut std::slice::from_mut(&mut self.one)[..n.min(1)],
        }
    }

    fn insert(&mut self, mut s: u64, mut e: u64) -> u64 {
        let n = self.len as usize;
        // Fast path: in-order append to the last range.
        if let Some(last) = self.ranges_mut().last_mut() {
            if last.1 == s {
                last.1 = e;
                return e - s;
            }
        }
        let mut new_bytes = e - s;
        // Subtract overlaps with existing ranges, then merge everything that touches [s, e).
        let mut i = 0;
        let mut out: [(u64, u64); MAX_SEQ_RANGES] = [(0, 0); MAX_SEQ_RANGES];
        let mut m = 0usize;
        let mut placed = false;
        while i < n {
            let (rs, re) = self.ranges()[i];
            if re < s {
                out[m] = (rs, re);
                m += 1;
            } else if rs > e {
                if !placed {
                    out[m] = (s, e);
                    m += 1;
                    placed = true;
                }
                if m == MAX_SEQ_RANGES {
                    self.overflowed = true;
                    out[m - 1].1 = re; // join: bytes in between are lost to the count
                } else {
                    out[m] = (rs, re);
                    m += 1;
                }
            } else {
                let ov = re.min(e).saturating_sub(rs.max(s));
                new_bytes -= ov.min(new_bytes);
                s = s.min(rs);
                e = e.max(re);
            }
            i += 1;
        }
        if !placed {
            if m == MAX_SEQ_RANGES {
                self.overflowed = true;
                out[m - 1].1 = e;
            } else {
                out[m] = (s, e);
                m += 1;
            }
        }
        match self.spill.as_mut() {
            Some(b) => **b = out,
            None if m <= 1 => self.one = out[0],
            None => self.spill = Some(Box::new(out)),
        }
        self.len = m as u8;
        new_bytes
    }

    /// True when every byte of the stream between its first and last seen byte was seen once.
    pub fn exact(&self) -> bool {
        if self.overflowed || self.len > 1 {
            return false;
        }
        if self.len == 1 {
            let (s, e) = self.ranges()[0];
            if let Some(x) = self.expected_start {
                if s > x {
                    return false;
                }
            }
            // The peer acknowledged data (beyond a FIN's one sequence number) we never saw.
            if self.max_peer_ack > e + 1 {
                return false;
            }
        } else if let Some(x) = self.expected_start {
            if self.max_peer_ack > x + 1 {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Obviously-correct slow model: a set of covered positions.
    struct Model(std::collections::BTreeSet<u64>);

    #[test]
    fn in_order_retransmit_and_reorder() {
        let mut t = SeqTracker::default();
        t.on_syn(1000);
        assert_eq!(t.on_data(1001, 100), 100);
        assert_eq!(t.on_data(1001, 100), 0); // retransmission
        assert_eq!(t.on_data(1201, 50), 50); // out of order, hole 1101..1201
        assert!(!t.exact());
        assert_eq!(t.on_data(1051, 200), 100); // overlaps both sides, fills the hole
        assert!(t.exact());
    }

    #[test]
    fn wraps_around_sequence_space() {
        let mut t = SeqTracker::default();
        t.on_syn(u32::MAX - 10);
        let mut seq = (u32::MAX - 10).wrapping_add(1);
        let mut total = 0;
        for _ in 0..10 {
            total += t.on_data(seq, 1000);
            seq = seq.wrapping_add(1000);
        }
        assert_eq!(total, 10_000);
        assert!(t.exact());
    }

    #[test]
    fn data_start_is_remembered_across_wrap_and_data() {
        let mut t = SeqTracker::default();
        assert_eq!(t.data_start_seq(), None);
        t.on_data(500, 10);
        assert_eq!(t.data_start_seq(), None, "no SYN seen");
        let mut t = SeqTracker::default();
        t.on_syn(u32::MAX - 2);
        assert_eq!(t.data_start_seq(), Some(u32::MAX - 1));
        t.on_data(u32::MAX - 1, 5000);
        t.on_data(4000, 100);
        assert_eq!(t.data_start_seq(), Some(u32::MAX - 1));
    }

    #[test]
    fn randomized_against_model() {
        let mut x: u64 = 42;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..300 {
            let mut t = SeqTracker::default();
            let mut model = Model(Default::default());
            let isn = rnd(u32::MAX as u64) as u32;
            t.on_syn(isn);
            let mut counted = 0u64;
            for _ in 0..40 {
                let off = rnd(3000);
                let len = 1 + rnd(300);
                counted += t.on_data(isn.wrapping_add(1).wrapping_add(off as u32), len as u32);
                for p in off..off + len {
                    model.0.insert(p);
                }
            }
            if !t.overflowed {
                assert_eq!(counted, model.0.len() as u64);
                let contiguous = model.0.iter().next() == Some(&0)
                    && *model.0.iter().last().unwrap() == model.0.len() as u64 - 1;
                assert_eq!(t.exact(), contiguous);
            } else {
                assert!(counted <= model.0.len() as u64);
                assert!(!t.exact());
            }
        }
    }

    #[test]
    fn ack_beyond_seen_data_is_a_hole() {
        let mut t = SeqTracker::default();
        t.on_syn(0);
        t.on_data(1, 100);
        t.on_peer_ack(102); // FIN
        assert!(t.exact());
        t.on_peer_ack(5000);
        assert!(!t.exact());
    }
}
