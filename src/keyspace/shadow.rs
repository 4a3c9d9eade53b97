//! This node's shadows (`core::shadow`): touched only with the Redis lock
//! held (commands, a worker holding the lock, the RDB fork child that
//! inherits them), like the journal.

use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use redis_module::{Context, RedisString};

use super::{background_free, write, CLOCK};
use crate::core::clock::now_ms;
use crate::core::shadow::{Shadow, Shadows};
use crate::error::CampaignError;
use crate::propagation::{self, ShadowStep};

static SHADOWS: LazyLock<Mutex<Shadows>> = LazyLock::new(|| Mutex::new(Shadows::default()));

/// The shadows; the caller holds the Redis lock.
pub fn shadows() -> MutexGuard<'static, Shadows> {
    SHADOWS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh shadow id: a version, so above every id this node or its
/// primaries used (replicas and the AOF may still hold older shadows).
pub fn new_id() -> u64 {
    CLOCK.issue(1, CLOCK.newest(), now_ms())
}

/// The primary sends the next part of shadow `id` of `key` to replicas
/// and the AOF, and keeps it for snapshots taken before the swap.
pub fn send_part(ctx: &Context, id: u64, key: &[u8], part: &Arc<[u8]>) {
    propagation::sync_shadow(key, id, ShadowStep::Part(part)).replicate(ctx);
    shadows().record_sent(id, key, part.clone());
}

/// Puts collected shadow `id` in place at key `name` (a replica, an AOF
/// replay); returns its member count.
pub fn swap_in(ctx: &Context, name: &RedisString, id: u64) -> Result<usize, CampaignError> {
    let mut shadows = shadows();
    let Some(Shadow::Receiving { .. }) = shadows.get(id) else {
        return Err(CampaignError::Syntax(format!(
            "no shadow {id} was collected here"
        )));
    };
    let Some(Shadow::Receiving { campaign, .. }) = shadows.take(id) else {
        unreachable!("checked above");
    };
    drop(shadows);
    let count = campaign.len();
    background_free::module_replaces(|| write::replace(ctx, name, campaign))?;
    Ok(count)
}

/// The primary forgets shadow `id` it sent and tells replicas and the AOF
/// to do the same, unless it was swapped in (then it is gone already).
pub fn abandon(ctx: &Context, id: u64, still_primary: bool) {
    let Some(shadow) = shadows().take(id) else {
        return;
    };
    if still_primary {
        propagation::sync_shadow(shadow.key(), id, ShadowStep::Drop).replicate(ctx);
    }
    discard(shadow);
}

/// Forgets shadow `id` (`CAMPAIGN.SYNC ... SHADOW id DROP`); true if held.
pub fn forget(id: u64) -> bool {
    let Some(shadow) = shadows().take(id) else {
        return false;
    };
    discard(shadow);
    true
}

/// Frees a shadow off the main thread when it is large (a collected set;
/// a sender's parts are still held by its load, which frees them).
fn discard(shadow: Shadow) {
    if let Shadow::Receiving { campaign, .. } = shadow {
        background_free::release(Box::new(campaign));
    }
}

/// A primary drops the shadows it collected as a replica or from its AOF:
/// their swap will never come. Replicas and the AOF drop them too.
pub fn drop_leftovers(ctx: &Context) -> usize {
    let dropped = shadows().drop_received();
    for (id, key, _) in &dropped {
        propagation::sync_shadow(key, *id, ShadowStep::Drop).replicate(ctx);
    }
    let count = dropped.len();
    for (_, _, campaign) in dropped {
        background_free::release(Box::new(campaign));
    }
    count
}

/// Every shadow as the `CAMPAIGN.SYNC ... SHADOW id PART` commands that
/// rebuild it, for `write` (an AOF rewrite without the RDB preamble, which
/// has no place for module-wide data). Parts are sets of members, so a
/// receiver that has them already changes nothing.
pub fn for_each_snapshot_command(write: impl FnMut(&propagation::WireCommand)) {
    for_each_snapshot_command_of(|_| true, write);
}

/// `for_each_snapshot_command` for the shadows whose key `keep` accepts.
pub fn for_each_snapshot_command_of(
    keep: impl Fn(&[u8]) -> bool,
    mut write: impl FnMut(&propagation::WireCommand),
) {
    let shadows = shadows();
    for (id, key, parts) in shadows.snapshot() {
        if !keep(key) {
            continue;
        }
        for part in &parts {
            write(&propagation::sync_shadow(key, id, ShadowStep::Part(part)));
        }
    }
}

/// How many shadows this node holds (STATUS); -1 if they are busy.
pub fn count() -> i64 {
    SHADOWS
        .try_lock()
        .map_or(-1, |shadows| shadows.len() as i64)
}

/// Forgets the collected shadows without telling anyone (a snapshot being
/// loaded says which exist).
pub fn discard_received() {
    let dropped = shadows().drop_received();
    for (_, _, campaign) in dropped {
        background_free::release(Box::new(campaign));
    }
}
