//! The write-behind machinery around the core journal: the module-wide
//! journal, FLUSH waiters, statistics, and the background flusher.
//!
//! Locking rule: the journal and the waiter list are touched only while the
//! Redis GIL is held (command handlers, callbacks, or the flusher inside
//! `ThreadSafeContext::lock`). So no other thread can hold their mutexes
//! when Redis forks, and a BGSAVE child never finds them locked.

pub mod flusher;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use redis_module::{BlockedClient, Context, ContextFlags, RedisValue, ThreadSafeContext};

use crate::core::{Journal, Op};
use crate::error::CampaignError;
use crate::redis_glue::config;

pub struct WriteBehind {
    journal: Mutex<Journal>,
    waiters: Mutex<Vec<FlushWaiter>>,
    pub stats: Stats,
    wake_sender: Sender<()>,
    wake_receiver: Receiver<()>,
}

/// A client blocked in CAMPAIGN.FLUSH until `target` is committed.
struct FlushWaiter {
    target: u64,
    waited_for: u64,
    deadline_ms: Option<u64>,
    client: BlockedClient,
}

#[derive(Default)]
pub struct Stats {
    /// Journal length and oldest arrival (unix ms, 0 = empty), mirrored.
    pub pending: AtomicU64,
    pub oldest_pending_ms: AtomicU64,
    pub next_seq: AtomicU64,
    /// Every entry numbered this or lower is committed.
    pub committed_through: AtomicU64,
    /// A rebuild or the reconciler needs entries through this committed:
    /// the flusher treats it like a waiting FLUSH.
    pub flush_wanted_through: AtomicU64,
    pub flushed: AtomicU64,
    pub flush_errors: AtomicU64,
    /// Unix ms of the last successful flush; 0 = never.
    pub last_flush_ms: AtomicU64,
    pub connected: AtomicBool,
    pub is_primary: AtomicBool,
    pub loading: AtomicBool,
    /// Set by FLUSH: flush now instead of waiting for a full batch.
    pub flush_requested: AtomicBool,
    /// Entries committed per second, over the last second.
    pub flush_rate: AtomicU64,
    rate_mark: Mutex<(u64, u64)>,
    pub last_error: Mutex<String>,
}

pub static WRITE_BEHIND: LazyLock<WriteBehind> = LazyLock::new(|| {
    let (wake_sender, wake_receiver) = crossbeam_channel::unbounded();
    WriteBehind {
        journal: Mutex::new(Journal::new()),
        waiters: Mutex::new(Vec::new()),
        stats: Stats::default(),
        wake_sender,
        wake_receiver,
    }
});

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Commands replayed from the primary or the AOF were accepted once: they
/// must be applied even if this node's journal is over its limit.
pub fn is_replayed(ctx: &Context) -> bool {
    ctx.get_flags()
        .intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
}

impl WriteBehind {
    /// The journal, for code that holds the GIL (`_ctx` is the proof).
    pub fn journal(&self, _ctx: &Context) -> MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    /// For type callbacks (aux load/save, AOF rewrite): Redis calls them on
    /// its main thread with the GIL held, or in a forked child.
    pub fn journal_in_callback(&self) -> MutexGuard<'_, Journal> {
        lock(&self.journal)
    }

    /// Wakes the flusher (new entries, a FLUSH, a role change).
    pub fn wake(&self) {
        let _ = self.wake_sender.send(());
    }

    /// Refuses a write when the journal is full: back-pressure, not loss.
    pub fn check_capacity(&self, ctx: &Context) -> Result<(), CampaignError> {
        let pending = self.journal(ctx).len();
        let limit = config::MAX_PENDING.get() as usize;
        if pending >= limit && !is_replayed(ctx) {
            return Err(CampaignError::JournalFull { pending });
        }
        Ok(())
    }

    /// Journals one entry per changed member of `campaign`.
    pub fn record(&self, ctx: &Context, op: Op, campaign: &str, members: &[&str]) {
        if members.is_empty() {
            return;
        }
        let mut journal = self.journal(ctx);
        let was_empty = journal.is_empty();
        journal.append(op, campaign, members.iter().copied(), now_ms());
        let batch = config::FLUSH_BATCH_SIZE.get().max(1) as usize;
        let crossed_batch = journal.len() / batch > (journal.len() - members.len()) / batch;
        self.publish(&journal);
        drop(journal);
        if was_empty || crossed_batch {
            self.wake();
        }
    }

    /// Drops entries through `through` once the database has them. On the
    /// primary the trim is propagated to replicas and the AOF.
    pub fn commit_through(&self, ctx: &Context, through: u64, propagate: bool) -> usize {
        let mut journal = self.journal(ctx);
        let trimmed = journal.trim_through(through);
        self.publish(&journal);
        drop(journal);
        if propagate && trimmed > 0 {
            ctx.replicate("CAMPAIGN.JOURNAL", &["TRIM", &through.to_string()]);
        }
        self.release_waiters(ctx, |_| false);
        trimmed
    }

    /// Blocks the caller of FLUSH until everything journaled so far is
    /// committed; returns `None` when there is nothing to wait for.
    pub fn wait_for_flush(
        &self,
        ctx: &Context,
        timeout_ms: Option<u64>,
    ) -> Result<Option<u64>, CampaignError> {
        let journal = self.journal(ctx);
        let (Some(first), Some(target)) = (journal.first_seq(), journal.last_seq()) else {
            return Ok(Some(0));
        };
        drop(journal);
        if ctx.get_flags().contains(ContextFlags::DENY_BLOCKING) {
            return Err(CampaignError::Syntax(
                "CAMPAIGN.FLUSH cannot wait inside MULTI or a script".into(),
            ));
        }
        let waiter = FlushWaiter {
            target,
            waited_for: target - first + 1,
            deadline_ms: timeout_ms.map(|timeout| now_ms() + timeout),
            client: ctx.block_client(),
        };
        lock(&self.waiters).push(waiter);
        self.stats.flush_requested.store(true, Ordering::Relaxed);
        self.wake();
        Ok(None)
    }

    /// Replies to FLUSH waiters whose entries are committed, and with
    /// TIMEOUT to those for which `timed_out` holds.
    fn release_waiters(&self, ctx: &Context, timed_out: impl Fn(&FlushWaiter) -> bool) {
        let first_pending = self.journal(ctx).first_seq();
        let mut waiters = lock(&self.waiters);
        let mut index = 0;
        while index < waiters.len() {
            let waiter = &waiters[index];
            let committed = first_pending.is_none_or(|first| first > waiter.target);
            if !committed && !timed_out(waiter) {
                index += 1;
                continue;
            }
            let waiter = waiters.swap_remove(index);
            let reply = if committed {
                Ok(RedisValue::Integer(waiter.waited_for as i64))
            } else {
                Err(CampaignError::FlushTimeout.into_redis_error())
            };
            ThreadSafeContext::with_blocked_client(waiter.client).reply(reply);
        }
        if waiters.is_empty() {
            self.stats.flush_requested.store(false, Ordering::Relaxed);
        }
    }

    /// Called from the server cron: expires FLUSH waiters, updates the rate.
    pub fn on_cron(&self, ctx: &Context) {
        let now = now_ms();
        self.release_waiters(ctx, |waiter| waiter.deadline_ms.is_some_and(|d| now >= d));
        let flushed = self.stats.flushed.load(Ordering::Relaxed);
        let mut mark = lock(&self.stats.rate_mark);
        let (mark_ms, mark_flushed) = *mark;
        if now >= mark_ms + 1_000 {
            if mark_ms > 0 {
                let rate = (flushed - mark_flushed) * 1_000 / (now - mark_ms);
                self.stats.flush_rate.store(rate, Ordering::Relaxed);
            }
            *mark = (now, flushed);
        }
    }

    /// Asks the flusher to commit through `target` now (from any thread).
    pub fn want_flush_through(&self, target: u64) {
        self.stats
            .flush_wanted_through
            .fetch_max(target, Ordering::Relaxed);
        self.wake();
    }

    pub fn record_error(&self, message: String) {
        self.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
        self.stats.connected.store(false, Ordering::Relaxed);
        *lock(&self.stats.last_error) = message;
    }

    pub fn last_error(&self) -> String {
        lock(&self.stats.last_error).clone()
    }
}

impl WriteBehind {
    /// Appends entries an AOF rewrite wrote out (`CAMPAIGN.JOURNAL LOAD`).
    pub fn restore_entries(
        &self,
        ctx: &Context,
        first: u64,
        entries: Vec<crate::core::Entry>,
    ) -> Result<(), String> {
        let mut journal = self.journal(ctx);
        journal.restore(first, entries, now_ms())?;
        self.publish(&journal);
        Ok(())
    }

    /// Replaces the whole journal (RDB aux load, full sync from a primary).
    pub fn replace_journal(&self, journal: Journal) {
        let mut current = self.journal_in_callback();
        *current = journal;
        self.publish(&current);
    }

    /// Publishes the figures of the journal as it is (at module load).
    pub fn refresh_figures(&self) {
        let journal = self.journal_in_callback();
        self.publish(&journal);
    }

    /// Mirrors the journal's size and age into atomics the flusher and
    /// STATUS read without the GIL.
    fn publish(&self, journal: &Journal) {
        self.stats
            .pending
            .store(journal.len() as u64, Ordering::Relaxed);
        self.stats
            .oldest_pending_ms
            .store(journal.oldest_arrival_ms().unwrap_or(0), Ordering::Relaxed);
        self.stats
            .next_seq
            .store(journal.next_seq(), Ordering::Relaxed);
        let committed = journal.first_seq().unwrap_or(journal.next_seq()) - 1;
        self.stats
            .committed_through
            .store(committed, Ordering::Relaxed);
    }
}
