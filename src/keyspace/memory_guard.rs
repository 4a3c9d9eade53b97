//! Under `maxmemory`, the journal must not be what makes Redis evict keys.
//!
//! The journal is module-wide memory, not a key: Redis cannot evict it,
//! so while the database is down every journaled write pushes Redis
//! towards `maxmemory`, and under an `allkeys-*` policy Redis then evicts
//! keys to make room, campaign keys included. An evicted campaign cannot be
//! loaded again while the database is down, so its true members would
//! answer 0. Hence: a client's write that would journal gets `BUSY` once
//! Redis's used memory (`RedisModule_GetUsedMemoryRatio`, the figure its
//! eviction uses) reaches `maxmemory` minus a reserve
//! (`campaign.maxmemory-reserve-percent` of it, at least 4 MiB, at most
//! half), provided the journal holds at least a quarter of that reserve.
//!
//! Why a reserve below the limit: Redis evicts before each command runs, so
//! a check that waited for the limit itself would see memory just under it
//! after every eviction and never refuse; the reserve leaves room for what
//! one command, client buffers, the next journal chunk and the flusher's
//! retries during the outage add (hence the 4 MiB floor). Why the
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

/// The smallest reserve, whatever the share: what the module's own threads
/// hold for a moment while the database is down (a flush batch taken out
/// and collapsed, a connection attempt) moved `used_memory` by up to 2.4 MB
/// here with 10k-entry batches; a reserve smaller than that let Redis evict.
const MIN_RESERVE_BYTES: u64 = 4 << 20;

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
    let Some(reserve_bytes) = refuses(ratio, reserve_percent, maxmemory, journal_bytes) else {
        return Ok(());
    };
    Err(CampaignError::MemoryReserve {
        used_percent: (ratio * 100.0) as u32,
        journal_bytes,
        reserve_bytes,
    })
}

/// The rule itself (see the module comment): the reserve in bytes when the
/// write is refused. A ratio of 0 means no `maxmemory`. Until `maxmemory`
/// is known (0) the reserve is the share alone and the journal gets no
/// allowance.
fn refuses(ratio: f32, reserve_percent: i64, maxmemory: u64, journal_bytes: usize) -> Option<u64> {
    if ratio <= 0.0 {
        return None;
    }
    let share = maxmemory.saturating_mul(reserve_percent as u64) / 100;
    let reserve = share.max(MIN_RESERVE_BYTES).min(maxmemory / 2);
    let threshold = if maxmemory == 0 {
        1.0 - reserve_percent as f64 / 100.0
    } else {
        1.0 - reserve as f64 / maxmemory as f64
    };
    // (f32 to f64 is exact; 1e-6 absorbs the f32 rounding of the ratio.)
    let near_the_limit = f64::from(ratio) + 1e-6 >= threshold;
    (near_the_limit && journal_bytes as u64 >= reserve / 4).then_some(reserve)
}

#[cfg(test)]
mod tests {
    use super::{refuses, MIN_RESERVE_BYTES};

    const MB: u64 = 1 << 20;

    #[test]
    fn refuses_only_near_the_limit_and_with_a_journal() {
        let max = 1024 * MB;
        let reserve = max * 5 / 100;
        let allowance = (reserve / 4) as usize;
        // No maxmemory, or memory below the reserve.
        assert_eq!(refuses(0.0, 5, 0, 1 << 30), None);
        assert_eq!(refuses(0.94, 5, max, 1 << 30), None);
        // Within the reserve, with a journal that is a cause of it.
        assert_eq!(refuses(0.95, 5, max, allowance), Some(reserve));
        assert_eq!(refuses(1.2, 5, max, allowance), Some(reserve));
        // A small journal on a server kept full by other keys.
        assert_eq!(refuses(0.99, 5, max, allowance - 1), None);
        // Before maxmemory is known: the share alone, no allowance.
        assert_eq!(refuses(0.99, 5, 0, 0), Some(0));
        assert_eq!(refuses(0.94, 5, 0, 1 << 30), None);
        // A larger reserve starts earlier.
        assert!(refuses(0.81, 20, max, 1 << 30).is_some());
        assert!(refuses(0.79, 20, max, 1 << 30).is_none());
    }

    #[test]
    fn a_small_maxmemory_keeps_the_smallest_reserve() {
        // 5% of 32 MB is 1.6 MB: the reserve is 4 MB (87.5%) instead.
        let max = 32 * MB;
        assert_eq!(refuses(0.87, 5, max, 1 << 30), None);
        assert_eq!(refuses(0.876, 5, max, 1 << 30), Some(MIN_RESERVE_BYTES));
        assert_eq!(
            refuses(0.9, 5, max, (MIN_RESERVE_BYTES / 4) as usize - 1),
            None
        );
        // Never more than half of maxmemory.
        assert_eq!(refuses(0.49, 5, 4 * MB, 1 << 30), None);
        assert_eq!(refuses(0.5, 5, 4 * MB, 1 << 30), Some(2 * MB));
    }
}
