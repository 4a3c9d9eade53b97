//! How long the module's background threads hold the Redis lock (the GIL),
//! during which the server answers no client: every such hold goes through
//! `hold_lock` (or `lock_to_propagate`) and is timed; STATUS shows the
//! longest since start (`longest-lock-hold-us`) and per kind.

use std::cell::Cell;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use redis_module::{Context, ContextGuard, DetachedFromClient, ThreadSafeContext};

/// What a background thread holds the lock for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The flusher taking a batch out of the journal.
    BatchTake,
    /// The flusher trimming a committed batch.
    Trim,
    /// A load putting its set in place, answering its waiters and
    /// applying the writes held meanwhile.
    Swap,
    /// A load sending one part of its set to replicas and the AOF.
    ShadowPart,
    /// The reconciler and prefill reading the keyspace; dropping shadows.
    Scan,
}

/// Longest hold in microseconds since start, overall and per kind.
#[derive(Default)]
pub struct LockHolds {
    pub longest_us: AtomicU64,
    pub longest_batch_take_us: AtomicU64,
    pub longest_swap_us: AtomicU64,
    pub longest_shadow_part_us: AtomicU64,
}

pub static LOCK_HOLDS: LockHolds = LockHolds {
    longest_us: AtomicU64::new(0),
    longest_batch_take_us: AtomicU64::new(0),
    longest_swap_us: AtomicU64::new(0),
    longest_shadow_part_us: AtomicU64::new(0),
};

impl LockHolds {
    fn record(&self, hold: Hold, micros: u64) {
        self.longest_us.fetch_max(micros, Ordering::Relaxed);
        match hold {
            Hold::BatchTake => self
                .longest_batch_take_us
                .fetch_max(micros, Ordering::Relaxed),
            Hold::Swap => self.longest_swap_us.fetch_max(micros, Ordering::Relaxed),
            Hold::ShadowPart => self
                .longest_shadow_part_us
                .fetch_max(micros, Ordering::Relaxed),
            Hold::Trim | Hold::Scan => 0,
        };
    }
}

/// The Redis lock, held by a background thread; timed until dropped.
pub struct TimedLock {
    guard: ContextGuard,
    hold: Hold,
    since: Instant,
}

thread_local! {
    /// This thread is one of the module's own and holds the Redis lock.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is a module thread holding the Redis lock
/// (through `TimedLock`): not Redis's main thread nor its lazy-free thread.
pub fn module_thread_holds_lock() -> bool {
    HOLDING.with(Cell::get)
}

impl TimedLock {
    pub fn new(guard: ContextGuard, hold: Hold) -> Self {
        HOLDING.with(|holding| holding.set(true));
        TimedLock {
            guard,
            hold,
            since: Instant::now(),
        }
    }
}

impl Deref for TimedLock {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.guard
    }
}

impl Drop for TimedLock {
    fn drop(&mut self) {
        HOLDING.with(|holding| holding.set(false));
        let micros = self.since.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        LOCK_HOLDS.record(self.hold, micros);
    }
}

/// Takes the Redis lock for `hold`.
pub fn hold_lock(redis: &ThreadSafeContext<DetachedFromClient>, hold: Hold) -> TimedLock {
    TimedLock::new(redis.lock(), hold)
}
