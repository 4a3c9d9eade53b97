//! A compact set of u64 values (the ids of `NumberSet` that are not in a
//! bitmap).
//!
//! Most values live in `main`, one sorted boxed slice: exactly the value's
//! width per member, no slot or pointer overhead. A lookup finds a short
//! range of `main` through `dir`, a directory over the value range
//! (about eight values per slot when values are spread evenly), then
//! binary-searches it; values bunched in a narrow range only make that
//! search longer (O(log n)), never wrong.
//!
//! New values go to `delta`, a small hash set, and are merged into `main`
//! once `delta` passes a quarter of it (amortised O(1) per insert, like a
//! vector's growth). Removing a value of `main` only sets its bit in
//! `removed`; those are dropped at the next merge, which runs early once a
//! quarter of `main` is removed.

use std::fmt::Debug;
use std::hash::Hash;

use hashbrown::{DefaultHashBuilder, HashSet};

use super::relocate::{self, Moved, Relocator};

/// `delta` is merged once it holds more than this many values, and more
/// than `main.len() / MERGE_FRACTION`.
const MIN_MERGE: usize = if cfg!(test) { 8 } else { 1024 };
const MERGE_FRACTION: usize = 4;
/// `main` is rewritten once more than a quarter of it is removed.
const COMPACT_FRACTION: usize = 4;
/// Aim for 2^3 values per directory slot.
const VALUES_PER_SLOT_LOG2: u32 = 3;
/// Below this `main` is searched without a directory.
const MIN_DIRECTORY: usize = if cfg!(test) { 4 } else { 64 };

pub(crate) trait Key: Copy + Ord + Hash + Debug {
    /// The value as a u128, for directory arithmetic.
    fn widen(self) -> u128;
}

impl Key for u64 {
    #[inline]
    fn widen(self) -> u128 {
        u128::from(self)
    }
}

#[derive(Clone)]
pub(crate) struct SortedSet<K> {
    /// Sorted, without duplicates.
    main: Box<[K]>,
    /// Bit `i` set: `main[i]` was removed. Empty when nothing is.
    removed: Vec<u64>,
    removed_count: usize,
    /// Values added since the last merge; none of them is in `main`.
    delta: HashSet<K, DefaultHashBuilder>,
    /// `dir[s]` is the first index of `main` in slot `s` or later, where the
    /// slot of `v` is `(v - main[0]) >> shift`; one extra entry at the end.
    /// Empty for a short `main` (or one too long for u32 indices).
    dir: Box<[u32]>,
    shift: u32,
}

impl<K: Key> Default for SortedSet<K> {
    fn default() -> Self {
        SortedSet {
            main: Box::new([]),
            removed: Vec::new(),
            removed_count: 0,
            delta: HashSet::default(),
            dir: Box::new([]),
            shift: 0,
        }
    }
}

/// Stored values that are not a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duplicate;

impl<K: Key> SortedSet<K> {
    /// A set of `values`, in any order; refuses duplicates.
    pub fn from_values(mut values: Vec<K>) -> Result<Self, Duplicate> {
        values.sort_unstable();
        if values.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(Duplicate);
        }
        let mut set = SortedSet::default();
        set.set_main(values);
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.main.len() - self.removed_count + self.delta.len()
    }

    #[inline]
    pub fn contains(&self, value: K) -> bool {
        match self.position(value) {
            Some(at) => !self.is_removed(at),
            None => !self.delta.is_empty() && self.delta.contains(&value),
        }
    }

    /// Adds `value`; true if it was not present. May merge.
    #[cfg(test)]
    pub fn insert(&mut self, value: K) -> bool {
        let added = self.insert_unmerged(value);
        if added && self.merge_due() {
            self.merge();
        }
        added
    }

    /// Adds `value` without merging; the caller checks `merge_due`.
    pub fn insert_unmerged(&mut self, value: K) -> bool {
        match self.position(value) {
            Some(at) if self.is_removed(at) => {
                self.removed[at / 64] &= !(1 << (at % 64));
                self.removed_count -= 1;
                if self.removed_count == 0 {
                    self.removed = Vec::new();
                }
                true
            }
            Some(_) => false,
            None => self.delta.insert(value),
        }
    }

    pub fn merge_due(&self) -> bool {
        self.delta.len() > MIN_MERGE.max(self.main.len() / MERGE_FRACTION)
    }

    /// Removes `value`; true if it was present.
    pub fn remove(&mut self, value: K) -> bool {
        if !self.delta.is_empty() && self.delta.remove(&value) {
            if self.len() == 0 {
                *self = SortedSet::default();
            }
            return true;
        }
        let Some(at) = self.position(value) else {
            return false;
        };
        if self.is_removed(at) {
            return false;
        }
        if self.removed.is_empty() {
            self.removed = vec![0; self.main.len().div_ceil(64)];
        }
        self.removed[at / 64] |= 1 << (at % 64);
        self.removed_count += 1;
        if self.len() == 0 {
            *self = SortedSet::default();
        } else if self.removed_count > MIN_MERGE.max(self.main.len() / COMPACT_FRACTION) {
            self.merge();
        }
        true
    }

    /// Folds `delta` into `main` and drops removed values.
    pub fn merge(&mut self) {
        let mut merged = Vec::with_capacity(self.len());
        let mut fresh: Vec<K> = self.delta.iter().copied().collect();
        fresh.sort_unstable();
        // A fresh set, not `clear()`: the old table's memory goes back.
        self.delta = HashSet::default();
        let mut fresh = fresh.into_iter().peekable();
        for (at, &value) in self.main.iter().enumerate() {
            if self.removed_count > 0 && self.is_removed(at) {
                continue;
            }
            while let Some(new) = fresh.next_if(|&new| new < value) {
                merged.push(new);
            }
            merged.push(value);
        }
        merged.extend(fresh);
        self.set_main(merged);
    }

    /// The values of `main`, sorted; only
    /// meaningful right after a merge (no removed values, empty delta).
    pub fn merged_values(&self) -> &[K] {
        debug_assert!(self.delta.is_empty() && self.removed_count == 0);
        &self.main
    }

    /// Keeps only the values for which `keep` holds (merges first).
    pub fn retain(&mut self, mut keep: impl FnMut(K) -> bool) {
        self.merge();
        let kept: Vec<K> = self
            .main
            .iter()
            .copied()
            .filter(|&value| keep(value))
            .collect();
        self.set_main(kept);
    }

    /// Every value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = K> + '_ {
        self.main
            .iter()
            .enumerate()
            .filter(|&(at, _)| self.removed_count == 0 || !self.is_removed(at))
            .map(|(_, &value)| value)
            .chain(self.delta.iter().copied())
    }

    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.main)
            + self.removed.capacity() * 8
            + self.delta.allocation_size()
            + std::mem::size_of_val(&*self.dir)
    }

    /// Installs a sorted, duplicate-free `values` as `main`, with a fresh
    /// directory and nothing removed.
    fn set_main(&mut self, values: Vec<K>) {
        self.main = values.into_boxed_slice();
        self.removed = Vec::new();
        self.removed_count = 0;
        let (dir, shift) = directory(&self.main);
        self.dir = dir;
        self.shift = shift;
    }

    #[inline]
    fn is_removed(&self, at: usize) -> bool {
        !self.removed.is_empty() && self.removed[at / 64] & (1 << (at % 64)) != 0
    }

    /// Index of `value` in `main`, removed or not.
    #[inline]
    fn position(&self, value: K) -> Option<usize> {
        let (&first, &last) = (self.main.first()?, self.main.last()?);
        if value < first || value > last {
            return None;
        }
        let (start, end) = if self.dir.is_empty() {
            (0, self.main.len())
        } else {
            let slot = ((value.widen() - first.widen()) >> self.shift) as usize;
            (self.dir[slot] as usize, self.dir[slot + 1] as usize)
        };
        self.main[start..end]
            .binary_search(&value)
            .ok()
            .map(|at| start + at)
    }

    /// Moves the buffers (see `core::relocate`); with `renew`, the delta
    /// hash set, whose table is private to hashbrown, is renewed by a copy.
    pub(crate) fn relocate(
        &mut self,
        relocator: &mut dyn Relocator,
        moved: &mut Moved,
        renew: bool,
    ) {
        moved.relocated(relocate::boxed_slice(&mut self.main, relocator));
        moved.relocated(relocate::vec(&mut self.removed, relocator));
        moved.relocated(relocate::boxed_slice(&mut self.dir, relocator));
        if renew && !self.delta.is_empty() {
            let mut fresh =
                HashSet::with_capacity_and_hasher(self.delta.len(), self.delta.hasher().clone());
            fresh.extend(self.delta.iter().copied());
            self.delta = fresh;
            moved.renewed += 1;
        }
    }
}

/// The directory of a sorted slice and its shift (see `SortedSet::dir`).
fn directory<K: Key>(main: &[K]) -> (Box<[u32]>, u32) {
    let (Some(first), Some(last)) = (main.first(), main.last()) else {
        return (Box::new([]), 0);
    };
    if main.len() < MIN_DIRECTORY || main.len() > u32::MAX as usize {
        return (Box::new([]), 0);
    }
    let first = first.widen();
    let span = last.widen() - first;
    // At least one bit, so that `shift` stays below 128.
    let slot_bits = main
        .len()
        .ilog2()
        .saturating_sub(VALUES_PER_SLOT_LOG2)
        .max(1);
    let span_bits = u128::BITS - span.leading_zeros();
    let shift = span_bits.saturating_sub(slot_bits);
    let slots = (span >> shift) as usize + 1;
    let mut dir = Vec::with_capacity(slots + 1);
    let mut at = 0;
    for slot in 0..slots {
        while at < main.len() && (((main[at].widen() - first) >> shift) as usize) < slot {
            at += 1;
        }
        dir.push(at as u32);
    }
    dir.push(main.len() as u32);
    (dir.into_boxed_slice(), shift)
}

impl<K: Key> PartialEq for SortedSet<K> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|value| other.contains(value))
    }
}

impl<K: Key> Eq for SortedSet<K> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn directory_slots_cover_main() {
        let values: Vec<u64> = (0..10_000).map(|i| i * i).collect();
        let (dir, shift) = directory(&values);
        assert_eq!(*dir.last().unwrap() as usize, values.len());
        assert!(dir.windows(2).all(|pair| pair[0] <= pair[1]));
        for (at, &value) in values.iter().enumerate() {
            let slot = (value >> shift) as usize;
            assert!((dir[slot] as usize..dir[slot + 1] as usize).contains(&at));
        }
    }

    #[test]
    fn bunched_and_extreme_values() {
        let mut set = SortedSet::<u64>::default();
        let values: Vec<u64> = (0..5000)
            .map(|i| u64::MAX - i)
            .chain((0..5000).map(|i| i * 3))
            .chain([1 << 40])
            .collect();
        for &value in &values {
            assert!(set.insert(value));
        }
        assert_eq!(set.len(), values.len());
        for &value in &values {
            assert!(set.contains(value), "{value}");
        }
        assert!(!set.contains(1));
        assert!(!set.contains(u64::MAX - 5000));
        assert!(!set.dir.is_empty());
    }

    #[test]
    fn emptied_set_lets_go_of_its_memory() {
        let mut set = SortedSet::<u64>::default();
        for value in 0..1000 {
            set.insert(value);
        }
        for value in 0..1000 {
            assert!(set.remove(value));
        }
        assert_eq!(set.len(), 0);
        assert_eq!(set.heap_bytes(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(u64),
        Merge,
    }

    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![0..64_u64, any::<u64>(), (u64::MAX - 64)..=u64::MAX]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => value().prop_map(Op::Insert),
            3 => value().prop_map(Op::Remove),
            1 => Just(Op::Merge),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_btree_set(ops in prop::collection::vec(op(), 0..600)) {
            let mut set = SortedSet::<u64>::default();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(v) => prop_assert_eq!(set.insert(v), model.insert(v)),
                    Op::Remove(v) => prop_assert_eq!(set.remove(v), model.remove(&v)),
                    Op::Merge => set.merge(),
                }
                prop_assert_eq!(set.len(), model.len());
            }
            for &v in &model {
                prop_assert!(set.contains(v));
            }
            let listed: BTreeSet<u64> = set.iter().collect();
            prop_assert_eq!(&listed, &model);
            let rebuilt = SortedSet::from_values(set.iter().collect()).unwrap();
            prop_assert!(rebuilt == set);
            set.retain(|v| v % 2 == 0);
            model.retain(|v| v % 2 == 0);
            prop_assert_eq!(set.iter().collect::<BTreeSet<u64>>(), model);
        }
    }

    #[test]
    fn duplicates_are_refused() {
        assert_eq!(
            SortedSet::<u64>::from_values(vec![3, 1, 3]).err(),
            Some(Duplicate)
        );
    }
}
