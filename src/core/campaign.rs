//! The value a campaign key holds: its member set plus the checksum VERIFY
//! compares, kept up to date on every change.
//!
//! The set sits behind an `Arc` so a rebuild can read the old set off the
//! main thread while clients keep reading it, and COPY is copy-on-write.
//! Writes to a campaign are held while a rebuild runs, so `make_mut` finds
//! the set unshared and never copies it on that path.

use std::sync::Arc;

use super::checksum::member_hash;
use super::codec::{DecodeError, RecordReader, RecordWriter};
use super::member_set::MemberSet;
use super::version::MAX_VERSION;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Campaign {
    members: Arc<MemberSet>,
    checksum: u64,
    /// The newest version of a change of this campaign issued or loaded
    /// (SPEC section 4); it travels with the value (RDB, DUMP/RESTORE,
    /// MIGRATE, replication) so no node goes below it.
    version: u64,
}

/// Encoding of a campaign value (the type's encoding version): 3 = the
/// member set (its encoding 2) followed by the campaign's version. 1 and 2
/// (member sets of those encodings, no version) still load, as version 0.
pub const ENCODING_VERSION: i32 = 3;

impl Campaign {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps a set built elsewhere (a rebuild), computing its checksum.
    pub fn from_members(members: MemberSet) -> Self {
        let checksum = members
            .iter()
            .fold(0, |acc, member| acc ^ member_hash(&member));
        Campaign {
            members: Arc::new(members),
            checksum,
            version: 0,
        }
    }

    /// Wraps a set whose checksum the caller computed while building it.
    pub fn from_parts(members: MemberSet, checksum: u64) -> Self {
        Campaign {
            members: Arc::new(members),
            checksum,
            version: 0,
        }
    }

    /// The newest version of a change of this campaign known here.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Raises the campaign's version to `version` (never lowers it, never
    /// above `MAX_VERSION`).
    pub fn advance_version(&mut self, version: u64) {
        self.version = self.version.max(version.min(MAX_VERSION));
    }

    /// Lowers a version above `MAX_VERSION` (a value saved by an older
    /// release) to it; returns whether it did.
    pub fn clamp_version(&mut self) -> bool {
        let clamped = self.version > MAX_VERSION;
        self.version = self.version.min(MAX_VERSION);
        clamped
    }

    pub fn insert(&mut self, member: &str) -> bool {
        let inserted = Arc::make_mut(&mut self.members).insert(member);
        if inserted {
            self.checksum ^= member_hash(member);
        }
        inserted
    }

    pub fn remove(&mut self, member: &str) -> bool {
        let removed = Arc::make_mut(&mut self.members).remove(member);
        if removed {
            self.checksum ^= member_hash(member);
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

    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    pub fn members(&self) -> &MemberSet {
        &self.members
    }

    /// A shared handle on the current set, for readers off the main thread.
    pub fn snapshot(&self) -> Arc<MemberSet> {
        Arc::clone(&self.members)
    }

    /// True while `snapshot` is still this campaign's set.
    pub fn is_snapshot(&self, snapshot: &Arc<MemberSet>) -> bool {
        Arc::ptr_eq(&self.members, snapshot)
    }

    pub fn heap_bytes(&self) -> usize {
        // Shared sets are counted by each holder, like Redis counts COPY.
        self.members.heap_bytes()
    }

    /// Writes the value in `ENCODING_VERSION`.
    pub fn encode<W: RecordWriter>(&self, writer: &mut W) {
        self.members.encode(writer);
        writer.write_unsigned(self.version);
    }

    /// Reads a value written in `encoding` (1 to `ENCODING_VERSION`).
    pub fn decode<R: RecordReader>(reader: &mut R, encoding: i32) -> Result<Self, DecodeError> {
        match encoding {
            1 | 2 => MemberSet::decode(reader, encoding).map(Campaign::from_members),
            3 => {
                let mut campaign = Campaign::from_members(MemberSet::decode(reader, 2)?);
                campaign.version = reader.read_unsigned()?;
                Ok(campaign)
            }
            other => Err(DecodeError::UnknownVersion(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The running checksum always equals the checksum of the contents.
        #[test]
        fn checksum_follows_every_change(ops in prop::collection::vec((any::<bool>(), "[a-e]{1,2}"), 0..100)) {
            let mut campaign = Campaign::new();
            for (add, member) in ops {
                if add { campaign.insert(&member); } else { campaign.remove(&member); }
                let fresh = Campaign::from_members(campaign.members().clone());
                prop_assert_eq!(campaign.checksum(), fresh.checksum());
            }
        }
    }

    #[test]
    fn the_version_travels_with_the_value_and_old_encodings_load() {
        use crate::core::codec::RecordBuffer;
        let mut campaign = Campaign::new();
        campaign.insert("42");
        campaign.insert("x");
        campaign.advance_version(77);
        campaign.advance_version(5);
        assert_eq!(campaign.version(), 77, "never lowered");

        let mut buffer = RecordBuffer::default();
        campaign.encode(&mut buffer);
        let decoded = Campaign::decode(&mut buffer, ENCODING_VERSION).unwrap();
        assert_eq!(decoded, campaign);

        // Encoding 2 is the member set alone: it loads with version 0.
        let mut buffer = RecordBuffer::default();
        campaign.members().encode(&mut buffer);
        let old = Campaign::decode(&mut buffer, 2).unwrap();
        assert_eq!((old.len(), old.version()), (2, 0));
        assert!(Campaign::decode(&mut RecordBuffer::default(), 4).is_err());
    }

    #[test]
    fn copies_share_until_written() {
        let mut original = Campaign::new();
        original.insert("a");
        let mut copy = original.clone();
        assert!(copy.is_snapshot(&original.snapshot()));
        copy.insert("b");
        assert!(!copy.is_snapshot(&original.snapshot()));
        assert_eq!((original.len(), copy.len()), (1, 2));
    }
}
