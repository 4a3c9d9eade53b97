//! The module-wide journal: one ordered list of every change not yet
//! committed in PostgreSQL, saved with the dataset (RDB aux data, the AOF)
//! and carried to replicas.
//!
//! Locking rule: the journal is touched only while the Redis GIL is held
//! (command handlers, callbacks, or a thread inside
//! `ThreadSafeContext::lock`). So no other thread holds its mutex when
//! Redis forks, and a BGSAVE child never finds it locked. The figures are
//! mirrored into atomics for readers without the GIL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};
use redis_module::Context;

use super::{memory_guard, CLOCK};
use crate::core::clock::now_ms;
use crate::core::{Entry, Journal, Op};
use crate::error::CampaignError;
use crate::propagation;
use crate::redis_glue::config;
use crate::redis_glue::ffi::cached_now_ms;
use crate::redis_glue::server_state::is_replayed;

pub struct SharedJournal {
    journal: Mutex<Journal>,
    pub figures: JournalFigures,
    wake_sender: Sender<()>,
    wake_receiver: Receiver<()>,
}

/// The journal's size and progress, readable without the GIL.
#[derive(Default)]
pub struct JournalFigures {
    pub pending: AtomicU64,
    /// Heap bytes of the pending entries (`Journal::heap_bytes`).
    pub pending_bytes: AtomicU64,
    /// Client writes refused with `BUSY` since start (any of the limits).
    pub busy_refusals: AtomicU64,
    /// Arrival of the oldest pending entry (unix ms, 0 = empty).
    pub oldest_pending_ms: AtomicU64,
    pub next_seq: AtomicU64,
    /// Every entry numbered this or lower is committed.
    pub committed_through: AtomicU64,
}

pub static JOURNAL: LazyLock<SharedJournal> = LazyLock::new(|| {
    let (wake_sender, wake_receiver) = crossbeam_channel::unbounded();
    SharedJournal {
        journal: Mutex::new(Journal::new()),
        figures: JournalFigures::default(),
        wake_sender,
        wake_receiver,
    }
});

fn lock(journal: &Mutex<Journal>) -> MutexGuard<'_, Journal> {
    journal
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SharedJournal {
    /// The journal, for code that holds the GIL (`_ctx` is the proof).
    pub fn lock(&self, _ctx: &Context) -> MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    /// For type callbacks (aux load/save, AOF rewrite): Redis calls them on
    /// its main thread with the GIL held, or in a forked child.
    pub fn lock_in_callback(&self) -> MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    /// Wakes whoever drains the journal (new entries, a FLUSH, a role change).
    pub fn wake(&self) {
        let _ = self.wake_sender.send(());
    }

    pub fn wake_receiver(&self) -> &Receiver<()> {
        &self.wake_receiver
    }

    /// Refuses a client's write when the journal is full, in entries or
    /// in bytes, or when under `maxmemory` its growth would make Redis
    /// evict keys (`memory_guard`): back-pressure, not loss. Writes from
    /// the primary's stream or the AOF were accepted once and always pass.
    pub fn check_capacity(&self, ctx: &Context) -> Result<(), CampaignError> {
        // The published figures: no lock and O(1) on the write path.
        let pending = self.figures.pending.load(Ordering::Relaxed) as usize;
        let bytes = self.figures.pending_bytes.load(Ordering::Relaxed) as usize;
        let limit = config::MAX_PENDING.get() as usize;
        let byte_limit = config::MAX_PENDING_BYTES.get() as usize;
        let refusal = if pending >= limit {
            Err(CampaignError::JournalFull { pending })
        } else if bytes >= byte_limit {
            Err(CampaignError::JournalBytesFull {
                bytes,
                limit: byte_limit,
            })
        } else {
            memory_guard::check(bytes)
        };
        if refusal.is_err() {
            if is_replayed(ctx) {
                return Ok(());
            }
            self.figures.busy_refusals.fetch_add(1, Ordering::Relaxed);
        }
        refusal
    }

    /// Journals one entry per changed member of `campaign`, with versions
    /// `first_version`, the next, ...
    pub fn record(
        &self,
        ctx: &Context,
        op: Op,
        campaign: &str,
        members: &[&str],
        first_version: u64,
    ) {
        if members.is_empty() {
            return;
        }
        let mut journal = self.lock(ctx);
        let was_empty = journal.is_empty();
        let now = cached_now_ms();
        journal.append(op, campaign, members.iter().copied(), first_version, now);
        let batch = config::FLUSH_BATCH_SIZE.get().max(1) as usize;
        let crossed_batch = journal.len() / batch > (journal.len() - members.len()) / batch;
        self.publish(&journal);
        drop(journal);
        if was_empty || crossed_batch {
            self.wake();
        }
    }

    /// Drops entries through `through` once the database has them. On the
    /// primary the trim goes to replicas and the AOF.
    pub fn trim_through(&self, ctx: &Context, through: u64, propagate: bool) -> usize {
        let mut journal = self.lock(ctx);
        let trimmed = journal.trim_through(through);
        self.publish(&journal);
        drop(journal);
        if propagate && trimmed > 0 {
            propagation::journal_trim(through).replicate(ctx);
        }
        trimmed
    }

    /// Sends the whole journal, with its numbering, to the AOF and replicas
    /// as `CAMPAIGN.JOURNAL LOAD` (applied idempotently there). Called when
    /// an AOF rewrite without the RDB preamble starts: the new incremental
    /// file then carries the journal even if the rewritten base has no
    /// campaign key to carry it.
    pub fn propagate_snapshot(&self, ctx: &Context) {
        let journal = self.lock(ctx);
        for command in propagation::journal_snapshot(&journal) {
            command.replicate(ctx);
        }
    }

    /// Applies entries an AOF rewrite wrote out (`CAMPAIGN.JOURNAL LOAD`).
    pub fn restore_entries(
        &self,
        ctx: &Context,
        first: u64,
        entries: Vec<Entry>,
    ) -> Result<(), String> {
        let mut journal = self.lock(ctx);
        journal.restore(first, entries, now_ms())?;
        CLOCK.observe(journal.newest_version());
        self.publish(&journal);
        Ok(())
    }

    /// Replaces the whole journal (RDB aux load, full sync from a primary).
    pub fn replace(&self, journal: Journal) {
        CLOCK.observe(journal.newest_version());
        let mut current = self.lock_in_callback();
        *current = journal;
        self.publish(&current);
    }

    /// Publishes the figures of the journal as it is (at module load).
    pub fn refresh_figures(&self) {
        let journal = self.lock_in_callback();
        self.publish(&journal);
    }

    fn publish(&self, journal: &Journal) {
        let figures = &self.figures;
        figures
            .pending
            .store(journal.len() as u64, Ordering::Relaxed);
        figures
            .pending_bytes
            .store(journal.heap_bytes() as u64, Ordering::Relaxed);
        figures
            .oldest_pending_ms
            .store(journal.oldest_arrival_ms().unwrap_or(0), Ordering::Relaxed);
        figures
            .next_seq
            .store(journal.next_seq(), Ordering::Relaxed);
        let committed = journal.first_seq().unwrap_or(journal.next_seq()) - 1;
        figures
            .committed_through
            .store(committed, Ordering::Relaxed);
    }
}
