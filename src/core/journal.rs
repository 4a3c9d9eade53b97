//! The write-behind journal: every membership change, in order, until the
//! database has committed it.
//!
//! Entries are numbered by a sequence that primary, replicas and AOF replay
//! all derive the same way (one number per changed member, in command
//! order), so "trim through N" means the same entries everywhere.
//!
//! Storage (`journal_chunk`): entries are packed a few bytes each into
//! chunks of about 64 KiB; ids and UUIDs in binary, the campaign as a small
//! index. Full chunks are sealed and shared (`Arc`), so the flusher takes a
//! batch by cloning chunk pointers (plus a copy of the one chunk still
//! being filled) and reads it off the Redis lock; a chunk is freed as soon
//! as it is trimmed and no batch holds it.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::hash_map::EntryRef as MapEntry;
use hashbrown::HashMap;

use super::canonical::{classify, Kind};
use super::codec::{DecodeError, RecordReader, RecordWriter};
use super::journal_chunk::{max_packed_len, pack, unpack, Chunk, ChunkEntries, Packed, State};
use super::member::validate_text;
use super::member_set::MemberRef;

/// Format of `Journal::encode` (RDB aux data): 3 = packed records whose
/// entries may carry versions (and the "previous version plus one" tag);
/// 2 (packed, no versions) and 1 (one record per field of each entry)
/// still load.
pub const FORMAT: u64 = 3;

/// Target size of one packed record of format 2.
const RECORD_BYTES: usize = 256 * 1024;

/// Cap on what is reserved from a stored count (corrupt input).
const MAX_PREALLOCATED: u64 = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Add,
    Remove,
    /// "The campaign is now the set its entries of versions above this
    /// one say": every row of the campaign older than the entry's version
    /// is removed (a marker left for each), whatever member it holds. A
    /// campaign value that lands under a name (RENAME, COPY, MOVE, a
    /// RESTORE under another name) journals one, then its members as
    /// adds with higher versions. Its member is the empty string, which
    /// no real member can be. Never a client's write.
    Prune,
}

impl Op {
    /// The operation's code in journal format 1 (written by tests only).
    #[cfg(test)]
    fn code(self) -> u64 {
        match self {
            Op::Add => 1,
            Op::Remove => 2,
            Op::Prune => 3,
        }
    }

    fn from_code(code: u64) -> Option<Op> {
        match code {
            1 => Some(Op::Add),
            2 => Some(Op::Remove),
            // Format 1 predates prunes.
            _ => None,
        }
    }

    /// The word used for this operation in commands (`CAMPAIGN.JOURNAL LOAD`).
    pub fn word(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Remove => "REM",
            Op::Prune => "PRUNE",
        }
    }

    pub fn from_word(word: &[u8]) -> Option<Op> {
        match word {
            b"ADD" => Some(Op::Add),
            b"REM" => Some(Op::Remove),
            b"PRUNE" => Some(Op::Prune),
            _ => None,
        }
    }
}

/// An entry as owned data: what `CAMPAIGN.JOURNAL LOAD` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub op: Op,
    /// Shared by all entries of one command.
    pub campaign: Arc<str>,
    pub member: Box<str>,
    /// `None` for entries journaled before changes carried versions.
    pub version: Option<u64>,
}

/// An entry read from the journal or a batch, borrowed from its chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub op: Op,
    pub campaign: &'a str,
    member: Kind<'a>,
    /// The change's version (SPEC section 4); `None` for entries
    /// journaled before changes carried versions.
    pub version: Option<u64>,
}

impl<'a> EntryRef<'a> {
    /// The member exactly as it was journaled.
    pub fn member(&self) -> MemberRef<'a> {
        MemberRef::from_kind(self.member)
    }

    /// The member as text: borrowed when it is stored as text.
    pub fn member_text(&self) -> Cow<'a, str> {
        match self.member {
            Kind::Text(text) => Cow::Borrowed(text),
            _ => Cow::Owned(self.member().as_str().to_owned()),
        }
    }

    pub fn to_entry(&self) -> Entry {
        Entry {
            op: self.op,
            campaign: self.campaign.into(),
            member: self.member().as_str().into(),
            version: self.version,
        }
    }

    fn from_packed(packed: Packed<'a>, chunk: &ChunkEntries<'a>) -> Self {
        EntryRef {
            op: packed.op,
            campaign: chunk.name(packed.campaign),
            member: packed.member,
            version: packed.version,
        }
    }
}

/// The entries of one chunk as `EntryRef`s.
struct Entries<'a>(ChunkEntries<'a>);

impl<'a> Iterator for Entries<'a> {
    type Item = EntryRef<'a>;

    fn next(&mut self) -> Option<EntryRef<'a>> {
        let packed = self.0.next_packed()?;
        Some(EntryRef::from_packed(packed, &self.0))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.0.remaining();
        (left, Some(left))
    }
}

/// Pending entries of one campaign, and where its name sits in the chunk
/// being filled.
#[derive(Debug, Clone)]
struct Pending {
    name: Arc<str>,
    entries: usize,
    /// `local` is the name's index in the open chunk if this is the open
    /// chunk's serial number.
    serial: u64,
    local: u32,
}

#[derive(Debug, Clone)]
pub struct Journal {
    /// Sequence number of the oldest entry; of the next entry when empty.
    first_seq: u64,
    len: usize,
    /// Full chunks, oldest first; then `open`, the chunk being filled.
    sealed: VecDeque<Arc<Chunk>>,
    open: Chunk,
    /// Changes whenever `open` starts over (names are per chunk).
    open_serial: u64,
    /// Entries of the oldest chunk (`sealed[0]`, else `open`) trimmed.
    head: u32,
    /// Pending entries per campaign, for VERIFY and the reconciler.
    campaigns: HashMap<Arc<str>, Pending>,
    /// `(first sequence number, arrival time in ms)` of each command's
    /// entries, one per millisecond at most: the age of the oldest entry
    /// without a timestamp per entry.
    arrivals: VecDeque<(u64, u64)>,
    chunk_bytes: usize,
    /// The largest version ever journaled here (trims keep it).
    newest_version: u64,
    /// Heap bytes of the sealed chunks and of the names in `campaigns`,
    /// kept as they change so that `heap_bytes` costs O(1) (it is read
    /// after every write, for `campaign.max-pending-bytes`).
    sealed_bytes: usize,
    name_bytes: usize,
}

/// What one sealed chunk costs: its buffers, its box and the `Arc` counts.
fn sealed_chunk_bytes(chunk: &Chunk) -> usize {
    chunk.heap_bytes() + std::mem::size_of::<Chunk>() + 16
}

/// What one campaign name kept in `campaigns` costs (its `Arc<str>`).
fn name_heap_bytes(name: &str) -> usize {
    name.len() + 16
}

impl Default for Journal {
    fn default() -> Self {
        Journal::new()
    }
}

impl Journal {
    pub fn new() -> Self {
        Journal {
            first_seq: 1,
            len: 0,
            sealed: VecDeque::new(),
            open: Chunk::default(),
            open_serial: 0,
            head: 0,
            campaigns: HashMap::new(),
            arrivals: VecDeque::new(),
            chunk_bytes: super::journal_chunk::CHUNK_BYTES,
            newest_version: 0,
            sealed_bytes: 0,
            name_bytes: 0,
        }
    }

    /// A journal with chunks of `bytes` (tests cross chunk boundaries).
    #[cfg(test)]
    fn with_chunk_bytes(bytes: usize) -> Self {
        Journal {
            chunk_bytes: bytes,
            ..Journal::new()
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sequence number the next appended entry gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.len as u64
    }

    /// Sequence number of the newest entry, if any.
    pub fn last_seq(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.next_seq() - 1)
    }

    /// Sequence number of the oldest entry, if any.
    pub fn first_seq(&self) -> Option<u64> {
        (!self.is_empty()).then_some(self.first_seq)
    }

    /// Heap bytes held by the entries and their bookkeeping (an estimate
    /// of what the allocator sees: `campaign.max-pending-bytes`, figures).
    /// O(1): the sealed chunks and the names are counted as they come and go.
    pub fn heap_bytes(&self) -> usize {
        let per_campaign = std::mem::size_of::<(Arc<str>, Pending)>() + 1;
        self.sealed_bytes
            + self.name_bytes
            + self.open.heap_bytes()
            + self.sealed.capacity() * std::mem::size_of::<Arc<Chunk>>()
            + self.campaigns.capacity() * per_campaign
            + self.arrivals.capacity() * 16
    }

    /// Number of chunks (sealed and open).
    pub fn chunk_count(&self) -> usize {
        self.sealed.len() + 1
    }

    /// Appends one entry per member, all of `campaign`, arriving at
    /// `now_ms`; the members' versions are `first_version`, the next, ...
    pub fn append<'a>(
        &mut self,
        op: Op,
        campaign: &str,
        members: impl IntoIterator<Item = &'a str>,
        first_version: u64,
        now_ms: u64,
    ) {
        let first = self.next_seq();
        let versioned = members
            .into_iter()
            .zip(first_version..)
            .map(|(member, version)| (classify(member), Some(version)));
        let added = self.push(op, campaign, versioned);
        if added > 0 {
            self.arrived(first, now_ms);
        }
    }

    /// The largest version journaled here since the journal was made or
    /// loaded (0: none); trimming keeps it.
    pub fn newest_version(&self) -> u64 {
        self.newest_version
    }

    /// Packs entries of one campaign into the open chunk, sealing it when
    /// full; returns how many.
    fn push<'m>(
        &mut self,
        op: Op,
        campaign: &str,
        members: impl IntoIterator<Item = (Kind<'m>, Option<u64>)>,
    ) -> usize {
        let Journal {
            sealed,
            open,
            open_serial,
            campaigns,
            chunk_bytes,
            len,
            newest_version,
            sealed_bytes,
            name_bytes,
            ..
        } = self;
        let pending = match campaigns.entry_ref(campaign) {
            MapEntry::Occupied(entry) => entry.into_mut(),
            MapEntry::Vacant(entry) => {
                *name_bytes += name_heap_bytes(campaign);
                let name: Arc<str> = campaign.into();
                let pending = Pending {
                    name: Arc::clone(&name),
                    entries: 0,
                    serial: u64::MAX,
                    local: 0,
                };
                entry.insert_with_key(name, pending)
            }
        };
        let mut count = 0;
        for (member, version) in members {
            if open.len() > 0 && open.byte_len() + max_packed_len(&member) > *chunk_bytes {
                let mut full = std::mem::take(open);
                full.shrink();
                *sealed_bytes += sealed_chunk_bytes(&full);
                sealed.push_back(Arc::new(full));
                *open_serial += 1;
            }
            if pending.serial != *open_serial {
                pending.local = open.add_name(Arc::clone(&pending.name));
                pending.serial = *open_serial;
            }
            open.push(op, pending.local, member, version);
            *newest_version = (*newest_version).max(version.unwrap_or(0));
            count += 1;
        }
        pending.entries += count;
        *len += count;
        if pending.entries == 0 {
            campaigns.remove(campaign);
            *name_bytes -= name_heap_bytes(campaign);
        }
        count
    }

    fn arrived(&mut self, first: u64, now_ms: u64) {
        if self.arrivals.back().is_none_or(|&(_, ms)| ms < now_ms) {
            self.arrivals.push_back((first, now_ms));
        }
    }

    /// Entries of `campaign` not yet committed.
    pub fn pending_for(&self, campaign: &str) -> usize {
        self.campaigns.get(campaign).map_or(0, |p| p.entries)
    }

    /// Drops every entry numbered `through` or lower; returns how many.
    /// Whole chunks go at once (freed unless a batch still reads them);
    /// only the entries trimmed inside one chunk are read, to count them
    /// out of their campaigns.
    pub fn trim_through(&mut self, through: u64) -> usize {
        let count = through
            .saturating_add(1)
            .saturating_sub(self.first_seq)
            .min(self.len as u64) as usize;
        let mut left = count;
        while left > 0 {
            let Journal {
                sealed,
                open,
                head,
                campaigns,
                sealed_bytes,
                name_bytes,
                ..
            } = self;
            let (chunk, is_sealed) = match sealed.front() {
                Some(chunk) => (&**chunk, true),
                None => (&*open, false),
            };
            let take = left.min((chunk.len() - *head) as usize) as u32;
            *name_bytes -= count_out(campaigns, chunk, *head, *head + take);
            *head += take;
            left -= take as usize;
            if is_sealed && *head == chunk.len() {
                *sealed_bytes -= sealed_chunk_bytes(chunk);
                sealed.pop_front();
                *head = 0;
            }
        }
        self.len -= count;
        self.first_seq += count as u64;
        if self.len == 0 {
            // Nothing stays allocated by an empty journal.
            self.open = Chunk::default();
            self.head = 0;
            self.open_serial += 1;
            self.arrivals.clear();
            if self.arrivals.capacity() > 1024 {
                self.arrivals.shrink_to_fit();
            }
            if self.sealed.capacity() > 1024 {
                self.sealed.shrink_to_fit();
            }
        } else {
            while self.arrivals.len() > 1 && self.arrivals[1].0 <= self.first_seq {
                self.arrivals.pop_front();
            }
        }
        count
    }

    /// Arrival time (ms) of the oldest entry, if any.
    pub fn oldest_arrival_ms(&self) -> Option<u64> {
        self.arrivals.front().map(|&(_, ms)| ms)
    }

    /// Each chunk with the index of its first pending entry, oldest first.
    fn pieces(&self) -> impl Iterator<Item = (&Chunk, u32)> {
        let head = self.head;
        self.sealed
            .iter()
            .map(|chunk| &**chunk)
            .chain(std::iter::once(&self.open))
            .enumerate()
            .map(move |(index, chunk)| (chunk, if index == 0 { head } else { 0 }))
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = EntryRef<'_>> {
        self.pieces()
            .flat_map(|(chunk, start)| Entries(chunk.entries(start, chunk.len())))
    }

    /// The oldest `limit` entries with the sequence number of the last one.
    pub fn front(&self, limit: usize) -> Option<(u64, impl Iterator<Item = EntryRef<'_>>)> {
        let count = limit.min(self.len);
        (count > 0).then(|| {
            (
                self.first_seq + count as u64 - 1,
                self.entries().take(count),
            )
        })
    }

    /// All entries with their sequence numbers, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, EntryRef<'_>)> {
        (self.first_seq..).zip(self.entries())
    }

    /// The oldest `limit` entries, to be read without the journal (off the
    /// Redis lock): the sealed chunks they lie in are shared, and only the
    /// chunk being filled is copied (at most about one chunk of bytes).
    pub fn take_batch(&self, limit: usize) -> Option<Batch> {
        let count = limit.min(self.len);
        if count == 0 {
            return None;
        }
        let mut pieces = Vec::new();
        let mut left = count;
        let mut start = self.head;
        for chunk in &self.sealed {
            let take = left.min((chunk.len() - start) as usize) as u32;
            pieces.push((Arc::clone(chunk), start, start + take));
            left -= take as usize;
            start = 0;
            if left == 0 {
                break;
            }
        }
        if left > 0 {
            let end = start + left as u32;
            pieces.push((Arc::new(self.open.snapshot()), start, end));
        }
        Some(Batch {
            through: self.first_seq + count as u64 - 1,
            len: count,
            pieces,
        })
    }

    /// Applies entries written out by an AOF rewrite (`CAMPAIGN.JOURNAL
    /// LOAD`), numbered from `first`. Idempotent: entries numbered below
    /// `next_seq()` were seen already (pending or trimmed) and are skipped,
    /// so a journal written twice (in the base and in the incremental AOF)
    /// is applied once. An empty journal adopts a later numbering (the base
    /// may have carried none); a non-empty one refuses a gap.
    pub fn restore(&mut self, first: u64, entries: Vec<Entry>, now_ms: u64) -> Result<(), String> {
        let next = self.next_seq();
        if first > next {
            if !self.is_empty() {
                return Err(format!(
                    "journal continues at {next} but the restored entries start at {first}"
                ));
            }
            self.first_seq = first;
        }
        let already_seen = self.next_seq().saturating_sub(first) as usize;
        let start = self.next_seq();
        let mut added = 0;
        for entry in entries.iter().skip(already_seen) {
            let member = (classify(&entry.member), entry.version);
            added += self.push(entry.op, &entry.campaign, [member]);
        }
        if added > 0 {
            self.arrived(start, now_ms);
        }
        Ok(())
    }

    /// Writes the journal in format 2: first sequence number, count, the
    /// campaign names, then records of packed entries (each about
    /// `RECORD_BYTES`: its entry count, then the bytes) whose campaign
    /// indexes refer to those names.
    pub fn encode<W: RecordWriter>(&self, writer: &mut W) {
        writer.write_unsigned(self.first_seq);
        writer.write_unsigned(self.len as u64);
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        let remaps: Vec<Vec<u32>> = self
            .pieces()
            .map(|(chunk, _)| {
                chunk
                    .names
                    .iter()
                    .map(|name| {
                        *ids.entry(&**name).or_insert_with(|| {
                            names.push(name);
                            (names.len() - 1) as u32
                        })
                    })
                    .collect()
            })
            .collect();
        writer.write_unsigned(names.len() as u64);
        for name in &names {
            writer.write_bytes(name.as_bytes());
        }
        let mut record = Vec::with_capacity(RECORD_BYTES + 64);
        let mut in_record = 0_u64;
        let mut state = State::default();
        for ((chunk, start), remap) in self.pieces().zip(&remaps) {
            let mut entries = chunk.entries(start, chunk.len());
            while let Some(entry) = entries.next_packed() {
                let entry = Packed {
                    campaign: remap[entry.campaign as usize],
                    ..entry
                };
                pack(&mut record, &mut state, in_record == 0, entry);
                in_record += 1;
                if record.len() >= RECORD_BYTES {
                    writer.write_unsigned(in_record);
                    writer.write_bytes(&record);
                    record.clear();
                    in_record = 0;
                }
            }
        }
        if in_record > 0 {
            writer.write_unsigned(in_record);
            writer.write_bytes(&record);
        }
    }

    /// Reads a journal written in `format` (1 or 2); all entries arrive at
    /// `now_ms`.
    pub fn decode<R: RecordReader>(
        reader: &mut R,
        format: u64,
        now_ms: u64,
    ) -> Result<Self, DecodeError> {
        let first_seq = reader.read_unsigned()?;
        let count = reader.read_unsigned()?;
        let mut journal = Journal {
            first_seq,
            ..Journal::new()
        };
        match format {
            1 => journal.decode_fields(reader, count)?,
            2 | 3 => journal.decode_packed(reader, count)?,
            other => return Err(DecodeError::UnknownVersion(other as i32)),
        }
        if count > 0 {
            journal.arrivals.push_back((first_seq, now_ms));
        }
        Ok(journal)
    }

    fn decode_packed<R: RecordReader>(
        &mut self,
        reader: &mut R,
        count: u64,
    ) -> Result<(), DecodeError> {
        let name_count = reader.read_unsigned()?;
        let mut names: Vec<Box<str>> =
            Vec::with_capacity(name_count.min(MAX_PREALLOCATED) as usize);
        for _ in 0..name_count {
            let name = reader.read_bytes(|bytes| {
                validate_text(bytes, None)
                    .map(Box::<str>::from)
                    .map_err(DecodeError::InvalidMember)
            })??;
            names.push(name);
        }
        let mut loaded = 0;
        while loaded < count {
            let in_record = reader.read_unsigned()?;
            if in_record == 0 || in_record > count - loaded {
                return Err(DecodeError::Corrupt("journal record count"));
            }
            reader.read_bytes(|bytes| self.push_record(bytes, in_record, &names))??;
            loaded += in_record;
        }
        Ok(())
    }

    fn push_record(
        &mut self,
        bytes: &[u8],
        count: u64,
        names: &[Box<str>],
    ) -> Result<(), DecodeError> {
        let mut at = 0;
        let mut state = State::default();
        for index in 0..count {
            let entry = unpack(bytes, &mut at, &mut state, index == 0)
                .ok_or(DecodeError::Corrupt("journal entry"))?;
            let campaign = names
                .get(entry.campaign as usize)
                .ok_or(DecodeError::Corrupt("journal campaign index"))?;
            self.push(entry.op, campaign, [(entry.member, entry.version)]);
        }
        if at != bytes.len() {
            return Err(DecodeError::Corrupt("journal record length"));
        }
        Ok(())
    }

    /// Format 1, written by the first release: per entry its operation
    /// code, campaign and member as separate records.
    fn decode_fields<R: RecordReader>(
        &mut self,
        reader: &mut R,
        count: u64,
    ) -> Result<(), DecodeError> {
        let mut campaign = String::new();
        for _ in 0..count {
            let op = Op::from_code(reader.read_unsigned()?).ok_or(DecodeError::Truncated)?;
            reader.read_bytes(|bytes| -> Result<(), DecodeError> {
                let name = validate_text(bytes, None).map_err(DecodeError::InvalidMember)?;
                if campaign != name {
                    campaign.clear();
                    campaign.push_str(name);
                }
                Ok(())
            })??;
            reader.read_bytes(|bytes| -> Result<(), DecodeError> {
                let member = validate_text(bytes, None).map_err(DecodeError::InvalidMember)?;
                self.push(op, &campaign, [(classify(member), None)]);
                Ok(())
            })??;
        }
        Ok(())
    }
}

/// Takes `start..end` of `chunk` out of the per-campaign counts; returns
/// the `name_heap_bytes` of the campaigns that have no entry left.
fn count_out(
    campaigns: &mut HashMap<Arc<str>, Pending>,
    chunk: &Chunk,
    start: u32,
    end: u32,
) -> usize {
    let mut freed = 0;
    if start == end {
        return freed;
    }
    let whole = start == 0 && end == chunk.len() && !chunk.counts.is_empty();
    let scanned;
    let counts: &[u32] = if whole {
        &chunk.counts
    } else {
        let mut counts = vec![0_u32; chunk.names.len()];
        let mut entries = chunk.entries(start, end);
        while let Some(entry) = entries.next_packed() {
            counts[entry.campaign as usize] += 1;
        }
        scanned = counts;
        &scanned
    };
    for (name, &count) in chunk.names.iter().zip(counts) {
        if count == 0 {
            continue;
        }
        if let Some(pending) = campaigns.get_mut(&**name) {
            pending.entries = pending.entries.saturating_sub(count as usize);
            if pending.entries == 0 {
                campaigns.remove(&**name);
                freed += name_heap_bytes(name);
            }
        }
    }
    freed
}

/// The oldest entries of a journal, taken out to be flushed: shares the
/// journal's sealed chunks, so it stays readable whatever the journal
/// does meanwhile.
pub struct Batch {
    /// Sequence number of the last entry.
    pub through: u64,
    len: usize,
    /// Chunks with the range of their entries in the batch.
    pieces: Vec<(Arc<Chunk>, u32, u32)>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = EntryRef<'_>> {
        self.pieces
            .iter()
            .flat_map(|(chunk, start, end)| Entries(chunk.entries(*start, *end)))
    }

    /// What the batch asks of the database (see `collapse`).
    pub fn collapse(&self) -> Collapsed<'_> {
        collapse(self.iter())
    }
}

/// What one batch asks of the database once each (campaign, member) keeps
/// only its last operation: adds and removals are then disjoint, so the
/// two statements can run in either order and the result matches applying
/// the entries one by one. A prune of a campaign (`Op::Prune`) keeps only
/// its newest one, and the campaign's adds and removals older than it
/// are dropped (the prune removes their rows anyway): what is left of
/// the campaign lies above the prune's version, which the prune does not
/// touch, so prunes too run in any order and in any part of a split batch.
#[derive(Debug, Default)]
pub struct Collapsed<'a> {
    pub adds: Vec<Change<'a>>,
    pub removes: Vec<Change<'a>>,
    /// One per pruned campaign (`member` is the empty string).
    pub prunes: Vec<Change<'a>>,
}

/// The member of an `Op::Prune` entry: no real member is empty.
pub const PRUNE_MEMBER: &str = "";

/// The last change of one (campaign, member) in a batch.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub campaign: &'a str,
    pub member: MemberRef<'a>,
    /// 0 for an entry journaled before changes carried versions: older
    /// than every versioned change.
    pub version: u64,
}

impl<'a> Collapsed<'a> {
    pub fn len(&self) -> usize {
        self.adds.len() + self.removes.len() + self.prunes.len()
    }

    /// The batch in two halves of about equal size (adds, removals and
    /// prunes are disjoint, so the halves can be applied in either order).
    pub fn halves(&self) -> (Collapsed<'a>, Collapsed<'a>) {
        let half = self.len() / 2;
        let adds_first = half.min(self.adds.len());
        let removes_first = (half - adds_first).min(self.removes.len());
        let prunes_first = half - adds_first - removes_first;
        let first = Collapsed {
            adds: self.adds[..adds_first].to_vec(),
            removes: self.removes[..removes_first].to_vec(),
            prunes: self.prunes[..prunes_first].to_vec(),
        };
        let second = Collapsed {
            adds: self.adds[adds_first..].to_vec(),
            removes: self.removes[removes_first..].to_vec(),
            prunes: self.prunes[prunes_first..].to_vec(),
        };
        (first, second)
    }

    /// Every change with its operation.
    pub fn changes(&self) -> impl Iterator<Item = (Op, &Change<'a>)> {
        let adds = self.adds.iter().map(|change| (Op::Add, change));
        let removes = self.removes.iter().map(|change| (Op::Remove, change));
        let prunes = self.prunes.iter().map(|change| (Op::Prune, change));
        adds.chain(removes).chain(prunes)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn collapse<'a>(entries: impl IntoIterator<Item = EntryRef<'a>>) -> Collapsed<'a> {
    let mut last_op: HashMap<(&str, Kind<'a>), (usize, Op, u64)> = HashMap::new();
    // The newest prune of each campaign, with its position.
    let mut pruned: HashMap<&str, (usize, u64)> = HashMap::new();
    for (position, entry) in entries.into_iter().enumerate() {
        let version = entry.version.unwrap_or(0);
        if entry.op == Op::Prune {
            let newest = pruned.entry(entry.campaign).or_insert((position, version));
            if version >= newest.1 {
                *newest = (position, version);
            }
            continue;
        }
        last_op.insert(
            (entry.campaign, entry.member),
            (position, entry.op, version),
        );
    }
    // Sorting by position keeps the output deterministic (and in log order).
    let mut ordered: Vec<_> = last_op.into_iter().collect();
    ordered.sort_unstable_by_key(|&(_, (position, _, _))| position);
    let mut collapsed = Collapsed::default();
    for ((campaign, member), (_, op, version)) in ordered {
        if pruned
            .get(campaign)
            .is_some_and(|&(_, below)| version < below)
        {
            continue;
        }
        let change = Change {
            campaign,
            member: MemberRef::from_kind(member),
            version,
        };
        match op {
            Op::Add => collapsed.adds.push(change),
            Op::Remove => collapsed.removes.push(change),
            Op::Prune => {}
        }
    }
    let mut prunes: Vec<_> = pruned.into_iter().collect();
    prunes.sort_unstable_by_key(|&(_, (position, _))| position);
    collapsed.prunes = prunes
        .into_iter()
        .map(|(campaign, (_, version))| Change {
            campaign,
            member: MemberRef::from_kind(Kind::Text(PRUNE_MEMBER)),
            version,
        })
        .collect();
    collapsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codec::RecordBuffer;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn journal_of(ops: &[(Op, &str, &str)]) -> Journal {
        let mut journal = Journal::new();
        for &(op, campaign, member) in ops {
            journal.append(op, campaign, [member], 1, 0);
        }
        journal
    }

    fn entry(member: &str) -> Entry {
        Entry {
            op: Op::Add,
            campaign: "c".into(),
            member: member.into(),
            version: None,
        }
    }

    fn members(journal: &Journal) -> Vec<String> {
        journal.entries().map(|e| e.member().to_string()).collect()
    }

    fn rows(changes: &[Change<'_>]) -> Vec<(String, String)> {
        changes
            .iter()
            .map(|change| (change.campaign.to_string(), change.member.to_string()))
            .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(c, m)| (c.to_string(), m.to_string()))
            .collect()
    }

    #[test]
    fn numbers_entries_and_trims_by_number() {
        let mut journal = Journal::new();
        journal.append(Op::Add, "c", ["a", "b"], 1, 10);
        journal.append(Op::Remove, "c", ["a"], 1, 20);
        assert_eq!(
            (journal.first_seq(), journal.last_seq()),
            (Some(1), Some(3))
        );
        assert_eq!(journal.oldest_arrival_ms(), Some(10));

        assert_eq!(journal.trim_through(0), 0);
        assert_eq!(journal.trim_through(2), 2);
        assert_eq!(journal.first_seq(), Some(3));
        assert_eq!(journal.oldest_arrival_ms(), Some(20));
        assert_eq!(journal.trim_through(2), 0, "trimming again is a no-op");
        assert_eq!(journal.pending_for("c"), 1);
        assert_eq!(journal.trim_through(99), 1);
        assert_eq!(journal.pending_for("c"), 0);
        assert!(journal.is_empty());
        assert_eq!(journal.next_seq(), 4, "numbering continues after a trim");
        assert_eq!(journal.oldest_arrival_ms(), None);
    }

    #[test]
    fn front_takes_the_oldest_entries() {
        let journal = journal_of(&[
            (Op::Add, "c", "a"),
            (Op::Add, "c", "b"),
            (Op::Add, "d", "x"),
        ]);
        let (last, entries) = journal.front(2).unwrap();
        assert_eq!(last, 2);
        let members: Vec<String> = entries.map(|e| e.member().to_string()).collect();
        assert_eq!(members, ["a", "b"]);
        assert!(Journal::new().front(10).is_none());
        assert!(Journal::new().take_batch(10).is_none());
    }

    #[test]
    fn collapse_keeps_the_last_operation_per_member() {
        let journal = journal_of(&[
            (Op::Add, "c", "m1"),
            (Op::Add, "c", "m2"),
            (Op::Remove, "c", "m1"),
            (Op::Add, "c", "m3"),
            (Op::Remove, "d", "m2"),
            (Op::Add, "d", "m2"),
            (Op::Add, "d", "42"),
            (Op::Remove, "d", "042"),
        ]);
        let collapsed = collapse(journal.entries());
        assert_eq!(
            rows(&collapsed.adds),
            owned(&[("c", "m2"), ("c", "m3"), ("d", "m2"), ("d", "42")])
        );
        assert_eq!(
            rows(&collapsed.removes),
            owned(&[("c", "m1"), ("d", "042")])
        );
    }

    #[test]
    fn restore_adopts_or_continues_numbering() {
        let mut journal = Journal::new();
        journal
            .restore(40, vec![entry("a"), entry("b")], 0)
            .unwrap();
        assert_eq!(
            (journal.first_seq(), journal.last_seq()),
            (Some(40), Some(41))
        );
        journal.restore(42, vec![entry("c")], 0).unwrap();
        assert!(journal.restore(50, vec![entry("d")], 0).is_err());
        assert_eq!(journal.len(), 3);
    }

    #[test]
    fn restore_applies_a_journal_written_twice_once() {
        let written = vec![entry("a"), entry("b"), entry("c")];
        let mut journal = Journal::new();
        journal.restore(10, written.clone(), 0).unwrap();
        journal.restore(10, written.clone(), 0).unwrap();
        assert_eq!(journal.len(), 3);
        // Part of it was committed and trimmed meanwhile: still nothing new.
        journal.trim_through(11);
        journal.restore(10, written, 0).unwrap();
        assert_eq!((journal.first_seq(), journal.len()), (Some(12), 1));
        // Overlapping: only the new tail is appended.
        journal
            .restore(12, vec![entry("c"), entry("d")], 0)
            .unwrap();
        assert_eq!(members(&journal), ["c", "d"]);
        assert_eq!(journal.pending_for("c"), 2);
    }

    #[test]
    fn an_empty_restore_anchors_the_numbering() {
        let mut journal = Journal::new();
        journal.restore(5_000, Vec::new(), 0).unwrap();
        assert!(journal.is_empty());
        assert_eq!(journal.next_seq(), 5_000);
        journal.append(Op::Add, "c", ["x"], 1, 0);
        assert_eq!(journal.first_seq(), Some(5_000));
    }

    fn round_trip(journal: &Journal) -> Journal {
        let mut buffer = RecordBuffer::default();
        journal.encode(&mut buffer);
        Journal::decode(&mut buffer, FORMAT, 0).unwrap()
    }

    fn listed(journal: &Journal) -> Vec<(u64, Entry)> {
        journal.iter().map(|(seq, e)| (seq, e.to_entry())).collect()
    }

    /// A prune keeps its newest per campaign and drops the campaign's
    /// older changes of the batch (it removes their rows anyway); changes
    /// above it and other campaigns' stay. It survives encoding and the
    /// halves of a split.
    #[test]
    fn prunes_collapse_over_older_changes_and_round_trip() {
        let mut journal = Journal::new();
        journal.append(Op::Add, "c", ["old", "kept"], 10, 0);
        journal.append(Op::Remove, "c", ["gone"], 12, 0);
        journal.append(Op::Add, "d", ["other"], 13, 0);
        journal.append(Op::Prune, "c", [PRUNE_MEMBER], 20, 0);
        journal.append(Op::Prune, "c", [PRUNE_MEMBER], 15, 0);
        journal.append(Op::Add, "c", ["kept", "new"], 21, 0);
        let collapsed = collapse(journal.entries());
        assert_eq!(
            rows(&collapsed.adds),
            owned(&[("d", "other"), ("c", "kept"), ("c", "new")])
        );
        assert!(collapsed.removes.is_empty());
        let prunes: Vec<_> = collapsed
            .prunes
            .iter()
            .map(|p| (p.campaign, p.member.as_str().to_owned(), p.version))
            .collect();
        assert_eq!(prunes, [("c", String::new(), 20)]);
        assert_eq!(collapsed.len(), 4);
        let (first, second) = collapsed.halves();
        assert_eq!(first.len() + second.len(), 4);
        assert_eq!(first.prunes.len() + second.prunes.len(), 1);
        assert_eq!(
            collapsed
                .changes()
                .filter(|(op, _)| *op == Op::Prune)
                .count(),
            1
        );

        let decoded = round_trip(&journal);
        assert_eq!(listed(&decoded), listed(&journal));
        assert_eq!(listed(&decoded)[4].1.op, Op::Prune);
        assert_eq!(&*listed(&decoded)[4].1.member, PRUNE_MEMBER);
        let mut restored = Journal::new();
        let entries = listed(&journal).into_iter().map(|(_, e)| e).collect();
        restored.restore(1, entries, 0).unwrap();
        assert_eq!(listed(&restored), listed(&journal));
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut journal = journal_of(&[(Op::Add, "c", "a"), (Op::Remove, "zoë", "b")]);
        journal.trim_through(0);
        let decoded = round_trip(&journal);
        assert_eq!(listed(&decoded), listed(&journal));
        assert_eq!(decoded.next_seq(), journal.next_seq());
        assert_eq!(decoded.pending_for("zoë"), 1);

        let mut emptied = journal.clone();
        emptied.trim_through(10);
        assert_eq!(round_trip(&emptied).next_seq(), 3);
    }

    /// What the first release wrote (`JOURNAL_FORMAT` 1).
    fn encode_format_1(first_seq: u64, entries: &[(Op, &str, &str)]) -> RecordBuffer {
        let mut buffer = RecordBuffer::default();
        buffer.write_unsigned(first_seq);
        buffer.write_unsigned(entries.len() as u64);
        for (op, campaign, member) in entries {
            buffer.write_unsigned(op.code());
            buffer.write_bytes(campaign.as_bytes());
            buffer.write_bytes(member.as_bytes());
        }
        buffer
    }

    #[test]
    fn format_1_still_loads() {
        let written = [
            (Op::Add, "c", "12345678"),
            (Op::Add, "c", "007"),
            (Op::Remove, "d", "123E4567-E89B-12D3-A456-426614174000"),
            (Op::Add, "d", "123e4567-e89b-12d3-a456-426614174000"),
            (Op::Add, "c", "zoë"),
        ];
        let mut buffer = encode_format_1(17, &written);
        let journal = Journal::decode(&mut buffer, 1, 5).unwrap();
        assert_eq!((journal.first_seq(), journal.len()), (Some(17), 5));
        assert_eq!(journal.oldest_arrival_ms(), Some(5));
        assert_eq!((journal.pending_for("c"), journal.pending_for("d")), (3, 2));
        let read: Vec<(Op, String, String)> = journal
            .entries()
            .map(|e| (e.op, e.campaign.to_string(), e.member().to_string()))
            .collect();
        let expected: Vec<(Op, String, String)> = written
            .iter()
            .map(|(op, c, m)| (*op, c.to_string(), m.to_string()))
            .collect();
        assert_eq!(read, expected);

        let mut empty = encode_format_1(9, &[]);
        assert_eq!(Journal::decode(&mut empty, 1, 0).unwrap().next_seq(), 9);
        let mut cut = encode_format_1(1, &written);
        cut.truncate_by(1);
        assert!(Journal::decode(&mut cut, 1, 0).is_err());
        assert!(Journal::decode(&mut encode_format_1(1, &[]), 3, 0).is_err());
    }

    #[test]
    fn corrupt_format_2_is_refused() {
        let journal = journal_of(&[(Op::Add, "c", "a"), (Op::Add, "c", "b")]);
        let mut buffer = RecordBuffer::default();
        journal.encode(&mut buffer);
        let mut cut = buffer.clone();
        cut.truncate_by(1);
        assert!(Journal::decode(&mut cut, FORMAT, 0).is_err());
        // A record with an entry count larger than the journal's.
        let mut buffer = RecordBuffer::default();
        for value in [1, 1, 1] {
            buffer.write_unsigned(value);
        }
        buffer.write_bytes(b"c");
        buffer.write_unsigned(2);
        buffer.write_bytes(&[0x08 | 0x04, 0, 1, b'a']);
        assert!(Journal::decode(&mut buffer, FORMAT, 0).is_err());
        // A campaign index past the names.
        let mut buffer = RecordBuffer::default();
        for value in [1, 1, 1] {
            buffer.write_unsigned(value);
        }
        buffer.write_bytes(b"c");
        buffer.write_unsigned(1);
        buffer.write_bytes(&[0x08 | 0x04, 1, 1, b'a']);
        assert!(Journal::decode(&mut buffer, FORMAT, 0).is_err());
    }

    #[test]
    fn pending_entries_are_small() {
        let mut ids = Journal::new();
        let mut uuids = Journal::new();
        let count = 200_000_u64;
        let mut state = 0x1234_5678_u64;
        for version in 1..=count {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let id = 10_000_000 + (state >> 33) % 90_000_000;
            // One change each, as a queue consumer's ADDs: versions one
            // apart (the clock's counter within a millisecond).
            ids.append(Op::Add, "campaign-1", [id.to_string().as_str()], version, 0);
            let uuid = format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                state >> 32,
                state & 0xffff,
                (state >> 20) & 0xfff,
                (state >> 8) & 0xfff,
                state.rotate_left(17) & 0xffff_ffff_ffff
            );
            // A new millisecond every 64 changes: the difference is stored.
            let uuid_version = ((version / 64) << 21) | (version % 64);
            uuids.append(Op::Add, "campaign-1", [uuid.as_str()], uuid_version, 0);
        }
        let per_id = ids.heap_bytes() as f64 / count as f64;
        let per_uuid = uuids.heap_bytes() as f64 / count as f64;
        assert!(per_id < 6.0, "{per_id} bytes per 8-digit id");
        assert!(per_uuid < 18.5, "{per_uuid} bytes per UUID");
        // Trimmed chunks are freed at once.
        let before = ids.heap_bytes();
        ids.trim_through(count / 2);
        assert!(ids.heap_bytes() < before * 6 / 10);
        ids.trim_through(count);
        assert!(ids.heap_bytes() < 1024, "an empty journal holds little");
        assert_eq!(ids.chunk_count(), 1);
    }

    #[test]
    fn a_batch_outlives_trims_and_appends() {
        let mut journal = Journal::with_chunk_bytes(20);
        let names: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
        journal.append(Op::Add, "c", names.iter().map(String::as_str), 1, 0);
        let batch = journal.take_batch(25).unwrap();
        assert_eq!((batch.through, batch.len()), (25, 25));
        journal.trim_through(30);
        journal.append(Op::Remove, "d", ["x", "y"], 1, 0);
        let read: Vec<String> = batch.iter().map(|e| e.member().to_string()).collect();
        assert_eq!(read, names[..25]);
        assert_eq!(batch.collapse().adds.len(), 25);
    }

    /// The journal as a plain list, for the property test below.
    #[derive(Debug, Default)]
    struct Model {
        first_seq: u64,
        entries: VecDeque<Entry>,
        next_version: u64,
    }

    impl Model {
        fn next_seq(&self) -> u64 {
            self.first_seq + self.entries.len() as u64
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Append(Op, usize, Vec<String>),
        Trim(u64),
        Front(usize),
        Batch(usize),
        Restore(i64, Vec<(Op, usize, String)>),
        Reload,
    }

    const CAMPAIGNS: [&str; 3] = ["a", "zoë", "campaign:{x}"];

    fn member() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..100).prop_map(|n| n.to_string()),
            (10_000_000u64..100_000_000).prop_map(|n| n.to_string()),
            Just("007".to_string()),
            Just("-1".to_string()),
            Just("18446744073709551615".to_string()),
            Just("18446744073709551616".to_string()),
            Just("123e4567-e89b-12d3-a456-426614174000".to_string()),
            Just("123E4567-E89B-12D3-A456-426614174000".to_string()),
            Just("123e4567-e89b-12d3-a456-42661417400A".to_string()),
            "\\PC{1,6}",
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![Just(Op::Add), Just(Op::Remove)]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (op(), 0..CAMPAIGNS.len(), prop::collection::vec(member(), 0..20))
                .prop_map(|(o, c, m)| Step::Append(o, c, m)),
            2 => (0u64..40).prop_map(Step::Trim),
            1 => (0usize..40).prop_map(Step::Front),
            1 => (0usize..40).prop_map(Step::Batch),
            1 => (-6i64..4, prop::collection::vec((op(), 0..CAMPAIGNS.len(), member()), 0..8))
                .prop_map(|(o, e)| Step::Restore(o, e)),
            1 => Just(Step::Reload),
        ]
    }

    fn check(journal: &Journal, model: &Model) -> Result<(), TestCaseError> {
        prop_assert_eq!(journal.len(), model.entries.len());
        prop_assert_eq!(journal.next_seq(), model.next_seq());
        let read: Vec<(u64, Entry)> = listed(journal);
        let expected: Vec<(u64, Entry)> = (model.first_seq..)
            .zip(model.entries.iter().cloned())
            .collect();
        prop_assert_eq!(read, expected);
        for campaign in CAMPAIGNS {
            let count = model
                .entries
                .iter()
                .filter(|e| &*e.campaign == campaign)
                .count();
            prop_assert_eq!(journal.pending_for(campaign), count);
        }
        prop_assert_eq!(
            journal.oldest_arrival_ms().is_some(),
            !model.entries.is_empty()
        );
        prop_assert_eq!(journal.heap_bytes(), recounted_heap_bytes(journal));
        Ok(())
    }

    /// `heap_bytes` counted from scratch, as it was before it kept its
    /// figures as they change.
    fn recounted_heap_bytes(journal: &Journal) -> usize {
        let chunks: usize = journal.sealed.iter().map(|c| sealed_chunk_bytes(c)).sum();
        let names: usize = journal.campaigns.keys().map(|n| name_heap_bytes(n)).sum();
        journal.heap_bytes() - journal.sealed_bytes - journal.name_bytes + chunks + names
    }

    proptest! {
        /// The chunked journal behaves as a plain list of entries under
        /// any interleaving of appends, trims, batches, restores and
        /// reloads, at any chunk size (down to one entry per chunk), and
        /// gives back every member byte for byte.
        #[test]
        fn matches_a_plain_list(
            chunk_bytes in prop_oneof![Just(1usize), Just(24), Just(100), Just(4096)],
            steps in prop::collection::vec(step(), 0..40),
        ) {
            let mut journal = Journal::with_chunk_bytes(chunk_bytes);
            let mut model = Model { first_seq: 1, ..Model::default() };
            let mut held = Vec::new();
            for step in steps {
                match step {
                    Step::Append(op, campaign, members) => {
                        let first_version = model.next_version;
                        journal.append(op, CAMPAIGNS[campaign], members.iter().map(String::as_str), first_version, 1);
                        model.entries.extend(members.iter().zip(first_version..).map(|(m, version)| Entry {
                            op,
                            campaign: CAMPAIGNS[campaign].into(),
                            member: m.as_str().into(),
                            version: Some(version),
                        }));
                        model.next_version += members.len() as u64 * 1000;
                    }
                    Step::Trim(offset) => {
                        let mark = (model.first_seq + offset).saturating_sub(10);
                        let count = (mark + 1).saturating_sub(model.first_seq)
                            .min(model.entries.len() as u64) as usize;
                        prop_assert_eq!(journal.trim_through(mark), count);
                        model.entries.drain(..count);
                        model.first_seq += count as u64;
                    }
                    Step::Front(limit) => {
                        let expected: Vec<Entry> = model.entries.iter().take(limit).cloned().collect();
                        match journal.front(limit) {
                            None => prop_assert!(expected.is_empty()),
                            Some((last, entries)) => {
                                prop_assert_eq!(last, model.first_seq + expected.len() as u64 - 1);
                                let read: Vec<Entry> = entries.map(|e| e.to_entry()).collect();
                                prop_assert_eq!(read, expected);
                            }
                        }
                    }
                    Step::Batch(limit) => {
                        let expected: Vec<Entry> = model.entries.iter().take(limit).cloned().collect();
                        match journal.take_batch(limit) {
                            None => prop_assert!(expected.is_empty()),
                            Some(batch) => {
                                prop_assert_eq!(batch.through, model.first_seq + expected.len() as u64 - 1);
                                // Read again after the journal moved on.
                                held.push((batch, expected));
                            }
                        }
                    }
                    Step::Restore(offset, entries) => {
                        let first = (model.next_seq() as i64 + offset).max(1) as u64;
                        let entries: Vec<Entry> = entries
                            .into_iter()
                            // Entries of an older journal carry no version; others
                            // may jump far (another node's clock).
                            .map(|(op, c, m)| Entry {
                                op,
                                campaign: CAMPAIGNS[c].into(),
                                member: m.into(),
                                version: (c > 0).then_some(u64::MAX - 7 * c as u64),
                            })
                            .collect();
                        let result = journal.restore(first, entries.clone(), 2);
                        if first > model.next_seq() && !model.entries.is_empty() {
                            prop_assert!(result.is_err());
                        } else {
                            prop_assert!(result.is_ok());
                            if first > model.next_seq() {
                                model.first_seq = first;
                            }
                            let seen = (model.next_seq() - first) as usize;
                            model.entries.extend(entries.into_iter().skip(seen));
                        }
                    }
                    Step::Reload => journal = round_trip(&journal),
                }
                check(&journal, &model)?;
            }
            for (batch, expected) in held {
                let read: Vec<Entry> = batch.iter().map(|e| e.to_entry()).collect();
                prop_assert_eq!(read, expected);
            }
        }

        /// Applying the collapsed batch equals applying entries one by one,
        /// from any starting state of the table.
        #[test]
        fn collapse_matches_sequential_application(
            start in prop::collection::hash_set(("[ab]", "[0-4]|0[0-4]"), 0..10),
            ops in prop::collection::vec((op(), "[ab]", "[0-4]|0[0-4]"), 0..60),
        ) {
            let journal = journal_of(
                &ops.iter().map(|(o, c, m)| (*o, c.as_str(), m.as_str())).collect::<Vec<_>>(),
            );
            let mut sequential: HashSet<(String, String)> = start.clone();
            for (_, entry) in journal.iter() {
                let row = (entry.campaign.to_string(), entry.member().to_string());
                match entry.op {
                    Op::Add => { sequential.insert(row); }
                    Op::Remove => { sequential.remove(&row); }
                    Op::Prune => {}
                }
            }
            let collapsed = journal.take_batch(usize::MAX).map(|batch| {
                let collapsed = batch.collapse();
                (rows(&collapsed.adds), rows(&collapsed.removes))
            });
            let (adds, removes) = collapsed.unwrap_or_default();
            let mut batched = start;
            for row in removes {
                batched.remove(&row);
            }
            for row in adds {
                batched.insert(row);
            }
            prop_assert_eq!(batched, sequential);
        }

        /// Trimming in any steps leaves exactly the entries above the mark.
        #[test]
        fn trims_leave_the_suffix(
            count in 0usize..300,
            marks in prop::collection::vec(0u64..320, 0..5),
            chunk_bytes in prop_oneof![Just(1usize), Just(50), Just(4096)],
        ) {
            let mut journal = Journal::with_chunk_bytes(chunk_bytes);
            let members: Vec<String> = (0..count).map(|i| i.to_string()).collect();
            journal.append(Op::Add, "c", members.iter().map(String::as_str), 1, 0);
            let mut highest = 0;
            for mark in marks {
                journal.trim_through(mark);
                highest = highest.max(mark);
            }
            let expected: Vec<u64> = (highest + 1..=count as u64).collect();
            let remaining: Vec<u64> = journal.iter().map(|(seq, _)| seq).collect();
            prop_assert_eq!(journal.pending_for("c"), expected.len());
            prop_assert_eq!(remaining, expected);
            prop_assert_eq!(journal.next_seq(), count as u64 + 1);
        }
    }
}
