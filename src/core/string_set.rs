//! A set of strings packed into one byte arena.
//!
//! Each member is stored once in `arena` as a LEB128 length followed by its
//! bytes. The index is an ordered linear-probing table (`ProbeTable`) of
//! 8-byte entries: the high half is 32 bits of the member's (seeded) hash,
//! the low half its arena offset plus one (0 marks an empty slot). Entries
//! are ordered by hash, each at or after its home slot (`hash * homes /
//! 2^32`) with no empty slot in between, so a lookup reads about three
//! adjacent slots from the home slot and compares arena bytes only where
//! the 32 hash bits match: one cache miss for an absent member, two for a
//! present one. Compared with a `HashSet<Box<str>>` that saves the 16-byte
//! fat pointer per slot and the allocator's block per member.
//!
//! Members of up to `SHORT_MAX` bytes skip the arena: they sit whole in a
//! 24-byte slot of a second table (`short`), ordered the same way, so a
//! lookup of one reads one place in memory, hit or miss (the arena's
//! second cache miss was a measurable part of a HAS; 24 bytes a slot cost
//! about what an 8-byte entry and the arena bytes of a 17-byte member do).
//!
//! Removed members leave garbage in the arena, compacted away once it
//! passes half of the arena (offsets change, hashes and order do not).
//! Offsets are 32-bit: members that would push the arena past `LIMIT`
//! bytes go to an ordinary overflow set instead (4 GiB of members in one
//! campaign is unlikely, but must not fail).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashSet};

use super::leb128;
use super::probe_table::{ProbeTable, Slot};
use super::relocate::{self, Moved, Relocator};

/// Garbage is compacted once it is half the arena and at least this much.
const MIN_GARBAGE_TO_COMPACT: usize = if cfg!(test) { 16 } else { 64 * 1024 };

/// Longest member kept whole in a slot of the short table.
const SHORT_MAX: usize = 19;

#[derive(Clone, Default)]
pub(crate) struct StringSet<const LIMIT: usize = { u32::MAX as usize }> {
    arena: Vec<u8>,
    /// The index (see the module comment).
    table: ProbeTable<Entry>,
    /// Members of up to `SHORT_MAX` bytes, whole.
    short: ProbeTable<Short>,
    hasher: DefaultHashBuilder,
    /// Bytes of removed members still in the arena.
    garbage: usize,
    /// Members that did not fit in the arena.
    overflow: HashSet<Box<str>>,
}

/// An entry of the index: hash in the high half, arena offset plus one in
/// the low half.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Entry(u64);

impl Entry {
    #[inline]
    fn new(hash: u32, offset: usize) -> Self {
        Entry((u64::from(hash) << 32) | (offset as u64 + 1))
    }

    #[inline]
    fn offset(self) -> usize {
        (self.0 as u32 - 1) as usize
    }
}

impl Slot for Entry {
    type Hash = u32;

    #[inline]
    fn hash(self) -> u32 {
        (self.0 >> 32) as u32
    }

    #[inline]
    fn home(hash: u32, homes: usize) -> usize {
        ((u64::from(hash) * homes as u64) >> 32) as usize
    }
}

/// A short member in its slot: 32 bits of its hash, its length (0 marks
/// an empty slot) and its bytes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Short {
    hash: u32,
    len: u8,
    bytes: [u8; SHORT_MAX],
}

impl Short {
    #[inline]
    fn new(hash: u32, member: &[u8]) -> Self {
        let mut bytes = [0; SHORT_MAX];
        bytes[..member.len()].copy_from_slice(member);
        Short {
            hash,
            len: member.len() as u8,
            bytes,
        }
    }

    #[inline]
    fn member(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Slot for Short {
    type Hash = u32;

    #[inline]
    fn hash(self) -> u32 {
        self.hash
    }

    #[inline]
    fn home(hash: u32, homes: usize) -> usize {
        Entry::home(hash, homes)
    }

    #[inline]
    fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// The member stored at `offset`.
#[inline]
fn entry_at(arena: &[u8], offset: usize) -> &[u8] {
    // The arena holds only what `insert` wrote: the length is whole.
    let (len, header) = leb128::read(&arena[offset..]).unwrap_or_default();
    let start = offset + header;
    &arena[start..start + len]
}

#[inline]
fn hash_with(hasher: &DefaultHashBuilder, bytes: &[u8]) -> u32 {
    (hasher.hash_one(bytes) >> 32) as u32
}

impl<const LIMIT: usize> StringSet<LIMIT> {
    #[inline]
    fn hash(&self, bytes: &[u8]) -> u32 {
        hash_with(&self.hasher, bytes)
    }

    pub fn len(&self) -> usize {
        self.table.len() + self.short.len() + self.overflow.len()
    }

    /// The slot of `bytes` (at most `SHORT_MAX` long) in `short`.
    #[inline(always)]
    fn find_short(&self, bytes: &[u8]) -> Option<usize> {
        self.short
            .find(self.hash(bytes), |entry| entry.member() == bytes)
    }

    /// The slot of `bytes`, if present.
    #[inline]
    fn find(&self, bytes: &[u8]) -> Option<usize> {
        self.table.find(self.hash(bytes), |entry| {
            entry_at(&self.arena, entry.offset()) == bytes
        })
    }

    /// Always inlined, like `ProbeTable::find` (the membership hot path).
    #[inline(always)]
    pub fn contains(&self, member: &str) -> bool {
        if member.len() <= SHORT_MAX {
            return self.find_short(member.as_bytes()).is_some();
        }
        self.find(member.as_bytes()).is_some()
            || (!self.overflow.is_empty() && self.overflow.contains(member))
    }

    pub fn insert(&mut self, member: &str) -> bool {
        let bytes = member.as_bytes();
        if bytes.len() <= SHORT_MAX {
            if self.find_short(bytes).is_some() {
                return false;
            }
            if self
                .short
                .try_insert(Short::new(self.hash(bytes), bytes))
                .is_err()
            {
                // Once per insert, as below.
                self.reseed();
                self.short.insert(Short::new(self.hash(bytes), bytes));
            }
            return true;
        }
        if !self.overflow.is_empty() && self.overflow.contains(member) {
            return false;
        }
        let bytes = member.as_bytes();
        if self.find(bytes).is_some() {
            return false;
        }
        let needed = leb128::encoded_len(bytes.len()) + bytes.len();
        if self.arena.len() + needed > LIMIT {
            if self.garbage > 0 {
                self.compact();
            }
            if self.arena.len() + needed > LIMIT {
                return self.overflow.insert(member.into());
            }
        }
        let arena = &mut self.arena;
        if arena.capacity() - arena.len() < needed {
            // Grow by a quarter rather than double: the arena is most of the
            // memory, and a copy every 25% of growth is still amortised O(1).
            arena.reserve_exact(needed.max(arena.len() / 4).max(64));
        }
        let offset = arena.len();
        leb128::write(arena, bytes.len());
        arena.extend_from_slice(bytes);
        let entry = Entry::new(self.hash(bytes), offset);
        if self.table.try_insert(entry).is_err() {
            // Once per insert: a new seed cannot keep making runs this long.
            self.reseed();
            let entry = Entry::new(self.hash(bytes), offset);
            self.table.insert(entry);
        }
        true
    }

    pub fn remove(&mut self, member: &str) -> bool {
        let bytes = member.as_bytes();
        if bytes.len() <= SHORT_MAX {
            let Some(at) = self.find_short(bytes) else {
                return false;
            };
            self.short.remove_at(at);
            return true;
        }
        let Some(at) = self.find(bytes) else {
            return !self.overflow.is_empty() && self.overflow.remove(member);
        };
        let offset = self.table.get(at).offset();
        self.table.remove_at(at);

        let end = offset + leb128::encoded_len(bytes.len()) + bytes.len();
        if end == self.arena.len() {
            self.arena.truncate(offset);
        } else {
            self.garbage += end - offset;
        }
        if self.table.len() == 0 {
            self.arena = Vec::new();
            self.garbage = 0;
        } else if self.garbage >= MIN_GARBAGE_TO_COMPACT && self.garbage * 2 >= self.arena.len() {
            self.compact();
        }
        true
    }

    /// Rewrites the arena without garbage. Offsets change; hashes and the
    /// order of the table do not.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for entry in self.table.iter_mut() {
            let bytes = entry_at(&self.arena, entry.offset());
            *entry = Entry::new(entry.hash(), arena.len());
            leb128::write(&mut arena, bytes.len());
            arena.extend_from_slice(bytes);
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// A new hash seed: every entry of both tables is hashed and ordered
    /// again.
    fn reseed(&mut self) {
        self.hasher = DefaultHashBuilder::default();
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.table.rehash(|entry| {
            let offset = entry.offset();
            Entry::new(hash_with(hasher, entry_at(arena, offset)), offset)
        });
        self.short
            .rehash(|entry| Short::new(hash_with(hasher, entry.member()), entry.member()));
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        // Only `&str` ever goes in, so the bytes are UTF-8.
        let text = |bytes| std::str::from_utf8(bytes).unwrap_or_default();
        self.short
            .entries()
            .map(move |entry| text(entry.member()))
            .chain(
                self.table
                    .iter()
                    .map(move |entry| text(entry_at(&self.arena, entry.offset()))),
            )
            .chain(self.overflow.iter().map(|member| &**member))
    }

    /// Moves the arena and both tables (see `core::relocate`); with
    /// `renew`, the overflow hash set is renewed with its members moved.
    pub(crate) fn relocate(
        &mut self,
        relocator: &mut dyn Relocator,
        moved: &mut Moved,
        renew: bool,
    ) {
        moved.relocated(relocate::vec(&mut self.arena, relocator));
        moved.relocated(self.table.relocate(relocator));
        moved.relocated(self.short.relocate(relocator));
        if renew && !self.overflow.is_empty() {
            let mut fresh = HashSet::with_capacity(self.overflow.len());
            for member in std::mem::take(&mut self.overflow) {
                let (member, was_moved) = relocate::boxed_str(member, relocator);
                moved.relocated(was_moved);
                fresh.insert(member);
            }
            self.overflow = fresh;
            moved.renewed += 1;
        }
    }

    /// Heap bytes held (arena capacity, tables, overflow).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.table.heap_bytes()
            + self.short.heap_bytes()
            + self.overflow.allocation_size()
            + self
                .overflow
                .iter()
                .map(|member| member.len())
                .sum::<usize>()
    }
}

impl<const LIMIT: usize> PartialEq for StringSet<LIMIT> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|member| other.contains(member))
    }
}

impl<const LIMIT: usize> Eq for StringSet<LIMIT> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet as ModelSet;

    const NO_LIMIT: usize = u32::MAX as usize;

    fn check_layout<const LIMIT: usize>(set: &StringSet<LIMIT>) {
        set.table.check_layout();
        for entry in set.table.iter() {
            let bytes = entry_at(&set.arena, entry.offset());
            assert!(bytes.len() > SHORT_MAX, "a short member in the arena");
            assert_eq!(set.hash(bytes), entry.hash(), "hash matches the member");
        }
        set.short.check_layout();
        for entry in set.short.iter() {
            assert!(entry.len > 0 && usize::from(entry.len) <= SHORT_MAX);
            assert_eq!(set.hash(entry.member()), entry.hash(), "hash matches");
        }
    }

    #[test]
    fn long_members_and_removal_at_the_end() {
        let mut set = StringSet::<NO_LIMIT>::default();
        let long = "é".repeat(5000);
        let first = "a".repeat(SHORT_MAX + 1);
        assert!(set.insert(&first));
        assert!(set.insert(&long));
        assert!(!set.insert(&long));
        assert!(set.contains(&long));
        assert!(set.remove(&long));
        assert_eq!(set.garbage, 0, "the last entry is cut off, not left behind");
        assert_eq!(set.arena.len(), SHORT_MAX + 2);
        assert!(set.remove(&first));
        assert_eq!(set.heap_bytes(), 0, "an emptied set lets go of its memory");
    }

    #[test]
    fn short_members_sit_in_their_slots() {
        let mut set = StringSet::<NO_LIMIT>::default();
        let edge = "b".repeat(SHORT_MAX);
        let over = "b".repeat(SHORT_MAX + 1);
        for member in ["a", "zoë", &edge, &over] {
            assert!(set.insert(member));
            assert!(!set.insert(member));
        }
        assert_eq!((set.short.len(), set.table.len()), (3, 1));
        assert!(!set.contains(&"b".repeat(SHORT_MAX - 1)));
        check_layout(&set);
        set.reseed();
        check_layout(&set);
        for member in ["a", "zoë", &edge, &over] {
            assert!(set.contains(member));
            assert!(set.remove(member));
            assert!(!set.contains(member));
        }
        assert_eq!(set.heap_bytes(), 0, "an emptied set lets go of its memory");
    }

    #[test]
    fn growth_compaction_shrink_and_reseed_keep_members() {
        let mut set = StringSet::<NO_LIMIT>::default();
        // Long enough for the arena, and some short ones beside.
        let members: Vec<String> = (0..20_000)
            .map(|i| {
                if i % 5 == 0 {
                    format!("m-{i}")
                } else {
                    format!("member-with-a-tail-{i}")
                }
            })
            .collect();
        for member in &members {
            assert!(set.insert(member));
        }
        check_layout(&set);
        set.reseed();
        check_layout(&set);
        for member in members.iter().step_by(2) {
            assert!(set.remove(member));
        }
        assert!(set.garbage < set.arena.len(), "compacted on the way");
        check_layout(&set);
        for (i, member) in members.iter().enumerate() {
            assert_eq!(set.contains(member), i % 2 == 1, "{member}");
        }
        for member in members.iter().skip(1).step_by(2).take(9_000) {
            assert!(set.remove(member));
        }
        check_layout(&set);
        assert!(
            set.table.slots().len() + set.short.slots().len() < 1000 * 32 / 7 + 200,
            "shrunk: {} and {}",
            set.table.slots().len(),
            set.short.slots().len()
        );
        assert_eq!(set.len(), 1000);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String),
        Remove(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        let member = prop_oneof!["[a-d]{1,3}", "\\PC{1,20}", "[a-b]{17,22}"];
        prop_oneof![
            3 => member.clone().prop_map(Op::Insert),
            1 => member.prop_map(Op::Remove),
        ]
    }

    fn check<const LIMIT: usize>(ops: &[Op]) -> Result<(), TestCaseError> {
        let mut set = StringSet::<LIMIT>::default();
        let mut model = ModelSet::new();
        for op in ops {
            match op {
                Op::Insert(m) => prop_assert_eq!(set.insert(m), model.insert(m.clone())),
                Op::Remove(m) => prop_assert_eq!(set.remove(m), model.remove(m)),
            }
            prop_assert_eq!(set.len(), model.len());
            prop_assert!(set.arena.len() <= LIMIT);
        }
        check_layout(&set);
        for member in &model {
            prop_assert!(set.contains(member));
        }
        let listed: ModelSet<String> = set.iter().map(str::to_owned).collect();
        prop_assert_eq!(listed, model);
        let copy = set.clone();
        prop_assert!(copy == set);
        Ok(())
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_set(ops in prop::collection::vec(op(), 0..400)) {
            check::<NO_LIMIT>(&ops)?;
        }

        /// A tiny arena limit sends members to the overflow set.
        #[test]
        fn overflow_keeps_working(ops in prop::collection::vec(op(), 0..400)) {
            check::<40>(&ops)?;
        }
    }
}
