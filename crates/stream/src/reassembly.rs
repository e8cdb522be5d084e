//! In-order delivery of one TCP direction's first bytes (up to a depth), for fingerprints and parsers.
//!
//! Policy: the first copy of a byte wins (later overlapping data is ignored, counted). Out-of-order
//! segments wait in a bounded list ([`MAX_PENDING_SEGMENTS`]); a hole that never fills is skipped when
//! the peer acknowledges past it or the caller gives up, and is counted as a gap. Memory is bounded by
//! the depth per direction and by a per-worker budget that the caller passes in ([`Budget`]).

/// Out-of-order segments kept waiting per direction.
pub const MAX_PENDING_SEGMENTS: usize = 16;

/// Bytes a worker may hold in reassembly buffers, shared by all its flows.
#[derive(Debug)]
pub struct Budget {
    pub limit: usize,
    pub used: usize,
    /// Times a segment was not buffered because the budget was exhausted.
    pub memcap_hits: u64,
    pub gaps: u64,
    pub overlaps: u64,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Budget {
            limit,
            used: 0,
            memcap_hits: 0,
            gaps: 0,
            overlaps: 0,
        }
    }
    /// Reserves `n` bytes; false (and a counted memcap hit) when the budget is spent.
    pub fn try_take(&mut self, n: usize) -> bool {
        self.take(n)
    }
    /// Returns `n` bytes reserved with [`Budget::try_take`].
    pub fn release_bytes(&mut self, n: usize) {
        self.give(n)
    }
    fn take(&mut self, n: usize) -> bool {
        if self.used + n > self.limit {
            self.memcap_hits += 1;
            false
        } else {
            self.used += n;
            true
        }
    }
    fn give(&mut self, n: usize) {
        self.used -= n.min(self.used);
    }
}

#[derive(Debug, Default)]
pub struct Reassembler {
    /// Sequence number of the next in-order byte, once known.
    next: Option<u32>,
    /// Delivered in-order prefix (up to `depth`).
    data: Vec<u8>,
    pending: Vec<(u32, Vec<u8>)>,
    /// The depth was reached or buffering stopped: nothing more is delivered.
    done: bool,
    /// Buffers were given back for good.
    released: bool,
    pub gap: bool,
    /// Where in `data` the bytes after the last skipped hole begin (a streaming parser resyncs there).
    gap_at: Option<usize>,
    /// Sequence number up to which bytes were skipped on purpose (a parser did not need them):
    /// segments below it are expected, not overlaps.
    skip_floor: Option<u32>,
}

fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Reassembler {
    /// An empty reassembler (usable in constants).
    pub const fn new() -> Self {
        Reassembler {
            next: None,
            data: Vec::new(),
            pending: Vec::new(),
            done: false,
            released: false,
            gap: false,
            gap_at: None,
            skip_floor: None,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Drops the first `n` delivered bytes (a parser has used them), making room for more: a parser
    /// that consumes what it reads can follow a stream of any length within `depth` of buffer.
    pub fn consume(&mut self, n: usize, depth: usize, budget: &mut Budget) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
        self.gap_at = self.gap_at.map(|g| g.saturating_sub(n));
        budget.give(n);
        if self.done && self.data.len() < depth && self.next.is_some() && !self.released {
            self.done = false;
        }
    }

    /// Where a hole was skipped in the delivered bytes, once: the caller feeds its parser the bytes
    /// before it, tells the parser about the gap, then goes on.
    pub fn take_gap(&mut self) -> Option<usize> {
        self.gap_at.take()
    }

    /// Skips the next `n` bytes of the stream without buffering them (a parser knows it does not need
    /// them: SMB WRITE data). Only when everything delivered was consumed; returns the bytes skipped.
    pub fn skip(&mut self, n: u64, depth: usize, budget: &mut Budget) -> u64 {
        let Some(next) = self.next else { return 0 };
        if !self.data.is_empty() || self.released || n == 0 {
            return 0;
        }
        let n = n.min(1 << 30) as u32;
        let to = next.wrapping_add(n);
        self.next = Some(to);
        self.skip_floor = Some(to);
        self.done = false;
        // Segments waiting beyond the skipped range may now be in order.
        self.drain_pending(depth, budget);
        n as u64
    }

    /// Data starts at `isn + 1`.
    pub fn on_syn(&mut self, isn: u32) {
        if self.next.is_none() {
            self.next = Some(isn.wrapping_add(1));
        }
    }

    /// Adds a segment's captured bytes. Returns true when the in-order prefix grew.
    pub fn segment(&mut self, seq: u32, bytes: &[u8], depth: usize, budget: &mut Budget) -> bool {
        if self.done || bytes.is_empty() {
            return false;
        }
        let next = *self.next.get_or_insert(seq);
        let grew = if seq_lt(next, seq) {
            // A hole before this segment: keep it for later, bounded.
            if self.pending.len() >= MAX_PENDING_SEGMENTS || !budget.take(bytes.len()) {
                budget.memcap_hits += (self.pending.len() >= MAX_PENDING_SEGMENTS) as u64;
                return false;
            }
            self.pending.push((seq, bytes.to_vec()));
            false
        } else {
            self.append(seq, bytes, depth, budget)
        };
        grew | self.drain_pending(depth, budget)
    }

    fn append(&mut self, seq: u32, bytes: &[u8], depth: usize, budget: &mut Budget) -> bool {
        let Some(next) = self.next else { return false };
        let skip = next.wrapping_sub(seq) as usize;
        let expected = self.skip_floor.is_some_and(|f| seq_lt(seq, f));
        if skip >= bytes.len() {
            if skip < (1 << 30) && !expected {
                budget.overlaps += 1;
            }
            return false;
        }
        if skip > 0 && !expected {
            budget.overlaps += 1;
        }
        let room = depth.saturating_sub(self.data.len());
        let new = &bytes[skip..];
        let n = new.len().min(room);
        if n == 0 || !budget.take(n) {
            self.finish(budget);
            return false;
        }
        self.data.extend_from_slice(&new[..n]);
        self.next = Some(next.wrapping_add(new.len() as u32));
        if self.data.len() >= depth {
            self.finish_pending(budget);
            self.done = true;
        }
        true
    }

    fn drain_pending(&mut self, depth: usize, budget: &mut Budget) -> bool {
        let mut grew = false;
        loop {
            let Some(next) = self.next else { return grew };
            let Some(i) = self.pending.iter().position(|(s, _)| !seq_lt(next, *s)) else {
                return grew;
            };
            let (s, b) = self.pending.swap_remove(i);
            budget.give(b.len());
            grew |= self.append(s, &b, depth, budget);
        }
    }

    /// The peer acknowledged `ack`: a hole below it will never fill, so skip to the next pending segment.
    pub fn on_peer_ack(&mut self, ack: u32, depth: usize, budget: &mut Budget) -> bool {
        let Some(next) = self.next else { return false };
        if self.done || !seq_lt(next, ack) || self.pending.is_empty() {
            return false;
        }
        self.skip_gap(depth, budget)
    }

    /// Jumps over the hole to the lowest pending segment.
    pub fn skip_gap(&mut self, depth: usize, budget: &mut Budget) -> bool {
        let Some(lowest) = self.pending.iter().map(|(s, _)| *s).min_by(|a, b| {
            if seq_lt(*a, *b) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        }) else {
            return false;
        };
        self.gap = true;
        self.gap_at = Some(self.data.len());
        budget.gaps += 1;
        self.next = Some(lowest);
        self.drain_pending(depth, budget)
    }

    fn finish_pending(&mut self, budget: &mut Budget) {
        for (_, b) in self.pending.drain(..) {
            budget.give(b.len());
        }
    }

    /// Stops buffering and returns the memory: the flow needs no more bytes.
    pub fn finish(&mut self, budget: &mut Budget) {
        self.finish_pending(budget);
        budget.give(self.data.len());
        self.data = Vec::new();
        self.done = true;
        self.released = true;
    }

    /// Returns the memory of a flow that is going away.
    pub fn release(&mut self, budget: &mut Budget) {
        self.finish(budget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_out_of_order_overlap() {
        let mut b = Budget::new(1 << 20);
        let mut r = Reassembler::default();
        r.on_syn(99);
        assert!(r.segment(100, b"hello ", 100, &mut b));
        assert!(!r.segment(112, b"!!", 100, &mut b)); // hole
        assert!(r.segment(106, b"world!", 100, &mut b)); // fills, drains pending
        assert_eq!(r.data(), b"hello world!!!");
        assert!(!r.segment(100, b"HELLO", 100, &mut b)); // first copy wins
        assert_eq!(r.data(), b"hello world!!!");
        assert_eq!(b.used, 14);
        r.release(&mut b);
        assert_eq!(b.used, 0);
    }

    #[test]
    fn gap_skipped_on_ack_and_depth_cap() {
        let mut b = Budget::new(1 << 20);
        let mut r = Reassembler::default();
        r.on_syn(0);
        r.segment(1, b"ab", 8, &mut b);
        r.segment(10, b"xyz", 8, &mut b);
        assert!(r.on_peer_ack(13, 8, &mut b));
        assert!(r.gap);
        assert_eq!(r.data(), b"abxyz"); // the hole is skipped, not filled
        r.segment(13, b"0123456789", 8, &mut b);
        assert!(r.is_done());
        assert_eq!(r.data().len(), 8);
    }

    #[test]
    fn randomized_against_model() {
        // Segments of one stream, shuffled with duplicates: the prefix must equal the stream.
        let stream: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut x: u64 = 7;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut complete = 0;
        for _ in 0..200 {
            let mut segs = Vec::new();
            let mut at = 0usize;
            while at < stream.len() {
                let len = 1 + rnd(200) as usize;
                let end = (at + len).min(stream.len());
                segs.push((at, end));
                at = end;
            }
            // local shuffles (bounded reordering) and duplicates
            for i in 0..segs.len() {
                let j = (i + rnd(4) as usize).min(segs.len() - 1);
                segs.swap(i, j);
            }
            let dups: Vec<_> = segs.iter().step_by(5).cloned().collect();
            segs.extend(dups);
            let mut b = Budget::new(1 << 20);
            let mut r = Reassembler::default();
            r.on_syn(u32::MAX - 100);
            for (s, e) in segs {
                r.segment(
                    (u32::MAX - 99).wrapping_add(s as u32),
                    &stream[s..e],
                    4096,
                    &mut b,
                );
            }
            assert!(stream.starts_with(r.data()));
            if b.memcap_hits == 0 {
                assert_eq!(
                    r.data().len(),
                    stream.len(),
                    "nothing dropped, so the stream is complete"
                );
                complete += 1;
            }
        }
        assert!(
            complete > 100,
            "most shuffles fit in the pending list ({complete})"
        );
    }

    #[test]
    fn budget_is_respected() {
        let mut b = Budget::new(10);
        let mut r = Reassembler::default();
        r.segment(0, b"0123456789abc", 100, &mut b);
        assert!(b.used <= 10);
        assert!(b.memcap_hits > 0);
    }
}
