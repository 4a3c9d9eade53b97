//! The persistence format of a member set (RDB, DUMP/RESTORE, replication
//! and `CAMPAIGN.SYNC REPLACE` blobs).
//!
//! Encodings, numbered in one space with the campaign value's encodings
//! (`core::campaign`), because `CAMPAIGN.SYNC REPLACE` sends a bare set
//! under the set's number and the receiver reads it as a campaign value:
//!
//! - 1: the member count, then each member as a byte string;
//! - 2: ids (bitmaps, then the other ids), UUIDs, strings (see `encode`);
//! - 4: as 2 with prefixed ids (`user:42`) between UUIDs and strings.
//!
//! (3 is a campaign value: a version-2 set and the campaign's version.)
//! Every older encoding still loads; a string that now has a compact form
//! (a `user:42` written as a string by encoding 2) is filed where it now
//! belongs.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;

use super::canonical::is_prefix;
use super::codec::{DecodeError, RecordReader, RecordWriter};
use super::leb128;
use super::member::validate_text;
use super::member_set::MemberSet;
use super::number_set::{Corrupt, NumberSet};
use super::prefixed_set::PrefixedSet;
use super::string_set::StringSet;
use super::uuid_set::UuidSet;

/// Encoding version written by [`MemberSet::encode`].
pub const ENCODING_VERSION: i32 = 4;

/// Target size of one byte-string record of packed values.
const CHUNK_BYTES: usize = 1 << 20;

/// Cap on what is reserved from a stored count, so a corrupt count cannot
/// make us allocate gigabytes before the data runs out.
const MAX_PREALLOCATED_MEMBERS: u64 = 1 << 20;

impl MemberSet {
    /// Writes the set in encoding version 4:
    ///
    /// 1. plain ids as a number section: the count of bitmaps, then per
    ///    bitmap its high 32-bit word and the bitmap in the portable roaring
    ///    format; then the count of other ids and records of little-endian
    ///    u64s;
    /// 2. UUIDs: their count, then records of big-endian u128s;
    /// 3. prefixed ids: the count of prefixes, then per prefix its bytes
    ///    and its ids as a number section;
    /// 4. strings: their count, then records of (LEB128 length, bytes).
    ///
    /// Packed records stay near `CHUNK_BYTES` so loading never needs one
    /// huge buffer.
    pub fn encode<W: RecordWriter>(&self, writer: &mut W) {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);
        encode_numbers(writer, &mut chunk, &self.numbers);

        writer.write_unsigned(self.uuids.len() as u64);
        write_packed(writer, &mut chunk, self.uuids.iter(), |uuid, out| {
            out.extend_from_slice(&uuid.to_be_bytes())
        });

        writer.write_unsigned(self.prefixed.container_count() as u64);
        for (prefix, numbers) in self.prefixed.containers() {
            writer.write_bytes(prefix);
            encode_numbers(writer, &mut chunk, numbers);
        }

        writer.write_unsigned(self.strings.len() as u64);
        write_packed(writer, &mut chunk, self.strings.iter(), |text, out| {
            leb128::write(out, text.len());
            out.extend_from_slice(text.as_bytes());
        });
    }

    /// Reads a set written by `encode` with encoding `version` (1, 2 or 4).
    ///
    /// Stored members are checked for UTF-8 and NUL but not for the length
    /// limit: the data was accepted when it was written.
    pub fn decode<R: RecordReader>(reader: &mut R, version: i32) -> Result<Self, DecodeError> {
        match version {
            1 => decode_v1(reader),
            2 | 4 => decode_sections(reader, version == 4),
            _ => Err(DecodeError::UnknownVersion(version)),
        }
    }
}

/// Version 1: the member count, then each member as a byte string.
fn decode_v1<R: RecordReader>(reader: &mut R) -> Result<MemberSet, DecodeError> {
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

/// Versions 2 and 4 (the latter with the prefixed ids).
fn decode_sections<R: RecordReader>(
    reader: &mut R,
    with_prefixed: bool,
) -> Result<MemberSet, DecodeError> {
    let numbers = decode_numbers(reader)?;

    let uuid_count = reader.read_unsigned()?;
    let mut uuids = Vec::with_capacity(uuid_count.min(MAX_PREALLOCATED_MEMBERS) as usize);
    read_packed(reader, uuid_count, |bytes| {
        let (value, rest) = bytes.split_first_chunk::<16>()?;
        uuids.push(u128::from_be_bytes(*value));
        Some(rest)
    })?;
    let uuids =
        UuidSet::from_values(uuids).map_err(|_| DecodeError::Corrupt("a UUID stored twice"))?;

    let mut prefixed = PrefixedSet::default();
    if with_prefixed {
        let prefix_count = reader.read_unsigned()?;
        for _ in 0..prefix_count {
            let prefix = reader.read_bytes(|bytes| bytes.to_vec())?;
            if !is_prefix(&prefix) {
                return Err(DecodeError::Corrupt("an invalid prefix"));
            }
            let numbers = decode_numbers(reader)?;
            prefixed
                .push_container(&prefix, numbers)
                .map_err(DecodeError::Corrupt)?;
        }
    }

    let mut set = MemberSet {
        numbers,
        uuids,
        prefixed,
        strings: StringSet::default(),
        renewed_s: 0,
    };
    decode_strings(reader, &mut set)?;
    Ok(set)
}

/// The strings section, each member inserted (a string of version 2 may
/// now have a compact form; in version 4 it may be a prefixed id whose
/// prefix found no room in the table). No room is made ahead: which of
/// the string tables (short or arena) a member takes is known only as it
/// comes.
fn decode_strings<R: RecordReader>(reader: &mut R, set: &mut MemberSet) -> Result<(), DecodeError> {
    let string_count = reader.read_unsigned()?;
    let mut failure = None;
    read_packed(reader, string_count, |bytes| {
        let (len, header) = leb128::read(bytes)?;
        let text = bytes.get(header..header.checked_add(len)?)?;
        match validate_text(text, None) {
            Ok(member) if set.insert(member) => {}
            Ok(_) => failure = Some(DecodeError::Corrupt("a member stored twice")),
            Err(reason) => failure = Some(DecodeError::InvalidMember(reason)),
        }
        if failure.is_some() {
            return None;
        }
        Some(&bytes[header + len..])
    })
    .map_err(|error| failure.take().unwrap_or(error))
}

/// A number section: bitmaps by high word, then the other ids.
fn encode_numbers<W: RecordWriter>(writer: &mut W, chunk: &mut Vec<u8>, numbers: &NumberSet) {
    let bitmaps = numbers.bitmaps();
    writer.write_unsigned(bitmaps.len() as u64);
    for (high, bitmap) in bitmaps {
        writer.write_unsigned(u64::from(high));
        chunk.clear();
        chunk.reserve(bitmap.serialized_size());
        // Writing into a Vec cannot fail.
        let _ = bitmap.serialize_into(&mut *chunk);
        writer.write_bytes(chunk);
    }
    chunk.clear();

    writer.write_unsigned(numbers.sparse_len() as u64);
    write_packed(writer, chunk, numbers.sparse_iter(), |id, out| {
        out.extend_from_slice(&id.to_le_bytes())
    });
}

fn decode_numbers<R: RecordReader>(reader: &mut R) -> Result<NumberSet, DecodeError> {
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
    NumberSet::from_parts(dense, sparse).map_err(|corrupt| match corrupt {
        Corrupt::Duplicate => DecodeError::Corrupt("an id stored twice"),
        Corrupt::EmptyBitmap => DecodeError::Corrupt("an empty bitmap"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codec::RecordBuffer;
    use crate::core::member::TextError;
    use crate::core::member_set::tests::{encode_v1, round_trip, EDGE_MEMBERS};

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
            set.insert(&format!("user:{}", i * 7));
        }
        let mut buffer = RecordBuffer::default();
        set.encode(&mut buffer);
        let decoded = MemberSet::decode(&mut buffer, ENCODING_VERSION).unwrap();
        assert_eq!(decoded.len(), 1_000_000);
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
        for version in [0, 3, 5, -1] {
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
            assert_eq!(MemberSet::decode(&mut v2, 2), Err(error.clone()));
            let mut v4 = RecordBuffer::default();
            for section in [0, 0, 0, 0, 1] {
                v4.write_unsigned(section);
            }
            v4.push_raw_bytes(record);
            assert_eq!(MemberSet::decode(&mut v4, 4), Err(error));
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
        for section in 0..5 {
            let mut v4 = RecordBuffer::default();
            for _ in 0..section {
                v4.write_unsigned(0);
            }
            v4.write_unsigned(u64::MAX);
            assert_eq!(MemberSet::decode(&mut v4, 4), Err(DecodeError::Truncated));
        }
    }

    /// Writes `set` the way encoding version 2 did: prefixed ids were
    /// strings then.
    fn encode_v2(set: &MemberSet) -> RecordBuffer {
        let mut buffer = RecordBuffer::default();
        let mut chunk = Vec::new();
        encode_numbers(&mut buffer, &mut chunk, &set.numbers);
        buffer.write_unsigned(set.uuids.len() as u64);
        write_packed(&mut buffer, &mut chunk, set.uuids.iter(), |uuid, out| {
            out.extend_from_slice(&uuid.to_be_bytes())
        });
        let strings: Vec<String> = set
            .prefixed
            .iter()
            .map(|(prefix, id)| format!("{}{id}", std::str::from_utf8(prefix).unwrap()))
            .chain(set.strings.iter().map(str::to_owned))
            .collect();
        buffer.write_unsigned(strings.len() as u64);
        write_packed(&mut buffer, &mut chunk, strings.iter(), |text, out| {
            leb128::write(out, text.len());
            out.extend_from_slice(text.as_bytes());
        });
        buffer
    }

    #[test]
    fn version_2_still_loads_and_files_prefixed_ids_compactly() {
        let set: MemberSet = EDGE_MEMBERS.iter().copied().collect();
        assert!(set.prefixed.len() > 0);
        let decoded = MemberSet::decode(&mut encode_v2(&set), 2).unwrap();
        assert_eq!(decoded, set);
        assert_eq!(decoded.prefixed.len(), set.prefixed.len());
        let listed = |set: &MemberSet| {
            let mut members: Vec<String> = set.iter().map(|m| m.to_string()).collect();
            members.sort();
            members
        };
        assert_eq!(listed(&decoded), listed(&set));
    }

    #[test]
    fn decode_refuses_corrupt_prefix_sections() {
        let cases: [(&[u8], DecodeError); 3] = [
            (b"user", DecodeError::Corrupt("an invalid prefix")),
            (b"", DecodeError::Corrupt("an invalid prefix")),
            (b"user:", DecodeError::Corrupt("an empty prefix container")),
        ];
        for (prefix, error) in cases {
            let mut buffer = RecordBuffer::default();
            for section in [0, 0, 0, 1] {
                buffer.write_unsigned(section);
            }
            buffer.push_raw_bytes(prefix);
            for section in [0, 0, 0] {
                buffer.write_unsigned(section);
            }
            assert_eq!(MemberSet::decode(&mut buffer, 4), Err(error), "{prefix:?}");
        }
        // The same prefix twice.
        let mut buffer = RecordBuffer::default();
        for section in [0, 0, 0, 2] {
            buffer.write_unsigned(section);
        }
        for _ in 0..2 {
            buffer.push_raw_bytes(b"u:");
            buffer.write_unsigned(0);
            buffer.write_unsigned(1);
            buffer.push_raw_bytes(&7_u64.to_le_bytes());
        }
        buffer.write_unsigned(0);
        assert_eq!(
            MemberSet::decode(&mut buffer, 4),
            Err(DecodeError::Corrupt("a prefix stored twice"))
        );
        // A prefixed id also stored as a string.
        let set: MemberSet = ["u:7"].into_iter().collect();
        let mut buffer = RecordBuffer::default();
        set.encode(&mut buffer);
        buffer.truncate_by(1);
        buffer.write_unsigned(1);
        buffer.push_raw_bytes(b"\x03u:7");
        assert_eq!(
            MemberSet::decode(&mut buffer, 4),
            Err(DecodeError::Corrupt("a member stored twice"))
        );
    }
}
