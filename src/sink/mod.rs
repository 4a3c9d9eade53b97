//! The database behind two small traits: `Sink` (where committed journal
//! batches go, used by the flusher) and `Source` (where campaigns are
//! loaded and verified from, used by the load workers). `postgres` is the
//! implementation (statements), `pool` the node's bounded set of
//! connections every use shares, `connection` the `Database` handle over
//! both, `connect` the opening of one connection as libpq does (hosts,
//! sslmode, `tls`, `passfile`), `health` what STATUS says of the database,
//! and `memory` an in-memory stand-in for unit tests.

mod connect;
pub mod connection;
mod copy_format;
pub mod health;
#[cfg(test)]
pub mod memory;
mod passfile;
pub mod pool;
pub mod postgres;
mod prune;
pub mod rejected;
mod removals;
mod tls;

use thiserror::Error;

use crate::core::shadow::PartsWriter;
use crate::core::{Collapsed, MemberSet, Op};

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Statement(String),
    #[error("no database configured (campaign.database-url is empty)")]
    Unconfigured,
    #[error("no answer from the database within campaign.db-timeout-ms ({} ms): statement cancelled, connection dropped", .0.as_millis())]
    Timeout(std::time::Duration),
    /// The database refused the data itself (a constraint, a trigger, a
    /// privilege on some rows): applying the same rows again fails again.
    #[error("{0}")]
    Rejected(String),
    /// The database refused every part of a batch alike: a fault of the
    /// table (a privilege, a trigger, a dropped table), not of the rows.
    #[error("every change of the batch was refused: {0}; kept pending and retried")]
    Fault(String),
}

impl SinkError {
    /// The same error with the password of `url` removed from its text.
    pub fn redacted(self, url: &str) -> SinkError {
        let redact = postgres::redact_password;
        match self {
            SinkError::Connect(text) => SinkError::Connect(redact(&text, url)),
            SinkError::Statement(text) => SinkError::Statement(redact(&text, url)),
            SinkError::Rejected(text) => SinkError::Rejected(redact(&text, url)),
            SinkError::Fault(text) => SinkError::Fault(redact(&text, url)),
            other @ (SinkError::Unconfigured | SinkError::Timeout(_)) => other,
        }
    }
}

pub trait Sink {
    /// Applies one collapsed batch in a single transaction: all of it is
    /// committed when this returns `Ok`, none of it otherwise.
    fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError>;
    /// Drops removal markers of versions below `older_than`; returns how
    /// many.
    fn purge_removed(&mut self, older_than: u64) -> Result<u64, SinkError>;
    /// Keeps changes the database refused in `<table>_rejected`.
    fn park_rejected(&mut self, rejected: &[RejectedChange]) -> Result<(), SinkError>;
    /// Reaches the database (and sets its tables up) without changing it.
    fn check(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A change the database refused, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedChange {
    pub campaign: String,
    pub member: String,
    pub op: Op,
    pub version: u64,
    pub error: String,
}

/// A campaign's members as loaded from the database.
#[derive(Default)]
pub struct LoadedMembers {
    pub members: MemberSet,
    /// The checksum of `members` (see `core::checksum`).
    pub checksum: u64,
    /// Rows that could not be members (written around the module).
    pub skipped: usize,
    /// The newest version among the campaign's rows and removal markers
    /// (0: none), which later changes of it must exceed.
    pub newest_version: u64,
    /// The members as shadow parts (`core::shadow`), when collected.
    pub parts: Option<Vec<Vec<u8>>>,
}

/// What a load does with the members as shadow parts (`core::shadow`).
#[derive(Clone, Copy, Default)]
pub enum PartsOut {
    #[default]
    None,
    /// Parts of about this many bytes, in `LoadedMembers::parts`.
    Collect(usize),
}

impl PartsOut {
    /// The writer these parts need, if any.
    pub fn writer(&self) -> Option<PartsWriter> {
        match self {
            PartsOut::None => None,
            PartsOut::Collect(bytes) => Some(PartsWriter::new(*bytes)),
        }
    }

    /// Hands over a finished part.
    pub fn deliver(&self, part: Vec<u8>, collected: &mut Option<Vec<Vec<u8>>>) {
        match self {
            PartsOut::None => {}
            PartsOut::Collect(_) => collected.get_or_insert_with(Vec::new).push(part),
        }
    }
}

pub trait Source {
    /// Every member of `campaign`, with their checksum; also written into
    /// shadow parts as `parts` asks.
    fn load_members(&mut self, campaign: &str, parts: PartsOut)
        -> Result<LoadedMembers, SinkError>;
    /// `(row count, checksum as SQL bigint)` of `campaign`.
    fn digest(&mut self, campaign: &str) -> Result<(i64, i64), SinkError>;
    /// Every campaign the database holds.
    fn campaigns(&mut self) -> Result<Vec<String>, SinkError>;
    /// The newest version among `campaign`'s rows and removal markers
    /// (0: none).
    fn newest_version(&mut self, campaign: &str) -> Result<u64, SinkError>;
}

#[cfg(test)]
mod tests {
    use super::memory::MemorySink;
    use super::*;
    use crate::core::{collapse, Journal, Op};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// Flushing in batches of any size, with some batches applied but
        /// their trim lost (so they are applied again, as after a crash),
        /// ends with exactly the rows of applying every change in order.
        #[test]
        fn batched_at_least_once_flush_matches_the_model(
            ops in prop::collection::vec((any::<bool>(), "[ab]", "[0-3]"), 1..80),
            batch_size in 1usize..20,
            lost_trims in prop::collection::vec(any::<bool>(), 0..20),
        ) {
            let mut journal = Journal::new();
            let mut model = BTreeSet::new();
            for (version, (add, campaign, member)) in (1..).zip(&ops) {
                let op = if *add { Op::Add } else { Op::Remove };
                journal.append(op, campaign, [member.as_str()], version, 0);
                let row = (campaign.clone(), member.clone());
                if *add { model.insert(row); } else { model.remove(&row); }
            }
            let mut sink = MemorySink::default();
            let mut lost = lost_trims.into_iter();
            loop {
                let Some((through, entries)) = journal.front(batch_size) else {
                    break;
                };
                sink.apply(&collapse(entries)).unwrap();
                if !lost.next().unwrap_or(false) {
                    journal.trim_through(through);
                }
            }
            prop_assert_eq!(sink.rows(), model);
        }

        /// Changes made on several nodes (a campaign moving between them),
        /// each node flushing its own journal in batches at its own pace,
        /// some batches twice: the table ends at the newest change of every
        /// member, whatever order the batches arrive in.
        #[test]
        fn newest_version_wins_in_any_arrival_order(
            changes in prop::collection::vec((any::<bool>(), "[0-3]", 0usize..3), 1..60),
            batch_size in 1usize..8,
            schedule in prop::collection::vec((0usize..3, any::<bool>()), 0..80),
            around in prop::collection::btree_set("[0-3]", 0..3),
        ) {
            let mut journals = [Journal::new(), Journal::new(), Journal::new()];
            let mut sink = MemorySink::default();
            let mut model: BTreeSet<(String, String)> = BTreeSet::new();
            for member in &around {
                sink.insert("c", member);
                model.insert(("c".into(), member.clone()));
            }
            // Versions grow with every change, whichever node makes it.
            for (version, (add, member, node)) in (1..).zip(&changes) {
                let op = if *add { Op::Add } else { Op::Remove };
                journals[*node].append(op, "c", [member.as_str()], version, 0);
                let row = ("c".to_string(), member.clone());
                if *add { model.insert(row); } else { model.remove(&row); }
            }
            let mut flush = |journal: &mut Journal, twice: bool| {
                let through = journal.front(batch_size).map(|(through, entries)| {
                    let entries: Vec<_> = entries.collect();
                    sink.apply(&collapse(entries.iter().copied())).unwrap();
                    if twice {
                        sink.apply(&collapse(entries.iter().copied())).unwrap();
                    }
                    through
                });
                if let Some(through) = through {
                    journal.trim_through(through);
                }
            };
            for (node, twice) in schedule {
                flush(&mut journals[node], twice);
            }
            for journal in &mut journals {
                while !journal.is_empty() {
                    flush(journal, false);
                }
            }
            prop_assert_eq!(sink.rows(), model);
        }
    }
}
