//! The value a campaign key holds: its member set plus the checksum VERIFY
//! compares, kept up to date on every change.
//!
//! The set sits behind an `Arc` so a rebuild can read the old set off the
//! main thread while clients keep reading it, and COPY is copy-on-write.
//! Writes to a campaign are held while a rebuild runs, so `make_mut` finds
//! the set unshared and never copies it on that path.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::checksum::member_hash;
use super::codec::{DecodeError, RecordReader, RecordWriter};
use super::member_set::MemberSet;
use super::relocate::{self, Moved, Relocator, Walk};
use super::version::MAX_VERSION;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Campaign {
    members: Arc<MemberSet>,
    checksum: u64,
    /// The newest version of a change of this campaign issued or loaded
    /// (SPEC section 4); it travels with the value (RDB, DUMP/RESTORE,
    /// MIGRATE, replication) so no node goes below it.
    version: u64,
    /// `Some` for an **incomplete** campaign: written to while it could
    /// not be loaded from the database. `members` then holds the members
    /// written present since, this the members written absent; every other
    /// member is unknown until a load completes it.
    absent: Option<Box<Absent>>,
}

/// Incomplete campaign values alive in this process (for STATUS).
pub static INCOMPLETE_VALUES: AtomicI64 = AtomicI64::new(0);

/// The members an incomplete campaign knows to be absent; counts itself
/// in `INCOMPLETE_VALUES` while it lives.
#[derive(Debug, PartialEq, Eq)]
struct Absent(MemberSet);

impl Absent {
    fn new(members: MemberSet) -> Box<Self> {
        INCOMPLETE_VALUES.fetch_add(1, Ordering::Relaxed);
        Box::new(Absent(members))
    }
}

impl Clone for Absent {
    fn clone(&self) -> Self {
        INCOMPLETE_VALUES.fetch_add(1, Ordering::Relaxed);
        Absent(self.0.clone())
    }
}

impl Drop for Absent {
    fn drop(&mut self) {
        INCOMPLETE_VALUES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What an incomplete campaign knows of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Present,
    Absent,
    Unknown,
}

/// Encoding of a campaign value (the type's encoding version): 7 = what 6
/// holds, then the key name the value was saved under (empty: unknown),
/// so a RESTORE can tell a value arriving under another name (see
/// `encode_named`). 6 = the member set (its encoding 4, with prefixed
/// ids), the campaign's version, and whether it is incomplete (then its
/// absent members, a set of encoding 4). 6, 5 (set 4 and the version), 3
/// (set 2 and the version) and the bare sets 1, 2 and 4 (no version:
/// loaded as version 0) still load. Bare sets and campaign values share
/// one number space (see `member_codec`).
pub const ENCODING_VERSION: i32 = 7;

impl Campaign {
    pub fn new() -> Self {
        Self::default()
    }

    /// An incomplete campaign that knows nothing yet.
    pub fn incomplete() -> Self {
        Campaign {
            absent: Some(Absent::new(MemberSet::default())),
            ..Self::default()
        }
    }

    pub fn is_complete(&self) -> bool {
        self.absent.is_none()
    }

    /// What the campaign knows of `member` (a complete one knows all).
    pub fn knows(&self, member: &str) -> Known {
        if self.members.contains(member) {
            Known::Present
        } else if self
            .absent
            .as_ref()
            .is_none_or(|absent| absent.0.contains(member))
        {
            Known::Absent
        } else {
            Known::Unknown
        }
    }

    /// The members an incomplete campaign knows to be absent.
    pub fn absent_members(&self) -> Option<&MemberSet> {
        self.absent.as_ref().map(|absent| &absent.0)
    }

    /// The campaign `loaded` from the database, completed with what this
    /// incomplete one learned since: loaded − absent + present, at the
    /// newer of both versions. (A complete `self` keeps `loaded` as it is.)
    pub fn completed(&self, loaded: Campaign) -> Campaign {
        let mut merged = loaded;
        merged.advance_version(self.version);
        if let Some(absent) = &self.absent {
            for member in absent.0.iter() {
                merged.remove(&member);
            }
            for member in self.members.iter() {
                merged.insert(&member);
            }
        }
        merged
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
            absent: None,
        }
    }

    /// Wraps a set whose checksum the caller computed while building it.
    pub fn from_parts(members: MemberSet, checksum: u64) -> Self {
        Campaign {
            members: Arc::new(members),
            checksum,
            version: 0,
            absent: None,
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

    /// Adds `member`; true when it was not known present before.
    pub fn insert(&mut self, member: &str) -> bool {
        if let Some(absent) = &mut self.absent {
            absent.0.remove(member);
        }
        let inserted = Arc::make_mut(&mut self.members).insert(member);
        if inserted {
            self.checksum ^= member_hash(member);
        }
        inserted
    }

    /// Removes `member`; true when it was known present before (for an
    /// incomplete campaign: when it was not known absent before).
    pub fn remove(&mut self, member: &str) -> bool {
        if let Some(absent) = &mut self.absent {
            let present = Arc::make_mut(&mut self.members).remove(member);
            if present {
                self.checksum ^= member_hash(member);
            }
            return absent.0.insert(member) || present;
        }
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

    /// Moves or renews the buffers of the value (not the value's own
    /// allocation, which its owner moves) from unit `start` of its walk
    /// on: the member set's units, then the absent members' (see
    /// `core::relocate`), at `now_s` (unix seconds; see
    /// `MemberSet::relocate`). A set shared with a reader off the main
    /// thread (`snapshot`) is skipped: its buffers are in use elsewhere.
    pub fn relocate(
        &mut self,
        start: usize,
        relocator: &mut dyn Relocator,
        now_s: u32,
    ) -> (Walk, Moved) {
        let mut moved = Moved::default();
        let members = self.members.relocation_units();
        if start < members {
            if let Some(set) = Arc::get_mut(&mut self.members) {
                if let Walk::StoppedAt(unit) = set.relocate(start, relocator, &mut moved, now_s) {
                    return (Walk::StoppedAt(unit), moved);
                }
            }
            if self.absent.is_some() && relocator.should_stop() {
                return (Walk::StoppedAt(members), moved);
            }
        }
        let Some(absent) = &mut self.absent else {
            return (Walk::Done, moved);
        };
        let from = start.saturating_sub(members);
        if from == 0 {
            moved.relocated(relocate::boxed(absent, relocator));
        }
        match absent.0.relocate(from, relocator, &mut moved, now_s) {
            Walk::StoppedAt(unit) => (Walk::StoppedAt(members + unit), moved),
            Walk::Done => (Walk::Done, moved),
        }
    }

    pub fn heap_bytes(&self) -> usize {
        // Shared sets are counted by each holder, like Redis counts COPY.
        self.members.heap_bytes() + self.absent.as_ref().map_or(0, |a| a.0.heap_bytes())
    }

    /// Writes the value in `ENCODING_VERSION`: its encoding 6, then `name`,
    /// the key it is saved under (empty: unknown).
    pub fn encode_named<W: RecordWriter>(&self, writer: &mut W, name: &[u8]) {
        self.encode(writer);
        writer.write_bytes(name);
    }

    /// Reads a value written in `encoding` with the key name it was saved
    /// under (`None`: unknown, or an encoding before 7).
    pub fn decode_named<R: RecordReader>(
        reader: &mut R,
        encoding: i32,
    ) -> Result<(Self, Option<Vec<u8>>), DecodeError> {
        if encoding != 7 {
            return Ok((Campaign::decode(reader, encoding)?, None));
        }
        let campaign = Campaign::decode(reader, 6)?;
        let name = reader.read_bytes(|bytes| (!bytes.is_empty()).then(|| bytes.to_vec()))?;
        Ok((campaign, name))
    }

    /// Writes the value in encoding 6: the set, the version, then 0
    /// (complete) or 1 and the absent members (incomplete).
    pub fn encode<W: RecordWriter>(&self, writer: &mut W) {
        self.members.encode(writer);
        writer.write_unsigned(self.version);
        match &self.absent {
            None => writer.write_unsigned(0),
            Some(absent) => {
                writer.write_unsigned(1);
                absent.0.encode(writer);
            }
        }
    }

    /// Reads a value written in `encoding` (1 to `ENCODING_VERSION`; the
    /// name of 7 is read and dropped).
    pub fn decode<R: RecordReader>(reader: &mut R, encoding: i32) -> Result<Self, DecodeError> {
        match encoding {
            7 => Campaign::decode_named(reader, 7).map(|(campaign, _)| campaign),
            1 | 2 | 4 => MemberSet::decode(reader, encoding).map(Campaign::from_members),
            3 | 5 => {
                let set_encoding = if encoding == 3 { 2 } else { 4 };
                let mut campaign = Campaign::from_members(MemberSet::decode(reader, set_encoding)?);
                campaign.version = reader.read_unsigned()?;
                Ok(campaign)
            }
            6 => {
                let mut campaign = Campaign::from_members(MemberSet::decode(reader, 4)?);
                campaign.version = reader.read_unsigned()?;
                match reader.read_unsigned()? {
                    0 => {}
                    1 => campaign.absent = Some(Absent::new(MemberSet::decode(reader, 4)?)),
                    other => return Err(DecodeError::UnknownVersion(other as i32)),
                }
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

    /// Members of every container: dense and sparse ids (several high
    /// words), UUIDs, prefixed ids of two prefixes, short and long strings.
    fn mixed_members() -> Vec<String> {
        let mut members = Vec::new();
        for id in 0..6000u64 {
            members.push((id * 7).to_string());
            members.push(format!("user:{}", id * 3));
        }
        for high in 1..4u64 {
            members.push(((high << 32) + 5).to_string());
        }
        for n in 0..300u64 {
            members.push(format!("{n:08x}-0000-4000-8000-{n:012x}"));
            members.push(format!("order#{n}"));
            members.push(format!("a fairly long member name number {n} ü"));
        }
        members
    }

    /// A copy that shares no buffer with `campaign` (a plain clone shares
    /// the set, which a relocation then leaves alone).
    fn deep_copy(campaign: &Campaign) -> Campaign {
        let mut copy = campaign.clone();
        Arc::make_mut(&mut copy.members);
        copy
    }

    fn filled(members: &[String]) -> Campaign {
        let mut campaign = Campaign::new();
        for member in members {
            campaign.insert(member);
        }
        // Garbage in the arena, bits in `removed`, values in `delta`.
        for member in members.iter().step_by(5) {
            campaign.remove(member);
        }
        for id in 0..40u64 {
            campaign.insert(&format!("{}", (1u64 << 32) + 1000 + id));
        }
        campaign
    }

    #[test]
    fn a_relocated_campaign_answers_as_before() {
        use crate::core::relocate::fake::MoveAll;
        let members = mixed_members();
        let mut campaign = filled(&members);
        let before = deep_copy(&campaign);
        let mut relocator = MoveAll::default();
        let (walk, moved) = campaign.relocate(0, &mut relocator, 1_000);
        assert_eq!(walk, Walk::Done);
        assert!(moved.moved > 5, "{moved:?}");
        assert!(moved.renewed > 0, "{moved:?}");
        assert_eq!(relocator.moves, moved.moved);
        // Bitmaps are renewed again only after the interval.
        let (_, again) = campaign.relocate(0, &mut relocator, 1_010);
        assert_eq!(again.renewed, 0, "{again:?}");
        assert!(again.moved > 5, "{again:?}");
        let interval = crate::core::member_set::RENEW_INTERVAL_S;
        let (_, later) = campaign.relocate(0, &mut relocator, 1_000 + interval);
        assert!(later.renewed > 0, "{later:?}");
        assert!(campaign == before, "the same content");
        assert_eq!(campaign.checksum(), before.checksum());
        for member in &members {
            assert_eq!(
                campaign.contains(member),
                before.contains(member),
                "{member}"
            );
        }
        // Still writable, and still equal to the same changes elsewhere.
        let mut copy = deep_copy(&before);
        for member in members.iter().step_by(3) {
            assert_eq!(campaign.remove(member), copy.remove(member));
            assert_eq!(
                campaign.insert(&format!("{member}!")),
                copy.insert(&format!("{member}!"))
            );
        }
        assert!(campaign == copy, "the same content");
    }

    #[test]
    fn a_walk_stopped_at_every_unit_resumes_to_the_end() {
        use crate::core::relocate::fake::MoveAll;
        let members = mixed_members();
        let mut campaign = filled(&members);
        campaign.absent = Some(Absent::new(
            members.iter().take(50).map(String::as_str).collect(),
        ));
        let mut before = deep_copy(&campaign);
        let mut relocator = MoveAll {
            stop_after: Some(1),
            ..MoveAll::default()
        };
        let (mut start, mut calls) = (0, 0);
        loop {
            calls += 1;
            relocator.asked = 0;
            match campaign.relocate(start, &mut relocator, 1_000).0 {
                Walk::StoppedAt(next) => {
                    assert!(next > start, "progress");
                    start = next;
                }
                Walk::Done => break,
            }
            // A change between two calls only shifts the units.
            for copy in [&mut campaign, &mut before] {
                copy.insert(&format!("between-{calls}-x"));
                copy.remove(&format!("between-{calls}-x"));
            }
        }
        let units = before.members.relocation_units()
            + before.absent.as_ref().map_or(0, |a| a.0.relocation_units());
        assert_eq!(calls, units, "one unit per call");
        assert!(campaign == before, "the same content");
        assert_eq!(campaign.knows("7"), Known::Present);
        assert_eq!(campaign.knows(&members[1]), before.knows(&members[1]));
    }

    #[test]
    fn a_set_shared_with_a_reader_is_not_moved() {
        use crate::core::relocate::fake::MoveAll;
        let mut campaign = filled(&mixed_members());
        let snapshot = campaign.snapshot();
        let mut relocator = MoveAll::default();
        assert_eq!(
            campaign.relocate(0, &mut relocator, 1_000),
            (Walk::Done, Moved::default())
        );
        assert!(campaign.is_snapshot(&snapshot));
        assert_eq!(relocator.moves, 0);
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
        campaign.encode_named(&mut buffer, b"saved-as");
        let (decoded, name) = Campaign::decode_named(&mut buffer, ENCODING_VERSION).unwrap();
        assert_eq!(decoded, campaign);
        assert_eq!(name.as_deref(), Some(&b"saved-as"[..]));
        // Encoding 6: the same without the name.
        let mut buffer = RecordBuffer::default();
        campaign.encode(&mut buffer);
        assert_eq!(
            Campaign::decode_named(&mut buffer, 6).unwrap(),
            (campaign.clone(), None)
        );
        let mut buffer = RecordBuffer::default();
        campaign.encode_named(&mut buffer, b"");
        assert_eq!(
            Campaign::decode_named(&mut buffer, 7).unwrap(),
            (campaign.clone(), None)
        );

        // Encoding 4 is the member set alone: it loads with version 0.
        let mut buffer = RecordBuffer::default();
        campaign.members().encode(&mut buffer);
        let bare = Campaign::decode(&mut buffer, 4).unwrap();
        assert_eq!((bare.len(), bare.version()), (2, 0));
        assert!(Campaign::decode(&mut RecordBuffer::default(), 8).is_err());
        assert!(Campaign::decode(&mut RecordBuffer::default(), 7).is_err());
    }

    #[test]
    fn an_incomplete_campaign_knows_what_was_written_and_completes_on_top() {
        use crate::core::codec::RecordBuffer;
        let before = INCOMPLETE_VALUES.load(Ordering::Relaxed);
        let mut campaign = Campaign::incomplete();
        assert!(campaign.insert("a"));
        assert!(!campaign.insert("a"), "already known present");
        assert!(campaign.remove("b"), "not known absent before");
        assert!(!campaign.remove("b"));
        campaign.insert("c");
        assert!(campaign.remove("c"), "known present, now absent");
        campaign.advance_version(9);
        assert_eq!(
            ["a", "b", "c", "z"].map(|m| campaign.knows(m)),
            [Known::Present, Known::Absent, Known::Absent, Known::Unknown]
        );
        assert!(!campaign.is_complete());
        assert!(INCOMPLETE_VALUES.load(Ordering::Relaxed) > before);

        let mut buffer = RecordBuffer::default();
        campaign.encode_named(&mut buffer, b"c");
        let decoded = Campaign::decode(&mut buffer, ENCODING_VERSION).unwrap();
        assert_eq!(decoded, campaign);

        let mut loaded = Campaign::new();
        for member in ["b", "c", "d"] {
            loaded.insert(member);
        }
        let complete = campaign.completed(loaded);
        assert!(complete.is_complete());
        let mut members: Vec<String> = complete.members().iter().map(|m| m.to_string()).collect();
        members.sort();
        assert_eq!(members, ["a", "d"]);
        assert_eq!(complete.version(), 9);
        assert_eq!(
            complete.checksum(),
            Campaign::from_members(complete.members().clone()).checksum()
        );
        assert_eq!(complete.knows("z"), Known::Absent);
    }

    /// `CAMPAIGN.SYNC ... REPLACE` sends a bare set (a rebuild's members)
    /// under the set's encoding number and the receiver reads it as a
    /// campaign value: the numbers of the two must not collide.
    #[test]
    fn a_bare_set_under_its_own_number_reads_as_a_campaign() {
        use crate::core::codec::{BlobReader, BlobWriter};
        use crate::core::member_set::ENCODING_VERSION as SET_ENCODING;
        let members = ["user:42", "user:042", "7", "zoë", "cust-9"];
        let set: MemberSet = members.into_iter().collect();
        let mut writer = BlobWriter::default();
        set.encode(&mut writer);
        assert_ne!(SET_ENCODING, ENCODING_VERSION);
        let received = Campaign::decode(&mut BlobReader::new(&writer.bytes), SET_ENCODING).unwrap();
        assert_eq!(received, Campaign::from_members(set));
        assert_eq!(received.version(), 0);
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
