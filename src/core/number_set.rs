//! The set of canonical decimal ids (u64 values).
//!
//! A roaring treemap: one `RoaringBitmap` of low 32 bits per high 32-bit
//! word (`dense`), which takes about 2 bytes per id or less when the ids of
//! a word are not too scattered. A high word holding only a few ids would
//! cost far more in a bitmap of its own (map entry, container, array
//! allocation: ~100 bytes for one id), so ids start in `sparse`, a sorted
//! array at 8 bytes per id, and a high word moves to `dense` ("promotion")
//! once its ids there would take fewer bytes as a bitmap. That check runs
//! after each merge of `sparse`, so it costs O(1) amortised per insert.
//!
//! Invariant: a high word is either in `dense`, with all its ids, or all
//! its ids are in `sparse`.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;

use super::relocate::{Moved, Relocator};
use super::sorted_set::{Duplicate, SortedSet};

/// Estimated bytes of a `RoaringBitmap` in the map (entry, container vector).
const BITMAP_BYTES: usize = 64;
/// Estimated bytes per container beyond its values (struct, allocation).
const CONTAINER_BYTES: usize = 48;
/// A bitset container: 2^16 bits.
const BITSET_BYTES: usize = 8192;
/// Estimated bytes per id kept in `sparse` (the value plus directory and
/// merge slack).
const SPARSE_BYTES_PER_ID: usize = 9;

#[derive(Clone, Default)]
pub(crate) struct NumberSet {
    dense: BTreeMap<u32, RoaringBitmap>,
    /// Ids in `dense`, so `len` is O(1).
    dense_len: usize,
    sparse: SortedSet<u64>,
}

#[inline]
fn split(id: u64) -> (u32, u32) {
    ((id >> 32) as u32, id as u32)
}

#[inline]
fn join(high: u32, low: u32) -> u64 {
    (u64::from(high) << 32) | u64::from(low)
}

/// Stored ids that break the invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Corrupt {
    /// The same id twice, or a high word both dense and sparse.
    Duplicate,
    /// An empty bitmap.
    EmptyBitmap,
}

impl From<Duplicate> for Corrupt {
    fn from(_: Duplicate) -> Self {
        Corrupt::Duplicate
    }
}

impl NumberSet {
    /// Rebuilds a set from its parts as `encode` wrote them.
    pub fn from_parts(
        dense: BTreeMap<u32, RoaringBitmap>,
        sparse: Vec<u64>,
    ) -> Result<Self, Corrupt> {
        if dense.values().any(RoaringBitmap::is_empty) {
            return Err(Corrupt::EmptyBitmap);
        }
        if sparse.iter().any(|&id| dense.contains_key(&split(id).0)) {
            return Err(Corrupt::Duplicate);
        }
        let dense_len = dense.values().map(|bitmap| bitmap.len() as usize).sum();
        let mut set = NumberSet {
            dense,
            dense_len,
            sparse: SortedSet::from_values(sparse)?,
        };
        set.promote();
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.dense_len + self.sparse.len()
    }

    #[inline]
    pub fn contains(&self, id: u64) -> bool {
        let (high, low) = split(id);
        if !self.dense.is_empty() {
            if let Some(bitmap) = self.dense.get(&high) {
                return bitmap.contains(low);
            }
        }
        self.sparse.contains(id)
    }

    pub fn insert(&mut self, id: u64) -> bool {
        let (high, low) = split(id);
        if let Some(bitmap) = self.dense.get_mut(&high) {
            let added = bitmap.insert(low);
            self.dense_len += usize::from(added);
            return added;
        }
        let added = self.sparse.insert_unmerged(id);
        if added && self.sparse.merge_due() {
            self.sparse.merge();
            self.promote();
        }
        added
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let (high, low) = split(id);
        let Some(bitmap) = self.dense.get_mut(&high) else {
            return self.sparse.remove(id);
        };
        if !bitmap.remove(low) {
            return false;
        }
        self.dense_len -= 1;
        if bitmap.is_empty() {
            self.dense.remove(&high);
        }
        true
    }

    /// Moves each high word whose ids are cheaper as a bitmap from
    /// `sparse` to `dense`. Call right after `sparse` merged.
    fn promote(&mut self) {
        let ids = self.sparse.merged_values();
        let mut promoted = Vec::new();
        let mut start = 0;
        while start < ids.len() {
            let high = split(ids[start]).0;
            // Groups are often a single id: a linear scan beats a search.
            let mut end = start + 1;
            while end < ids.len() && split(ids[end]).0 == high {
                end += 1;
            }
            let group = &ids[start..end];
            let containers = 1 + group
                .windows(2)
                .filter(|pair| pair[0] >> 16 != pair[1] >> 16)
                .count();
            let as_bitmap = BITMAP_BYTES + containers * CONTAINER_BYTES + group.len() * 2;
            if as_bitmap < group.len() * SPARSE_BYTES_PER_ID {
                promoted.push((high, start..end));
            }
            start = end;
        }
        if promoted.is_empty() {
            return;
        }
        for (high, range) in promoted {
            let lows = ids[range].iter().map(|&id| split(id).1);
            // The ids are sorted and distinct, so this cannot fail.
            if let Ok(bitmap) = RoaringBitmap::from_sorted_iter(lows) {
                self.dense_len += bitmap.len() as usize;
                self.dense.insert(high, bitmap);
            }
        }
        let dense = &self.dense;
        self.sparse.retain(|id| !dense.contains_key(&split(id).0));
    }

    /// Every id: the bitmaps by high word, then the sparse ids.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.dense
            .iter()
            .flat_map(|(&high, bitmap)| bitmap.iter().map(move |low| join(high, low)))
            .chain(self.sparse.iter())
    }

    pub fn bitmaps(&self) -> impl ExactSizeIterator<Item = (u32, &RoaringBitmap)> + '_ {
        self.dense.iter().map(|(&high, bitmap)| (high, bitmap))
    }

    pub fn sparse_len(&self) -> usize {
        self.sparse.len()
    }

    pub fn sparse_iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.sparse.iter()
    }

    pub fn heap_bytes(&self) -> usize {
        let bitmaps: usize = self
            .dense
            .values()
            .map(|bitmap| {
                // Counted here rather than taken from the statistics' byte
                // figures: roaring 0.11 reports a bitset container's
                // capacity in bits and array capacity as u32s.
                let stats = bitmap.statistics();
                BITMAP_BYTES
                    + stats.n_containers as usize * CONTAINER_BYTES
                    // 2 bytes a value, arrays grow by doubling: ~3.
                    + stats.n_values_array_containers as usize * 3
                    + stats.n_bitset_containers as usize * BITSET_BYTES
                    + stats.n_bytes_run_containers as usize
            })
            .sum();
        bitmaps + self.sparse.heap_bytes()
    }

    /// Units of a relocation walk (see `core::relocate`): one per dense
    /// bitmap, then the sparse ids with the map's own nodes.
    pub(crate) fn relocation_units(&self) -> usize {
        self.dense.len() + 1
    }

    /// Relocates one unit. A bitmap's buffers are private to the roaring
    /// crate: with `renew` it is renewed by a copy of itself (fresh
    /// allocations, the old ones freed), which also drops the spare
    /// capacity of its arrays.
    pub(crate) fn relocate_unit(
        &mut self,
        unit: usize,
        relocator: &mut dyn Relocator,
        moved: &mut Moved,
        renew: bool,
    ) {
        if let Some(bitmap) = self.dense.values_mut().nth(unit) {
            if renew {
                *bitmap = bitmap.clone();
                moved.renewed += 1;
            }
            return;
        }
        self.sparse.relocate(relocator, moved, renew);
        if renew && !self.dense.is_empty() {
            self.dense = std::mem::take(&mut self.dense).into_iter().collect();
            moved.renewed += 1;
        }
    }

    #[cfg(test)]
    pub fn dense_words(&self) -> usize {
        self.dense.len()
    }
}

/// Set equality: the same ids may be split differently between `dense`
/// and `sparse` in two sets.
impl PartialEq for NumberSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|id| other.contains(id))
    }
}

impl Eq for NumberSet {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn dense_words_are_promoted_scattered_ids_stay_sparse() {
        let mut set = NumberSet::default();
        for id in 0..10_000_u64 {
            assert!(set.insert(id * 7));
        }
        // Scattered over the whole u64 range: one id per high word.
        for i in 1..=10_000_u64 {
            assert!(set.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 << 63));
        }
        assert_eq!(set.len(), 20_000);
        assert_eq!(set.dense_words(), 1, "ids below 2^32 went to a bitmap");
        assert!(set.sparse_len() >= 10_000 - 1);
        assert!(set.contains(7 * 9_999));
        assert!(!set.contains(7 * 10_000));
        assert!(set.heap_bytes() < 20_000 * 9, "{}", set.heap_bytes());
    }

    #[test]
    fn heap_bytes_of_a_dense_bitmap() {
        let mut set = NumberSet::default();
        for id in 0..1_000_000_u64 {
            set.insert(id);
        }
        // 16 bitset containers of 8 KiB, and change.
        assert!(
            (16 * 8192..16 * 8192 + 4096).contains(&set.heap_bytes()),
            "{}",
            set.heap_bytes()
        );
    }

    #[test]
    fn corrupt_parts_are_refused() {
        let bitmap: RoaringBitmap = [1, 2].into_iter().collect();
        let dense = BTreeMap::from([(0, bitmap)]);
        assert_eq!(
            NumberSet::from_parts(dense.clone(), vec![5]).err(),
            Some(Corrupt::Duplicate)
        );
        assert_eq!(
            NumberSet::from_parts(BTreeMap::new(), vec![5, 5]).err(),
            Some(Corrupt::Duplicate)
        );
        assert_eq!(
            NumberSet::from_parts(BTreeMap::from([(3, RoaringBitmap::new())]), vec![]).err(),
            Some(Corrupt::EmptyBitmap)
        );
        let set = NumberSet::from_parts(dense, vec![1 << 40]).unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![1, 2, 1 << 40]);
    }

    fn id() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..200_u64,
            (1_u64 << 32)..(1 << 32) + 50,
            (u64::MAX - 30)..=u64::MAX,
            any::<u64>(),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_btree_set(
            ops in prop::collection::vec((any::<bool>(), id()), 0..800)
        ) {
            let mut set = NumberSet::default();
            let mut model = BTreeSet::new();
            for (insert, id) in ops {
                if insert {
                    prop_assert_eq!(set.insert(id), model.insert(id));
                } else {
                    prop_assert_eq!(set.remove(id), model.remove(&id));
                }
                prop_assert_eq!(set.len(), model.len());
            }
            for &id in &model {
                prop_assert!(set.contains(id));
            }
            prop_assert_eq!(set.iter().collect::<BTreeSet<_>>(), model);
            let dense: BTreeMap<u32, RoaringBitmap> =
                set.bitmaps().map(|(high, bitmap)| (high, bitmap.clone())).collect();
            let rebuilt = NumberSet::from_parts(dense, set.sparse_iter().collect()).unwrap();
            prop_assert!(rebuilt == set);
        }
    }
}
