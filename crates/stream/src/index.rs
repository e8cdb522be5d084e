//! The flow table's index: flow key → slot handle, open addressing with linear probing over a
//! compact array of (32-bit hash, handle) pairs. Eight bytes an entry (hashbrown's entries would
//! hold the 44-byte key): with tens of thousands of flows the index stays cache-friendly, and the
//! key itself is compared in the flow record, which the packet touches next anyway.
//! Deletion shifts entries back (no tombstones); the array doubles at half load.

const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry {
    hash: u32,
    handle: u32,
}

pub struct FlowIndex {
    entries: Vec<Entry>,
    bits: u32,
    len: usize,
}

impl Default for FlowIndex {
    fn default() -> Self {
        FlowIndex::with_bits(10)
    }
}

impl FlowIndex {
    fn with_bits(bits: u32) -> Self {
        FlowIndex {
            entries: vec![
                Entry {
                    hash: 0,
                    handle: EMPTY
                };
                1 << bits
            ],
            bits,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mask(&self) -> usize {
        (1usize << self.bits) - 1
    }

    fn home(&self, hash: u32) -> usize {
        (hash >> (32 - self.bits)) as usize
    }

    /// The handle stored for `hash` whose record `is_key` accepts.
    pub fn get(&self, hash: u32, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let e = self.entries[i];
            if e.handle == EMPTY {
                return None;
            }
            if e.hash == hash && is_key(e.handle) {
                return Some(e.handle);
            }
            i = (i + 1) & mask;
        }
    }

    /// The entry a lookup of `hash` reads first (for a prefetch).
    pub fn home_entry(&self, hash: u32) -> &impl Sized {
        &self.entries[self.home(hash)]
    }

    /// The first handle stored with `hash`, without checking its key (for a prefetch: usually
    /// the one a lookup will find). Looks at a few entries at most.
    pub fn first_with(&self, hash: u32) -> Option<u32> {
        let mask = self.mask();
        let mut i = self.home(hash);
        for _ in 0..4 {
            let e = self.entries[i];
            if e.handle == EMPTY {
                return None;
            }
            if e.hash == hash {
                return Some(e.handle);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Adds a handle (its key must not be present).
    pub fn insert(&mut self, hash: u32, handle: u32) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.place(hash, handle);
        self.len += 1;
    }

    fn place(&mut self, hash: u32, handle: u32) {
        let mask = self.mask();
        let mut i = self.home(hash);
        while self.entries[i].handle != EMPTY {
            i = (i + 1) & mask;
        }
        self.entries[i] = Entry { hash, handle };
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.entries);
        *self = FlowIndex::with_bits(self.bits + 1);
        for e in old {
            if e.handle != EMPTY {
                self.place(e.hash, e.handle);
                self.len += 1;
            }
        }
    }

    /// Removes `handle` (stored under `hash`).
    pub fn remove(&mut self, hash: u32, handle: u32) {
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let e = self.entries[i];
            if e.handle == EMPTY {
                return; // not present
            }
            if e.handle == handle {
                break;
            }
            i = (i + 1) & mask;
        }
        self.len -= 1;
        // Backward shift: later entries of the run move up unless their home lies after the hole.
        loop {
            let mut j = i;
            loop {
                j = (j + 1) & mask;
                let e = self.entries[j];
                if e.handle == EMPTY {
                    self.entries[i].handle = EMPTY;
                    return;
                }
                let home = self.home(e.hash);
                let stays = if i <= j {
                    i < home && home <= j
                } else {
                    i < home || home <= j
                };
                if !stays {
                    break;
                }
            }
            self.entries[i] = self.entries[j];
            i = j;
        }
    }

    /// Every handle, in index order.
    pub fn handles(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries
            .iter()
            .filter(|e| e.handle != EMPTY)
            .map(|e| e.handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts and removes against a HashMap model, with colliding hashes on purpose.
    #[test]
    fn matches_a_model() {
        let mut idx = FlowIndex::default();
        let mut model: HashMap<u32, u32> = HashMap::new(); // handle -> hash
        let mut x: u64 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..200_000u32 {
            let r = next();
            if r % 3 != 0 || model.is_empty() {
                let hash = if r % 7 == 0 {
                    0xdead_0000 | (r as u32 & 7)
                } else {
                    (r >> 16) as u32
                };
                let handle = step;
                idx.insert(hash, handle);
                model.insert(handle, hash);
            } else {
                let victim = *model.keys().nth((r >> 8) as usize % model.len()).unwrap();
                let hash = model.remove(&victim).unwrap();
                idx.remove(hash, victim);
            }
            if step % 997 == 0 {
                assert_eq!(idx.len(), model.len());
                for (&h, &hash) in model.iter().take(50) {
                    assert_eq!(idx.get(hash, |c| c == h), Some(h));
                    // The prefetch's guess, when it has one, is a handle stored with that hash.
                    if let Some(g) = idx.first_with(hash) {
                        assert_eq!(model.get(&g), Some(&hash));
                    }
                }
                assert_eq!(idx.handles().count(), model.len());
            }
        }
        for (&h, &hash) in &model {
            assert_eq!(idx.get(hash, |c| c == h), Some(h), "handle {h}");
        }
    }
}
