//! The background flusher: one thread that moves journal batches into the
//! sink. It holds the Redis GIL only to take a batch out (sharing the
//! journal's sealed chunks: O(chunks), plus a copy of the one chunk being
//! filled) and to trim it after the commit, never while the batch is read
//! and collapsed or PostgreSQL works. How long each hold lasted is in
//! STATUS (`longest-lock-hold-us`, `longest-batch-take-us`).
//!
//! `Flusher` is generic over the sink and reaches the journal through
//! `JournalAccess`, so its batching and retry rules are unit-tested with an
//! in-memory sink and journal; `run` adds the thread, the wake-ups and the
//! Redis side.

use std::sync::atomic::Ordering;
use std::sync::Once;
use std::time::{Duration, Instant};

use redis_module::{DetachedFromClient, ThreadSafeContext};

use super::WRITE_BEHIND;
use crate::core::clock::now_ms;
use crate::core::version::version_at;
use crate::core::{Batch, Collapsed};
use crate::keyspace::journal::JOURNAL;
use crate::redis_glue::config;
use crate::redis_glue::ffi::lock_to_propagate;
use crate::redis_glue::lock_hold::{hold_lock, Hold};
use crate::redis_glue::log;
use crate::redis_glue::panic_guard::spawn_supervised;
use crate::redis_glue::server_state::SERVER;
use crate::sink::connection::Database;
use crate::sink::health::{Use, HEALTH};
use crate::sink::pool::POOL;
use crate::sink::{RejectedChange, Sink, SinkError};

/// Longest sleep when idle: settings and role are re-read at least this often.
const IDLE_WAIT: Duration = Duration::from_millis(500);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often an idle flusher checks that the database answers.
const PROBE_EVERY_MS: u64 = 1_000;
/// How often removal markers past their retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);

pub fn start() {
    static START: Once = Once::new();
    START.call_once(|| {
        spawn_supervised("campaign-flush", BACKOFF_MAX, || {
            Flusher::new(Database::new(Use::Flush)).run(&RedisJournal::default())
        });
    });
}

/// Delay before retry number `failures` (1-based): doubling from 100 ms up
/// to 10 s, each time between half and all of that (jitter spreads the
/// reconnects of many nodes).
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let doubled = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let ceiling = doubled.min(BACKOFF_MAX);
    ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// How the flusher reaches the journal.
pub trait JournalAccess {
    /// Takes out the oldest `limit` entries, if any.
    fn take_batch(&self, limit: usize) -> Option<Batch>;
    /// The database committed entries through `through`: trim them.
    fn commit(&self, through: u64);
    /// A batch of `entries` failed with `message`; retried in `retry_in`.
    fn report_failure(&self, message: &str, entries: usize, retry_in: Duration);
    /// The database refused these changes; they are parked.
    fn report_rejected(&self, rejected: &[RejectedChange]);
}

/// What splitting a refused batch came to.
#[derive(Default)]
struct Split {
    /// Changes committed in parts of the batch.
    committed: usize,
    /// Changes refused alone.
    refused: Vec<RejectedChange>,
}

/// What one flush attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    NothingPending,
    Committed { entries: usize },
    Failed,
}

pub struct Flusher<S> {
    sink: S,
    failures: u32,
    retry_at: Option<Instant>,
    purged_at: Option<Instant>,
}

impl<S: Sink> Flusher<S> {
    pub fn new(sink: S) -> Self {
        Flusher {
            sink,
            failures: 0,
            retry_at: None,
            purged_at: None,
        }
    }

    /// Drops removal markers older than `retention_s` (by their version's
    /// time), at most once every `PURGE_EVERY`; returns how many went.
    pub fn purge_if_due(&mut self, retention_s: u64, now_ms: u64) -> Option<u64> {
        if self.purged_at.is_some_and(|at| at.elapsed() < PURGE_EVERY) {
            return None;
        }
        self.purged_at = Some(Instant::now());
        let older_than = version_at(now_ms.saturating_sub(retention_s.saturating_mul(1000)));
        match self.sink.purge_removed(older_than) {
            Ok(purged) => Some(purged),
            Err(error) => {
                log::warning(format!("purging old removal markers failed: {error}"));
                None
            }
        }
    }

    /// Applies the oldest batch of at most `limit` entries; on success the
    /// journal is trimmed, on failure the batch stays and a retry is
    /// scheduled with backoff.
    pub fn flush_once(&mut self, journal: &impl JournalAccess, limit: usize) -> Attempt {
        let Some(batch) = journal.take_batch(limit) else {
            return Attempt::NothingPending;
        };
        match self.apply_isolating_rejections(journal, &batch.collapse()) {
            Ok(()) => {
                self.failures = 0;
                self.retry_at = None;
                journal.commit(batch.through);
                Attempt::Committed {
                    entries: batch.len(),
                }
            }
            Err(error) => {
                self.failures += 1;
                let delay = backoff(self.failures, fastrand::f64());
                self.retry_at = Some(Instant::now() + delay);
                journal.report_failure(&error.to_string(), batch.len(), delay);
                WRITE_BEHIND.record_error(&error);
                Attempt::Failed
            }
        }
    }

    /// Applies `batch`; when the database refuses part of it, splits it
    /// until the refused changes stand alone, parks them in
    /// `<table>_rejected` and applies the rest. A change is parked only
    /// when it fails alone while others of its batch commit: a refusal
    /// that every part meets (a privilege revoked, a trigger refusing every
    /// row, a dropped table) is a fault of the table, and the whole batch
    /// stays pending (halves already committed are applied again,
    /// idempotently, on the retry), as on any other failure.
    fn apply_isolating_rejections(
        &mut self,
        journal: &impl JournalAccess,
        batch: &Collapsed<'_>,
    ) -> Result<(), SinkError> {
        let mut split = Split::default();
        if let Some(refusal) = self.attempt(batch, &mut split)? {
            self.split(batch, refusal, &mut split)?;
        }
        if split.refused.is_empty() {
            return Ok(());
        }
        if split.committed == 0 {
            let refusal = split.refused.swap_remove(0).error;
            return Err(SinkError::Fault(refusal));
        }
        self.sink.park_rejected(&split.refused)?;
        journal.report_rejected(&split.refused);
        Ok(())
    }

    /// Applies `batch`: `None` once committed, the refusal's text when the
    /// database refused it.
    fn attempt(
        &mut self,
        batch: &Collapsed<'_>,
        split: &mut Split,
    ) -> Result<Option<String>, SinkError> {
        match self.sink.apply(batch) {
            Ok(()) => {
                split.committed += batch.len();
                Ok(None)
            }
            Err(SinkError::Rejected(refusal)) => Ok(Some(refusal)),
            Err(other) => Err(other),
        }
    }

    /// `batch` was refused with `refusal`: tries its halves, and splits
    /// each refused half further, down to single changes.
    fn split(
        &mut self,
        batch: &Collapsed<'_>,
        refusal: String,
        split: &mut Split,
    ) -> Result<(), SinkError> {
        if batch.len() == 1 {
            let (op, change) = batch.changes().next().expect("one change");
            split.refused.push(RejectedChange {
                campaign: change.campaign.to_owned(),
                member: change.member.as_str().to_owned(),
                op,
                version: change.version,
                error: refusal,
            });
            return Ok(());
        }
        let (first, second) = batch.halves();
        let first_refusal = self.attempt(&first, split)?;
        let second_refusal = self.attempt(&second, split)?;
        // Both halves refused word for word as the whole (a row's own
        // refusal names the row): the table refuses, not the rows.
        if first_refusal.as_ref() == Some(&refusal) && second_refusal.as_ref() == Some(&refusal) {
            return Err(SinkError::Fault(refusal));
        }
        if let Some(refusal) = first_refusal {
            self.split(&first, refusal, split)?;
        }
        if let Some(refusal) = second_refusal {
            self.split(&second, refusal, split)?;
        }
        Ok(())
    }

    /// With nothing to flush and the database not known to answer (at
    /// start, after a new URL, after any use failed to reach it): connects,
    /// which also creates the tables, so STATUS tells the truth before the
    /// first write. Retried with the same backoff as a batch.
    pub fn check_database(&mut self) {
        match self.sink.check() {
            Ok(()) => {
                self.failures = 0;
                self.retry_at = None;
            }
            Err(_) => {
                self.failures += 1;
                self.retry_at = Some(Instant::now() + backoff(self.failures, fastrand::f64()));
            }
        }
    }

    /// Whether a failed attempt's backoff has passed.
    pub fn retry_due(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn run(&mut self, journal: &RedisJournal) {
        let wake = JOURNAL.wake_receiver();
        loop {
            let _ = wake.recv_timeout(self.wait_time());
            while wake.try_recv().is_ok() {}
            // Idle connections of every use are closed from here.
            POOL.sweep();
            if !SERVER.database_configured() {
                HEALTH.reset();
                continue;
            }
            if SERVER.may_use_database() && self.retry_due() {
                if batch_due() {
                    self.flush_once(journal, config::FLUSH_BATCH_SIZE.get() as usize);
                } else if probe_due() {
                    self.check_database();
                }
                if self.failures == 0 {
                    self.purge_if_due(config::REMOVED_RETENTION_S.get() as u64, now_ms());
                }
            }
        }
    }

    fn wait_time(&self) -> Duration {
        let now = Instant::now();
        if let Some(at) = self.retry_at {
            return at.saturating_duration_since(now).min(IDLE_WAIT);
        }
        // Nothing to do, or nothing it may do: sleep until woken (a new
        // setting, a role change), the idle tick or the next probe.
        let pending = JOURNAL.figures.pending.load(Ordering::Relaxed);
        if pending == 0 || !SERVER.may_use_database() {
            let probe_at = HEALTH.last_ok_ms.load(Ordering::Relaxed) + PROBE_EVERY_MS;
            return Duration::from_millis(probe_at.saturating_sub(now_ms()).max(50)).min(IDLE_WAIT);
        }
        if batch_due() {
            return Duration::ZERO;
        }
        let due_ms = JOURNAL.figures.oldest_pending_ms.load(Ordering::Relaxed)
            + config::FLUSH_INTERVAL_MS.get() as u64;
        Duration::from_millis(due_ms.saturating_sub(now_ms())).min(IDLE_WAIT)
    }
}

/// With nothing to flush the database is still asked now and then, so
/// STATUS (`database`) and the choice a write to a missing campaign makes
/// (load it first, or accept it incomplete) follow a database that went
/// away while idle.
fn probe_due() -> bool {
    !HEALTH.connected.load(Ordering::Relaxed)
        || now_ms() >= HEALTH.last_ok_ms.load(Ordering::Relaxed) + PROBE_EVERY_MS
}

/// A batch is due when a FLUSH waits, a full batch is pending, or the
/// oldest entry has waited `flush-interval-ms`.
fn batch_due() -> bool {
    let figures = &JOURNAL.figures;
    let stats = &WRITE_BEHIND.stats;
    let pending = figures.pending.load(Ordering::Relaxed);
    if pending == 0 {
        return false;
    }
    let oldest = figures.oldest_pending_ms.load(Ordering::Relaxed);
    let wanted = stats.flush_wanted_through.load(Ordering::Relaxed);
    stats.flush_requested.load(Ordering::Relaxed)
        || wanted > figures.committed_through.load(Ordering::Relaxed)
        || pending >= config::FLUSH_BATCH_SIZE.get() as u64
        || now_ms() >= oldest + config::FLUSH_INTERVAL_MS.get() as u64
}

/// The module's journal, reached under the Redis GIL.
struct RedisJournal {
    redis: ThreadSafeContext<DetachedFromClient>,
}

impl Default for RedisJournal {
    fn default() -> Self {
        RedisJournal {
            redis: ThreadSafeContext::new(),
        }
    }
}

impl JournalAccess for RedisJournal {
    fn take_batch(&self, limit: usize) -> Option<Batch> {
        let ctx = hold_lock(&self.redis, Hold::BatchTake);
        JOURNAL.lock(&ctx).take_batch(limit)
    }

    fn commit(&self, through: u64) {
        // The trim is propagated: never while clients are paused.
        let ctx = lock_to_propagate(&self.redis, Hold::Trim);
        // A node demoted meanwhile leaves the trim to its new primary.
        if SERVER.is_primary() {
            let trimmed = WRITE_BEHIND.commit_through(&ctx, through, true);
            WRITE_BEHIND.record_commit(trimmed);
        }
    }

    fn report_failure(&self, message: &str, entries: usize, retry_in: Duration) {
        log::warning(format!(
            "flushing {entries} journal entries failed, retrying in {} ms: {message}",
            retry_in.as_millis()
        ));
    }

    fn report_rejected(&self, rejected: &[RejectedChange]) {
        for change in rejected {
            log::warning(format!(
                "the database refused {} '{}' of campaign '{}' (parked in the rejected table): {}",
                change.op.word(),
                change.member.escape_debug(),
                change.campaign.escape_debug(),
                change.error
            ));
        }
        WRITE_BEHIND
            .stats
            .rejected
            .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeSet;

    use super::*;
    use crate::core::{Journal, Op};
    use crate::sink::memory::MemorySink;

    /// A journal in memory; `lose_commits` drops that many trims, as a
    /// crash between the database commit and the trim would.
    #[derive(Default)]
    struct MemoryJournal {
        journal: RefCell<Journal>,
        lose_commits: Cell<usize>,
        failures_reported: Cell<usize>,
        rejected_reported: Cell<usize>,
    }

    impl MemoryJournal {
        fn with(ops: &[(Op, &str, &str)]) -> Self {
            let memory = MemoryJournal::default();
            for (version, &(op, campaign, member)) in (1..).zip(ops) {
                memory
                    .journal
                    .borrow_mut()
                    .append(op, campaign, [member], version, 0);
            }
            memory
        }
    }

    impl JournalAccess for MemoryJournal {
        fn take_batch(&self, limit: usize) -> Option<Batch> {
            self.journal.borrow().take_batch(limit)
        }

        fn commit(&self, through: u64) {
            if self.lose_commits.get() > 0 {
                self.lose_commits.set(self.lose_commits.get() - 1);
                return;
            }
            self.journal.borrow_mut().trim_through(through);
        }

        fn report_failure(&self, _message: &str, _entries: usize, _retry_in: Duration) {
            self.failures_reported.set(self.failures_reported.get() + 1);
        }

        fn report_rejected(&self, rejected: &[RejectedChange]) {
            self.rejected_reported
                .set(self.rejected_reported.get() + rejected.len());
        }
    }

    fn rows(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        pairs
            .iter()
            .map(|(c, m)| (c.to_string(), m.to_string()))
            .collect()
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(4, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(30, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(1, 0.0), Duration::from_millis(50));
        let jittered = backoff(5, 0.3);
        assert!(jittered > Duration::from_millis(800) && jittered < Duration::from_millis(1600));
    }

    #[test]
    fn batches_of_the_limit_until_the_journal_is_empty() {
        let members: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
        let journal = MemoryJournal::default();
        for member in &members {
            journal
                .journal
                .borrow_mut()
                .append(Op::Add, "c", [member.as_str()], 1, 0);
        }
        let mut flusher = Flusher::new(MemorySink::default());
        let attempts: Vec<Attempt> = (0..4).map(|_| flusher.flush_once(&journal, 10)).collect();
        assert_eq!(
            attempts,
            [
                Attempt::Committed { entries: 10 },
                Attempt::Committed { entries: 10 },
                Attempt::Committed { entries: 5 },
                Attempt::NothingPending,
            ]
        );
        assert_eq!(flusher.sink.commits, 3);
        assert!(journal.journal.borrow().is_empty());
        let expected: BTreeSet<(String, String)> = members
            .iter()
            .map(|m| ("c".to_string(), m.clone()))
            .collect();
        assert_eq!(flusher.sink.rows(), expected);
    }

    #[test]
    fn a_failed_batch_stays_pending_and_is_retried_after_backoff() {
        let journal = MemoryJournal::with(&[(Op::Add, "c", "a"), (Op::Add, "c", "b")]);
        let sink = MemorySink::failing(2);
        let mut flusher = Flusher::new(sink);
        assert_eq!(flusher.flush_once(&journal, 100), Attempt::Failed);
        assert!(!flusher.retry_due(), "a retry waits for the backoff");
        assert_eq!(flusher.flush_once(&journal, 100), Attempt::Failed);
        assert_eq!(journal.journal.borrow().len(), 2, "nothing trimmed");
        assert_eq!(journal.failures_reported.get(), 2);
        assert_eq!(flusher.failures, 2);
        assert_eq!(
            flusher.flush_once(&journal, 100),
            Attempt::Committed { entries: 2 }
        );
        assert!(flusher.retry_due() && flusher.failures == 0);
        assert_eq!(flusher.sink.rows(), rows(&[("c", "a"), ("c", "b")]));
        assert!(journal.journal.borrow().is_empty());
    }

    #[test]
    fn a_lost_trim_applies_the_batch_again_with_the_same_result() {
        let journal = MemoryJournal::with(&[
            (Op::Add, "c", "a"),
            (Op::Add, "c", "b"),
            (Op::Remove, "c", "a"),
            (Op::Add, "d", "x"),
        ]);
        journal.lose_commits.set(1);
        let mut flusher = Flusher::new(MemorySink::default());
        assert_eq!(
            flusher.flush_once(&journal, 3),
            Attempt::Committed { entries: 3 }
        );
        assert_eq!(journal.journal.borrow().len(), 4, "the trim was lost");
        while flusher.flush_once(&journal, 3) != Attempt::NothingPending {}
        assert_eq!(flusher.sink.commits, 3);
        assert_eq!(flusher.sink.rows(), rows(&[("c", "b"), ("d", "x")]));
    }

    #[test]
    fn refused_changes_are_isolated_and_parked_and_the_rest_is_committed() {
        let members: Vec<String> = (0..1_000).map(|i| format!("m{i}")).collect();
        let journal = MemoryJournal::default();
        for (version, member) in (1..).zip(&members) {
            let op = if version % 3 == 0 {
                Op::Remove
            } else {
                Op::Add
            };
            journal
                .journal
                .borrow_mut()
                .append(op, "c", [member.as_str()], version, 0);
        }
        let mut sink = MemorySink::default();
        sink.refused_members = ["m10", "m500", "m999"].map(String::from).into();
        let mut flusher = Flusher::new(sink);
        assert_eq!(
            flusher.flush_once(&journal, 1_000),
            Attempt::Committed { entries: 1_000 }
        );
        assert!(journal.journal.borrow().is_empty());
        let mut parked: Vec<(&str, Op, u64)> = flusher
            .sink
            .parked
            .iter()
            .map(|change| (change.member.as_str(), change.op, change.version))
            .collect();
        parked.sort_unstable_by_key(|&(member, _, _)| member);
        assert_eq!(
            parked,
            [
                ("m10", Op::Add, 11),
                ("m500", Op::Remove, 501),
                ("m999", Op::Add, 1_000)
            ]
        );
        assert_eq!(journal.rejected_reported.get(), 3);
        let added = (1..=1_000)
            .filter(|version| version % 3 != 0)
            .map(|version| format!("m{}", version - 1))
            .filter(|member| member != "m10" && member != "m999");
        let expected: BTreeSet<(String, String)> =
            added.map(|member| ("c".to_string(), member)).collect();
        assert_eq!(flusher.sink.rows(), expected);
    }

    /// A prune leaves exactly the members journaled above it, whether it
    /// shares a batch with older changes of its campaign or not, also
    /// when the batch is split around a refused change.
    #[test]
    fn a_prune_leaves_exactly_the_members_journaled_above_it() {
        for limit in [2, 3, 100] {
            let journal = MemoryJournal::default();
            {
                let mut entries = journal.journal.borrow_mut();
                entries.append(Op::Add, "c", ["old", "kept", "bad"], 1, 0);
                entries.append(Op::Add, "other", ["o"], 4, 0);
                entries.append(Op::Prune, "c", [crate::core::PRUNE_MEMBER], 10, 0);
                entries.append(Op::Add, "c", ["kept", "new"], 11, 0);
            }
            let mut sink = MemorySink::default();
            sink.insert("c", "around");
            sink.refused_members = ["bad"].map(String::from).into();
            let mut flusher = Flusher::new(sink);
            for _ in 0..10 {
                flusher.flush_once(&journal, limit);
            }
            assert!(journal.journal.borrow().is_empty(), "batches of {limit}");
            assert_eq!(
                flusher.sink.rows(),
                rows(&[("c", "kept"), ("c", "new"), ("other", "o")]),
                "batches of {limit}"
            );
            // "around" (and "old" when it reached the table before the
            // prune) got a marker; "bad" was parked, or dropped with the
            // older changes of a batch the prune shares.
            assert!(flusher.sink.markers() >= 1, "batches of {limit}");
        }
    }

    #[test]
    fn a_batch_stays_pending_when_the_refused_rows_cannot_be_parked() {
        let journal = MemoryJournal::with(&[(Op::Add, "c", "a"), (Op::Add, "c", "bad")]);
        let mut sink = MemorySink::default();
        sink.refused_members = ["bad".to_string()].into();
        sink.refuse_parking = true;
        let mut flusher = Flusher::new(sink);
        assert_eq!(flusher.flush_once(&journal, 10), Attempt::Failed);
        assert_eq!(journal.journal.borrow().len(), 2, "nothing trimmed");
        flusher.sink.refuse_parking = false;
        assert_eq!(
            flusher.flush_once(&journal, 10),
            Attempt::Committed { entries: 2 }
        );
        assert_eq!(flusher.sink.parked.len(), 1);
        assert_eq!(flusher.sink.rows(), rows(&[("c", "a")]));
    }

    #[test]
    fn a_refusal_of_the_whole_table_is_a_fault_and_parks_nothing() {
        let members: Vec<String> = (0..400).map(|i| format!("m{i}")).collect();
        let journal = MemoryJournal::default();
        for (version, member) in (1..).zip(&members) {
            journal
                .journal
                .borrow_mut()
                .append(Op::Add, "c", [member.as_str()], version, 0);
        }
        let mut sink = MemorySink::default();
        sink.refuse_all = Some("permission denied for table t (SQLSTATE 42501)".into());
        let mut flusher = Flusher::new(sink);
        assert_eq!(flusher.flush_once(&journal, 1_000), Attempt::Failed);
        assert!(flusher.sink.parked.is_empty(), "nothing parked");
        assert_eq!(journal.journal.borrow().len(), 400, "nothing trimmed");
        assert_eq!(journal.rejected_reported.get(), 0);
        // The whole, then its two halves: no row-by-row split.
        assert_eq!(flusher.failures, 1);
        // The cause is fixed: every change commits.
        flusher.sink.refuse_all = None;
        flusher.retry_at = None;
        assert_eq!(
            flusher.flush_once(&journal, 1_000),
            Attempt::Committed { entries: 400 }
        );
        assert_eq!(flusher.sink.rows().len(), 400);
        assert!(flusher.sink.parked.is_empty());
    }

    #[test]
    fn a_change_refused_with_nothing_committed_beside_it_is_not_parked() {
        let journal = MemoryJournal::with(&[(Op::Add, "c", "bad")]);
        let mut sink = MemorySink::default();
        sink.refused_members = ["bad".to_string()].into();
        let mut flusher = Flusher::new(sink);
        assert_eq!(flusher.flush_once(&journal, 10), Attempt::Failed);
        assert!(flusher.sink.parked.is_empty());
        assert_eq!(journal.journal.borrow().len(), 1, "kept pending");
        // A good change beside it commits: the bad one is parked alone.
        journal
            .journal
            .borrow_mut()
            .append(Op::Add, "c", ["good"], 2, 0);
        flusher.retry_at = None;
        assert_eq!(
            flusher.flush_once(&journal, 10),
            Attempt::Committed { entries: 2 }
        );
        assert_eq!(flusher.sink.parked.len(), 1);
        assert_eq!(flusher.sink.rows(), rows(&[("c", "good")]));
    }

    #[test]
    fn removal_markers_past_their_retention_are_purged_once_a_minute() {
        let hour_ago = 10_000_000 - 3_600_000;
        let journal = MemoryJournal::default();
        for (member, at_ms) in [("old", hour_ago), ("new", 10_000_000)] {
            journal
                .journal
                .borrow_mut()
                .append(Op::Remove, "c", [member], version_at(at_ms), 0);
        }
        let mut flusher = Flusher::new(MemorySink::default());
        while flusher.flush_once(&journal, 10) != Attempt::NothingPending {}
        assert_eq!(flusher.sink.markers(), 2);
        // Kept for 30 minutes: the hour-old marker goes.
        assert_eq!(flusher.purge_if_due(1_800, 10_000_000), Some(1));
        assert_eq!(flusher.sink.markers(), 1);
        assert_eq!(flusher.purge_if_due(1, 10_000_000), None, "not due yet");
    }
}
