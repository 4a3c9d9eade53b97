//! A set of UUIDs (u128 values), tuned for one cache miss per lookup.
//!
//! Each UUID is kept as its "stored form": a keyed bijective mix, uniform
//! over u128 whatever the UUIDs look like (v4, v7, sequential). The stored
//! forms are the entries of an ordered linear-probing table (`ProbeTable`,
//! 0 for an empty slot): the stored form `y` is its own hash, its home slot
//! is `y * homes / 2^128` (monotone in `y`), and stored forms increase
//! along the array. So a lookup starts at the home slot and scans forward
//! until it meets the value, a larger one or an empty slot: about three
//! slots (48 bytes) at the highest load, 7/8. Growing by a quarter keeps
//! the load between 0.7 and 0.875: 18 to 23 bytes per UUID.
//!
//! The mix is keyed per set with random bits, so UUIDs cannot be chosen to
//! pile up on one home slot; a run that still grows past the table's
//! longest makes the set pick a new key.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use super::probe_table::{ProbeTable, Slot};
use super::relocate::Relocator;
use super::sorted_set::Duplicate;

/// Odd multipliers of the mix, and their inverses modulo 2^128.
const MIX_1: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835;
const MIX_2: u128 = 0xd1b5_4a32_d192_ed03_aef2_a9c7_db3a_0b5b;
const UNMIX_1: u128 = inverse(MIX_1);
const UNMIX_2: u128 = inverse(MIX_2);

/// The inverse of an odd number modulo 2^128 (Newton's iteration: each
/// step doubles the correct low bits, starting from 3).
const fn inverse(odd: u128) -> u128 {
    let mut inverse = odd;
    let mut step = 0;
    while step < 6 {
        inverse = inverse.wrapping_mul(2_u128.wrapping_sub(odd.wrapping_mul(inverse)));
        step += 1;
    }
    inverse
}

/// xor-shift and odd multiply steps, each invertible.
#[inline]
fn mix(value: u128) -> u128 {
    let mut value = value ^ (value >> 64);
    value = value.wrapping_mul(MIX_1);
    value ^= value >> 64;
    value = value.wrapping_mul(MIX_2);
    value ^ (value >> 64)
}

#[inline]
fn unmix(value: u128) -> u128 {
    let mut value = value ^ (value >> 64);
    value = value.wrapping_mul(UNMIX_2);
    value ^= value >> 64;
    value = value.wrapping_mul(UNMIX_1);
    value ^ (value >> 64)
}

fn random_key() -> u128 {
    let state = RandomState::new();
    (u128::from(state.hash_one(1_u8)) << 64) | u128::from(state.hash_one(2_u8))
}

/// A stored form is its own hash.
impl Slot for u128 {
    type Hash = u128;

    #[inline]
    fn hash(self) -> u128 {
        self
    }

    #[inline]
    fn home(stored: u128, homes: usize) -> usize {
        (((stored >> 64) * homes as u128) >> 64) as usize
    }
}

#[derive(Clone)]
pub(crate) struct UuidSet {
    /// Stored forms (see the module comment).
    table: ProbeTable<u128>,
    /// The UUID whose stored form is 0 (that is `key`) is a member.
    has_key: bool,
    key: u128,
}

impl Default for UuidSet {
    fn default() -> Self {
        UuidSet {
            table: ProbeTable::default(),
            has_key: false,
            key: random_key(),
        }
    }
}

impl UuidSet {
    /// Moves the table's buffer (see `core::relocate`).
    pub(crate) fn relocate(&mut self, relocator: &mut dyn Relocator) -> bool {
        self.table.relocate(relocator)
    }

    /// A set of `values`, in any order; refuses duplicates.
    pub fn from_values(mut values: Vec<u128>) -> Result<Self, Duplicate> {
        values.sort_unstable();
        if values.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(Duplicate);
        }
        let mut set = UuidSet::default();
        let key = set.key;
        set.rebuild(values, key, 0);
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.table.len() + usize::from(self.has_key)
    }

    #[inline]
    fn store(&self, uuid: u128) -> u128 {
        mix(uuid ^ self.key)
    }

    #[inline]
    fn unstore(&self, stored: u128) -> u128 {
        unmix(stored) ^ self.key
    }

    /// The slot of `stored` (not 0), if present.
    #[inline]
    fn find(&self, stored: u128) -> Option<usize> {
        // Stored forms are distinct: the first of the hash is the one.
        self.table.find(stored, |_| true)
    }

    #[inline]
    pub fn contains(&self, uuid: u128) -> bool {
        let stored = self.store(uuid);
        if stored == 0 {
            return self.has_key;
        }
        self.find(stored).is_some()
    }

    pub fn insert(&mut self, uuid: u128) -> bool {
        let stored = self.store(uuid);
        if stored == 0 {
            return !std::mem::replace(&mut self.has_key, true);
        }
        if self.find(stored).is_some() {
            return false;
        }
        if self.table.try_insert(stored).is_err() {
            // Once per insert: a new key cannot keep making runs this long.
            self.rekey();
            match self.store(uuid) {
                0 => self.has_key = true,
                stored => self.table.insert(stored),
            }
        }
        true
    }

    pub fn remove(&mut self, uuid: u128) -> bool {
        let stored = self.store(uuid);
        if stored == 0 {
            return std::mem::replace(&mut self.has_key, false);
        }
        let Some(at) = self.find(stored) else {
            return false;
        };
        self.table.remove_at(at);
        true
    }

    /// Every UUID, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.table
            .iter()
            .map(|stored| self.unstore(stored))
            .chain(self.has_key.then_some(self.key))
    }

    pub fn heap_bytes(&self) -> usize {
        self.table.heap_bytes()
    }

    /// A new random key: every stored form changes.
    fn rekey(&mut self) {
        let mut uuids: Vec<u128> = self.iter().collect();
        uuids.sort_unstable();
        let homes = self.table.homes();
        self.rebuild(uuids, random_key(), homes);
    }

    /// Fills the set with distinct `uuids` under `key`, over at least
    /// `homes` home slots.
    fn rebuild(&mut self, uuids: Vec<u128>, key: u128, homes: usize) {
        self.key = key;
        self.has_key = false;
        let mut stored: Vec<u128> = Vec::with_capacity(uuids.len());
        for uuid in uuids {
            match self.store(uuid) {
                0 => self.has_key = true,
                form => stored.push(form),
            }
        }
        stored.sort_unstable();
        self.table = ProbeTable::from_sorted(&stored, homes);
    }
}

impl PartialEq for UuidSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|uuid| other.contains(uuid))
    }
}

impl Eq for UuidSet {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn check_layout(set: &UuidSet) {
        set.table.check_layout();
        let stored: Vec<u128> = set.table.iter().collect();
        assert!(
            stored.windows(2).all(|pair| pair[0] < pair[1]),
            "increasing"
        );
    }

    #[test]
    fn mix_is_a_bijection_that_spreads_neighbours() {
        assert_eq!(MIX_1.wrapping_mul(UNMIX_1), 1);
        assert_eq!(MIX_2.wrapping_mul(UNMIX_2), 1);
        let top_bytes: BTreeSet<u8> = (0..1024_u128).map(|i| (mix(i) >> 120) as u8).collect();
        assert!(top_bytes.len() > 200, "{}", top_bytes.len());
    }

    #[test]
    fn the_key_itself_and_neighbours() {
        let mut set = UuidSet::default();
        let key = set.key;
        for uuid in [key, 0, u128::MAX, key ^ 1] {
            assert!(set.insert(uuid));
            assert!(!set.insert(uuid));
        }
        assert_eq!(set.len(), 4);
        assert!(set.contains(key));
        assert!(set.remove(key));
        assert!(!set.contains(key));
        assert_eq!(set.len(), 3);
        check_layout(&set);
    }

    #[test]
    fn growth_shrink_and_rekey_keep_members() {
        let mut set = UuidSet::default();
        let uuids: Vec<u128> = (0..20_000_u128).map(|i| i << 64 | 0x4000).collect();
        for &uuid in &uuids {
            assert!(set.insert(uuid));
        }
        check_layout(&set);
        let per_uuid = set.heap_bytes() / set.len();
        assert!((16..=24).contains(&per_uuid), "{per_uuid}");
        set.rekey();
        check_layout(&set);
        for &uuid in &uuids {
            assert!(set.contains(uuid));
        }
        for &uuid in &uuids[..19_000] {
            assert!(set.remove(uuid));
        }
        check_layout(&set);
        // Shrinking keeps the load above 7/32.
        assert!(
            set.heap_bytes() < 1000 * 16 * 32 / 7,
            "shrunk: {}",
            set.heap_bytes()
        );
        assert!(uuids[19_000..].iter().all(|&uuid| set.contains(uuid)));
        for &uuid in &uuids[19_000..] {
            assert!(set.remove(uuid));
        }
        assert_eq!(set.len(), 0);
        assert_eq!(set.heap_bytes(), 0);
    }

    #[test]
    fn duplicates_are_refused() {
        assert_eq!(UuidSet::from_values(vec![3, 1, 3]).err(), Some(Duplicate));
        let set = UuidSet::from_values(vec![3, 1, 2]).unwrap();
        assert_eq!(
            set.iter().collect::<BTreeSet<_>>(),
            BTreeSet::from([1, 2, 3])
        );
    }

    proptest! {
        #[test]
        fn mix_round_trips(value in any::<u128>()) {
            prop_assert_eq!(unmix(mix(value)), value);
        }

        #[test]
        fn behaves_like_a_btree_set(
            ops in prop::collection::vec(
                (0..3_u8, prop_oneof![0..64_u128, any::<u128>(), Just(u128::MAX)]),
                0..600,
            )
        ) {
            let mut set = UuidSet::default();
            let mut model = BTreeSet::new();
            for (op, value) in ops {
                match op {
                    0 | 1 => prop_assert_eq!(set.insert(value), model.insert(value)),
                    _ => prop_assert_eq!(set.remove(value), model.remove(&value)),
                }
                prop_assert_eq!(set.len(), model.len());
            }
            check_layout(&set);
            prop_assert_eq!(set.iter().collect::<BTreeSet<u128>>(), model.clone());
            for &value in &model {
                prop_assert!(set.contains(value));
            }
            let rebuilt = UuidSet::from_values(model.iter().copied().collect()).unwrap();
            check_layout(&rebuilt);
            prop_assert!(rebuilt == set);
        }
    }
}
