//! An in-memory database for unit tests of the flusher and the load
//! service: a table of (campaign, member) rows that fails on request.

use std::collections::BTreeSet;

use super::{LoadedMembers, Sink, SinkError, Source};
use crate::core::checksum::{as_sql_bigint, member_hash};
use crate::core::{Collapsed, MemberSet};

#[derive(Default)]
pub struct MemorySink {
    rows: BTreeSet<(String, String)>,
    /// The next this many calls fail, as a database that is down would.
    pub failures_left: usize,
    /// Batches committed so far.
    pub commits: usize,
}

impl MemorySink {
    /// A database whose next `failures` calls fail.
    pub fn failing(failures: usize) -> Self {
        MemorySink {
            failures_left: failures,
            ..MemorySink::default()
        }
    }

    pub fn rows(&self) -> BTreeSet<(String, String)> {
        self.rows.clone()
    }

    pub fn insert(&mut self, campaign: &str, member: &str) {
        self.rows.insert((campaign.into(), member.into()));
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
            .iter()
            .filter(move |(c, _)| c == campaign)
            .map(|(_, member)| member.as_str())
    }
}

impl Sink for MemorySink {
    fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError> {
        self.fail_if_asked()?;
        for (campaign, member) in &batch.removes {
            self.rows
                .remove(&(campaign.to_string(), member.to_string()));
        }
        for (campaign, member) in &batch.adds {
            self.rows.insert((campaign.to_string(), member.to_string()));
        }
        self.commits += 1;
        Ok(())
    }
}

impl Source for MemorySink {
    fn load_members(&mut self, campaign: &str) -> Result<LoadedMembers, SinkError> {
        self.fail_if_asked()?;
        let mut loaded = LoadedMembers::default();
        let mut members = MemberSet::new();
        for member in self.members_of(campaign) {
            members.insert(member);
            loaded.checksum ^= member_hash(member);
        }
        loaded.members = members;
        Ok(loaded)
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
        let mut campaigns: Vec<String> = self.rows.iter().map(|(c, _)| c.clone()).collect();
        campaigns.dedup();
        Ok(campaigns)
    }
}
