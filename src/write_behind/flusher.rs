//! The background flusher: one thread that moves journal batches into the
//! sink. It holds the Redis GIL only to copy a batch out and to trim it
//! after the commit, never while PostgreSQL works.

use std::sync::atomic::Ordering;
use std::sync::Once;
use std::time::{Duration, Instant};

use redis_module::{Context, ThreadSafeContext};

use super::{now_ms, WRITE_BEHIND};
use crate::core::{collapse, Entry};
use crate::redis_glue::config;
use crate::redis_glue::panic_guard::spawn_supervised;
use crate::sink::postgres::{redact_password, PostgresSink};
use crate::sink::{Sink, SinkError};

/// Longest sleep when idle: settings and role are re-read at least this often.
const IDLE_WAIT: Duration = Duration::from_millis(500);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

pub fn start() {
    static START: Once = Once::new();
    START.call_once(|| {
        spawn_supervised("campaign-flush", BACKOFF_MAX, || Flusher::default().run());
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

struct Connection {
    url: String,
    table: String,
    sink: PostgresSink,
}

#[derive(Default)]
struct Flusher {
    connection: Option<Connection>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// A copy of the oldest journal entries, taken under the GIL.
struct Batch {
    through: u64,
    entries: Vec<Entry>,
}

impl Flusher {
    fn run(&mut self) {
        let stats = &WRITE_BEHIND.stats;
        let redis = ThreadSafeContext::new();
        loop {
            let _ = WRITE_BEHIND.wake_receiver.recv_timeout(self.wait_time());
            while WRITE_BEHIND.wake_receiver.try_recv().is_ok() {}

            let url = config::DATABASE_URL.get();
            if url.is_empty() {
                self.connection = None;
                stats.connected.store(false, Ordering::Relaxed);
                continue;
            }
            let active =
                stats.is_primary.load(Ordering::Relaxed) && !stats.loading.load(Ordering::Relaxed);
            let retry_due = self.retry_at.is_none_or(|at| Instant::now() >= at);
            if !active || !retry_due || !self.batch_due() {
                continue;
            }
            let Some(batch) = take_batch(&redis) else {
                continue;
            };
            match self.apply(&url, &batch) {
                Ok(()) => {
                    self.failures = 0;
                    self.retry_at = None;
                    stats.connected.store(true, Ordering::Relaxed);
                    let ctx = redis.lock();
                    // A node demoted meanwhile leaves the trim to its new primary.
                    if stats.is_primary.load(Ordering::Relaxed) {
                        let trimmed = WRITE_BEHIND.commit_through(&ctx, batch.through, true);
                        stats.flushed.fetch_add(trimmed as u64, Ordering::Relaxed);
                        stats.last_flush_ms.store(now_ms(), Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    self.connection = None;
                    self.failures += 1;
                    let delay = backoff(self.failures, fastrand::f64());
                    self.retry_at = Some(Instant::now() + delay);
                    let message = redact_password(&error.to_string(), &url);
                    let ctx = redis.lock();
                    log_failure(&ctx, &message, batch.entries.len(), delay);
                    WRITE_BEHIND.record_error(message);
                }
            }
        }
    }

    /// A batch is due when a FLUSH waits, a full batch is pending, or the
    /// oldest entry has waited `flush-interval-ms`.
    fn batch_due(&self) -> bool {
        let stats = &WRITE_BEHIND.stats;
        let pending = stats.pending.load(Ordering::Relaxed);
        if pending == 0 {
            return false;
        }
        let oldest = stats.oldest_pending_ms.load(Ordering::Relaxed);
        let wanted = stats.flush_wanted_through.load(Ordering::Relaxed);
        stats.flush_requested.load(Ordering::Relaxed)
            || wanted > stats.committed_through.load(Ordering::Relaxed)
            || pending >= config::FLUSH_BATCH_SIZE.get() as u64
            || now_ms() >= oldest + config::FLUSH_INTERVAL_MS.get() as u64
    }

    fn wait_time(&self) -> Duration {
        let now = Instant::now();
        if let Some(at) = self.retry_at {
            return at.saturating_duration_since(now).min(IDLE_WAIT);
        }
        let stats = &WRITE_BEHIND.stats;
        // Nothing to do, or nothing it may do: sleep until woken (a new
        // setting, a role change) or the idle tick, never spin.
        let can_flush = stats.is_primary.load(Ordering::Relaxed)
            && !stats.loading.load(Ordering::Relaxed)
            && !config::DATABASE_URL.get().is_empty();
        if stats.pending.load(Ordering::Relaxed) == 0 || !can_flush {
            return IDLE_WAIT;
        }
        if self.batch_due() {
            return Duration::ZERO;
        }
        let due_ms = stats.oldest_pending_ms.load(Ordering::Relaxed)
            + config::FLUSH_INTERVAL_MS.get() as u64;
        Duration::from_millis(due_ms.saturating_sub(now_ms())).min(IDLE_WAIT)
    }

    fn apply(&mut self, url: &str, batch: &Batch) -> Result<(), SinkError> {
        let table = config::TABLE.get();
        let reusable = self.connection.as_ref().is_some_and(|connection| {
            connection.url == url && connection.table == table && !connection.sink.is_closed()
        });
        if !reusable {
            self.connection = None;
            let sink = PostgresSink::connect(url, &table)?;
            self.connection = Some(Connection {
                url: url.to_owned(),
                table,
                sink,
            });
        }
        let connection = self.connection.as_mut().expect("connected above");
        connection.sink.apply(&collapse(&batch.entries))
    }
}

/// Copies the oldest `flush-batch-size` entries out under the GIL.
fn take_batch(redis: &ThreadSafeContext<redis_module::DetachedFromClient>) -> Option<Batch> {
    let limit = config::FLUSH_BATCH_SIZE.get() as usize;
    let ctx = redis.lock();
    let journal = WRITE_BEHIND.journal(&ctx);
    let (through, entries) = journal.front(limit)?;
    Some(Batch {
        through,
        entries: entries.cloned().collect(),
    })
}

fn log_failure(ctx: &Context, message: &str, entries: usize, retry_in: Duration) {
    ctx.log_warning(&format!(
        "campaign: flushing {entries} journal entries failed, retrying in {} ms: {message}",
        retry_in.as_millis()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
