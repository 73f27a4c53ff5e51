//! The encoded sequences a loaded model keeps between calls: a query scores a user's
//! history against many offers, and its rows reach the scorer in many batches, each batch
//! holding other users (a planning grid ordered by discount meets every user once per batch).
//!
//! Laid out for the lookup, which every distinct sequence of every batch makes: a table of
//! slot numbers (4 bytes each) found by a hash the caller computed once per row
//! ([`window_hash`]), and two slabs indexed by slot, the token windows and their U·W1_user
//! rows. A general-purpose cache keyed by boxed windows spent a cache miss on each of the
//! bucket, the key's box and the value's box; here the table is small enough to stay in
//! the CPU's caches and the slabs are contiguous.

use std::sync::{LazyLock, RwLock};

use hashbrown::HashTable;

/// The hasher of token windows: random per process, so no table of sequences can be
/// crafted to collide.
static WINDOW_HASHER: LazyLock<ahash::RandomState> = LazyLock::new(ahash::RandomState::new);

/// The hash of a token window, the same for the window with or without its left padding
/// (leading zeros), so a caller can hash the unpadded tokens it reads and the scorer the
/// padded window it holds.
pub fn window_hash(window: &[u32]) -> u64 {
    let start = window.iter().position(|&t| t != 0).unwrap_or(window.len());
    WINDOW_HASHER.hash_one(&window[start..])
}

/// Kept rows of `T` by token window (the network's U·W1_user rows as `f32`, a tabular
/// model's sequence counts as `f64`).
#[derive(Debug)]
pub(crate) struct SequenceCache<T = f32> {
    /// Tokens per window and values per row.
    len: usize,
    width: usize,
    /// Most windows kept; the cache starts over when full.
    capacity: usize,
    table: HashTable<u32>,
    /// Per slot: its window and its row.
    windows: Vec<u32>,
    rows: Vec<T>,
}

impl<T: Copy> SequenceCache<T> {
    /// The slabs are reserved whole: address space only until written, and growing them
    /// would copy them (a first query over new users spent a third of its time faulting in
    /// the copies' pages).
    pub fn new(len: usize, width: usize, capacity: usize) -> SequenceCache<T> {
        SequenceCache {
            len,
            width,
            capacity,
            table: HashTable::with_capacity(capacity),
            windows: Vec::with_capacity(capacity * len),
            rows: Vec::with_capacity(capacity * width),
        }
    }

    /// The row kept for `window` (`len` tokens, padded), whose [`window_hash`] is `hash`.
    pub fn get(&self, hash: u64, window: &[u32]) -> Option<&[T]> {
        let len = self.len;
        let slot = *self.table.find(hash, |&s| {
            let s = s as usize;
            self.windows[s * len..(s + 1) * len] == *window
        })? as usize;
        Some(&self.rows[slot * self.width..(slot + 1) * self.width])
    }

    /// Keeps `row` for `window`; when full, the cache first forgets every window.
    pub fn insert(&mut self, hash: u64, window: &[u32], row: &[T]) {
        if self.get(hash, window).is_some() {
            return;
        }
        if self.len() >= self.capacity {
            self.table.clear();
            self.windows.clear();
            self.rows.clear();
        }
        let (slot, len, windows) = (self.len() as u32, self.len, &self.windows);
        // The table is reserved whole, so it never grows and never rehashes; were it to,
        // a slot's hash is its window's.
        self.table.insert_unique(hash, slot, |&s| {
            window_hash(&windows[s as usize * len..(s as usize + 1) * len])
        });
        self.windows.extend_from_slice(window);
        self.rows.extend_from_slice(row);
    }

    /// Windows kept.
    fn len(&self) -> usize {
        self.windows.len() / self.len.max(1)
    }
}

/// The rows of `sequences` (the cache's windows, concatenated): those `cache` keeps read from
/// it, the others from `compute` — given the missing windows' indices, it returns their rows,
/// concatenated — and kept. `hashes` are the windows' [`window_hash`]es, or empty (then
/// computed here). A lookup holds the read lock only; the misses are computed without a
/// lock and kept under the write lock.
pub(crate) fn rows_through<T: Copy + Default, E>(
    cache: &RwLock<SequenceCache<T>>,
    sequences: &[u32],
    hashes: &[u64],
    compute: impl FnOnce(&[usize]) -> Result<Vec<T>, E>,
) -> Result<Vec<T>, E> {
    let (len, width) = {
        let kept = cache.read().unwrap_or_else(|p| p.into_inner());
        (kept.len.max(1), kept.width)
    };
    let n_seq = sequences.len() / len;
    let computed: Vec<u64>;
    let hashes = if hashes.len() == n_seq {
        hashes
    } else {
        computed = sequences.chunks(len).map(window_hash).collect();
        &computed
    };
    let mut out = vec![T::default(); n_seq * width];
    let mut misses: Vec<usize> = Vec::new();
    {
        let kept = cache.read().unwrap_or_else(|p| p.into_inner());
        for (k, (dst, window)) in out.chunks_mut(width).zip(sequences.chunks(len)).enumerate() {
            match kept.get(hashes[k], window) {
                Some(row) => dst.copy_from_slice(row),
                None => misses.push(k),
            }
        }
    }
    if misses.is_empty() {
        return Ok(out);
    }
    let rows = compute(&misses)?;
    let mut kept = cache.write().unwrap_or_else(|p| p.into_inner());
    for (&k, row) in misses.iter().zip(rows.chunks(width)) {
        out[k * width..(k + 1) * width].copy_from_slice(row);
        kept.insert(hashes[k], &sequences[k * len..(k + 1) * len], row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_does_not_change_the_hash() {
        assert_eq!(window_hash(&[0, 0, 7, 9]), window_hash(&[7, 9]));
        assert_ne!(window_hash(&[7, 9]), window_hash(&[9, 7]));
        assert_ne!(window_hash(&[7, 0, 9]), window_hash(&[7, 9]));
    }

    #[test]
    fn keeps_rows_by_window_and_starts_over_when_full() {
        let mut cache: SequenceCache = SequenceCache::new(2, 3, 2);
        let (a, b, c) = ([0u32, 5], [4u32, 5], [5u32, 4]);
        let h = |w: &[u32]| window_hash(w);
        assert!(cache.get(h(&a), &a).is_none());
        cache.insert(h(&a), &a, &[1.0, 2.0, 3.0]);
        cache.insert(h(&b), &b, &[4.0, 5.0, 6.0]);
        cache.insert(h(&a), &a, &[9.0, 9.0, 9.0]); // already kept: unchanged
        assert_eq!(cache.get(h(&a), &a), Some(&[1.0f32, 2.0, 3.0][..]));
        assert_eq!(cache.get(h(&b), &b), Some(&[4.0f32, 5.0, 6.0][..]));
        // The same hash with another window is not a hit.
        assert!(cache.get(h(&a), &b).is_none());
        assert_eq!(cache.len(), 2);
        cache.insert(h(&c), &c, &[7.0, 8.0, 9.0]);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(h(&a), &a).is_none());
        assert_eq!(cache.get(h(&c), &c), Some(&[7.0f32, 8.0, 9.0][..]));
    }
}
