//! The set of members of one campaign.
//!
//! Its representation is private: callers see only the API below, so the
//! storage can change without touching the command layer.
//!
//! Members are exact strings, but three kinds are kept compactly:
//!
//! - canonical decimal ids ("0", "7", "18446744073709551615"; not "007",
//!   "-1" or anything past u64::MAX) as u64 values in a roaring treemap
//!   with a sorted array for scattered high words (`NumberSet`);
//! - canonical lowercase UUIDs as u128 values in an ordered linear-probing
//!   table (`UuidSet`);
//! - every other member as a string in one packed arena (`StringSet`).
//!
//! A member is compact only if formatting the value gives back exactly the
//! member, so iteration reproduces every member as it was added. A
//! membership check allocates nothing.

use std::collections::BTreeMap;
use std::fmt;

use roaring::RoaringBitmap;

use super::canonical::{classify, format_number, format_uuid, Kind, NUMBER_MAX_LEN, UUID_LEN};
use super::codec::{DecodeError, RecordReader, RecordWriter};
use super::leb128;
use super::member::validate_text;
use super::number_set::{Corrupt, NumberSet};
use super::string_set::StringSet;
use super::uuid_set::UuidSet;

/// Encoding version written by [`MemberSet::encode`]. Version 1 (a count,
/// then each member as a string) still loads.
pub const ENCODING_VERSION: i32 = 2;

/// Target size of one byte-string record of packed values in version 2.
const CHUNK_BYTES: usize = 1 << 20;

/// Cap on what is reserved from a stored count, so a corrupt count cannot
/// make us allocate gigabytes before the data runs out.
const MAX_PREALLOCATED_MEMBERS: u64 = 1 << 20;

#[derive(Clone, Default)]
pub struct MemberSet {
    numbers: NumberSet,
    uuids: UuidSet,
    strings: StringSet,
}

/// One member, as [`MemberSet::iter`] yields it: borrowed from the set, or
/// formatted on the stack for ids and UUIDs (no allocation either way).
/// Use it as a `&str` (`Deref`, `as_str`, `Display`).
#[derive(Clone, Copy)]
pub struct MemberRef<'a>(Repr<'a>);

#[derive(Clone, Copy)]
enum Repr<'a> {
    Text(&'a str),
    Formatted { bytes: [u8; UUID_LEN], len: u8 },
}

impl MemberRef<'_> {
    fn number(id: u64) -> Self {
        let mut digits = [0; NUMBER_MAX_LEN];
        let text = format_number(id, &mut digits);
        let mut bytes = [0; UUID_LEN];
        bytes[..text.len()].copy_from_slice(text);
        MemberRef(Repr::Formatted {
            bytes,
            len: text.len() as u8,
        })
    }

    fn uuid(value: u128) -> Self {
        let mut bytes = [0; UUID_LEN];
        format_uuid(value, &mut bytes);
        MemberRef(Repr::Formatted {
            bytes,
            len: UUID_LEN as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Text(text) => text,
            // Formatted members are ASCII digits, letters and hyphens.
            Repr::Formatted { bytes, len } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
        }
    }
}

impl<'a> MemberRef<'a> {
    /// A member given as text (kept as it is).
    pub fn text(text: &'a str) -> Self {
        MemberRef(Repr::Text(text))
    }

    /// The member a classified value stands for.
    pub(crate) fn from_kind(kind: Kind<'a>) -> Self {
        match kind {
            Kind::Number(id) => MemberRef::number(id),
            Kind::Uuid(uuid) => MemberRef::uuid(uuid),
            Kind::Text(text) => MemberRef::text(text),
        }
    }
}

impl std::ops::Deref for MemberRef<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MemberRef<'_> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for MemberRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MemberRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq<str> for MemberRef<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MemberRef<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
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
                self.set.strings.insert(text);
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
            Kind::Text(text) => self.strings.insert(text),
        }
    }

    /// Removes `member`; true if it was present.
    pub fn remove(&mut self, member: &str) -> bool {
        match classify(member) {
            Kind::Number(id) => self.numbers.remove(id),
            Kind::Uuid(uuid) => self.uuids.remove(uuid),
            Kind::Text(text) => self.strings.remove(text),
        }
    }

    /// Allocation-free.
    #[inline]
    pub fn contains(&self, member: &str) -> bool {
        match classify(member) {
            Kind::Number(id) => self.numbers.contains(id),
            Kind::Uuid(uuid) => self.uuids.contains(uuid),
            Kind::Text(text) => self.strings.contains(text),
        }
    }

    pub fn len(&self) -> usize {
        self.numbers.len() + self.uuids.len() + self.strings.len()
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
            .chain(self.strings.iter().map(MemberRef::text))
    }

    /// Estimated heap bytes held by the set (for `MEMORY USAGE`).
    pub fn heap_bytes(&self) -> usize {
        self.numbers.heap_bytes() + self.uuids.heap_bytes() + self.strings.heap_bytes()
    }

    /// Writes the set in encoding version 2:
    ///
    /// 1. ids kept as bitmaps: their count, then per bitmap its high 32-bit
    ///    word and the bitmap in the portable roaring format;
    /// 2. other ids: their count, then records of little-endian u64s;
    /// 3. UUIDs: their count, then records of big-endian u128s;
    /// 4. strings: their count, then records of (LEB128 length, bytes).
    ///
    /// Packed records stay near `CHUNK_BYTES` so loading never needs one
    /// huge buffer.
    pub fn encode<W: RecordWriter>(&self, writer: &mut W) {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);

        let bitmaps = self.numbers.bitmaps();
        writer.write_unsigned(bitmaps.len() as u64);
        for (high, bitmap) in bitmaps {
            writer.write_unsigned(u64::from(high));
            chunk.clear();
            chunk.reserve(bitmap.serialized_size());
            // Writing into a Vec cannot fail.
            let _ = bitmap.serialize_into(&mut chunk);
            writer.write_bytes(&chunk);
        }
        chunk.clear();

        writer.write_unsigned(self.numbers.sparse_len() as u64);
        write_packed(writer, &mut chunk, self.numbers.sparse_iter(), |id, out| {
            out.extend_from_slice(&id.to_le_bytes())
        });

        writer.write_unsigned(self.uuids.len() as u64);
        write_packed(writer, &mut chunk, self.uuids.iter(), |uuid, out| {
            out.extend_from_slice(&uuid.to_be_bytes())
        });

        writer.write_unsigned(self.strings.len() as u64);
        write_packed(writer, &mut chunk, self.strings.iter(), |text, out| {
            leb128::write(out, text.len());
            out.extend_from_slice(text.as_bytes());
        });
    }

    /// Reads a set written by `encode` with encoding `version` (1 or 2).
    ///
    /// Stored members are checked for UTF-8 and NUL but not for the length
    /// limit: the data was accepted when it was written.
    pub fn decode<R: RecordReader>(reader: &mut R, version: i32) -> Result<Self, DecodeError> {
        match version {
            1 => Self::decode_v1(reader),
            2 => Self::decode_v2(reader),
            _ => Err(DecodeError::UnknownVersion(version)),
        }
    }

    /// Version 1: the member count, then each member as a byte string.
    fn decode_v1<R: RecordReader>(reader: &mut R) -> Result<Self, DecodeError> {
        let count = reader.read_unsigned()?;
        let mut set = MemberSet::new();
        for _ in 0..count {
            reader.read_bytes(|bytes| {
                validate_text(bytes, None)
                    .map(|member| {
                        set.insert(member);
                    })
                    .map_err(DecodeError::InvalidMember)
            })??;
        }
        Ok(set)
    }

    fn decode_v2<R: RecordReader>(reader: &mut R) -> Result<Self, DecodeError> {
        let bitmap_count = reader.read_unsigned()?;
        let mut dense = BTreeMap::new();
        let mut previous_high = None;
        for _ in 0..bitmap_count {
            let high = u32::try_from(reader.read_unsigned()?)
                .map_err(|_| DecodeError::Corrupt("bitmap word beyond 32 bits"))?;
            if previous_high.is_some_and(|previous| previous >= high) {
                return Err(DecodeError::Corrupt("bitmap words out of order"));
            }
            previous_high = Some(high);
            let bitmap = reader.read_bytes(|mut bytes| {
                let bitmap = RoaringBitmap::deserialize_from(&mut bytes)
                    .map_err(|_| DecodeError::Corrupt("invalid roaring bitmap"))?;
                if bytes.is_empty() {
                    Ok(bitmap)
                } else {
                    Err(DecodeError::Corrupt("bytes after a roaring bitmap"))
                }
            })??;
            dense.insert(high, bitmap);
        }

        let sparse_count = reader.read_unsigned()?;
        let mut sparse = Vec::with_capacity(sparse_count.min(MAX_PREALLOCATED_MEMBERS) as usize);
        read_packed(reader, sparse_count, |bytes| {
            let (value, rest) = bytes.split_first_chunk::<8>()?;
            sparse.push(u64::from_le_bytes(*value));
            Some(rest)
        })?;
        let numbers = NumberSet::from_parts(dense, sparse).map_err(|corrupt| match corrupt {
            Corrupt::Duplicate => DecodeError::Corrupt("an id stored twice"),
            Corrupt::EmptyBitmap => DecodeError::Corrupt("an empty bitmap"),
        })?;

        let uuid_count = reader.read_unsigned()?;
        let mut uuids = Vec::with_capacity(uuid_count.min(MAX_PREALLOCATED_MEMBERS) as usize);
        read_packed(reader, uuid_count, |bytes| {
            let (value, rest) = bytes.split_first_chunk::<16>()?;
            uuids.push(u128::from_be_bytes(*value));
            Some(rest)
        })?;
        let uuids =
            UuidSet::from_values(uuids).map_err(|_| DecodeError::Corrupt("a UUID stored twice"))?;

        let mut set = MemberSet {
            numbers,
            uuids,
            strings: StringSet::default(),
        };
        let string_count = reader.read_unsigned()?;
        set.strings
            .reserve(string_count.min(MAX_PREALLOCATED_MEMBERS) as usize, 0);
        let mut failure = None;
        read_packed(reader, string_count, |bytes| {
            let (len, header) = leb128::read(bytes)?;
            let text = bytes.get(header..header.checked_add(len)?)?;
            match validate_text(text, None) {
                // A canonical id or UUID here would be odd but harmless:
                // `insert` files it where it belongs.
                Ok(member) if set.insert(member) => {}
                Ok(_) => failure = Some(DecodeError::Corrupt("a member stored twice")),
                Err(reason) => failure = Some(DecodeError::InvalidMember(reason)),
            }
            if failure.is_some() {
                return None;
            }
            Some(&bytes[header + len..])
        })
        .map_err(|error| failure.take().unwrap_or(error))?;
        Ok(set)
    }
}

/// Writes `values` as byte-string records of about `CHUNK_BYTES` each.
fn write_packed<W: RecordWriter, T>(
    writer: &mut W,
    chunk: &mut Vec<u8>,
    values: impl Iterator<Item = T>,
    mut pack: impl FnMut(T, &mut Vec<u8>),
) {
    chunk.clear();
    for value in values {
        pack(value, chunk);
        if chunk.len() >= CHUNK_BYTES {
            writer.write_bytes(chunk);
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        writer.write_bytes(chunk);
        chunk.clear();
    }
}

/// Reads byte-string records until `count` values came out of them.
/// `unpack` takes one value off the front of its input and returns the
/// rest, or `None` if the input does not start with a whole value.
fn read_packed<R: RecordReader>(
    reader: &mut R,
    count: u64,
    mut unpack: impl FnMut(&[u8]) -> Option<&[u8]>,
) -> Result<(), DecodeError> {
    let mut read = 0_u64;
    while read < count {
        reader.read_bytes(|mut bytes| {
            if bytes.is_empty() {
                return Err(DecodeError::Corrupt("an empty record"));
            }
            while !bytes.is_empty() {
                if read == count {
                    return Err(DecodeError::Corrupt("more members than counted"));
                }
                bytes = unpack(bytes).ok_or(DecodeError::Corrupt("a cut-off member"))?;
                read += 1;
            }
            Ok(())
        })??;
    }
    Ok(())
}

/// Set equality.
impl PartialEq for MemberSet {
    fn eq(&self, other: &Self) -> bool {
        // Each member has one kind, so the sets are equal part by part.
        self.numbers == other.numbers && self.uuids == other.uuids && self.strings == other.strings
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
mod tests {
    use super::*;
    use crate::core::codec::RecordBuffer;
    use crate::core::member::TextError;
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
    const EDGE_MEMBERS: &[&str] = &[
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
    ];

    /// Writes `members` the way encoding version 1 did.
    fn encode_v1<'a>(members: impl IntoIterator<Item = &'a str>) -> RecordBuffer {
        let members: Vec<&str> = members.into_iter().collect();
        let mut buffer = RecordBuffer::default();
        buffer.write_unsigned(members.len() as u64);
        for member in members {
            buffer.write_bytes(member.as_bytes());
        }
        buffer
    }

    fn round_trip(set: &MemberSet) -> MemberSet {
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
        let per_number = numbers.heap_bytes() / numbers.len();
        let per_uuid = uuids.heap_bytes() / uuids.len();
        assert!(per_number <= 4, "{per_number} bytes per id");
        assert!(per_uuid <= 24, "{per_uuid} bytes per UUID");
    }

    #[test]
    fn encode_decode_round_trip() {
        let set: MemberSet = ["1", "two", "zoë"].into_iter().collect();
        assert_eq!(round_trip(&set), set);
    }

    #[test]
    fn large_mixed_set_round_trips_through_several_records() {
        let mut set = MemberSet::new();
        for i in 0..200_000_u64 {
            set.insert(&i.to_string());
            set.insert(&((i + 1) << 40).to_string());
            set.insert(&format!("{:032x}", i));
            set.insert(&format!("{:08x}-0000-4000-8000-{:012x}", i, i));
        }
        let mut buffer = RecordBuffer::default();
        set.encode(&mut buffer);
        let decoded = MemberSet::decode(&mut buffer, ENCODING_VERSION).unwrap();
        assert_eq!(decoded.len(), 800_000);
        assert_eq!(decoded, set);
    }

    #[test]
    fn version_1_still_loads() {
        let mut buffer = encode_v1(EDGE_MEMBERS.iter().copied());
        let decoded = MemberSet::decode(&mut buffer, 1).unwrap();
        assert_eq!(decoded, EDGE_MEMBERS.iter().copied().collect());
        assert_eq!(decoded.len(), EDGE_MEMBERS.len());
    }

    #[test]
    fn decode_refuses_unknown_version() {
        for version in [0, 3, -1] {
            let mut buffer = RecordBuffer::default();
            MemberSet::new().encode(&mut buffer);
            assert_eq!(
                MemberSet::decode(&mut buffer, version),
                Err(DecodeError::UnknownVersion(version))
            );
        }
    }

    #[test]
    fn decode_refuses_truncated_data() {
        let set: MemberSet = ["a", "b", "c", "1", "2"].into_iter().collect();
        let mut full = RecordBuffer::default();
        set.encode(&mut full);
        for cut in 1..=4 {
            let mut buffer = full.clone();
            buffer.truncate_by(cut);
            assert!(
                MemberSet::decode(&mut buffer, ENCODING_VERSION).is_err(),
                "cut {cut}"
            );
        }
        let mut v1 = encode_v1(["a", "b", "c"]);
        v1.truncate_by(1);
        assert_eq!(MemberSet::decode(&mut v1, 1), Err(DecodeError::Truncated));
    }

    #[test]
    fn decode_refuses_invalid_stored_member() {
        let mut v1 = RecordBuffer::default();
        v1.write_unsigned(1);
        v1.push_raw_bytes(b"bad\0member");
        assert_eq!(
            MemberSet::decode(&mut v1, 1),
            Err(DecodeError::InvalidMember(TextError::ContainsNul))
        );

        for (record, error) in [
            (
                &b"\x0abad\0member"[..],
                DecodeError::InvalidMember(TextError::ContainsNul),
            ),
            (b"\x02a\xff", DecodeError::InvalidMember(TextError::NotUtf8)),
            (b"\x00", DecodeError::InvalidMember(TextError::Empty)),
            (b"\x05abc", DecodeError::Corrupt("a cut-off member")),
            (
                b"\x01a\x01a",
                DecodeError::Corrupt("more members than counted"),
            ),
        ] {
            let mut v2 = RecordBuffer::default();
            for section in [0, 0, 0, 1] {
                v2.write_unsigned(section);
            }
            v2.push_raw_bytes(record);
            assert_eq!(MemberSet::decode(&mut v2, 2), Err(error));
        }
    }

    #[test]
    fn decode_refuses_corrupt_compact_sections() {
        // A bitmap that is not one.
        let mut buffer = RecordBuffer::default();
        buffer.write_unsigned(1);
        buffer.write_unsigned(0);
        buffer.push_raw_bytes(b"not a bitmap");
        assert_eq!(
            MemberSet::decode(&mut buffer, 2),
            Err(DecodeError::Corrupt("invalid roaring bitmap"))
        );
        // A UUID twice; a sparse id record that is not a multiple of 8.
        let mut buffer = RecordBuffer::default();
        for value in [0, 0, 2] {
            buffer.write_unsigned(value);
        }
        buffer.push_raw_bytes(&[7; 32]);
        assert_eq!(
            MemberSet::decode(&mut buffer, 2),
            Err(DecodeError::Corrupt("a UUID stored twice"))
        );
        let mut buffer = RecordBuffer::default();
        for value in [0, 1] {
            buffer.write_unsigned(value);
        }
        buffer.push_raw_bytes(&[7; 9]);
        assert_eq!(
            MemberSet::decode(&mut buffer, 2),
            Err(DecodeError::Corrupt("more members than counted"))
        );
    }

    #[test]
    fn huge_stored_count_does_not_preallocate() {
        let mut v1 = RecordBuffer::default();
        v1.write_unsigned(u64::MAX);
        assert_eq!(MemberSet::decode(&mut v1, 1), Err(DecodeError::Truncated));
        for section in 0..4 {
            let mut v2 = RecordBuffer::default();
            for _ in 0..section {
                v2.write_unsigned(0);
            }
            v2.write_unsigned(u64::MAX);
            assert_eq!(MemberSet::decode(&mut v2, 2), Err(DecodeError::Truncated));
        }
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
