//! Campaigns the database did not know when last loaded, remembered for
//! `campaign.negative-ttl-ms` so a HAS on an unknown campaign does not load
//! it again on every call. A write that creates the campaign forgets it.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

use super::KeyId;
use crate::core::clock::now_ms;

/// Key → unix ms until which it is known to be missing.
static MISSING: LazyLock<Mutex<HashMap<KeyId, u64>>> = LazyLock::new(Default::default);

fn missing() -> MutexGuard<'static, HashMap<KeyId, u64>> {
    MISSING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn remember_missing(key: KeyId, ttl_ms: u64) {
    if ttl_ms > 0 {
        missing().insert(key, now_ms() + ttl_ms);
    }
}

pub fn forget_missing(key: &KeyId) {
    let mut missing = missing();
    if !missing.is_empty() {
        missing.remove(key);
    }
}

pub fn known_missing(key: &KeyId) -> bool {
    missing().get(key).is_some_and(|&until| now_ms() < until)
}

/// Server cron: drops entries past their time.
pub fn expire_missing() {
    let now = now_ms();
    missing().retain(|_, until| now < *until);
}
