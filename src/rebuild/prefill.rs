//! When prefill (`campaign.prefill yes`) loads what the keyspace lacks:
//! after start-up on a plain server; in a cluster, for each slot the first
//! time this node serves it (a brand-new cluster gives slots only after the
//! nodes started, and resharding gives more later). A pass that could not
//! list the database's campaigns, or that started loads (some may fail),
//! is run again after the flusher's backoff, until a pass finds nothing
//! missing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use redis_module::{Context, ContextFlags};

use super::{Job, LOADS};
use crate::core::clock::now_ms;
use crate::core::cluster::{my_slots, newly_owned, SLOTS};
use crate::redis_glue::config;
use crate::redis_glue::ffi::call_text;
use crate::redis_glue::server_state::SERVER;

/// How often a cluster node looks for slots it was given.
const SLOT_CHECK_MS: u64 = 1_000;

static PLAIN_DONE: AtomicBool = AtomicBool::new(false);
/// Passes that have to be run again, and when the next may start.
static RETRIES: AtomicU64 = AtomicU64::new(0);
static RETRY_AT_MS: AtomicU64 = AtomicU64::new(0);
/// Slots whose pass has to be run again (cluster mode).
static SLOTS_AGAIN: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static LAST_SLOT_CHECK_MS: AtomicU64 = AtomicU64::new(0);
/// Slots already prefilled on this node.
static SLOTS_DONE: Mutex<Vec<bool>> = Mutex::new(Vec::new());

/// Server cron (the dataset has loaded once this runs unpaused).
pub fn on_cron(ctx: &Context) {
    if !config::PREFILL.get() || !SERVER.may_use_database() {
        return;
    }
    if now_ms() < RETRY_AT_MS.load(Ordering::Relaxed) {
        return;
    }
    if !ctx.get_flags().contains(ContextFlags::CLUSTER) {
        if !PLAIN_DONE.swap(true, Ordering::Relaxed) {
            LOADS.submit(Job::Prefill(None));
        }
        return;
    }
    let now = now_ms();
    if now < LAST_SLOT_CHECK_MS.load(Ordering::Relaxed) + SLOT_CHECK_MS {
        return;
    }
    LAST_SLOT_CHECK_MS.store(now, Ordering::Relaxed);
    let again = std::mem::take(&mut *lock(&SLOTS_AGAIN));
    let mut slots = gained_slots(ctx);
    if !again.is_empty() {
        let wanted = slots.get_or_insert_with(|| vec![false; SLOTS]);
        for slot in again {
            wanted[slot] = true;
        }
    }
    if let Some(slots) = slots {
        LOADS.submit(Job::Prefill(Some(slots)));
    }
}

/// How a prefill pass ended.
pub enum PassOutcome {
    /// Nothing was missing: this pass is done for good.
    Complete,
    /// Loads were started (some may fail) or the listing failed: run the
    /// pass again after a backoff.
    Again,
}

/// Called by the load worker at the end of a pass over `slots`.
pub fn pass_ended(slots: Option<Vec<bool>>, outcome: PassOutcome) {
    match outcome {
        PassOutcome::Complete => {
            RETRIES.store(0, Ordering::Relaxed);
        }
        PassOutcome::Again => {
            let retries = RETRIES.fetch_add(1, Ordering::Relaxed) + 1;
            let delay = crate::write_behind::flusher::backoff(retries as u32, fastrand::f64());
            RETRY_AT_MS.store(now_ms() + delay.as_millis() as u64, Ordering::Relaxed);
            match slots {
                None => PLAIN_DONE.store(false, Ordering::Relaxed),
                Some(slots) => lock(&SLOTS_AGAIN)
                    .extend((0..SLOTS).filter(|&slot| slots.get(slot) == Some(&true))),
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The slots this node serves now and did not before.
fn gained_slots(ctx: &Context) -> Option<Vec<bool>> {
    let owned = my_slots(&call_text(ctx, "CLUSTER", &["NODES"])?);
    let mut done = lock(&SLOTS_DONE);
    if done.is_empty() {
        done.resize(SLOTS, false);
    }
    newly_owned(&owned, &mut done)
}

/// In cluster mode, the slots this node serves (None: not a cluster).
pub fn my_cluster_slots(ctx: &Context) -> Option<Vec<bool>> {
    if !ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return None;
    }
    Some(my_slots(
        &call_text(ctx, "CLUSTER", &["NODES"]).unwrap_or_default(),
    ))
}
