//! A set of UUIDs (u128 values), tuned for one cache miss per lookup.
//!
//! Each UUID is kept as its "stored form": a keyed bijective mix, uniform
//! over u128 whatever the UUIDs look like (v4, v7, sequential). `slots`
//! is an ordered linear-probing table: the stored form `y` belongs at its
//! home slot `y * homes / 2^128` (monotone in `y`) or after it, stored
//! forms increase along the array, and no empty slot lies between an entry
//! and its home. So a lookup starts at the home slot and scans forward
//! until it meets the value, a larger one or an empty slot: about three
//! slots (48 bytes) at the highest load, 7/8. Growing by a quarter keeps
//! the load between 0.7 and 0.875: 18 to 23 bytes per UUID.
//!
//! The mix is keyed per set with random bits, so UUIDs cannot be chosen to
//! pile up on one home slot; a run that still grows past `MAX_RUN` slots
//! makes the set pick a new key.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Most entries per `homes` slots before the table grows.
const MAX_LOAD: (usize, usize) = (7, 8);
/// Load right after growing.
const GROWN_LOAD: (usize, usize) = (7, 10);
/// Empty slots kept after the last entry: a few, and more for a large
/// table, where runs near the end are longer.
fn tail(homes: usize) -> usize {
    4 + homes / 256
}
/// An insert that has to move further than this from the home slot picks a
/// new key (random keys make this practically never happen).
const MAX_RUN: usize = 1024;
const MIN_HOMES: usize = 4;

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

#[derive(Clone)]
pub(crate) struct UuidSet {
    /// Stored forms, 0 for an empty slot (see the module comment).
    slots: Box<[u128]>,
    /// Number of home slots; `slots` is longer by the entries that sit
    /// past the last home slot plus `tail(homes)`, and always ends empty.
    homes: usize,
    /// Entries in `slots`.
    count: usize,
    /// The UUID whose stored form is 0 (that is `key`) is a member.
    has_key: bool,
    key: u128,
}

impl Default for UuidSet {
    fn default() -> Self {
        UuidSet {
            slots: Box::new([]),
            homes: 0,
            count: 0,
            has_key: false,
            key: random_key(),
        }
    }
}

/// Stored values that are not a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duplicate;

impl UuidSet {
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
        self.count + usize::from(self.has_key)
    }

    #[inline]
    fn store(&self, uuid: u128) -> u128 {
        mix(uuid ^ self.key)
    }

    #[inline]
    fn unstore(&self, stored: u128) -> u128 {
        unmix(stored) ^ self.key
    }

    #[inline]
    fn home(&self, stored: u128) -> usize {
        (((stored >> 64) * self.homes as u128) >> 64) as usize
    }

    /// Where `stored` is, or where it would go: the first slot from its
    /// home that is empty or holds a stored form not below it.
    #[inline]
    fn probe(&self, stored: u128) -> usize {
        let mut at = self.home(stored);
        // The last slot is always empty, so this stops inside `slots`.
        while self.slots[at] != 0 && self.slots[at] < stored {
            at += 1;
        }
        at
    }

    #[inline]
    pub fn contains(&self, uuid: u128) -> bool {
        let stored = self.store(uuid);
        if stored == 0 {
            return self.has_key;
        }
        self.homes != 0 && self.slots[self.probe(stored)] == stored
    }

    pub fn insert(&mut self, uuid: u128) -> bool {
        self.insert_keyed(uuid, true)
    }

    fn insert_keyed(&mut self, uuid: u128, may_rekey: bool) -> bool {
        let stored = self.store(uuid);
        if stored == 0 {
            return !std::mem::replace(&mut self.has_key, true);
        }
        if self.homes != 0 && self.slots[self.probe(stored)] == stored {
            return false;
        }
        if (self.count + 1) * MAX_LOAD.1 > self.homes * MAX_LOAD.0 {
            self.resize(homes_for(self.count + 1));
        }
        let at = self.probe(stored);
        let Some(free) = self.slots[at..self.slots.len() - 1]
            .iter()
            .position(|&slot| slot == 0)
            .map(|offset| at + offset)
        else {
            // No room before the final empty slot: more tail, then again.
            self.resize(self.homes);
            return self.insert_keyed(uuid, may_rekey);
        };
        if may_rekey && free - self.home(stored) > MAX_RUN {
            // Once per insert: a new key cannot keep making runs this long.
            self.rekey();
            return self.insert_keyed(uuid, false);
        }
        self.slots.copy_within(at..free, at + 1);
        self.slots[at] = stored;
        self.count += 1;
        true
    }

    pub fn remove(&mut self, uuid: u128) -> bool {
        let stored = self.store(uuid);
        if stored == 0 {
            return std::mem::replace(&mut self.has_key, false);
        }
        if self.homes == 0 {
            return false;
        }
        let at = self.probe(stored);
        if self.slots[at] != stored {
            return false;
        }
        // Pull back the entries after it that are not at their home slot.
        let mut next = at + 1;
        while self.slots[next] != 0 && self.home(self.slots[next]) < next {
            next += 1;
        }
        self.slots.copy_within(at + 1..next, at);
        self.slots[next - 1] = 0;
        self.count -= 1;
        if self.count == 0 {
            let (has_key, key) = (self.has_key, self.key);
            *self = UuidSet {
                has_key,
                key,
                ..UuidSet::default()
            };
        } else if self.count * MAX_LOAD.1 * 4 < self.homes * MAX_LOAD.0 && self.homes > MIN_HOMES {
            // Under a quarter of the highest load: give memory back.
            self.resize(homes_for(self.count));
        }
        true
    }

    /// Every UUID, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.slots
            .iter()
            .filter(|&&stored| stored != 0)
            .map(|&stored| self.unstore(stored))
            .chain(self.has_key.then_some(self.key))
    }

    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Same key, `homes` home slots: the stored order does not change, so
    /// the entries are placed again in one pass.
    fn resize(&mut self, homes: usize) {
        let stored: Vec<u128> = self.slots.iter().copied().filter(|&s| s != 0).collect();
        self.place(&stored, homes);
    }

    /// A new random key: every stored form changes.
    fn rekey(&mut self) {
        let mut uuids: Vec<u128> = self.iter().collect();
        uuids.sort_unstable();
        let homes = self.homes;
        self.rebuild(uuids, random_key(), homes);
    }

    /// Fills the set with distinct `uuids` under `key`.
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
        let homes = homes.max(homes_for(stored.len()));
        self.place(&stored, homes);
    }

    /// Lays out sorted, distinct, non-zero stored forms over `homes` home
    /// slots.
    fn place(&mut self, stored: &[u128], homes: usize) {
        self.homes = homes;
        self.count = stored.len();
        if stored.is_empty() && homes == 0 {
            self.slots = Box::new([]);
            return;
        }
        let mut slots = Vec::with_capacity(homes + tail(homes));
        for &form in stored {
            let home = self.home(form);
            if slots.len() < home {
                slots.resize(home, 0);
            }
            slots.push(form);
        }
        let len = slots.len().max(homes) + tail(homes);
        slots.resize(len, 0);
        self.slots = slots.into_boxed_slice();
    }
}

/// Home slots for `count` entries right after growing.
fn homes_for(count: usize) -> usize {
    if count == 0 {
        return 0;
    }
    (count * GROWN_LOAD.1 / GROWN_LOAD.0).max(MIN_HOMES)
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
        assert_eq!(*set.slots.last().unwrap_or(&0), 0, "ends empty");
        let mut previous = 0;
        let mut count = 0;
        for (at, &stored) in set.slots.iter().enumerate() {
            if stored == 0 {
                continue;
            }
            count += 1;
            assert!(stored > previous, "increasing");
            previous = stored;
            let home = set.home(stored);
            assert!(home <= at, "at or after its home");
            assert!(set.slots[home..at].iter().all(|&s| s != 0), "no gap");
        }
        assert_eq!(count, set.count);
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
