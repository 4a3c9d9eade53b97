//! The newest version of campaign keys that left this node's keyspace
//! (DEL, UNLINK, expiry, eviction, an overwrite, MIGRATE away), so that a
//! later load of the same key can tell whether the database has caught up
//! with every change this node knew of: after a slot moved, the old owner
//! may still be committing changes the deleted value already held, and a
//! reload that missed them would hold part of the campaign.
//!
//! Bounded: the oldest entries go first past `CAPACITY`. `order` may hold
//! keys forgotten since (dropping them there would scan it on the main
//! thread at every swap); it is compacted when it grows to twice the cap.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex, MutexGuard};

use super::KeyId;

const CAPACITY: usize = 100_000;

#[derive(Default)]
struct Deleted {
    versions: HashMap<KeyId, u64>,
    order: VecDeque<KeyId>,
}

static DELETED: LazyLock<Mutex<Deleted>> = LazyLock::new(Default::default);

fn deleted() -> MutexGuard<'static, Deleted> {
    DELETED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The campaign at `key`, of newest version `version`, left the keyspace.
pub fn remember_deleted(key: KeyId, version: u64) {
    if version == 0 {
        return;
    }
    let mut deleted = deleted();
    while deleted.versions.len() >= CAPACITY {
        let Some(oldest) = deleted.order.pop_front() else {
            break;
        };
        deleted.versions.remove(&oldest);
    }
    if deleted.order.len() >= 2 * CAPACITY {
        let Deleted { versions, order } = &mut *deleted;
        order.retain(|key| versions.contains_key(key));
    }
    match deleted.versions.get_mut(&key) {
        Some(known) => *known = (*known).max(version),
        None => {
            deleted.versions.insert(key.clone(), version);
            deleted.order.push_back(key);
        }
    }
}

/// The newest version known for the deleted campaign at `key` (0: none).
pub fn deleted_version(key: &KeyId) -> u64 {
    deleted().versions.get(key).copied().unwrap_or(0)
}

/// A load put the campaign back: its value carries the version now.
pub fn forget_deleted(key: &KeyId) {
    deleted().versions.remove(key);
}
