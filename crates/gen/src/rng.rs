//! A small deterministic pseudo-random generator (SplitMix64): the same seed gives the same
//! stream on every platform. Only integer arithmetic, so results never depend on a math library.

/// SplitMix64 state.
#[derive(Clone, Debug)]
pub struct Rng(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Mixes a 64-bit value (the SplitMix64 finaliser).
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed ^ GOLDEN))
    }

    /// An independent generator for one purpose (`stream`) and one item (`index`) of `seed`.
    pub fn derive(seed: u64, stream: u64, index: u64) -> Rng {
        Rng::new(mix(
            seed.wrapping_add(mix(stream.wrapping_mul(GOLDEN) ^ mix(index)))
        ))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// Roughly log-uniform in `lo..=hi`: a bit length is drawn uniformly, then a value of that
    /// length. Integer-only.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let lo = lo.max(1);
        if hi <= lo {
            return lo;
        }
        let a = 64 - lo.leading_zeros();
        let b = 64 - hi.leading_zeros();
        let bits = self.range(u64::from(a), u64::from(b)) as u32;
        let base = 1u64 << (bits - 1);
        let v = base + self.below(base);
        v.clamp(lo, hi)
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index drawn with the given weights (at least one non-zero).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let v = r.range(5, 9);
            assert!((5..=9).contains(&v));
            let l = r.log_uniform(100, 5000);
            assert!((100..=5000).contains(&l));
        }
        assert_ne!(
            Rng::derive(1, 2, 3).next_u64(),
            Rng::derive(1, 2, 4).next_u64()
        );
    }

    #[test]
    fn weighted_follows_the_weights() {
        let w = [5u32, 2, 3, 2, 4, 2, 28, 24, 24, 4, 1, 1, 1, 1, 1];
        let total: u32 = w.iter().sum();
        let mut r = Rng::derive(1, 2, 0);
        let n = 98_000u64;
        let mut counts = [0u64; 15];
        for _ in 0..n {
            let _ = r.chance(1, 8);
            counts[r.weighted(&w)] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let want = n * u64::from(w[i]) / u64::from(total);
            assert!(c.abs_diff(want) < want / 5 + 50, "{i}: {c} vs {want}");
        }
    }
}
