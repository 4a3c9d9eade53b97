//! A set of strings packed into one byte arena.
//!
//! Each member is stored once in `arena` as a LEB128 length followed by its
//! bytes; the hash table holds only the 4-byte arena offset of each member.
//! Compared with a `HashSet<Box<str>>` that saves the 16-byte fat pointer
//! per slot and the allocator's per-member block and rounding. Removed
//! members leave garbage in the arena, which is compacted away once it
//! passes half of the arena.
//!
//! The arena is addressed by `u32` offsets; members that would push it past
//! `LIMIT` bytes go to an ordinary overflow set instead (4 GiB of members
//! in one campaign is unlikely, but must not fail).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashSet, HashTable};

/// Garbage is compacted once it is half the arena and at least this much.
const MIN_GARBAGE_TO_COMPACT: usize = if cfg!(test) { 16 } else { 64 * 1024 };

#[derive(Clone, Default)]
pub(crate) struct StringSet<const LIMIT: usize = { u32::MAX as usize }> {
    arena: Vec<u8>,
    /// Arena offsets of the live members, hashed by the member's bytes.
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Bytes of removed members still in the arena.
    garbage: usize,
    /// Members that did not fit in the arena.
    overflow: HashSet<Box<str>>,
}

/// The member stored at `offset`.
#[inline]
fn entry_at(arena: &[u8], offset: u32) -> &[u8] {
    let (len, header) = read_len(&arena[offset as usize..]);
    let start = offset as usize + header;
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

impl<const LIMIT: usize> StringSet<LIMIT> {
    #[inline]
    fn hash(hasher: &DefaultHashBuilder, bytes: &[u8]) -> u64 {
        hasher.hash_one(bytes)
    }

    pub fn len(&self) -> usize {
        self.table.len() + self.overflow.len()
    }

    pub fn contains(&self, member: &str) -> bool {
        let bytes = member.as_bytes();
        let hash = Self::hash(&self.hasher, bytes);
        let arena = &self.arena;
        self.table
            .find(hash, |&offset| entry_at(arena, offset) == bytes)
            .is_some()
            || (!self.overflow.is_empty() && self.overflow.contains(member))
    }

    pub fn insert(&mut self, member: &str) -> bool {
        if !self.overflow.is_empty() && self.overflow.contains(member) {
            return false;
        }
        let bytes = member.as_bytes();
        let hash = Self::hash(&self.hasher, bytes);
        let Self {
            arena,
            table,
            hasher,
            ..
        } = self;
        let entry = table.entry(
            hash,
            |&offset| entry_at(arena, offset) == bytes,
            |&offset| Self::hash(hasher, entry_at(arena, offset)),
        );
        let hashbrown::hash_table::Entry::Vacant(vacant) = entry else {
            return false;
        };
        let needed = len_header_size(bytes.len()) + bytes.len();
        if arena.len() + needed > LIMIT {
            // `vacant` goes unused: its table slot stays free.
            if self.garbage > 0 {
                self.compact();
                if self.arena.len() + needed <= LIMIT {
                    return self.insert(member);
                }
            }
            return self.overflow.insert(member.into());
        }
        if arena.capacity() - arena.len() < needed {
            // Grow by a quarter rather than double: the arena is most of the
            // memory, and a copy every 25% of growth is still amortised O(1).
            arena.reserve_exact(needed.max(arena.len() / 4).max(64));
        }
        let offset = arena.len() as u32;
        write_len(arena, bytes.len());
        arena.extend_from_slice(bytes);
        vacant.insert(offset);
        true
    }

    pub fn remove(&mut self, member: &str) -> bool {
        let bytes = member.as_bytes();
        let hash = Self::hash(&self.hasher, bytes);
        let arena = &self.arena;
        let Ok(found) = self
            .table
            .find_entry(hash, |&offset| entry_at(arena, offset) == bytes)
        else {
            return !self.overflow.is_empty() && self.overflow.remove(member);
        };
        let (offset, _) = found.remove();
        let end = offset as usize + len_header_size(bytes.len()) + bytes.len();
        if end == self.arena.len() {
            self.arena.truncate(offset as usize);
        } else {
            self.garbage += end - offset as usize;
        }
        if self.table.is_empty() {
            self.arena = Vec::new();
            self.garbage = 0;
            self.table = HashTable::new();
        } else if self.garbage >= MIN_GARBAGE_TO_COMPACT && self.garbage * 2 >= self.arena.len() {
            self.compact();
        }
        true
    }

    /// Rewrites the arena without garbage, and shrinks the table if it is
    /// mostly empty. Offsets change; hashes do not.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for offset in self.table.iter_mut() {
            let bytes = entry_at(&self.arena, *offset);
            *offset = arena.len() as u32;
            write_len(&mut arena, bytes.len());
            arena.extend_from_slice(bytes);
        }
        self.arena = arena;
        self.garbage = 0;
        if self.table.len() < self.table.capacity() / 4 {
            let Self {
                arena,
                table,
                hasher,
                ..
            } = self;
            table.shrink_to(0, |&offset| Self::hash(hasher, entry_at(arena, offset)));
        }
    }

    /// Makes room for `members` more members of `bytes` bytes in all.
    pub fn reserve(&mut self, members: usize, bytes: usize) {
        let Self {
            arena,
            table,
            hasher,
            ..
        } = self;
        table.reserve(members, |&offset| {
            Self::hash(hasher, entry_at(arena, offset))
        });
        let wanted = (arena.len() + bytes + members).min(LIMIT);
        arena.reserve_exact(wanted.saturating_sub(arena.len()));
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.table
            .iter()
            .map(|&offset| {
                // Only `&str` ever goes in, so the bytes are UTF-8.
                std::str::from_utf8(entry_at(&self.arena, offset)).unwrap_or_default()
            })
            .chain(self.overflow.iter().map(|member| &**member))
    }

    /// Heap bytes held (arena capacity, table, overflow).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.table.allocation_size()
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
        let mut set = StringSet::<{ u32::MAX as usize }>::default();
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
    fn compaction_keeps_members() {
        let mut set = StringSet::<{ u32::MAX as usize }>::default();
        let members: Vec<String> = (0..1000).map(|i| format!("member-{i}")).collect();
        for member in &members {
            set.insert(member);
        }
        for member in members.iter().step_by(2) {
            assert!(set.remove(member));
        }
        assert!(set.garbage < set.arena.len(), "compacted on the way");
        for (i, member) in members.iter().enumerate() {
            assert_eq!(set.contains(member), i % 2 == 1, "{member}");
        }
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
            check::<{ u32::MAX as usize }>(&ops)?;
        }

        /// A tiny arena limit sends members to the overflow set.
        #[test]
        fn overflow_keeps_working(ops in prop::collection::vec(op(), 0..400)) {
            check::<40>(&ops)?;
        }
    }
}
