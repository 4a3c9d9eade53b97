//! When prefill (`campaign.prefill yes`) loads what the keyspace lacks:
//! once after start-up on a plain server; in a cluster, for each slot the
//! first time this node serves it (a brand-new cluster gives slots only
//! after the nodes started, and resharding gives more later).

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
static LAST_SLOT_CHECK_MS: AtomicU64 = AtomicU64::new(0);
/// Slots already prefilled on this node.
static SLOTS_DONE: Mutex<Vec<bool>> = Mutex::new(Vec::new());

/// Server cron (the dataset has loaded once this runs unpaused).
pub fn on_cron(ctx: &Context) {
    if !config::PREFILL.get() || !SERVER.may_use_database() {
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
    if let Some(gained) = gained_slots(ctx) {
        LOADS.submit(Job::Prefill(Some(gained)));
    }
}

/// The slots this node serves now and did not before.
fn gained_slots(ctx: &Context) -> Option<Vec<bool>> {
    let owned = my_slots(&call_text(ctx, "CLUSTER", &["NODES"])?);
    let mut done = SLOTS_DONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
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
