//! The write-behind journal: every membership change, in order, until the
//! database has committed it.
//!
//! Entries are numbered by a sequence that primary, replicas and AOF replay
//! all derive the same way (one number per changed member, in command
//! order), so "trim through N" means the same entries everywhere.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::codec::{DecodeError, RecordReader, RecordWriter};
use super::member::validate_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Add,
    Remove,
}

impl Op {
    fn code(self) -> u64 {
        match self {
            Op::Add => 1,
            Op::Remove => 2,
        }
    }

    fn from_code(code: u64) -> Option<Op> {
        match code {
            1 => Some(Op::Add),
            2 => Some(Op::Remove),
            _ => None,
        }
    }

    /// The word used for this operation in commands (`CAMPAIGN.JOURNAL LOAD`).
    pub fn word(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Remove => "REM",
        }
    }

    pub fn from_word(word: &[u8]) -> Option<Op> {
        match word {
            b"ADD" => Some(Op::Add),
            b"REM" => Some(Op::Remove),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub op: Op,
    /// Shared by all entries of one command.
    pub campaign: Arc<str>,
    pub member: Box<str>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Journal {
    /// Sequence number of `entries[0]`; of the next entry when empty.
    first_seq: u64,
    entries: VecDeque<Entry>,
    /// `(first sequence number, arrival time in ms)` of each command's
    /// entries, one per millisecond at most: the age of the oldest entry
    /// without a timestamp per entry.
    arrivals: VecDeque<(u64, u64)>,
    /// Pending entries per campaign, for VERIFY and the reconciler.
    per_campaign: HashMap<Arc<str>, usize>,
}

impl Journal {
    pub fn new() -> Self {
        Journal {
            first_seq: 1,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sequence number the next appended entry gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    /// Sequence number of the newest entry, if any.
    pub fn last_seq(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.next_seq() - 1)
    }

    /// Sequence number of the oldest entry, if any.
    pub fn first_seq(&self) -> Option<u64> {
        (!self.is_empty()).then_some(self.first_seq)
    }

    /// Appends one entry per member, all of `campaign`, arriving at `now_ms`.
    pub fn append<'a>(
        &mut self,
        op: Op,
        campaign: &str,
        members: impl IntoIterator<Item = &'a str>,
        now_ms: u64,
    ) {
        let first = self.next_seq();
        let campaign: Arc<str> = campaign.into();
        self.entries.extend(members.into_iter().map(|member| Entry {
            op,
            campaign: Arc::clone(&campaign),
            member: member.into(),
        }));
        let added = (self.next_seq() - first) as usize;
        if added > 0 {
            *self.per_campaign.entry(campaign).or_default() += added;
            if self.arrivals.back().is_none_or(|&(_, ms)| ms < now_ms) {
                self.arrivals.push_back((first, now_ms));
            }
        }
    }

    /// Entries of `campaign` not yet committed.
    pub fn pending_for(&self, campaign: &str) -> usize {
        self.per_campaign.get(campaign).copied().unwrap_or(0)
    }

    fn count_out(&mut self, entry: &Entry) {
        if let Some(count) = self.per_campaign.get_mut(&entry.campaign) {
            *count -= 1;
            if *count == 0 {
                self.per_campaign.remove(&entry.campaign);
            }
        }
    }

    fn count_in(&mut self, entry: &Entry) {
        *self
            .per_campaign
            .entry(Arc::clone(&entry.campaign))
            .or_default() += 1;
    }

    /// Drops every entry numbered `through` or lower; returns how many.
    pub fn trim_through(&mut self, through: u64) -> usize {
        let count = through
            .saturating_add(1)
            .saturating_sub(self.first_seq)
            .min(self.entries.len() as u64) as usize;
        for entry in self.entries.drain(..count).collect::<Vec<_>>() {
            self.count_out(&entry);
        }
        self.first_seq += count as u64;
        while self.arrivals.len() > 1 && self.arrivals[1].0 <= self.first_seq {
            self.arrivals.pop_front();
        }
        if self.entries.is_empty() {
            self.arrivals.clear();
        }
        count
    }

    /// Arrival time (ms) of the oldest entry, if any.
    pub fn oldest_arrival_ms(&self) -> Option<u64> {
        self.arrivals.front().map(|&(_, ms)| ms)
    }

    /// The oldest `limit` entries with the sequence number of the last one.
    pub fn front(&self, limit: usize) -> Option<(u64, impl Iterator<Item = &Entry>)> {
        let count = limit.min(self.entries.len());
        (count > 0).then(|| {
            (
                self.first_seq + count as u64 - 1,
                self.entries.iter().take(count),
            )
        })
    }

    /// All entries with their sequence numbers, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        (self.first_seq..).zip(self.entries.iter())
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
        let new_entries: Vec<Entry> = entries.into_iter().skip(already_seen).collect();
        if !new_entries.is_empty() {
            self.arrivals.push_back((self.next_seq(), now_ms));
        }
        for entry in new_entries {
            self.count_in(&entry);
            self.entries.push_back(entry);
        }
        Ok(())
    }

    /// Writes the journal: first sequence number, count, then each entry.
    pub fn encode<W: RecordWriter>(&self, writer: &mut W) {
        writer.write_unsigned(self.first_seq);
        writer.write_unsigned(self.entries.len() as u64);
        for entry in &self.entries {
            writer.write_unsigned(entry.op.code());
            writer.write_bytes(entry.campaign.as_bytes());
            writer.write_bytes(entry.member.as_bytes());
        }
    }

    /// Reads a journal written by `encode`; all entries arrive at `now_ms`.
    pub fn decode<R: RecordReader>(reader: &mut R, now_ms: u64) -> Result<Self, DecodeError> {
        let first_seq = reader.read_unsigned()?;
        let count = reader.read_unsigned()?;
        let mut journal = Journal {
            first_seq,
            ..Journal::default()
        };
        let mut campaign: Arc<str> = "".into();
        for _ in 0..count {
            let op = Op::from_code(reader.read_unsigned()?).ok_or(DecodeError::Truncated)?;
            reader.read_bytes(|bytes| -> Result<(), DecodeError> {
                let name = validate_text(bytes, None).map_err(DecodeError::InvalidMember)?;
                // Consecutive entries of one campaign share one allocation.
                if *campaign != *name {
                    campaign = name.into();
                }
                Ok(())
            })??;
            let member = reader.read_bytes(|bytes| {
                validate_text(bytes, None)
                    .map(Box::<str>::from)
                    .map_err(DecodeError::InvalidMember)
            })??;
            let entry = Entry {
                op,
                campaign: Arc::clone(&campaign),
                member,
            };
            journal.count_in(&entry);
            journal.entries.push_back(entry);
        }
        if count > 0 {
            journal.arrivals.push_back((first_seq, now_ms));
        }
        Ok(journal)
    }
}

/// What one batch asks of the database once each (campaign, member) keeps
/// only its last operation: adds and removals are then disjoint, so the
/// two statements can run in either order and the result matches applying
/// the entries one by one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collapsed<'a> {
    pub adds: Vec<(&'a str, &'a str)>,
    pub removes: Vec<(&'a str, &'a str)>,
}

pub fn collapse<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Collapsed<'a> {
    let mut last_op: HashMap<(&str, &str), (usize, Op)> = HashMap::new();
    for (position, entry) in entries.into_iter().enumerate() {
        last_op.insert((&entry.campaign, &entry.member), (position, entry.op));
    }
    // Sorting by position keeps the output deterministic (and in log order).
    let mut ordered: Vec<_> = last_op.into_iter().collect();
    ordered.sort_unstable_by_key(|&(_, (position, _))| position);
    let mut collapsed = Collapsed::default();
    for (pair, (_, op)) in ordered {
        match op {
            Op::Add => collapsed.adds.push(pair),
            Op::Remove => collapsed.removes.push(pair),
        }
    }
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
            journal.append(op, campaign, [member], 0);
        }
        journal
    }

    #[test]
    fn numbers_entries_and_trims_by_number() {
        let mut journal = Journal::new();
        journal.append(Op::Add, "c", ["a", "b"], 10);
        journal.append(Op::Remove, "c", ["a"], 20);
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
        let members: Vec<&str> = entries.map(|e| &*e.member).collect();
        assert_eq!(members, ["a", "b"]);
        assert!(Journal::new().front(10).is_none());
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
        ]);
        let collapsed = collapse(journal.iter().map(|(_, e)| e));
        assert_eq!(collapsed.adds, [("c", "m2"), ("c", "m3"), ("d", "m2")]);
        assert_eq!(collapsed.removes, [("c", "m1")]);
    }

    #[test]
    fn restore_adopts_or_continues_numbering() {
        let entry = |m: &str| Entry {
            op: Op::Add,
            campaign: "c".into(),
            member: m.into(),
        };
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
        let entry = |m: &str| Entry {
            op: Op::Add,
            campaign: "c".into(),
            member: m.into(),
        };
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
        let members: Vec<&str> = journal.iter().map(|(_, e)| &*e.member).collect();
        assert_eq!(members, ["c", "d"]);
        assert_eq!(journal.pending_for("c"), 2);
    }

    #[test]
    fn an_empty_restore_anchors_the_numbering() {
        let mut journal = Journal::new();
        journal.restore(5_000, Vec::new(), 0).unwrap();
        assert!(journal.is_empty());
        assert_eq!(journal.next_seq(), 5_000);
        journal.append(Op::Add, "c", ["x"], 0);
        assert_eq!(journal.first_seq(), Some(5_000));
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut journal = journal_of(&[(Op::Add, "c", "a"), (Op::Remove, "zoë", "b")]);
        journal.trim_through(0);
        let mut buffer = RecordBuffer::default();
        journal.encode(&mut buffer);
        let decoded = Journal::decode(&mut buffer, 0).unwrap();
        assert_eq!(
            decoded.iter().collect::<Vec<_>>(),
            journal.iter().collect::<Vec<_>>()
        );
        assert_eq!(decoded.next_seq(), journal.next_seq());

        let mut emptied = journal.clone();
        emptied.trim_through(10);
        let mut buffer = RecordBuffer::default();
        emptied.encode(&mut buffer);
        assert_eq!(Journal::decode(&mut buffer, 0).unwrap().next_seq(), 3);
    }

    fn op() -> impl Strategy<Value = (Op, String, String)> {
        (
            prop_oneof![Just(Op::Add), Just(Op::Remove)],
            "[ab]",
            "[0-4]",
        )
    }

    proptest! {
        /// Applying the collapsed batch equals applying entries one by one,
        /// from any starting state of the table.
        #[test]
        fn collapse_matches_sequential_application(
            start in prop::collection::hash_set(("[ab]", "[0-4]"), 0..10),
            ops in prop::collection::vec(op(), 0..60),
        ) {
            let journal = journal_of(
                &ops.iter().map(|(o, c, m)| (*o, c.as_str(), m.as_str())).collect::<Vec<_>>(),
            );
            let mut sequential: HashSet<(String, String)> = start.clone();
            for (_, entry) in journal.iter() {
                let row = (entry.campaign.to_string(), entry.member.to_string());
                match entry.op {
                    Op::Add => { sequential.insert(row); }
                    Op::Remove => { sequential.remove(&row); }
                }
            }
            let collapsed = collapse(journal.iter().map(|(_, e)| e));
            let mut batched = start;
            for (c, m) in &collapsed.removes {
                batched.remove(&(c.to_string(), m.to_string()));
            }
            for (c, m) in &collapsed.adds {
                batched.insert((c.to_string(), m.to_string()));
            }
            prop_assert_eq!(batched, sequential);
        }

        /// Trimming in any steps leaves exactly the entries above the mark.
        #[test]
        fn trims_leave_the_suffix(count in 0usize..50, marks in prop::collection::vec(0u64..60, 0..5)) {
            let mut journal = Journal::new();
            let members: Vec<String> = (0..count).map(|i| i.to_string()).collect();
            journal.append(Op::Add, "c", members.iter().map(String::as_str), 0);
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
