//! An in-memory database for unit tests of the flusher and the load
//! service: (campaign, member) rows with their versions and removal
//! markers, applied as SPEC section 4 says; fails on request.

use std::collections::{BTreeMap, BTreeSet};

use super::{LoadedMembers, PartsOut, RejectedChange, Sink, SinkError, Source};
use crate::core::checksum::{as_sql_bigint, member_hash};
use crate::core::shadow::PartsWriter;
use crate::core::{Change, Collapsed, MemberSet};

type Row = (String, String);

#[derive(Default)]
pub struct MemorySink {
    /// Rows and their versions (`None`: written around the module).
    rows: BTreeMap<Row, Option<u64>>,
    /// Removal markers and their versions.
    removed: BTreeMap<Row, u64>,
    /// The next this many calls fail, as a database that is down would.
    pub failures_left: usize,
    /// Batches committed so far.
    pub commits: usize,
    /// Members whose changes the database refuses (as a CHECK constraint
    /// would): a batch holding one fails whole.
    pub refused_members: BTreeSet<String>,
    /// Every change is refused with this text (a privilege revoked on the
    /// table, a trigger refusing every row).
    pub refuse_all: Option<String>,
    /// What `park_rejected` kept.
    pub parked: Vec<RejectedChange>,
    /// `park_rejected` fails (the rejected table is not writable).
    pub refuse_parking: bool,
}

impl MemorySink {
    /// A database whose next `failures` calls fail.
    pub fn failing(failures: usize) -> Self {
        MemorySink {
            failures_left: failures,
            ..MemorySink::default()
        }
    }

    pub fn rows(&self) -> BTreeSet<Row> {
        self.rows.keys().cloned().collect()
    }

    /// A row written around the module (no version).
    pub fn insert(&mut self, campaign: &str, member: &str) {
        self.rows.insert((campaign.into(), member.into()), None);
    }

    pub fn markers(&self) -> usize {
        self.removed.len()
    }

    fn add(&mut self, change: &Change<'_>) {
        let row = key(change);
        let newer_row = self
            .rows
            .get(&row)
            .is_some_and(|&v| v > Some(change.version));
        let newer_marker = self.removed.get(&row).is_some_and(|&v| v > change.version);
        if !newer_row && !newer_marker {
            self.rows.insert(row, Some(change.version));
        }
    }

    fn remove(&mut self, change: &Change<'_>) {
        let row = key(change);
        // `None < Some(_)`: a row written around the module is older.
        if self
            .rows
            .get(&row)
            .is_some_and(|&v| v < Some(change.version))
        {
            self.rows.remove(&row);
        }
        let marker = self.removed.entry(row).or_insert(change.version);
        *marker = (*marker).max(change.version);
    }

    /// Every row of the campaign older than the prune goes, leaving a
    /// marker at the prune's version.
    fn prune(&mut self, change: &Change<'_>) {
        let doomed: Vec<Row> = self
            .rows
            .iter()
            .filter(|((c, _), &v)| c == change.campaign && v < Some(change.version))
            .map(|(row, _)| row.clone())
            .collect();
        for row in doomed {
            self.rows.remove(&row);
            let marker = self.removed.entry(row).or_insert(change.version);
            *marker = (*marker).max(change.version);
        }
    }

    fn fail_if_asked(&mut self) -> Result<(), SinkError> {
        if self.failures_left > 0 {
            self.failures_left -= 1;
            return Err(SinkError::Connect("the test database is down".into()));
        }
        Ok(())
    }

    fn members_of<'a>(&'a self, campaign: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rows
            .keys()
            .filter(move |(c, _)| c == campaign)
            .map(|(_, member)| member.as_str())
    }
}

impl Sink for MemorySink {
    fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError> {
        self.fail_if_asked()?;
        if let Some(refusal) = &self.refuse_all {
            return Err(SinkError::Rejected(refusal.clone()));
        }
        if let Some((_, refused)) = batch
            .changes()
            .find(|(_, change)| self.refused_members.contains(change.member.as_str()))
        {
            return Err(SinkError::Rejected(format!(
                "violates check constraint: {}",
                refused.member
            )));
        }
        for change in &batch.removes {
            self.remove(change);
        }
        for change in &batch.adds {
            self.add(change);
        }
        for change in &batch.prunes {
            self.prune(change);
        }
        self.commits += 1;
        Ok(())
    }

    fn park_rejected(&mut self, rejected: &[RejectedChange]) -> Result<(), SinkError> {
        self.fail_if_asked()?;
        if self.refuse_parking {
            return Err(SinkError::Statement(
                "permission denied for the rejected table".into(),
            ));
        }
        self.parked.extend_from_slice(rejected);
        Ok(())
    }

    fn purge_removed(&mut self, older_than: u64) -> Result<u64, SinkError> {
        self.fail_if_asked()?;
        let before = self.removed.len();
        self.removed.retain(|_, version| *version >= older_than);
        Ok((before - self.removed.len()) as u64)
    }
}

fn key(change: &Change<'_>) -> Row {
    (change.campaign.into(), change.member.as_str().into())
}

impl Source for MemorySink {
    fn load_members(
        &mut self,
        campaign: &str,
        parts_out: PartsOut,
    ) -> Result<LoadedMembers, SinkError> {
        self.fail_if_asked()?;
        let mut loaded = LoadedMembers::default();
        let mut members = MemberSet::new();
        let mut parts = parts_out.writer();
        for member in self.members_of(campaign) {
            members.insert(member);
            loaded.checksum ^= member_hash(member);
            if let Some(part) = parts.as_mut().and_then(|parts| parts.push(member)) {
                parts_out.deliver(part, &mut loaded.parts);
            }
        }
        if let Some(part) = parts.and_then(PartsWriter::finish) {
            parts_out.deliver(part, &mut loaded.parts);
        }
        loaded.members = members;
        loaded.newest_version = self.newest_version(campaign)?;
        Ok(loaded)
    }

    fn newest_version(&mut self, campaign: &str) -> Result<u64, SinkError> {
        let versions = self
            .rows
            .iter()
            .filter_map(|((c, _), v)| (c == campaign).then_some(v.unwrap_or(0)));
        let markers = self
            .removed
            .iter()
            .filter_map(|((c, _), v)| (c == campaign).then_some(*v));
        Ok(versions.chain(markers).max().unwrap_or(0))
    }

    fn digest(&mut self, campaign: &str) -> Result<(i64, i64), SinkError> {
        self.fail_if_asked()?;
        let (count, checksum) = self
            .members_of(campaign)
            .fold((0, 0), |(count, checksum), member| {
                (count + 1, checksum ^ member_hash(member))
            });
        Ok((count, as_sql_bigint(checksum)))
    }

    fn campaigns(&mut self) -> Result<Vec<String>, SinkError> {
        self.fail_if_asked()?;
        let mut campaigns: Vec<String> = self.rows.keys().map(|(c, _)| c.clone()).collect();
        campaigns.dedup();
        Ok(campaigns)
    }
}
