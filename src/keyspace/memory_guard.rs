//! Under `maxmemory`, the journal must not be what makes Redis evict keys.
//!
//! The journal is module-wide memory, not a key: Redis cannot evict it,
//! so while the database is down every journaled write pushes Redis
//! towards `maxmemory`, and under an `allkeys-*` policy Redis then evicts
//! keys to make room, campaign keys included. An evicted campaign cannot be
//! loaded again while the database is down, so its true members would
//! answer 0. Hence: a client's write that would journal gets `BUSY` once
//! Redis's used memory (`RedisModule_GetUsedMemoryRatio`, the figure its
//! eviction uses) reaches `maxmemory` minus `campaign.maxmemory-reserve-percent`,
//! provided the journal holds at least a quarter of that reserve.
//!
//! Why a reserve below the limit: Redis evicts before each command runs, so
//! a check that waited for the limit itself would see memory just under it
//! after every eviction and never refuse; the reserve leaves room for what
//! one command, client buffers and the next journal chunk add. Why the
//! journal must hold a quarter of it: a server that is kept full on purpose
//! (an LRU cache beside the campaigns) sits at the limit all the time; there
//! a journal that a working database keeps small is allowed to take a little
//! room from other keys, as any write would, instead of refusing every
//! write. The check is two atomic reads and one API call: O(1) per write.

use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::Context;

use crate::error::CampaignError;
use crate::redis_glue::config;
use crate::redis_glue::ffi::{maxmemory_bytes, used_memory_ratio};

/// The server's `maxmemory` (bytes, 0: none or not read yet), read by the
/// cron: it only sizes the journal's allowance, the ratio is read live.
static MAXMEMORY: AtomicU64 = AtomicU64::new(0);

/// Reads `maxmemory` again (from the cron, about once a second).
pub fn refresh(ctx: &Context) {
    if let Some(bytes) = maxmemory_bytes(ctx) {
        MAXMEMORY.store(bytes, Ordering::Relaxed);
    }
}

/// Refuses a client's write that would journal when Redis's memory is
/// within the reserve of `maxmemory` and the journal is a cause of it.
pub fn check(journal_bytes: usize) -> Result<(), CampaignError> {
    let reserve_percent = config::MAXMEMORY_RESERVE_PERCENT.get();
    if reserve_percent <= 0 {
        return Ok(());
    }
    let Some(ratio) = used_memory_ratio() else {
        return Ok(());
    };
    let maxmemory = MAXMEMORY.load(Ordering::Relaxed);
    if !refuses(ratio, reserve_percent, maxmemory, journal_bytes) {
        return Ok(());
    }
    Err(CampaignError::MemoryReserve {
        used_percent: (ratio * 100.0) as u32,
        journal_bytes,
        reserve_percent,
    })
}

/// The rule itself (see the module comment). A ratio of 0 means no
/// `maxmemory`; an unknown `maxmemory` (0) gives the journal no allowance.
fn refuses(ratio: f32, reserve_percent: i64, maxmemory: u64, journal_bytes: usize) -> bool {
    if ratio <= 0.0 || ratio * 100.0 < (100 - reserve_percent) as f32 {
        return false;
    }
    let allowance = maxmemory.saturating_mul(reserve_percent as u64) / 400;
    journal_bytes as u64 >= allowance
}

#[cfg(test)]
mod tests {
    use super::refuses;

    const MB: u64 = 1 << 20;

    #[test]
    fn refuses_only_near_the_limit_and_with_a_journal() {
        let max = 64 * MB;
        let allowance = (64 * MB * 5 / 400) as usize;
        // No maxmemory, or memory below the reserve.
        assert!(!refuses(0.0, 5, 0, 1 << 30));
        assert!(!refuses(0.94, 5, max, 1 << 30));
        // Within the reserve, with a journal that is a cause of it.
        assert!(refuses(0.951, 5, max, allowance));
        assert!(refuses(1.2, 5, max, allowance));
        // A small journal on a server kept full by other keys.
        assert!(!refuses(0.99, 5, max, allowance - 1));
        // Before maxmemory is known the journal gets no allowance.
        assert!(refuses(0.99, 5, 0, 0));
        // A larger reserve starts earlier.
        assert!(refuses(0.81, 20, max, 1 << 30));
        assert!(!refuses(0.79, 20, max, 1 << 30));
    }
}
