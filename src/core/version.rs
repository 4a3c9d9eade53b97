//! Versions of changes (SPEC section 4): every change of a campaign gets a
//! 64-bit version larger than any version this node has issued or seen for
//! it, whichever node made the older ones.
//!
//! A hybrid logical clock: milliseconds since the epoch in the high bits,
//! a counter in the low `COUNTER_BITS`, never going back, and advanced past
//! every version the node loads (a campaign value from RDB, RESTORE,
//! MIGRATE or replication; journal entries; the newest version in the
//! database). One clock per node serves every campaign, so a campaign
//! deleted and created again still continues above its old versions.
//!
//! Versions stay below 2^63 (PostgreSQL `bigint`) until the year 2109.

use std::sync::atomic::{AtomicU64, Ordering};

/// Low bits of a version that count changes within one millisecond.
pub const COUNTER_BITS: u32 = 21;

/// The smallest version issued at wall-clock time `now_ms`.
pub fn version_at(now_ms: u64) -> u64 {
    now_ms << COUNTER_BITS
}

/// The wall-clock millisecond a version was issued in (or later, if the
/// counter overflowed into it).
pub fn version_ms(version: u64) -> u64 {
    version >> COUNTER_BITS
}

#[derive(Debug, Default)]
pub struct VersionClock {
    /// The largest version issued or seen.
    newest: AtomicU64,
}

impl VersionClock {
    pub const fn new() -> Self {
        VersionClock {
            newest: AtomicU64::new(0),
        }
    }

    /// Reserves `count` consecutive versions above everything issued or
    /// seen, above `floor` (the campaign's own newest version) and not
    /// below the wall clock; returns the first.
    pub fn issue(&self, count: u64, floor: u64, now_ms: u64) -> u64 {
        let mut first = 0;
        let _ = self
            .newest
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |newest| {
                first = newest.max(floor).saturating_add(1).max(version_at(now_ms));
                Some(first.saturating_add(count.max(1) - 1))
            });
        first
    }

    /// Records that `version` exists somewhere: later versions exceed it.
    pub fn observe(&self, version: u64) {
        self.newest.fetch_max(version, Ordering::AcqRel);
    }

    pub fn newest(&self) -> u64 {
        self.newest.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn follows_the_wall_clock() {
        let clock = VersionClock::new();
        let first = clock.issue(1, 0, 1_000);
        assert_eq!(first, version_at(1_000));
        assert_eq!(version_ms(first), 1_000);
        // Within the same millisecond the counter goes on.
        assert_eq!(clock.issue(3, 0, 1_000), first + 1);
        assert_eq!(clock.issue(1, 0, 1_000), first + 4);
        // A later millisecond starts at its own base.
        assert_eq!(clock.issue(1, 0, 2_000), version_at(2_000));
    }

    #[test]
    fn never_goes_back_when_the_wall_clock_does() {
        let clock = VersionClock::new();
        let late = clock.issue(1, 0, 5_000);
        assert_eq!(clock.issue(1, 0, 4_000), late + 1);
    }

    #[test]
    fn continues_above_what_it_has_seen_and_the_floor() {
        let clock = VersionClock::new();
        clock.observe(version_at(9_000) + 7);
        assert_eq!(clock.issue(1, 0, 1_000), version_at(9_000) + 8);
        let floor = version_at(20_000);
        assert_eq!(clock.issue(2, floor, 1_000), floor + 1);
        assert_eq!(clock.newest(), floor + 2);
        // Observing an older version changes nothing.
        clock.observe(5);
        assert_eq!(clock.newest(), floor + 2);
    }

    #[test]
    fn current_versions_fit_a_signed_bigint() {
        // 2100-01-01 in ms.
        assert!(version_at(4_102_444_800_000) < i64::MAX as u64);
    }

    proptest! {
        /// Whatever the wall clock, floors and observations do, every
        /// issued version exceeds everything issued or observed before.
        #[test]
        fn issued_versions_always_grow(
            steps in prop::collection::vec((0u64..10_000, 0u64..4, 0u64..(1 << 40), any::<bool>()), 1..60)
        ) {
            let clock = VersionClock::new();
            let mut newest = 0;
            for (now, count, value, observe) in steps {
                if observe {
                    clock.observe(value);
                    newest = newest.max(value);
                } else {
                    let first = clock.issue(count, value, now);
                    prop_assert!(first > newest);
                    prop_assert!(first >= version_at(now));
                    prop_assert!(first > value);
                    newest = first + count.max(1) - 1;
                }
            }
        }
    }
}
