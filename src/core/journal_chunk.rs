//! How the journal stores its entries: packed into chunks of about
//! `CHUNK_BYTES`, each entry a few bytes.
//!
//! One entry is a tag byte, then only what differs from the entry before:
//!
//! ```text
//! tag: bit 0 op (0 ADD, 1 REM) | bits 1-2 member kind (0 id, 1 UUID, 2 text)
//!      | bit 3 campaign follows | bit 4 version follows
//!      | bit 5 version is the previous one plus 1
//!      | bit 6 PRUNE (bit 0 clear; member: empty text)     (bit 7: zero)
//! [campaign: LEB128 index into the chunk's names]      if bit 3
//! [version: LEB128 of the zigzagged difference to the
//!  previous version, or to 0 at a fresh entry]         if bit 4
//! member: id as LEB128 | UUID as 16 bytes big-endian | text as LEB128
//!         length and its bytes
//! ```
//!
//! Members are classified as in the member sets (`canonical`): a canonical
//! decimal id or lowercase UUID is stored in binary and formats back to
//! exactly the same string, everything else stays text. The campaign is a
//! small index into the chunk's own list of names, written only when it
//! changes, so an 8-digit id costs 5 bytes and a UUID 17. The per-change
//! 64-bit version of SPEC section 4 costs nothing when it is the previous
//! entry's plus one (the members of one command, a busy campaign), else
//! the few bytes of its difference.
//!
//! Every `CHECKPOINT_EVERY`-th entry of a chunk is *fresh*: it names its
//! campaign and any version in full, and its byte offset is kept, so
//! reading can start there without decoding the chunk from the start.

use std::sync::Arc;

use super::canonical::{classify, Kind};
use super::journal::Op;
use super::leb128;
use super::member::validate_text;

/// A chunk is sealed once its bytes would pass this (a single larger
/// entry gets a chunk of its own). The chunk being filled grows its buffer
/// by doubling up to this size, so a short journal holds little.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// Every this many entries of a chunk, one is fresh (see the module doc).
pub(crate) const CHECKPOINT_EVERY: u32 = 64;

const OP_REMOVE: u8 = 1;
const KIND_NUMBER: u8 = 0;
const KIND_UUID: u8 = 1 << 1;
const KIND_TEXT: u8 = 2 << 1;
const KIND_MASK: u8 = 3 << 1;
const HAS_CAMPAIGN: u8 = 1 << 3;
const HAS_VERSION: u8 = 1 << 4;
const NEXT_VERSION: u8 = 1 << 5;
const OP_PRUNE: u8 = 1 << 6;
const UNKNOWN_BITS: u8 = !0x7f;

/// One entry as stored: the campaign as an index into some list of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packed<'a> {
    pub op: Op,
    pub campaign: u32,
    pub member: Kind<'a>,
    pub version: Option<u64>,
}

/// What the previous entry left for the next to leave out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct State {
    campaign: Option<u32>,
    version: u64,
    has_version: bool,
}

/// Most bytes `member` takes packed, with its tag, campaign and version.
pub(crate) fn max_packed_len(member: &Kind<'_>) -> usize {
    1 + 5
        + 10
        + match member {
            Kind::Number(_) => 10,
            Kind::Uuid(_) => 16,
            Kind::Text(text) => 10 + text.len(),
        }
}

fn zigzag(delta: u64) -> u64 {
    let signed = delta as i64;
    ((signed << 1) ^ (signed >> 63)) as u64
}

fn unzigzag(value: u64) -> u64 {
    (value >> 1) ^ (value & 1).wrapping_neg()
}

/// Appends `entry`; a fresh entry leaves nothing out.
pub(crate) fn pack(out: &mut Vec<u8>, state: &mut State, fresh: bool, entry: Packed<'_>) {
    if fresh {
        *state = State::default();
    }
    let mut tag = match entry.op {
        Op::Add => 0,
        Op::Remove => OP_REMOVE,
        Op::Prune => OP_PRUNE,
    };
    tag |= match entry.member {
        Kind::Number(_) => KIND_NUMBER,
        Kind::Uuid(_) => KIND_UUID,
        Kind::Text(_) => KIND_TEXT,
    };
    let new_campaign = state.campaign != Some(entry.campaign);
    if new_campaign {
        tag |= HAS_CAMPAIGN;
    }
    let next_version = state.has_version && entry.version == Some(state.version.wrapping_add(1));
    if next_version {
        tag |= NEXT_VERSION;
    } else if entry.version.is_some() {
        tag |= HAS_VERSION;
    }
    out.push(tag);
    if new_campaign {
        leb128::write_u64(out, u64::from(entry.campaign));
        state.campaign = Some(entry.campaign);
    }
    if let Some(version) = entry.version {
        if !next_version {
            leb128::write_u64(out, zigzag(version.wrapping_sub(state.version)));
        }
        state.version = version;
        state.has_version = true;
    }
    match entry.member {
        Kind::Number(id) => leb128::write_u64(out, id),
        Kind::Uuid(uuid) => out.extend_from_slice(&uuid.to_be_bytes()),
        Kind::Text(text) => {
            leb128::write_u64(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// Reads the entry at `*at`; `None` if the bytes are not a valid entry
/// (cut off, unknown bits, no campaign yet, text that could not be a
/// member). Text that reads as an id or UUID comes back classified as
/// one, so equal members always compare equal.
pub(crate) fn unpack<'a>(
    bytes: &'a [u8],
    at: &mut usize,
    state: &mut State,
    fresh: bool,
) -> Option<Packed<'a>> {
    if fresh {
        *state = State::default();
    }
    let tag = *bytes.get(*at)?;
    *at += 1;
    if tag & UNKNOWN_BITS != 0 {
        return None;
    }
    let op = match (tag & OP_REMOVE != 0, tag & OP_PRUNE != 0) {
        (false, false) => Op::Add,
        (true, false) => Op::Remove,
        (false, true) => Op::Prune,
        (true, true) => return None,
    };
    if tag & HAS_CAMPAIGN != 0 {
        state.campaign = Some(u32::try_from(leb128::read_u64(bytes, at)?).ok()?);
    }
    let campaign = state.campaign?;
    let version = match (tag & HAS_VERSION != 0, tag & NEXT_VERSION != 0) {
        (true, true) => return None,
        (true, false) => {
            state.version = state
                .version
                .wrapping_add(unzigzag(leb128::read_u64(bytes, at)?));
            state.has_version = true;
            Some(state.version)
        }
        (false, true) if state.has_version => {
            state.version = state.version.wrapping_add(1);
            Some(state.version)
        }
        (false, true) => return None,
        (false, false) => None,
    };
    let member = match tag & KIND_MASK {
        // A prune's member is the empty string, which no member can be.
        KIND_TEXT if op == Op::Prune => {
            if leb128::read_u64(bytes, at)? != 0 {
                return None;
            }
            Kind::Text("")
        }
        _ if op == Op::Prune => return None,
        KIND_NUMBER => Kind::Number(leb128::read_u64(bytes, at)?),
        KIND_UUID => {
            let end = at.checked_add(16)?;
            let raw: [u8; 16] = bytes.get(*at..end)?.try_into().ok()?;
            *at = end;
            Kind::Uuid(u128::from_be_bytes(raw))
        }
        KIND_TEXT => {
            let len = usize::try_from(leb128::read_u64(bytes, at)?).ok()?;
            let end = at.checked_add(len)?;
            let text = validate_text(bytes.get(*at..end)?, None).ok()?;
            *at = end;
            classify(text)
        }
        _ => return None,
    };
    Some(Packed {
        op,
        campaign,
        member,
        version,
    })
}

/// A run of packed entries with the campaign names they refer to.
/// Sealed chunks are shared (`Arc`) with the flusher, which reads its
/// batch off the Redis lock.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunk {
    bytes: Vec<u8>,
    /// Byte offset of every `CHECKPOINT_EVERY`-th entry.
    checkpoints: Vec<u32>,
    /// Campaign names, by the index the entries use.
    pub names: Vec<Arc<str>>,
    /// Entries per name.
    pub counts: Vec<u32>,
    len: u32,
    /// Left by the last entry appended.
    state: State,
}

impl Chunk {
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Heap bytes held (for figures and tests).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + self.checkpoints.capacity() * 4
            + self.names.capacity() * std::mem::size_of::<Arc<str>>()
            + self.counts.capacity() * 4
    }

    /// Index of a new name for the entries that follow.
    pub fn add_name(&mut self, name: Arc<str>) -> u32 {
        self.names.push(name);
        self.counts.push(0);
        (self.names.len() - 1) as u32
    }

    pub fn push(&mut self, op: Op, campaign: u32, member: Kind<'_>, version: Option<u64>) {
        let fresh = self.len.is_multiple_of(CHECKPOINT_EVERY);
        if fresh {
            self.checkpoints.push(self.bytes.len() as u32);
        }
        let entry = Packed {
            op,
            campaign,
            member,
            version,
        };
        pack(&mut self.bytes, &mut self.state, fresh, entry);
        self.counts[campaign as usize] += 1;
        self.len += 1;
    }

    /// Gives back spare capacity once no entry will be added.
    pub fn shrink(&mut self) {
        self.bytes.shrink_to_fit();
        self.checkpoints.shrink_to_fit();
        self.names.shrink_to_fit();
        self.counts.shrink_to_fit();
    }

    /// A copy of the entries so far, without spare capacity or counts:
    /// what the flusher takes of the chunk still being filled.
    pub fn snapshot(&self) -> Chunk {
        Chunk {
            bytes: self.bytes.clone(),
            checkpoints: self.checkpoints.clone(),
            names: self.names.clone(),
            counts: Vec::new(),
            len: self.len,
            state: self.state,
        }
    }

    /// The entries numbered `start..end` within the chunk.
    pub fn entries(&self, start: u32, end: u32) -> ChunkEntries<'_> {
        let end = end.min(self.len);
        let mut entries = ChunkEntries {
            chunk: self,
            index: 0,
            end,
            at: 0,
            state: State::default(),
        };
        if start >= end {
            entries.index = end;
            return entries;
        }
        let checkpoint = start / CHECKPOINT_EVERY;
        entries.index = checkpoint * CHECKPOINT_EVERY;
        entries.at = self.checkpoints[checkpoint as usize] as usize;
        while entries.index < start {
            entries.next_packed();
        }
        entries
    }
}

/// Entries of one chunk, in order, with the chunk's names.
pub(crate) struct ChunkEntries<'a> {
    chunk: &'a Chunk,
    index: u32,
    end: u32,
    at: usize,
    state: State,
}

impl<'a> ChunkEntries<'a> {
    pub fn next_packed(&mut self) -> Option<Packed<'a>> {
        if self.index >= self.end {
            return None;
        }
        let fresh = self.index.is_multiple_of(CHECKPOINT_EVERY);
        let entry = unpack(&self.chunk.bytes, &mut self.at, &mut self.state, fresh)
            .expect("the journal packs only valid entries");
        self.index += 1;
        Some(entry)
    }

    pub fn name(&self, campaign: u32) -> &'a str {
        &self.chunk.names[campaign as usize]
    }

    pub fn remaining(&self) -> usize {
        (self.end - self.index) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(entries: &[Packed<'_>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut state = State::default();
        for (index, entry) in entries.iter().enumerate() {
            pack(&mut bytes, &mut state, index == 0, *entry);
        }
        let mut at = 0;
        let mut state = State::default();
        for (index, entry) in entries.iter().enumerate() {
            let read = unpack(&bytes, &mut at, &mut state, index == 0);
            assert_eq!(read, Some(*entry));
        }
        assert_eq!(at, bytes.len());
        bytes
    }

    fn add(campaign: u32, member: Kind<'_>, version: Option<u64>) -> Packed<'_> {
        Packed {
            op: Op::Add,
            campaign,
            member,
            version,
        }
    }

    #[test]
    fn ids_and_uuids_take_a_few_bytes() {
        // 8-digit ids of one campaign: tag + 4 bytes, the campaign once.
        let ids: Vec<Packed> = (0..100)
            .map(|i| {
                add(
                    3,
                    Kind::Number(10_000_000 + i * 7_919_113 % 89_999_999),
                    None,
                )
            })
            .collect();
        assert_eq!(round_trip(&ids).len(), 100 * 5 + 1);
        let uuids: Vec<Packed> = (0..10)
            .map(|i| add(0, Kind::Uuid(u128::MAX / 7 * i), None))
            .collect();
        assert_eq!(round_trip(&uuids).len(), 10 * 17 + 1);
    }

    #[test]
    fn versions_fit_in_a_few_bytes() {
        // A hybrid logical clock: ms since the epoch above 21 counter bits.
        let start = 1_750_000_000_000_u64 << 21;
        let entries: Vec<Packed> = (0..100)
            .map(|i| add(0, Kind::Number(12_345_678 + i), Some(start + i * 3)))
            .collect();
        let bytes = round_trip(&entries);
        // The campaign and the first version in full (9 bytes), then one
        // byte of version each.
        assert_eq!(bytes.len(), 100 * 6 + 1 + 8);
        // Consecutive versions cost nothing after the first.
        let consecutive: Vec<Packed> = (0..100)
            .map(|i| add(0, Kind::Number(12_345_678 + i), Some(start + i)))
            .collect();
        assert_eq!(round_trip(&consecutive).len(), 100 * 5 + 1 + 9);
        // Versions may also go back (another node's, a restored entry).
        round_trip(&[
            add(0, Kind::Text("x"), Some(u64::MAX)),
            add(1, Kind::Text("y"), Some(0)),
            add(1, Kind::Text("y"), None),
            add(1, Kind::Text("y"), Some(5)),
        ]);
    }

    #[test]
    fn refuses_broken_bytes() {
        let bad: &[&[u8]] = &[
            &[],
            &[0x00, 0x00, 0x01],              // no campaign yet
            &[0x80 | HAS_CAMPAIGN, 0, 1],     // unknown bit
            &[OP_PRUNE | HAS_CAMPAIGN, 0, 1], // a prune of a member
            &[OP_PRUNE | OP_REMOVE | KIND_TEXT | HAS_CAMPAIGN, 0, 0], // both ops
            &[OP_PRUNE | KIND_TEXT | HAS_CAMPAIGN, 0, 1, b'x'], // a prune of a member
            &[NEXT_VERSION | HAS_CAMPAIGN, 0, 1], // no version to follow
            &[NEXT_VERSION | HAS_VERSION | HAS_CAMPAIGN, 0, 2, 1], // both
            &[KIND_MASK | HAS_CAMPAIGN, 0, 1], // unknown kind
            &[KIND_UUID | HAS_CAMPAIGN, 0, 1], // cut-off UUID
            &[KIND_TEXT | HAS_CAMPAIGN, 0, 5, b'a'], // cut-off text
            &[KIND_TEXT | HAS_CAMPAIGN, 0, 1, 0], // NUL
            &[KIND_TEXT | HAS_CAMPAIGN, 0, 1, 0xff], // not UTF-8
            &[KIND_TEXT | HAS_CAMPAIGN, 0, 0], // empty member
            &[
                HAS_CAMPAIGN,
                0,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0xff,
                0x7f,
            ],
        ];
        for bytes in bad {
            let mut at = 0;
            assert_eq!(
                unpack(bytes, &mut at, &mut State::default(), true),
                None,
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn text_that_reads_as_an_id_comes_back_as_one() {
        let mut at = 0;
        let bytes = [KIND_TEXT | HAS_CAMPAIGN, 0, 2, b'4', b'2'];
        let entry = unpack(&bytes, &mut at, &mut State::default(), true).unwrap();
        assert_eq!(entry.member, Kind::Number(42));
    }

    #[test]
    fn reading_starts_at_any_entry() {
        let mut chunk = Chunk::default();
        let a = chunk.add_name("a".into());
        let b = chunk.add_name("b".into());
        let count = 3 * CHECKPOINT_EVERY + 5;
        for i in 0..count {
            let campaign = if i % 3 == 0 { a } else { b };
            chunk.push(Op::Add, campaign, Kind::Number(u64::from(i)), None);
        }
        for start in [0, 1, 63, 64, 65, 130, count - 1, count] {
            let mut entries = chunk.entries(start, count);
            assert_eq!(entries.remaining(), (count - start) as usize);
            let mut expected = start;
            while let Some(entry) = entries.next_packed() {
                assert_eq!(entry.member, Kind::Number(u64::from(expected)));
                let name = if expected % 3 == 0 { "a" } else { "b" };
                assert_eq!(entries.name(entry.campaign), name);
                expected += 1;
            }
            assert_eq!(expected, count);
        }
        assert_eq!(chunk.counts, [count.div_ceil(3), count - count.div_ceil(3)]);
    }

    proptest! {
        #[test]
        fn any_entries_round_trip(
            entries in prop::collection::vec(
                (any::<bool>(), 0u32..4, prop_oneof![
                    any::<u64>().prop_map(|n| n.to_string()),
                    any::<u128>().prop_map(|u| {
                        let mut buffer = [0; super::super::canonical::UUID_LEN];
                        super::super::canonical::format_uuid(u, &mut buffer);
                        String::from_utf8(buffer.to_vec()).unwrap()
                    }),
                    "\\PC{1,12}",
                ], prop::option::of(any::<u64>())),
                0..40,
            ),
        ) {
            let packed: Vec<Packed> = entries
                .iter()
                .map(|(remove, campaign, member, version)| Packed {
                    op: if *remove { Op::Remove } else { Op::Add },
                    campaign: *campaign,
                    member: classify(member),
                    version: *version,
                })
                .collect();
            round_trip(&packed);
        }
    }
}
