//! Versions of changes (SPEC section 4): every change of a campaign gets a
//! 64-bit version larger than any version this node has issued or seen for
//! it, whichever node made the older ones.
//!
//! A hybrid logical clock: milliseconds since the epoch in the high bits,
//! a counter in the low `COUNTER_BITS`. A change of an existing campaign
//! gets the larger of its campaign's newest version plus one and the wall
//! clock, so versions grow per campaign and follow real time across nodes;
//! a campaign created on this node starts above everything the node has
//! issued or loaded (a campaign value from RDB, RESTORE, MIGRATE or
//! replication; journal entries; the newest version in the database), so a
//! campaign deleted and created again continues above its old versions.
//!
//! When the wall clock does not move the version (a burst of changes to
//! one campaign within a millisecond), the version is the campaign's plus
//! one: a replica can derive it from its own copy of the campaign, and the
//! client's command goes to replicas as it came (see `keyspace::write`).
//!
//! Versions stay plausible (SPEC section 4). The wall clock gives versions
//! below 2^63 (PostgreSQL `bigint`) until the year 2109, and no version is
//! ever issued, followed or kept above `MAX_VERSION`. The node's clock
//! (`newest`, the floor of campaigns created here) ignores a version
//! further ahead of the wall clock than `MAX_AHEAD_MS`: a value or a row
//! from a node whose clock ran ahead (or a forged one) raises the versions
//! of its own campaign only, not of every campaign created here after it.
//! A client's RESTORE of a value beyond that bound is refused
//! (`keyspace::data_type`).

use std::sync::atomic::{AtomicU64, Ordering};

use super::clock::now_ms;

/// Low bits of a version that count changes within one millisecond.
pub const COUNTER_BITS: u32 = 21;

/// The largest version that exists: the top of PostgreSQL's `bigint`.
pub const MAX_VERSION: u64 = i64::MAX as u64;

/// How far ahead of this node's wall clock a version may lie and still be
/// taken as plausible: one day (a RESTORE beyond it is refused).
pub const MAX_AHEAD_MS: u64 = 24 * 60 * 60 * 1000;

/// The smallest version issued at wall-clock time `now_ms`.
pub fn version_at(now_ms: u64) -> u64 {
    now_ms.min(MAX_VERSION >> COUNTER_BITS) << COUNTER_BITS
}

/// The largest version taken as plausible at wall-clock time `now_ms`.
pub fn plausible_limit(now_ms: u64) -> u64 {
    version_at(now_ms.saturating_add(MAX_AHEAD_MS))
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

    /// `count` consecutive versions above `floor` (the campaign's newest
    /// version, or `newest()` for a campaign being created) and not below
    /// the wall clock; returns the first.
    pub fn issue(&self, count: u64, floor: u64, now_ms: u64) -> u64 {
        let first = floor
            .saturating_add(1)
            .max(version_at(now_ms))
            .min(MAX_VERSION);
        self.observe_at(first.saturating_add(count.max(1) - 1), now_ms);
        first
    }

    /// The versions a replica (or an AOF replay) gives a change its primary
    /// sent as the client's command: the campaign's newest plus one, on.
    pub fn follow(&self, count: u64, floor: u64) -> u64 {
        let first = floor.saturating_add(1).min(MAX_VERSION);
        self.observe(first.saturating_add(count.max(1) - 1).min(MAX_VERSION));
        first
    }

    /// Records that `version` exists somewhere: later versions exceed it.
    /// A version beyond `plausible_limit` of the wall clock now is left to
    /// its own campaign (whose value or rows carry it): the node's clock
    /// ignores it.
    pub fn observe(&self, version: u64) {
        self.observe_at(version, now_ms());
    }

    /// `observe` at wall-clock time `now_ms`.
    pub fn observe_at(&self, version: u64, now_ms: u64) {
        if version <= plausible_limit(now_ms) {
            self.newest.fetch_max(version, Ordering::AcqRel);
        }
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
    fn follows_the_wall_clock_and_the_campaign() {
        let clock = VersionClock::new();
        let first = clock.issue(1, 0, 1_000);
        assert_eq!(first, version_at(1_000));
        assert_eq!(version_ms(first), 1_000);
        // Within the same millisecond the campaign's counter goes on.
        assert_eq!(clock.issue(3, first, 1_000), first + 1);
        assert_eq!(clock.issue(1, first + 3, 1_000), first + 4);
        // A later millisecond starts at its own base.
        assert_eq!(clock.issue(1, first + 4, 2_000), version_at(2_000));
        // The wall clock going back does not take the campaign back.
        let late = version_at(5_000);
        assert_eq!(clock.issue(1, late, 4_000), late + 1);
        assert_eq!(clock.newest(), late + 1);
    }

    #[test]
    fn a_replica_follows_the_campaign_and_the_node_remembers_everything() {
        let clock = VersionClock::new();
        assert_eq!(clock.follow(2, 41), 42);
        assert_eq!(clock.newest(), 43);
        clock.observe(version_at(9_000) + 7);
        // A campaign created here starts above all of it.
        assert_eq!(clock.issue(1, clock.newest(), 1_000), version_at(9_000) + 8);
        // Observing an older version changes nothing.
        clock.observe(5);
        assert_eq!(clock.newest(), version_at(9_000) + 8);
    }

    #[test]
    fn the_node_clock_never_adopts_an_implausible_version() {
        let clock = VersionClock::new();
        let now = 1_700_000_000_000;
        clock.observe_at(version_at(now + 3_600_000), now);
        assert_eq!(clock.newest(), version_at(now + 3_600_000), "an hour: kept");
        clock.observe_at(plausible_limit(now) + 1, now);
        clock.observe_at(u64::MAX, now);
        assert_eq!(clock.newest(), version_at(now + 3_600_000), "ignored");
        // A campaign whose own version is huge still grows, up to the top.
        assert_eq!(clock.issue(1, MAX_VERSION - 1, now), MAX_VERSION);
        assert_eq!(clock.issue(2, MAX_VERSION, now), MAX_VERSION);
        assert!(clock.newest() <= plausible_limit(now));
        assert_eq!(clock.follow(1, u64::MAX), MAX_VERSION);
        assert!(clock.newest() <= plausible_limit(now_ms()));
        assert_eq!(
            version_at(u64::MAX),
            MAX_VERSION >> COUNTER_BITS << COUNTER_BITS
        );
    }

    #[test]
    fn current_versions_fit_a_signed_bigint() {
        // 2100-01-01 in ms.
        assert!(version_at(4_102_444_800_000) < i64::MAX as u64);
    }

    proptest! {
        /// Whatever the wall clock does, a campaign's versions grow, and
        /// one created from `newest()` starts above everything the node
        /// issued or observed.
        #[test]
        fn versions_grow_per_campaign_and_above_the_node(
            steps in prop::collection::vec((0u64..10_000, 0u64..4, 0u64..(1 << 40), any::<bool>()), 1..60)
        ) {
            let clock = VersionClock::new();
            let mut campaign = 0;
            let mut newest = 0;
            for (now, count, value, observe) in steps {
                if observe {
                    clock.observe(value);
                    newest = newest.max(value);
                } else {
                    let first = clock.issue(count, campaign, now);
                    prop_assert!(first > campaign);
                    prop_assert!(first >= version_at(now));
                    campaign = first + count.max(1) - 1;
                    newest = newest.max(campaign);
                }
                prop_assert_eq!(clock.newest(), newest);
                let created = clock.issue(1, clock.newest(), 0);
                prop_assert!(created > newest);
                newest = created;
            }
        }
    }
}
