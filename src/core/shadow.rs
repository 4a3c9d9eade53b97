//! Shadows: a rebuilt set on its way to replicas and the AOF in bounded
//! parts, so no single command (and no single hold of the Redis lock on
//! the primary) carries a whole large set.
//!
//! A shadow is never a key: no client can name, read or delete it, and
//! DEL, RENAME, FLUSHALL between its parts leave it alone. The primary
//! sends parts (`Sending`, keeping the parts it sent so a snapshot taken
//! meanwhile — a full sync, an AOF rewrite — carries them), replicas and
//! an AOF replay collect them (`Receiving`), and one small command then
//! swaps the collected set in under the key it names. A shadow that never
//! gets its swap (its primary failed over, died, or gave up) is dropped.
//!
//! Pure: the registry and the part encoding, unit-tested without Redis.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::codec::{BlobReader, DecodeError, RecordReader, RecordWriter};
use super::member::validate_text;
use super::member_set::MemberSet;
use super::Campaign;

/// Encoded bytes per part: a part is one replicated command, written to
/// the AOF and every replica's buffer in one go and applied on replicas in
/// one call, so it stays far below a millisecond of work.
pub const PART_BYTES: usize = 256 * 1024;

/// The members of `set` as parts of about `part_bytes` each: a count, then
/// each member's text.
pub fn encode_parts(set: &MemberSet, part_bytes: usize) -> Vec<Vec<u8>> {
    let mut writer = PartsWriter::new(part_bytes);
    let mut parts: Vec<Vec<u8>> = set.iter().filter_map(|m| writer.push(m.as_str())).collect();
    parts.extend(writer.finish());
    parts
}

/// Members written into parts of about `part_bytes` as they come (a load
/// writes the rows it reads, before it knows whether they will be sent).
pub struct PartsWriter {
    part_bytes: usize,
    current: PartWriter,
}

impl PartsWriter {
    pub fn new(part_bytes: usize) -> Self {
        PartsWriter {
            part_bytes: part_bytes.max(1),
            current: PartWriter::default(),
        }
    }

    /// Adds a member; returns the part it completed, if it did.
    pub fn push(&mut self, member: &str) -> Option<Vec<u8>> {
        self.current.push(member);
        (self.current.bytes.len() >= self.part_bytes)
            .then(|| std::mem::take(&mut self.current).finish())
    }

    /// The last part, if any member is in it.
    pub fn finish(self) -> Option<Vec<u8>> {
        (self.current.count > 0).then(|| self.current.finish())
    }
}

/// A part being written: the count is patched in at the end.
#[derive(Default)]
struct PartWriter {
    bytes: Vec<u8>,
    count: u64,
}

impl PartWriter {
    fn push(&mut self, member: &str) {
        if self.bytes.is_empty() {
            self.bytes.extend_from_slice(&0u64.to_le_bytes());
        }
        self.bytes
            .extend_from_slice(&(member.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(member.as_bytes());
        self.count += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bytes.is_empty() {
            self.bytes.extend_from_slice(&0u64.to_le_bytes());
        }
        self.bytes[..8].copy_from_slice(&self.count.to_le_bytes());
        self.bytes
    }
}

/// One part: the member count, then each member.
pub fn encode_part(members: &[&str]) -> Vec<u8> {
    let mut part = PartWriter::default();
    for member in members {
        part.push(member);
    }
    part.finish()
}

/// The members of a part, every one validated (a bad part changes nothing).
pub fn decode_part(part: &[u8]) -> Result<Vec<&str>, DecodeError> {
    let mut reader = BlobReader::new(part);
    let count = reader.read_unsigned()?;
    // Each member takes at least five bytes: no allocation beyond the blob.
    let mut members = Vec::with_capacity((count as usize).min(part.len() / 5));
    let mut rest = part.get(8..).ok_or(DecodeError::Truncated)?;
    for _ in 0..count {
        let (length, tail) = rest.split_at_checked(4).ok_or(DecodeError::Truncated)?;
        let length = u32::from_le_bytes(length.try_into().expect("four bytes")) as usize;
        let (bytes, tail) = tail
            .split_at_checked(length)
            .ok_or(DecodeError::Truncated)?;
        let member = validate_text(bytes, None).map_err(DecodeError::InvalidMember)?;
        members.push(member);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(DecodeError::Corrupt("bytes after a shadow part's members"));
    }
    Ok(members)
}

/// One shadow on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shadow {
    /// The primary sends it: the parts that have gone out (shared with
    /// the load sending them, which frees them off the main thread).
    Sending { key: Vec<u8>, sent: Vec<Arc<[u8]>> },
    /// A replica (or an AOF replay) collects it.
    Receiving { key: Vec<u8>, campaign: Campaign },
}

impl Shadow {
    pub fn key(&self) -> &[u8] {
        match self {
            Shadow::Sending { key, .. } | Shadow::Receiving { key, .. } => key,
        }
    }
}

/// A shadow as a snapshot carries it: id, key, parts.
pub type SnapshotShadow<'a> = (u64, &'a [u8], Vec<Vec<u8>>);

/// Format of the shadows in a snapshot (after the journal in the aux data).
pub const FORMAT: u64 = 1;

/// The shadows of this node, by id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shadows {
    shadows: BTreeMap<u64, Shadow>,
}

impl Shadows {
    pub fn len(&self) -> usize {
        self.shadows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shadows.is_empty()
    }

    pub fn get(&self, id: u64) -> Option<&Shadow> {
        self.shadows.get(&id)
    }

    /// The primary sent `part` of shadow `id` of `key` (registered with
    /// its first part).
    pub fn record_sent(&mut self, id: u64, key: &[u8], part: Arc<[u8]>) {
        let shadow = self.shadows.entry(id).or_insert_with(|| Shadow::Sending {
            key: key.to_vec(),
            sent: Vec::new(),
        });
        if let Shadow::Sending { sent, .. } = shadow {
            sent.push(part);
        }
    }

    /// Adds a part's members to shadow `id` (created on its first part).
    /// Parts are sets of members: receiving one twice changes nothing.
    pub fn receive(&mut self, id: u64, key: &[u8], members: &[&str]) {
        let shadow = self.shadows.entry(id).or_insert_with(|| Shadow::Receiving {
            key: key.to_vec(),
            campaign: Campaign::new(),
        });
        match shadow {
            Shadow::Receiving { campaign, .. } => {
                for member in members {
                    campaign.insert(member);
                }
            }
            // This node sends that shadow itself: nothing to collect.
            Shadow::Sending { .. } => {}
        }
    }

    /// Removes shadow `id`; a collected one is returned for its swap.
    pub fn take(&mut self, id: u64) -> Option<Shadow> {
        self.shadows.remove(&id)
    }

    /// Removes every shadow this node collected (a primary's leftovers:
    /// nobody will send their swap); returns their ids, keys and sets.
    pub fn drop_received(&mut self) -> Vec<(u64, Vec<u8>, Campaign)> {
        let ids: Vec<u64> = self
            .shadows
            .iter()
            .filter(|(_, shadow)| matches!(shadow, Shadow::Receiving { .. }))
            .map(|(&id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| match self.shadows.remove(&id) {
                Some(Shadow::Receiving { key, campaign }) => Some((id, key, campaign)),
                _ => None,
            })
            .collect()
    }

    /// Takes the shadows a snapshot held (a restart, a full sync) in place
    /// of those collected so far; shadows this node is sending stay (a
    /// `DEBUG RELOAD` under a running send).
    pub fn restore(&mut self, loaded: Shadows) {
        self.shadows
            .retain(|_, shadow| matches!(shadow, Shadow::Sending { .. }));
        for (id, shadow) in loaded.shadows {
            self.shadows.entry(id).or_insert(shadow);
        }
    }

    /// Whether this node is sending shadow `id`.
    pub fn is_sending(&self, id: u64) -> bool {
        matches!(self.shadows.get(&id), Some(Shadow::Sending { .. }))
    }

    /// The parts as a snapshot must carry them: what a sender sent so far,
    /// what a receiver collected (re-encoded).
    pub fn snapshot_parts(shadow: &Shadow) -> Vec<Vec<u8>> {
        match shadow {
            Shadow::Sending { sent, .. } => sent.iter().map(|part| part.to_vec()).collect(),
            Shadow::Receiving { campaign, .. } => encode_parts(campaign.members(), PART_BYTES),
        }
    }

    /// Every shadow with the parts a snapshot carries; a snapshot loads
    /// them all as collected shadows.
    pub fn snapshot(&self) -> Vec<SnapshotShadow<'_>> {
        self.shadows
            .iter()
            .map(|(&id, shadow)| (id, shadow.key(), Self::snapshot_parts(shadow)))
            .collect()
    }

    pub fn encode<W: RecordWriter>(&self, writer: &mut W) {
        let snapshot = self.snapshot();
        writer.write_unsigned(FORMAT);
        writer.write_unsigned(snapshot.len() as u64);
        for (id, key, parts) in snapshot {
            writer.write_unsigned(id);
            writer.write_bytes(key);
            writer.write_unsigned(parts.len() as u64);
            for part in parts {
                writer.write_bytes(&part);
            }
        }
    }

    pub fn decode<R: RecordReader>(reader: &mut R) -> Result<Self, DecodeError> {
        let format = reader.read_unsigned()?;
        if format != FORMAT {
            return Err(DecodeError::UnknownVersion(
                format.min(i32::MAX as u64) as i32
            ));
        }
        let mut shadows = Shadows::default();
        for _ in 0..reader.read_unsigned()? {
            let id = reader.read_unsigned()?;
            let key = reader.read_bytes(<[u8]>::to_vec)?;
            // Every shadow is collected, even one this snapshot's node was
            // sending: whoever loads it is not that load.
            shadows.shadows.insert(
                id,
                Shadow::Receiving {
                    key: key.clone(),
                    campaign: Campaign::new(),
                },
            );
            for _ in 0..reader.read_unsigned()? {
                reader.read_bytes(|part| {
                    decode_part(part).map(|members| shadows.receive(id, &key, &members))
                })??;
            }
        }
        Ok(shadows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codec::RecordBuffer;
    use proptest::prelude::*;

    fn set_of(members: &[String]) -> MemberSet {
        let mut campaign = Campaign::new();
        for member in members {
            campaign.insert(member);
        }
        campaign.members().clone()
    }

    fn mixed(count: usize) -> Vec<String> {
        (0..count)
            .map(|i| match i % 3 {
                0 => (10_000_000 + i * 7).to_string(),
                1 => format!("{:08x}-0000-4000-8000-{:012x}", i, i * 31),
                _ => format!("member-{i}"),
            })
            .collect()
    }

    fn collected(shadows: &Shadows, id: u64) -> Option<&Campaign> {
        match shadows.get(id) {
            Some(Shadow::Receiving { campaign, .. }) => Some(campaign),
            _ => None,
        }
    }

    #[test]
    fn parts_are_bounded_and_carry_every_member() {
        let members = mixed(20_000);
        let set = set_of(&members);
        let parts = encode_parts(&set, 16 * 1024);
        assert!(parts.len() > 10);
        // A part ends at the first member past the bound.
        assert!(parts.iter().all(|part| part.len() < 16 * 1024 + 200));
        let mut shadows = Shadows::default();
        for part in &parts {
            shadows.receive(7, b"k", &decode_part(part).unwrap());
        }
        let campaign = collected(&shadows, 7).unwrap();
        assert_eq!(campaign, &Campaign::from_members(set));
    }

    #[test]
    fn a_part_received_twice_changes_nothing() {
        let parts = encode_parts(&set_of(&mixed(3_000)), 4096);
        let mut shadows = Shadows::default();
        for part in parts.iter().chain(parts.iter()) {
            shadows.receive(1, b"k", &decode_part(part).unwrap());
        }
        assert_eq!(collected(&shadows, 1).unwrap().len(), 3_000);
    }

    #[test]
    fn a_bad_part_is_refused_whole() {
        let part = encode_part(&["a", "b"]);
        assert!(decode_part(&part[..part.len() - 1]).is_err());
        let mut longer = part.clone();
        longer.push(0);
        assert!(decode_part(&longer).is_err());
        let invalid = encode_part(&["a", ""]);
        assert!(matches!(
            decode_part(&invalid),
            Err(DecodeError::InvalidMember(_))
        ));
        let mut huge_count = part;
        huge_count[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_part(&huge_count).is_err());
    }

    #[test]
    fn a_snapshot_carries_what_was_sent_and_what_was_collected() {
        let parts = encode_parts(&set_of(&mixed(5_000)), 4096);
        let mut primary = Shadows::default();
        for part in &parts[..2] {
            primary.record_sent(9, b"sent", Arc::from(part.as_slice()));
        }
        let mut replica = Shadows::default();
        for part in &parts[..2] {
            replica.receive(9, b"sent", &decode_part(part).unwrap());
        }
        let mut buffer = RecordBuffer::default();
        primary.encode(&mut buffer);
        let from_primary = Shadows::decode(&mut buffer).unwrap();
        let mut buffer = RecordBuffer::default();
        replica.encode(&mut buffer);
        let from_replica = Shadows::decode(&mut buffer).unwrap();
        // Both hold the first two parts, collected, under the same key.
        assert_eq!(from_primary, from_replica);
        assert_eq!(from_replica, replica);
        assert_eq!(from_primary.get(9).unwrap().key(), b"sent");
    }

    #[test]
    fn leftovers_are_dropped_but_sends_stay() {
        let mut shadows = Shadows::default();
        shadows.record_sent(1, b"a", Arc::from(encode_part(&["x"])));
        shadows.receive(2, b"b", &["y"]);
        let dropped = shadows.drop_received();
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            (dropped[0].0, dropped[0].1.as_slice()),
            (2, b"b".as_slice())
        );
        assert_eq!(shadows.len(), 1);
        // A part of a shadow this node sends is not collected.
        shadows.receive(1, b"a", &["z"]);
        assert!(shadows.is_sending(1));
    }

    #[test]
    fn a_restored_snapshot_keeps_the_shadows_being_sent() {
        let mut shadows = Shadows::default();
        shadows.record_sent(1, b"a", Arc::from(encode_part(&["x"])));
        shadows.receive(2, b"b", &["old"]);
        let mut loaded = Shadows::default();
        loaded.receive(1, b"a", &["stale copy"]);
        loaded.receive(3, b"c", &["new"]);
        shadows.restore(loaded);
        assert!(matches!(shadows.get(1), Some(Shadow::Sending { .. })));
        assert!(shadows.get(2).is_none());
        assert_eq!(shadows.get(3).unwrap().key(), b"c");
    }

    proptest! {
        #[test]
        fn any_set_survives_parts(members in proptest::collection::btree_set("[a-z0-9-]{1,40}", 0..400), bytes in 16usize..2048) {
            let members: Vec<String> = members.into_iter().collect();
            let set = set_of(&members);
            let mut shadows = Shadows::default();
            for part in encode_parts(&set, bytes) {
                shadows.receive(3, b"k", &decode_part(&part).unwrap());
            }
            let expected = Campaign::from_members(set);
            match collected(&shadows, 3) {
                Some(campaign) => prop_assert_eq!(campaign, &expected),
                None => prop_assert!(expected.is_empty()),
            }
        }
    }
}
