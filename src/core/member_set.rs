//! The set of members of one campaign.
//!
//! Its representation is private: callers see only the API below, so the
//! storage can become more compact without touching the command layer.

use std::collections::HashSet;

use super::codec::{DecodeError, RecordReader, RecordWriter};
use super::member::validate_text;

/// Encoding version written by [`MemberSet::encode`].
pub const ENCODING_VERSION: i32 = 1;

/// Cap on the capacity reserved from a stored member count, so a corrupt
/// count cannot make us allocate gigabytes before the data runs out.
const MAX_PREALLOCATED_MEMBERS: u64 = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSet {
    members: HashSet<Box<str>>,
    /// Sum of the lengths of all members, kept for `MEMORY USAGE`.
    member_bytes: usize,
}

impl MemberSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `member`; true if it was not present.
    pub fn insert(&mut self, member: &str) -> bool {
        if self.members.contains(member) {
            return false;
        }
        self.member_bytes += member.len();
        self.members.insert(member.into())
    }

    /// Removes `member`; true if it was present.
    pub fn remove(&mut self, member: &str) -> bool {
        let removed = self.members.remove(member);
        if removed {
            self.member_bytes -= member.len();
        }
        removed
    }

    pub fn contains(&self, member: &str) -> bool {
        self.members.contains(member)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|member| &**member)
    }

    /// Estimated heap bytes held by the set (for `MEMORY USAGE`).
    pub fn heap_bytes(&self) -> usize {
        // One pointer-and-length slot plus one control byte per bucket.
        let slot = std::mem::size_of::<Box<str>>() + 1;
        self.members.capacity() * slot + self.member_bytes
    }

    /// Writes the set: member count, then each member.
    pub fn encode<W: RecordWriter>(&self, writer: &mut W) {
        writer.write_unsigned(self.members.len() as u64);
        for member in &self.members {
            writer.write_bytes(member.as_bytes());
        }
    }

    /// Reads a set written by `encode` with encoding `version`.
    ///
    /// Stored members are checked for UTF-8 and NUL but not for the length
    /// limit: the data was accepted when it was written.
    pub fn decode<R: RecordReader>(reader: &mut R, version: i32) -> Result<Self, DecodeError> {
        if version != ENCODING_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let count = reader.read_unsigned()?;
        let mut set = MemberSet {
            members: HashSet::with_capacity(count.min(MAX_PREALLOCATED_MEMBERS) as usize),
            member_bytes: 0,
        };
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
    fn heap_bytes_follows_member_lengths() {
        let empty = MemberSet::new().heap_bytes();
        let set: MemberSet = ["x".repeat(1000).as_str()].into_iter().collect();
        assert!(set.heap_bytes() >= empty + 1000);
    }

    #[test]
    fn encode_decode_round_trip() {
        let set: MemberSet = ["1", "two", "zoë"].into_iter().collect();
        let mut buffer = RecordBuffer::default();
        set.encode(&mut buffer);
        let decoded = MemberSet::decode(&mut buffer, ENCODING_VERSION).unwrap();
        assert_eq!(decoded, set);
    }

    #[test]
    fn decode_refuses_unknown_version() {
        let mut buffer = RecordBuffer::default();
        MemberSet::new().encode(&mut buffer);
        assert_eq!(
            MemberSet::decode(&mut buffer, ENCODING_VERSION + 1),
            Err(DecodeError::UnknownVersion(ENCODING_VERSION + 1))
        );
    }

    #[test]
    fn decode_refuses_truncated_data() {
        let set: MemberSet = ["a", "b", "c"].into_iter().collect();
        let mut buffer = RecordBuffer::default();
        set.encode(&mut buffer);
        buffer.truncate_by(1);
        assert_eq!(
            MemberSet::decode(&mut buffer, ENCODING_VERSION),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn decode_refuses_invalid_stored_member() {
        let mut buffer = RecordBuffer::default();
        buffer.write_unsigned(1);
        buffer.push_raw_bytes(b"bad\0member");
        assert_eq!(
            MemberSet::decode(&mut buffer, ENCODING_VERSION),
            Err(DecodeError::InvalidMember(TextError::ContainsNul))
        );
    }

    #[test]
    fn huge_stored_count_does_not_preallocate() {
        let mut buffer = RecordBuffer::default();
        buffer.write_unsigned(u64::MAX);
        assert_eq!(
            MemberSet::decode(&mut buffer, ENCODING_VERSION),
            Err(DecodeError::Truncated)
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String),
        Remove(String),
        Contains(String),
    }

    fn member() -> impl Strategy<Value = String> {
        // A small alphabet makes repeats (and so no-op inserts/removes) common.
        prop_oneof!["[0-9]{1,3}", "[a-c]{1,2}", "\\PC{1,8}",]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            member().prop_map(Op::Insert),
            member().prop_map(Op::Remove),
            member().prop_map(Op::Contains),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_hash_set(ops in prop::collection::vec(op(), 0..200)) {
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
            let listed: ModelSet<String> = set.iter().map(str::to_owned).collect();
            prop_assert_eq!(&listed, &model);
            let expected_bytes: usize = model.iter().map(String::len).sum();
            prop_assert_eq!(set.member_bytes, expected_bytes);
        }

        #[test]
        fn survives_encode_decode(members in prop::collection::hash_set(member(), 0..100)) {
            let set: MemberSet = members.iter().map(String::as_str).collect();
            let mut buffer = RecordBuffer::default();
            set.encode(&mut buffer);
            let decoded = MemberSet::decode(&mut buffer, ENCODING_VERSION).unwrap();
            prop_assert_eq!(decoded, set);
        }
    }
}
