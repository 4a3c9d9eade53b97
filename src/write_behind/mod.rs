//! The write-behind service around the journal (`keyspace::journal`): the
//! background flusher, FLUSH waiters and the flush statistics.
//!
//! Like the journal, the waiter list is touched only with the Redis GIL held.

pub mod flusher;
pub mod retry;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use redis_module::{BlockedClient, Context, ContextFlags, RedisValue, ThreadSafeContext};

use crate::core::clock::now_ms;
use crate::error::CampaignError;
use crate::keyspace::journal::JOURNAL;
use crate::redis_glue::server_state::SERVER;
use crate::sink::health::{Use, HEALTH};
use crate::sink::SinkError;

pub struct WriteBehind {
    waiters: Mutex<Vec<FlushWaiter>>,
    pub stats: FlushStats,
}

/// A client blocked in CAMPAIGN.FLUSH until `target` is committed.
struct FlushWaiter {
    target: u64,
    waited_for: u64,
    deadline_ms: Option<u64>,
    client: BlockedClient,
}

#[derive(Default)]
pub struct FlushStats {
    /// A rebuild or the reconciler needs entries through this committed:
    /// the flusher treats it like a waiting FLUSH.
    pub flush_wanted_through: AtomicU64,
    pub flushed: AtomicU64,
    pub flush_errors: AtomicU64,
    /// Changes the database refused row by row, parked in `<table>_rejected`.
    pub rejected: AtomicU64,
    /// Unix ms of the last successful flush; 0 = never.
    pub last_flush_ms: AtomicU64,
    /// Set by FLUSH: flush now instead of waiting for a full batch.
    pub flush_requested: AtomicBool,
    /// Entries committed per second, over the last second.
    pub flush_rate: AtomicU64,
    rate_mark: Mutex<(u64, u64)>,
}

pub static WRITE_BEHIND: LazyLock<WriteBehind> = LazyLock::new(|| WriteBehind {
    waiters: Mutex::new(Vec::new()),
    stats: FlushStats::default(),
});

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl WriteBehind {
    /// Drops entries through `through` once the database has them (the
    /// trim goes to replicas and the AOF when `propagate`), then answers
    /// the FLUSH callers whose entries are all committed.
    pub fn commit_through(&self, ctx: &Context, through: u64, propagate: bool) -> usize {
        let trimmed = JOURNAL.trim_through(ctx, through, propagate);
        self.release_waiters(ctx, |_| false);
        trimmed
    }

    /// Blocks the caller of FLUSH until everything journaled so far is
    /// committed; returns `None` when it blocked, else the reply (0).
    pub fn wait_for_flush(
        &self,
        ctx: &Context,
        timeout_ms: Option<u64>,
    ) -> Result<Option<u64>, CampaignError> {
        let journal = JOURNAL.lock(ctx);
        let (Some(first), Some(target)) = (journal.first_seq(), journal.last_seq()) else {
            return Ok(Some(0));
        };
        drop(journal);
        if ctx.get_flags().contains(ContextFlags::DENY_BLOCKING) {
            return Err(CampaignError::CannotBlock("CAMPAIGN.FLUSH"));
        }
        let waiter = FlushWaiter {
            target,
            waited_for: target - first + 1,
            deadline_ms: timeout_ms.map(|timeout| now_ms() + timeout),
            client: ctx.block_client(),
        };
        lock(&self.waiters).push(waiter);
        self.stats.flush_requested.store(true, Ordering::Relaxed);
        JOURNAL.wake();
        Ok(None)
    }

    /// Replies to FLUSH waiters whose entries are committed, and with
    /// TIMEOUT to those for which `timed_out` holds.
    fn release_waiters(&self, ctx: &Context, timed_out: impl Fn(&FlushWaiter) -> bool) {
        let first_pending = JOURNAL.lock(ctx).first_seq();
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
        JOURNAL.wake();
    }

    /// Waits (on a background thread) until the journal is committed
    /// through `target`; fails as soon as the flusher reports a new error
    /// or this node may not use the database.
    pub fn wait_until_committed(&self, target: u64) -> Result<(), String> {
        let errors_before = self.stats.flush_errors.load(Ordering::Relaxed);
        self.want_flush_through(target);
        loop {
            if JOURNAL.figures.committed_through.load(Ordering::Relaxed) >= target {
                return Ok(());
            }
            if !SERVER.database_configured() {
                return Err("no database configured (campaign.database-url is empty)".into());
            }
            if !SERVER.is_primary() {
                return Err("this node is not a primary: it does not flush".into());
            }
            if self.stats.flush_errors.load(Ordering::Relaxed) > errors_before {
                return Err(format!(
                    "pending changes could not be committed first: {}",
                    self.last_error()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn record_commit(&self, entries: usize) {
        self.stats
            .flushed
            .fetch_add(entries as u64, Ordering::Relaxed);
        self.stats.last_flush_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A flush failed: counted, and shown in STATUS as the newest error
    /// (the pool has already recorded whether the database was reachable).
    pub fn record_error(&self, error: &SinkError) {
        self.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
        let unreachable = matches!(error, SinkError::Connect(_) | SinkError::Timeout(_));
        HEALTH.failed_with(Use::Flush, error.to_string(), unreachable);
    }

    pub fn last_error(&self) -> String {
        HEALTH.last_error()
    }
}
