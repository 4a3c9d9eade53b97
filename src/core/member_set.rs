//! The set of members of one campaign.
//!
//! Its representation is private: callers see only the API below, so the
//! storage can change without touching the command layer.
//!
//! Members are exact strings, but four kinds are kept compactly:
//!
//! - canonical decimal ids ("0", "7", "18446744073709551615"; not "007",
//!   "-1" or anything past u64::MAX) as u64 values in a roaring treemap
//!   with a sorted array for scattered high words (`NumberSet`);
//! - canonical lowercase UUIDs as u128 values in an ordered linear-probing
//!   table (`UuidSet`);
//! - a short ASCII prefix and a canonical id ("user:42", not "user:042")
//!   as the id in the prefix's own `NumberSet` (`PrefixedSet`, a few
//!   prefixes per set; see there for what happens past them);
//! - every other member as a string in one packed arena (`StringSet`).
//!
//! A member is compact only if formatting the value gives back exactly the
//! member, so iteration reproduces every member as it was added. A
//! membership check allocates nothing. The encoding is in `member_codec`.

use std::fmt;

use super::canonical::{classify, parse_prefixed, Kind};
use super::number_set::NumberSet;
use super::prefixed_set::PrefixedSet;
use super::relocate::{Moved, Relocator, Walk};
use super::string_set::StringSet;
use super::uuid_set::UuidSet;

pub use super::member_codec::ENCODING_VERSION;

/// Least seconds between two renewals of a set's bitmaps by relocation
/// walks (see `MemberSet::relocate`).
pub const RENEW_INTERVAL_S: u32 = 600;
pub use super::member_ref::MemberRef;

#[derive(Clone, Default)]
pub struct MemberSet {
    pub(super) numbers: NumberSet,
    pub(super) uuids: UuidSet,
    pub(super) prefixed: PrefixedSet,
    pub(super) strings: StringSet,
    /// When (unix seconds) a relocation walk last renewed the bitmaps by a
    /// copy (0: never); not part of the content.
    pub(super) renewed_s: u32,
}

/// Builds a set from many members at once (a load): UUIDs are collected
/// and placed in one pass at the end instead of growing their table
/// insert by insert (295 ns per UUID against about 100).
#[derive(Default)]
pub struct MemberSetBuilder {
    set: MemberSet,
    uuids: Vec<u128>,
}

impl MemberSetBuilder {
    pub fn insert(&mut self, member: &str) {
        match classify(member) {
            Kind::Number(id) => {
                self.set.numbers.insert(id);
            }
            Kind::Uuid(uuid) => self.uuids.push(uuid),
            Kind::Text(text) => {
                self.set.insert_text(text);
            }
        }
    }

    pub fn finish(mut self) -> MemberSet {
        let mut uuids = self.uuids;
        uuids.sort_unstable();
        uuids.dedup();
        self.set.uuids = UuidSet::from_values(uuids).expect("deduplicated above");
        self.set
    }
}

impl MemberSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `member`; true if it was not present.
    pub fn insert(&mut self, member: &str) -> bool {
        match classify(member) {
            Kind::Number(id) => self.numbers.insert(id),
            Kind::Uuid(uuid) => self.uuids.insert(uuid),
            Kind::Text(text) => self.insert_text(text),
        }
    }

    /// Adds a member that is neither a plain id nor a UUID.
    fn insert_text(&mut self, text: &str) -> bool {
        if let Some((prefix, id)) = parse_prefixed(text.as_bytes()) {
            if let Some(added) = self.prefixed.insert(&text.as_bytes()[..prefix], id) {
                return added;
            }
        }
        self.strings.insert(text)
    }

    /// Removes `member`; true if it was present.
    pub fn remove(&mut self, member: &str) -> bool {
        match classify(member) {
            Kind::Number(id) => self.numbers.remove(id),
            Kind::Uuid(uuid) => self.uuids.remove(uuid),
            Kind::Text(text) => match self.prefixed.find(text.as_bytes()) {
                Some((at, id)) => self.prefixed.remove_at(at, id),
                None => self.strings.remove(text),
            },
        }
    }

    /// Allocation-free.
    #[inline]
    pub fn contains(&self, member: &str) -> bool {
        match classify(member) {
            Kind::Number(id) => self.numbers.contains(id),
            Kind::Uuid(uuid) => self.uuids.contains(uuid),
            Kind::Text(text) => self.contains_text(text),
        }
    }

    /// A member that is neither a plain id nor a UUID.
    #[inline]
    fn contains_text(&self, text: &str) -> bool {
        match self.prefixed.find(text.as_bytes()) {
            Some((at, id)) => self.prefixed.contains_at(at, id),
            None => self.strings.contains(text),
        }
    }

    pub fn len(&self) -> usize {
        self.numbers.len() + self.uuids.len() + self.prefixed.len() + self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Members in no particular order, each exactly as it was added.
    pub fn iter(&self) -> impl Iterator<Item = MemberRef<'_>> + '_ {
        self.numbers
            .iter()
            .map(MemberRef::number)
            .chain(self.uuids.iter().map(MemberRef::uuid))
            .chain(
                self.prefixed
                    .iter()
                    .map(|(prefix, id)| MemberRef::prefixed(prefix, id)),
            )
            .chain(self.strings.iter().map(MemberRef::text))
    }

    /// Estimated heap bytes held by the set (for `MEMORY USAGE`).
    /// Units of a relocation walk (see `core::relocate`): the numbers',
    /// the UUID table, the prefixes', the strings.
    pub fn relocation_units(&self) -> usize {
        self.numbers.relocation_units() + 1 + self.prefixed.relocation_units() + 1
    }

    /// Moves or renews the set's buffers from unit `start` on, stopping
    /// between two units (never before the first) once the relocator asks.
    /// Bitmaps and hash sets are renewed (copied) only by a walk that starts
    /// `RENEW_INTERVAL_S` or more after the last walk that renewed them
    /// completed, at `now_s`: a server that stays fragmented for other
    /// reasons visits every key again and again, and copying them on each
    /// visit would only churn the allocator.
    pub fn relocate(
        &mut self,
        start: usize,
        relocator: &mut dyn Relocator,
        moved: &mut Moved,
        now_s: u32,
    ) -> Walk {
        let renew = self.renewed_s == 0 || now_s.wrapping_sub(self.renewed_s) >= RENEW_INTERVAL_S;
        let numbers = self.numbers.relocation_units();
        let prefixed = self.prefixed.relocation_units();
        let total = numbers + 1 + prefixed + 1;
        for unit in start..total {
            if unit > start && relocator.should_stop() {
                return Walk::StoppedAt(unit);
            }
            if unit < numbers {
                self.numbers.relocate_unit(unit, relocator, moved, renew);
            } else if unit == numbers {
                moved.relocated(self.uuids.relocate(relocator));
            } else if unit < numbers + 1 + prefixed {
                self.prefixed
                    .relocate_unit(unit - numbers - 1, relocator, moved, renew);
            } else {
                self.strings.relocate(relocator, moved, renew);
            }
        }
        if renew {
            self.renewed_s = now_s.max(1);
        }
        Walk::Done
    }

    pub fn heap_bytes(&self) -> usize {
        self.numbers.heap_bytes()
            + self.uuids.heap_bytes()
            + self.prefixed.heap_bytes()
            + self.strings.heap_bytes()
    }
}

/// Set equality.
impl PartialEq for MemberSet {
    fn eq(&self, other: &Self) -> bool {
        if self.prefixed.is_saturated() || other.prefixed.is_saturated() {
            // A prefixed id may be a string in one set and not in the other.
            return self.len() == other.len() && self.iter().all(|m| other.contains(&m));
        }
        // Otherwise each member has one place, so the sets are equal part
        // by part.
        self.numbers == other.numbers
            && self.uuids == other.uuids
            && self.prefixed.same_ids(&other.prefixed)
            && self.strings == other.strings
    }
}

impl Eq for MemberSet {}

impl fmt::Debug for MemberSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<&'a str> for MemberSet {
    fn from_iter<I: IntoIterator<Item = &'a str>>(members: I) -> Self {
        let mut set = MemberSet::new();
        for member in members {
            set.insert(member);
        }
        set
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::canonical::{format_uuid, UUID_LEN};
    use crate::core::checksum::member_hash;
    use crate::core::codec::{RecordBuffer, RecordWriter};
    use crate::core::prefixed_set::MAX_PREFIXES;
    use proptest::prelude::*;
    use std::collections::HashSet as ModelSet;

    /// Counts heap allocations made by the current thread, to prove that
    /// lookups make none.
    mod allocations {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static COUNT: Cell<u64> = const { Cell::new(0) };
        }

        struct Counting;

        fn count() {
            let _ = COUNT.try_with(|count| count.set(count.get() + 1));
        }

        // SAFETY: every call is passed straight to the system allocator.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                count();
                // SAFETY: the caller's contract, passed on unchanged.
                unsafe { System.alloc(layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                count();
                // SAFETY: the caller's contract, passed on unchanged.
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                count();
                // SAFETY: the caller's contract, passed on unchanged.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: the caller's contract, passed on unchanged.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;

        pub fn made() -> u64 {
            COUNT.with(Cell::get)
        }
    }

    /// The members of the version 1 fixture (tests/fixtures), and more.
    pub(crate) const EDGE_MEMBERS: &[&str] = &[
        "7",
        "007",
        "0",
        "00",
        "-1",
        "-0",
        "+7",
        "42",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "4294967295",
        "4294967296",
        "123e4567-e89b-12d3-a456-426614174000",
        "123E4567-E89B-12D3-A456-426614174000",
        "123e4567-E89B-12d3-a456-426614174000",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "123e4567e89b12d3a456426614174000",
        "zoë",
        "user:1",
        "with space",
        "🚀",
        // Prefixed ids and their look-alikes.
        "user:42",
        "user:042",
        "user:0",
        "user:00",
        "user:",
        "user42",
        "user:42 ",
        "User:42",
        "cust-7",
        "acct_18446744073709551615",
        "acct_18446744073709551616",
        "abcdefghijklmno:9",
        "abcdefghijklmnop:9",
        "zoë:9",
    ];

    /// Writes `members` the way encoding version 1 did.
    pub(crate) fn encode_v1<'a>(members: impl IntoIterator<Item = &'a str>) -> RecordBuffer {
        let members: Vec<&str> = members.into_iter().collect();
        let mut buffer = RecordBuffer::default();
        buffer.write_unsigned(members.len() as u64);
        for member in members {
            buffer.write_bytes(member.as_bytes());
        }
        buffer
    }

    pub(crate) fn round_trip(set: &MemberSet) -> MemberSet {
        let mut buffer = RecordBuffer::default();
        set.encode(&mut buffer);
        MemberSet::decode(&mut buffer, ENCODING_VERSION).unwrap()
    }

    fn listed(set: &MemberSet) -> ModelSet<String> {
        set.iter().map(|member| member.to_string()).collect()
    }

    #[test]
    fn insert_remove_contains() {
        let mut set = MemberSet::new();
        assert!(set.insert("a"));
        assert!(!set.insert("a"));
        assert!(set.insert("b"));
        assert_eq!(set.len(), 2);
        assert!(set.contains("a"));
        assert!(!set.contains("c"));
        assert!(set.remove("a"));
        assert!(!set.remove("a"));
        assert_eq!(set.len(), 1);
        assert!(!set.is_empty());
        assert!(set.remove("b"));
        assert!(set.is_empty());
    }

    #[test]
    fn look_alike_members_stay_distinct() {
        let mut set = MemberSet::new();
        for member in EDGE_MEMBERS {
            assert!(set.insert(member), "{member}");
        }
        assert_eq!(set.len(), EDGE_MEMBERS.len());
        assert!(!set.contains("8"));
        assert!(!set.contains("0007"));
        assert!(!set.contains("123e4567-e89b-12d3-a456-426614174001"));
        let expected: ModelSet<String> = EDGE_MEMBERS.iter().map(|m| m.to_string()).collect();
        assert_eq!(listed(&set), expected);
        assert!(set.remove("7"));
        assert!(set.contains("007"), "removing 7 leaves 007");
        assert!(set.remove("123e4567-e89b-12d3-a456-426614174000"));
        assert!(set.contains("123E4567-E89B-12D3-A456-426614174000"));
        assert_eq!(round_trip(&set), set);
    }

    #[test]
    fn lookups_allocate_nothing() {
        let mut set = MemberSet::new();
        for i in 0..50_000_u64 {
            set.insert(&(i * 31).to_string());
            set.insert(&format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7));
            set.insert(&format!("user:{i}"));
        }
        // Also scattered ids (the sparse array) and a pending delta.
        for i in 0..5_000_u64 {
            set.insert(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_string());
        }
        let probes: Vec<String> = (0..2_000_u64)
            .flat_map(|i| {
                [
                    (i * 29).to_string(),
                    format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7),
                    format!("user:{i}"),
                    format!("nobody:{i}"),
                    (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_string(),
                    format!("{i:03}"),
                ]
            })
            .collect();
        let before = allocations::made();
        let mut found = 0;
        for probe in &probes {
            found += usize::from(set.contains(probe));
        }
        assert_eq!(allocations::made(), before, "contains allocated");
        assert!(found >= 6_000, "{found}");
    }

    #[test]
    fn heap_bytes_follows_member_lengths() {
        let empty = MemberSet::new().heap_bytes();
        let set: MemberSet = ["x".repeat(1000).as_str()].into_iter().collect();
        assert!(set.heap_bytes() >= empty + 1000);
    }

    #[test]
    fn compact_kinds_take_little_memory() {
        let mut numbers = MemberSet::new();
        let mut uuids = MemberSet::new();
        for i in 0..100_000_u64 {
            // Spread below 10^8, as random ids would be.
            numbers.insert(&(i.wrapping_mul(2_654_435_761) % 100_000_000).to_string());
            let value = u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            let mut text = [0; UUID_LEN];
            format_uuid(value, &mut text);
            uuids.insert(std::str::from_utf8(&text).unwrap());
        }
        let prefixed: MemberSet = numbers
            .iter()
            .map(|id| format!("user:{id}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect();
        let per_number = numbers.heap_bytes() / numbers.len();
        let per_uuid = uuids.heap_bytes() / uuids.len();
        let per_prefixed = prefixed.heap_bytes() / prefixed.len();
        assert!(per_number <= 4, "{per_number} bytes per id");
        assert!(per_uuid <= 24, "{per_uuid} bytes per UUID");
        assert!(per_prefixed <= 4, "{per_prefixed} bytes per user:<id>");
        assert_eq!(prefixed.len(), numbers.len());
    }

    #[test]
    fn prefixes_past_the_table_stay_strings_and_answer_alike() {
        let mut set = MemberSet::new();
        let prefixes: Vec<String> = (0..MAX_PREFIXES + 4).map(|i| format!("p{i}:")).collect();
        for (i, prefix) in prefixes.iter().enumerate() {
            for id in 0..=i as u64 {
                assert!(set.insert(&format!("{prefix}{id}")));
            }
        }
        assert!(set.prefixed.is_saturated());
        assert_eq!(set.prefixed.len(), (1..=MAX_PREFIXES).sum::<usize>());
        let total: usize = (1..=prefixes.len()).sum();
        assert_eq!(set.len(), total);
        for (i, prefix) in prefixes.iter().enumerate() {
            assert!(set.contains(&format!("{prefix}{i}")), "{prefix}");
            assert!(!set.contains(&format!("{prefix}{}", i + 1)), "{prefix}");
        }
        // Emptying a prefix of a saturated table keeps its place.
        assert!(set.remove("p0:0"));
        assert!(!set.contains("p0:0"));
        assert!(set.insert("p0:5"));
        assert!(set.remove(&format!("p{}:0", MAX_PREFIXES + 1)));
        let reloaded = round_trip(&set);
        assert_eq!(reloaded, set);
        assert_eq!(listed(&reloaded), listed(&set));
    }

    #[test]
    fn prefixed_members_list_exactly() {
        let members = [
            "user:42",
            "user:042",
            "cust-0",
            "-1",
            "1.5",
            "x:18446744073709551615",
        ];
        let set: MemberSet = members.into_iter().collect();
        assert_eq!(set.prefixed.len(), 3, "all but user:042, -1 and 1.5");
        let expected: ModelSet<String> = members.iter().map(|m| m.to_string()).collect();
        assert_eq!(listed(&set), expected);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String),
        Remove(String),
        Contains(String),
    }

    /// A mix of compact and look-alike members, with many repeats.
    fn member() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(EDGE_MEMBERS).prop_map(str::to_owned),
            // Canonical and zero-padded ids, small and near 2^32.
            4 => "[1-9][0-9]{0,2}|0[0-9]{1,2}|-[0-9]{1,2}",
            2 => (0..300_u64).prop_map(|i| ((1_u64 << 32) + i * 1000).to_string()),
            1 => any::<u64>().prop_map(|id| id.to_string()),
            1 => "1844674407370955161[0-9]",
            // UUIDs: canonical, uppercase, mixed, over a small alphabet.
            3 => "[0-1a]{8}-0000-4000-8[0-2]00-00000000000[0-9a]",
            1 => "[0-1A]{8}-0000-4000-8[0-2]00-00000000000[0-9A]",
            1 => any::<u128>().prop_map(|value| {
                let mut text = [0; UUID_LEN];
                format_uuid(value, &mut text);
                String::from_utf8(text.to_vec()).unwrap()
            }),
            // Prefixed ids: a few common prefixes, more than a table
            // holds, non-canonical and look-alike forms.
            4 => "(user:|cust-|acct_)(0|[1-9][0-9]{0,2})",
            2 => "p[a-t]:[0-9]{1,2}",
            1 => "(user:|user|User:|:)0?[0-9]{1,2}",
            1 => any::<u64>().prop_map(|id| format!("user:{id}")),
            // Arbitrary text.
            2 => "[a-c]{1,2}",
            1 => "\\PC{1,8}",
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => member().prop_map(Op::Insert),
            2 => member().prop_map(Op::Remove),
            2 => member().prop_map(Op::Contains),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_built_set_equals_one_made_by_inserts(
            members in prop::collection::vec(member(), 0..400)
        ) {
            let mut inserted = MemberSet::new();
            let mut builder = MemberSetBuilder::default();
            // Each member twice: a builder takes duplicates like inserts do.
            for member in members.iter().chain(members.iter()) {
                inserted.insert(member);
                builder.insert(member);
            }
            prop_assert!(builder.finish() == inserted);
        }

        #[test]
        fn behaves_like_a_hash_set_and_survives_save_load(
            ops in prop::collection::vec(op(), 0..600)
        ) {
            let mut set = MemberSet::new();
            let mut model: ModelSet<String> = ModelSet::new();
            for op in ops {
                match op {
                    Op::Insert(m) => prop_assert_eq!(set.insert(&m), model.insert(m.clone())),
                    Op::Remove(m) => prop_assert_eq!(set.remove(&m), model.remove(&m)),
                    Op::Contains(m) => prop_assert_eq!(set.contains(&m), model.contains(&m)),
                }
                prop_assert_eq!(set.len(), model.len());
            }
            for member in &model {
                prop_assert!(set.contains(member), "{}", member);
            }
            prop_assert_eq!(listed(&set), model.clone());
            // The checksum is a function of the member text alone.
            let checksum = |members: &mut dyn Iterator<Item = &str>| {
                members.fold(0, |acc, member| acc ^ member_hash(member))
            };
            prop_assert_eq!(
                checksum(&mut set.iter().map(|m| m.to_string()).collect::<Vec<_>>().iter().map(String::as_str)),
                checksum(&mut model.iter().map(String::as_str))
            );

            let reloaded = round_trip(&set);
            prop_assert_eq!(&reloaded, &set);
            prop_assert_eq!(listed(&reloaded), model.clone());
            for member in EDGE_MEMBERS {
                prop_assert_eq!(reloaded.contains(member), model.contains(*member));
            }

            let mut v1 = encode_v1(model.iter().map(String::as_str));
            let from_v1 = MemberSet::decode(&mut v1, 1).unwrap();
            prop_assert_eq!(&from_v1, &set);

            prop_assert_eq!(&set.clone(), &set);
        }
    }
}
