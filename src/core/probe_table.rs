//! An ordered linear-probing table, the index of `StringSet` (and its
//! table of short members) and `UuidSet`.
//!
//! Each entry has a hash and a home slot, monotone in the hash. Entries
//! are ordered by hash along the array, each at or after its home slot
//! with no empty slot in between, and the array ends with a tail of spare
//! slots (the last one always empty). So a lookup starts at the home slot
//! and scans forward until it meets the hash, a larger one or an empty
//! slot: about three adjacent slots at the highest load, 7/8. Growing to a
//! load of 0.7 keeps it between 0.7 and 0.875.
//!
//! Resizing keeps the order, so entries are laid out again in one pass.
//! An insert that lands more than `MAX_RUN` slots past its home is
//! refused by [`ProbeTable::try_insert`]: the owner then picks a new seed
//! (seeded hashes make this practically never happen), [`rehash`]es the
//! entries, and inserts again with [`ProbeTable::insert`].
//!
//! [`rehash`]: ProbeTable::rehash

use super::relocate::{self, Relocator};

/// Most entries per `homes` slots before the table grows.
const MAX_LOAD: (usize, usize) = (7, 8);
/// Load right after growing.
const GROWN_LOAD: (usize, usize) = (7, 10);
/// An insert that has to move further than this from its home slot is
/// refused by `try_insert`.
const MAX_RUN: usize = 1024;
const MIN_HOMES: usize = 4;

/// Empty slots kept after the last entry: a few, and more for a large
/// table, where runs near the end are longer.
fn tail(homes: usize) -> usize {
    4 + homes / 256
}

/// Home slots for `count` entries right after growing.
fn homes_for(count: usize) -> usize {
    if count == 0 {
        return 0;
    }
    (count * GROWN_LOAD.1 / GROWN_LOAD.0).max(MIN_HOMES)
}

/// An entry of a [`ProbeTable`]. `Self::default()` marks an empty slot
/// and is never stored.
pub(crate) trait Slot: Copy + Default + Eq {
    /// What entries are ordered by.
    type Hash: Copy + Ord;

    fn hash(self) -> Self::Hash;

    /// The home slot of `hash` among `homes`: below `homes`, and monotone
    /// in `hash`.
    fn home(hash: Self::Hash, homes: usize) -> usize;

    #[inline]
    fn is_empty(self) -> bool {
        self == Self::default()
    }
}

/// An insert would have landed more than `MAX_RUN` slots past its home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LongRun;

#[derive(Clone)]
pub(crate) struct ProbeTable<S> {
    /// The entries (see the module comment); always ends with an empty
    /// slot once allocated.
    slots: Box<[S]>,
    /// Number of home slots; `slots` is longer by the entries past the last
    /// home slot plus `tail(homes)`.
    homes: usize,
    /// Entries in `slots`.
    count: usize,
}

impl<S: Slot> Default for ProbeTable<S> {
    fn default() -> Self {
        ProbeTable {
            slots: Box::new([]),
            homes: 0,
            count: 0,
        }
    }
}

impl<S: Slot> ProbeTable<S> {
    /// A table of `entries`, sorted by hash, over at least `homes` home
    /// slots (more if they would be too full).
    pub fn from_sorted(entries: &[S], homes: usize) -> Self {
        let mut table = ProbeTable::default();
        table.lay_out(entries, homes.max(homes_for(entries.len())));
        table
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Number of home slots.
    pub fn homes(&self) -> usize {
        self.homes
    }

    #[inline]
    fn home(&self, hash: S::Hash) -> usize {
        S::home(hash, self.homes)
    }

    /// The slot of the entry of `hash` for which `matches` is true, if any.
    /// `matches` is asked only about entries of that hash.
    ///
    /// Always inlined: it is the membership hot path, and a call here keeps
    /// the CPU from overlapping the cache misses of consecutive lookups.
    #[inline(always)]
    pub fn find(&self, hash: S::Hash, mut matches: impl FnMut(S) -> bool) -> Option<usize> {
        if self.homes == 0 {
            return None;
        }
        let mut at = self.home(hash);
        // The last slot is always empty, so these stop inside `slots`.
        while !self.slots[at].is_empty() && self.slots[at].hash() < hash {
            at += 1;
        }
        while !self.slots[at].is_empty() && self.slots[at].hash() == hash {
            if matches(self.slots[at]) {
                return Some(at);
            }
            at += 1;
        }
        None
    }

    /// The entry at `at`, a slot `find` returned.
    #[inline]
    pub fn get(&self, at: usize) -> S {
        self.slots[at]
    }

    /// Adds `entry`, which is not in the table, unless it would land more
    /// than `MAX_RUN` slots past its home slot (the table may have grown).
    pub fn try_insert(&mut self, entry: S) -> Result<(), LongRun> {
        self.place(entry, MAX_RUN)
    }

    /// Adds `entry`, which is not in the table, however far it lands.
    pub fn insert(&mut self, entry: S) {
        // Cannot fail: no run is longer than the table.
        let _ = self.place(entry, usize::MAX);
    }

    fn place(&mut self, entry: S, max_run: usize) -> Result<(), LongRun> {
        debug_assert!(!entry.is_empty());
        if (self.count + 1) * MAX_LOAD.1 > self.homes * MAX_LOAD.0 {
            self.resize(homes_for(self.count + 1));
        }
        let hash = entry.hash();
        loop {
            // After the entries of lower or equal hash from its home slot.
            let mut at = self.home(hash);
            while !self.slots[at].is_empty() && self.slots[at].hash() <= hash {
                at += 1;
            }
            let free = self.slots[at..self.slots.len() - 1]
                .iter()
                .position(|slot| slot.is_empty())
                .map(|distance| at + distance);
            let Some(free) = free else {
                // No room before the final empty slot: more tail, then again.
                self.resize(self.homes);
                continue;
            };
            if free - self.home(hash) > max_run {
                return Err(LongRun);
            }
            self.slots.copy_within(at..free, at + 1);
            self.slots[at] = entry;
            self.count += 1;
            return Ok(());
        }
    }

    /// Removes the entry at `at`, a slot `find` returned, and shrinks the
    /// table once it is under a quarter of the highest load (an emptied
    /// table lets go of its memory).
    pub fn remove_at(&mut self, at: usize) {
        debug_assert!(!self.slots[at].is_empty());
        // Pull back the entries after it that are not at their home slot.
        let mut next = at + 1;
        while !self.slots[next].is_empty() && self.home(self.slots[next].hash()) < next {
            next += 1;
        }
        self.slots.copy_within(at + 1..next, at);
        self.slots[next - 1] = S::default();
        self.count -= 1;
        if self.count == 0 {
            *self = ProbeTable::default();
        } else if self.count * MAX_LOAD.1 * 4 < self.homes * MAX_LOAD.0 && self.homes > MIN_HOMES {
            self.resize(homes_for(self.count));
        }
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = S> + '_ {
        self.slots.iter().copied().filter(|slot| !slot.is_empty())
    }

    /// The entries, in order, borrowed.
    pub fn entries(&self) -> impl Iterator<Item = &S> + '_ {
        self.slots.iter().filter(|slot| !slot.is_empty())
    }

    /// The entries, in order, to change in place: each must keep its hash.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut S> + '_ {
        self.slots.iter_mut().filter(|slot| !slot.is_empty())
    }

    /// Replaces every entry by `rehash(entry)` (a new seed: hashes and so
    /// the order change). The number of home slots stays.
    pub fn rehash(&mut self, rehash: impl FnMut(S) -> S) {
        let mut entries: Vec<S> = self.iter().map(rehash).collect();
        entries.sort_unstable_by_key(|entry| entry.hash());
        let homes = self.homes;
        self.lay_out(&entries, homes);
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Same entries over `homes` home slots: the order does not change, so
    /// they are laid out again in one pass.
    fn resize(&mut self, homes: usize) {
        let entries: Vec<S> = self.iter().collect();
        self.lay_out(&entries, homes);
    }

    /// Lays out entries sorted by hash over `homes` home slots.
    fn lay_out(&mut self, entries: &[S], homes: usize) {
        self.homes = homes;
        self.count = entries.len();
        if homes == 0 {
            self.slots = Box::new([]);
            return;
        }
        let mut slots = Vec::with_capacity(homes + tail(homes));
        for &entry in entries {
            let home = self.home(entry.hash());
            if slots.len() < home {
                slots.resize(home, S::default());
            }
            slots.push(entry);
        }
        let len = slots.len().max(homes) + tail(homes);
        slots.resize(len, S::default());
        self.slots = slots.into_boxed_slice();
    }

    /// All slots, empty ones included.
    #[cfg(test)]
    pub fn slots(&self) -> &[S] {
        &self.slots
    }

    /// Asserts the layout of the module comment.
    #[cfg(test)]
    pub fn check_layout(&self) {
        if self.homes == 0 {
            assert!(self.slots.is_empty(), "no slots without homes");
            assert_eq!(self.count, 0);
            return;
        }
        assert!(self.slots.last().unwrap().is_empty(), "ends empty");
        let mut previous = None;
        let mut count = 0;
        for (at, &entry) in self.slots.iter().enumerate() {
            if entry.is_empty() {
                continue;
            }
            count += 1;
            let hash = entry.hash();
            assert!(previous <= Some(hash), "ordered by hash");
            previous = Some(hash);
            let home = self.home(hash);
            assert!(home <= at, "at or after its home");
            assert!(self.slots[home..at].iter().all(|e| !e.is_empty()), "no gap");
        }
        assert_eq!(count, self.count);
    }

    /// Moves the slots' buffer (see `core::relocate`).
    pub(crate) fn relocate(&mut self, relocator: &mut dyn Relocator) -> bool {
        relocate::boxed_slice(&mut self.slots, relocator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// An entry with a one-byte hash, so hashes collide and runs are long;
    /// `id` is never 0, so no entry is the empty slot.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
    struct Test {
        hash: u8,
        id: u16,
    }

    impl Slot for Test {
        type Hash = u8;
        fn hash(self) -> u8 {
            self.hash
        }
        fn home(hash: u8, homes: usize) -> usize {
            (usize::from(hash) * homes) >> 8
        }
    }

    fn entry(hash: u8, id: u16) -> Test {
        Test { hash, id: id + 1 }
    }

    fn find(table: &ProbeTable<Test>, entry: Test) -> Option<usize> {
        table.find(entry.hash, |other| other == entry)
    }

    #[test]
    fn empty_table_holds_nothing() {
        let table = ProbeTable::<Test>::default();
        assert_eq!(find(&table, entry(0, 0)), None);
        assert_eq!(table.len(), 0);
        assert_eq!(table.heap_bytes(), 0);
        assert_eq!(table.iter().count(), 0);
        table.check_layout();
    }

    #[test]
    fn find_asks_only_about_entries_of_the_hash() {
        let mut table = ProbeTable::default();
        for id in 0..50 {
            table.insert(entry((id % 5) as u8 * 50, id));
        }
        table.check_layout();
        let mut asked = Vec::new();
        let found = table.find(100, |other| {
            asked.push(other.hash);
            false
        });
        assert_eq!(found, None);
        assert_eq!(asked, [100; 10]);
        let at = find(&table, entry(100, 7)).unwrap();
        assert_eq!(table.get(at), entry(100, 7));
    }

    #[test]
    fn growth_shrink_and_release() {
        let mut table = ProbeTable::default();
        let entries: Vec<Test> = (0..5000)
            .map(|id| entry((id * 37 % 256) as u8, id))
            .collect();
        for &e in &entries {
            table.try_insert(e).unwrap();
        }
        table.check_layout();
        assert_eq!(table.len(), 5000);
        let full = table.slots().len();
        assert!(full >= 5000 * 8 / 7, "{full}");
        for &e in &entries[..4900] {
            let at = find(&table, e).unwrap();
            table.remove_at(at);
            assert_eq!(find(&table, e), None);
        }
        table.check_layout();
        assert!(table.slots().len() < 100 * 32 / 7 + 100, "shrunk");
        for &e in &entries[4900..] {
            let at = find(&table, e).unwrap();
            table.remove_at(at);
        }
        table.check_layout();
        assert_eq!(
            table.heap_bytes(),
            0,
            "an emptied table lets go of its memory"
        );
    }

    #[test]
    fn a_long_run_is_refused_by_try_insert_only() {
        let mut table = ProbeTable::default();
        for id in 0..=MAX_RUN as u16 {
            table.try_insert(entry(9, id)).unwrap();
        }
        assert_eq!(table.try_insert(entry(9, 5000)), Err(LongRun));
        assert_eq!(table.len(), MAX_RUN + 1, "refused, not added");
        table.insert(entry(9, 5000));
        table.check_layout();
        assert!(find(&table, entry(9, 5000)).is_some());
        assert_eq!(table.len(), MAX_RUN + 2);
    }

    #[test]
    fn rehash_reorders_and_keeps_homes() {
        let mut table = ProbeTable::default();
        for id in 0..300 {
            table.insert(entry(id as u8, id));
        }
        let homes = table.homes;
        table.rehash(|e| Test {
            hash: 255 - e.hash,
            id: e.id,
        });
        table.check_layout();
        assert_eq!(table.homes, homes);
        for id in 0..300 {
            assert!(find(&table, entry(255 - id as u8, id)).is_some());
        }
    }

    #[test]
    fn iter_mut_changes_entries_in_place() {
        let mut table = ProbeTable::default();
        for id in 0..100 {
            table.insert(entry(id as u8, id));
        }
        for e in table.iter_mut() {
            e.id += 1000;
        }
        table.check_layout();
        assert!(table.iter().all(|e| e.id > 1000));
        assert!(find(&table, entry(42, 1042)).is_some());
    }

    #[test]
    fn from_sorted() {
        let mut table = ProbeTable::default();
        for id in 0..1000 {
            table.insert(entry((id % 256) as u8, id));
        }
        let mut entries: Vec<Test> = table.iter().collect();
        entries.sort();
        let rebuilt = ProbeTable::from_sorted(&entries, 0);
        rebuilt.check_layout();
        assert!(rebuilt.iter().eq(table.iter()));
        let roomy = ProbeTable::from_sorted(&entries, 5000);
        roomy.check_layout();
        assert!(roomy.slots().len() >= 5000);
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(
            ops in prop::collection::vec((any::<bool>(), any::<u8>(), 0..8_u16), 0..600)
        ) {
            let mut table = ProbeTable::default();
            let mut model = BTreeSet::new();
            for (insert, hash, id) in ops {
                let e = entry(hash, id);
                let at = find(&table, e);
                prop_assert_eq!(at.is_some(), model.contains(&e));
                match (insert, at) {
                    (true, None) => {
                        table.try_insert(e).unwrap();
                        model.insert(e);
                    }
                    (false, Some(at)) => {
                        table.remove_at(at);
                        model.remove(&e);
                    }
                    _ => {}
                }
                prop_assert_eq!(table.len(), model.len());
            }
            table.check_layout();
            let hashes: Vec<u8> = table.iter().map(|e| e.hash).collect();
            let expected: Vec<u8> = model.iter().map(|e| e.hash).collect();
            prop_assert_eq!(hashes, expected);
            for &e in &model {
                prop_assert!(find(&table, e).is_some());
            }
        }
    }
}
