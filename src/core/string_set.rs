//! A set of strings packed into one byte arena.
//!
//! Each member is stored once in `arena` as a LEB128 length followed by its
//! bytes. The index is an ordered linear-probing table of 8-byte entries:
//! the high half is 32 bits of the member's (seeded) hash, the low half its
//! arena offset plus one (0 marks an empty slot). Entries are ordered by
//! hash, each at or after its home slot (`hash * homes / 2^32`) with no
//! empty slot in between, so a lookup reads about three adjacent slots from
//! the home slot and compares arena bytes only where the 32 hash bits
//! match: one cache miss for an absent member, two for a present one.
//! Compared with a `HashSet<Box<str>>` that saves the 16-byte fat pointer
//! per slot and the allocator's block per member.
//!
//! Removed members leave garbage in the arena, compacted away once it
//! passes half of the arena (offsets change, hashes and order do not).
//! Offsets are 32-bit: members that would push the arena past `LIMIT`
//! bytes go to an ordinary overflow set instead (4 GiB of members in one
//! campaign is unlikely, but must not fail).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashSet};

/// Garbage is compacted once it is half the arena and at least this much.
const MIN_GARBAGE_TO_COMPACT: usize = if cfg!(test) { 16 } else { 64 * 1024 };
/// Most entries per `homes` slots before the table grows.
const MAX_LOAD: (usize, usize) = (7, 8);
/// Load right after growing.
const GROWN_LOAD: (usize, usize) = (7, 10);
/// Empty slots kept after the last entry: a few, and more for a large
/// table, where runs near the end are longer.
fn tail(homes: usize) -> usize {
    4 + homes / 256
}
/// An insert that has to move further than this from its home slot picks
/// a new hash seed (seeded hashes make this practically never happen).
const MAX_RUN: usize = 1024;
const MIN_HOMES: usize = 4;

#[derive(Clone, Default)]
pub(crate) struct StringSet<const LIMIT: usize = { u32::MAX as usize }> {
    arena: Vec<u8>,
    /// The table (see the module comment); always ends with an empty slot
    /// once allocated.
    slots: Box<[u64]>,
    /// Number of home slots; `slots` is longer by the entries past the last
    /// home slot plus `tail(homes)`.
    homes: usize,
    /// Entries in `slots`.
    count: usize,
    hasher: DefaultHashBuilder,
    /// Bytes of removed members still in the arena.
    garbage: usize,
    /// Members that did not fit in the arena.
    overflow: HashSet<Box<str>>,
}

/// The member stored at `offset`.
#[inline]
fn entry_at(arena: &[u8], offset: usize) -> &[u8] {
    let (len, header) = read_len(&arena[offset..]);
    let start = offset + header;
    &arena[start..start + len]
}

/// Decodes a LEB128 length; returns it and the bytes it took.
#[inline]
fn read_len(bytes: &[u8]) -> (usize, usize) {
    let mut len = 0_usize;
    for (at, &byte) in bytes.iter().enumerate() {
        len |= usize::from(byte & 0x7f) << (7 * at);
        if byte & 0x80 == 0 {
            return (len, at + 1);
        }
    }
    (len, bytes.len())
}

fn write_len(arena: &mut Vec<u8>, mut len: usize) {
    while len >= 0x80 {
        arena.push((len as u8) | 0x80);
        len >>= 7;
    }
    arena.push(len as u8);
}

fn len_header_size(len: usize) -> usize {
    let bits = usize::BITS - len.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

#[inline]
fn entry_hash(entry: u64) -> u32 {
    (entry >> 32) as u32
}

#[inline]
fn entry_offset(entry: u64) -> usize {
    (entry as u32 - 1) as usize
}

#[inline]
fn make_entry(hash: u32, offset: usize) -> u64 {
    (u64::from(hash) << 32) | (offset as u64 + 1)
}

/// Home slots for `count` entries right after growing.
fn homes_for(count: usize) -> usize {
    if count == 0 {
        return 0;
    }
    (count * GROWN_LOAD.1 / GROWN_LOAD.0).max(MIN_HOMES)
}

impl<const LIMIT: usize> StringSet<LIMIT> {
    #[inline]
    fn hash(&self, bytes: &[u8]) -> u32 {
        (self.hasher.hash_one(bytes) >> 32) as u32
    }

    #[inline]
    fn home(&self, hash: u32) -> usize {
        ((u64::from(hash) * self.homes as u64) >> 32) as usize
    }

    pub fn len(&self) -> usize {
        self.count + self.overflow.len()
    }

    /// The slot of `bytes`, if present.
    #[inline]
    fn find(&self, hash: u32, bytes: &[u8]) -> Option<usize> {
        let mut at = self.home(hash);
        // The last slot is always empty, so these stop inside `slots`.
        while self.slots[at] != 0 && entry_hash(self.slots[at]) < hash {
            at += 1;
        }
        while self.slots[at] != 0 && entry_hash(self.slots[at]) == hash {
            if entry_at(&self.arena, entry_offset(self.slots[at])) == bytes {
                return Some(at);
            }
            at += 1;
        }
        None
    }

    pub fn contains(&self, member: &str) -> bool {
        let bytes = member.as_bytes();
        (self.homes != 0 && self.find(self.hash(bytes), bytes).is_some())
            || (!self.overflow.is_empty() && self.overflow.contains(member))
    }

    pub fn insert(&mut self, member: &str) -> bool {
        if !self.overflow.is_empty() && self.overflow.contains(member) {
            return false;
        }
        let bytes = member.as_bytes();
        if self.homes != 0 && self.find(self.hash(bytes), bytes).is_some() {
            return false;
        }
        let needed = len_header_size(bytes.len()) + bytes.len();
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
        write_len(arena, bytes.len());
        arena.extend_from_slice(bytes);
        if (self.count + 1) * MAX_LOAD.1 > self.homes * MAX_LOAD.0 {
            self.resize(homes_for(self.count + 1));
        }
        self.place_entry(offset, true);
        true
    }

    /// Puts the member at arena `offset` (not yet in the table) into it.
    fn place_entry(&mut self, offset: usize, may_reseed: bool) {
        let hash = self.hash(entry_at(&self.arena, offset));
        let at = self.insert_slot(hash);
        let free = self.slots[at..self.slots.len() - 1]
            .iter()
            .position(|&slot| slot == 0)
            .map(|distance| at + distance);
        let Some(free) = free else {
            // No room before the final empty slot: more tail, then again.
            self.resize(self.homes);
            return self.place_entry(offset, may_reseed);
        };
        if may_reseed && free - self.home(hash) > MAX_RUN {
            // Once per insert: a new seed cannot keep making runs this long.
            self.reseed();
            return self.place_entry(offset, false);
        }
        self.slots.copy_within(at..free, at + 1);
        self.slots[at] = make_entry(hash, offset);
        self.count += 1;
    }

    /// Where an entry of `hash` goes: after the entries of lower or equal
    /// hash from its home slot.
    fn insert_slot(&self, hash: u32) -> usize {
        let mut at = self.home(hash);
        while self.slots[at] != 0 && entry_hash(self.slots[at]) <= hash {
            at += 1;
        }
        at
    }

    pub fn remove(&mut self, member: &str) -> bool {
        let bytes = member.as_bytes();
        let found = if self.homes == 0 {
            None
        } else {
            self.find(self.hash(bytes), bytes)
        };
        let Some(at) = found else {
            return !self.overflow.is_empty() && self.overflow.remove(member);
        };
        let offset = entry_offset(self.slots[at]);
        // Pull back the entries after it that are not at their home slot.
        let mut next = at + 1;
        while self.slots[next] != 0 && self.home(entry_hash(self.slots[next])) < next {
            next += 1;
        }
        self.slots.copy_within(at + 1..next, at);
        self.slots[next - 1] = 0;
        self.count -= 1;

        let end = offset + len_header_size(bytes.len()) + bytes.len();
        if end == self.arena.len() {
            self.arena.truncate(offset);
        } else {
            self.garbage += end - offset;
        }
        if self.count == 0 {
            self.arena = Vec::new();
            self.garbage = 0;
            self.slots = Box::new([]);
            self.homes = 0;
        } else {
            if self.garbage >= MIN_GARBAGE_TO_COMPACT && self.garbage * 2 >= self.arena.len() {
                self.compact();
            }
            if self.count * MAX_LOAD.1 * 4 < self.homes * MAX_LOAD.0 && self.homes > MIN_HOMES {
                // Under a quarter of the highest load: give memory back.
                self.resize(homes_for(self.count));
            }
        }
        true
    }

    /// Rewrites the arena without garbage. Offsets change; hashes and the
    /// order of the table do not.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for slot in self.slots.iter_mut().filter(|slot| **slot != 0) {
            let bytes = entry_at(&self.arena, entry_offset(*slot));
            *slot = make_entry(entry_hash(*slot), arena.len());
            write_len(&mut arena, bytes.len());
            arena.extend_from_slice(bytes);
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// Same seed, `homes` home slots: the order does not change, so the
    /// entries are laid out again in one pass.
    fn resize(&mut self, homes: usize) {
        let entries: Vec<u64> = self.slots.iter().copied().filter(|&e| e != 0).collect();
        self.lay_out(&entries, homes);
    }

    /// A new hash seed: every entry is hashed and ordered again.
    fn reseed(&mut self) {
        self.hasher = DefaultHashBuilder::default();
        let mut entries: Vec<u64> = self
            .slots
            .iter()
            .filter(|&&e| e != 0)
            .map(|&e| {
                let offset = entry_offset(e);
                make_entry(self.hash(entry_at(&self.arena, offset)), offset)
            })
            .collect();
        entries.sort_unstable_by_key(|&entry| entry_hash(entry));
        let homes = self.homes;
        self.lay_out(&entries, homes);
    }

    /// Lays out entries sorted by hash over `homes` home slots.
    fn lay_out(&mut self, entries: &[u64], homes: usize) {
        self.homes = homes;
        self.count = entries.len();
        if homes == 0 {
            self.slots = Box::new([]);
            return;
        }
        let mut slots = Vec::with_capacity(homes + tail(homes));
        for &entry in entries {
            let home = self.home(entry_hash(entry));
            if slots.len() < home {
                slots.resize(home, 0);
            }
            slots.push(entry);
        }
        let len = slots.len().max(homes) + tail(homes);
        slots.resize(len, 0);
        self.slots = slots.into_boxed_slice();
    }

    /// Makes room for `members` more members of `bytes` bytes in all.
    pub fn reserve(&mut self, members: usize, bytes: usize) {
        let wanted = homes_for(self.count + members);
        if wanted > self.homes {
            self.resize(wanted);
        }
        let wanted = (self.arena.len() + bytes).min(LIMIT);
        self.arena
            .reserve_exact(wanted.saturating_sub(self.arena.len()));
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.slots
            .iter()
            .filter(|&&entry| entry != 0)
            .map(|&entry| {
                // Only `&str` ever goes in, so the bytes are UTF-8.
                std::str::from_utf8(entry_at(&self.arena, entry_offset(entry))).unwrap_or_default()
            })
            .chain(self.overflow.iter().map(|member| &**member))
    }

    /// Heap bytes held (arena capacity, table, overflow).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + std::mem::size_of_val(&*self.slots)
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
        if set.homes == 0 {
            assert_eq!(set.count, 0);
            return;
        }
        assert_eq!(*set.slots.last().unwrap(), 0, "ends empty");
        let mut previous = 0;
        let mut count = 0;
        for (at, &entry) in set.slots.iter().enumerate() {
            if entry == 0 {
                continue;
            }
            count += 1;
            let hash = entry_hash(entry);
            assert!(hash >= previous, "ordered by hash");
            previous = hash;
            let bytes = entry_at(&set.arena, entry_offset(entry));
            assert_eq!(set.hash(bytes), hash, "hash matches the member");
            let home = set.home(hash);
            assert!(home <= at, "at or after its home");
            assert!(set.slots[home..at].iter().all(|&e| e != 0), "no gap");
        }
        assert_eq!(count, set.count);
    }

    #[test]
    fn lengths_round_trip() {
        for len in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1 << 21,
            u32::MAX as usize,
        ] {
            let mut arena = Vec::new();
            write_len(&mut arena, len);
            assert_eq!(arena.len(), len_header_size(len), "{len}");
            assert_eq!(read_len(&arena), (len, arena.len()), "{len}");
        }
    }

    #[test]
    fn long_members_and_removal_at_the_end() {
        let mut set = StringSet::<NO_LIMIT>::default();
        let long = "é".repeat(5000);
        assert!(set.insert("a"));
        assert!(set.insert(&long));
        assert!(!set.insert(&long));
        assert!(set.contains(&long));
        assert!(set.remove(&long));
        assert_eq!(set.garbage, 0, "the last entry is cut off, not left behind");
        assert_eq!(set.arena.len(), 2);
        assert!(set.remove("a"));
        assert_eq!(set.heap_bytes(), 0, "an emptied set lets go of its memory");
    }

    #[test]
    fn growth_compaction_shrink_and_reseed_keep_members() {
        let mut set = StringSet::<NO_LIMIT>::default();
        let members: Vec<String> = (0..20_000).map(|i| format!("member-{i}")).collect();
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
            set.slots.len() < 1000 * 32 / 7 + 100,
            "shrunk: {}",
            set.slots.len()
        );
        assert_eq!(set.len(), 1000);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String),
        Remove(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        let member = prop_oneof!["[a-d]{1,3}", "\\PC{1,20}"];
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
