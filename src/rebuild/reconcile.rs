//! The reconciler: every `verify-interval-s` it commits the journal, then
//! compares each campaign of db 0 with the database (count and checksum)
//! and rebuilds the ones that drifted. Every second, while incomplete
//! campaigns exist and the database answers, it starts their completion.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Once;
use std::time::{Duration, Instant};

use redis_module::{DetachedFromClient, KeysCursor, ThreadSafeContext};

use super::registry::Waiter;
use super::LOADS;
use crate::core::campaign::INCOMPLETE_VALUES;
use crate::core::checksum::as_sql_bigint;
use crate::core::{validate_text, Campaign, MAX_CAMPAIGN_NAME_BYTES};
use crate::keyspace::journal::JOURNAL;
use crate::keyspace::{with_campaign, CAMPAIGN_TYPE};
use crate::redis_glue::config;
use crate::redis_glue::ffi::select_db;
use crate::redis_glue::lock_hold::{hold_lock, Hold};
use crate::redis_glue::log;
use crate::redis_glue::panic_guard::spawn_supervised;
use crate::redis_glue::server_state::{SERVER, SLOT_MIGRATION};
use crate::sink::connection::Database;
use crate::sink::health::{Use, HEALTH};
use crate::sink::Source;
use crate::write_behind::WRITE_BEHIND;

/// How often incomplete campaigns are looked for.
const COMPLETION_EVERY: Duration = Duration::from_secs(1);

/// Keys looked at per GIL hold while listing campaigns.
const SCAN_ROUNDS_PER_LOCK: usize = 10;

pub fn start() {
    static START: Once = Once::new();
    START.call_once(|| {
        spawn_supervised("campaign-verify", Duration::from_secs(1), || {
            Reconciler {
                database: Database::new(Use::Reconcile),
            }
            .run()
        });
    });
}

struct Reconciler {
    database: Database,
}

struct CacheFigures {
    campaign: String,
    members: usize,
    checksum: u64,
}

impl Reconciler {
    fn run(&mut self) {
        let mut last_round = Instant::now();
        let mut last_completion = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if last_completion.elapsed() >= COMPLETION_EVERY {
                last_completion = Instant::now();
                complete_incomplete();
            }
            let interval = config::VERIFY_INTERVAL_S.get() as u64;
            let due = interval > 0 && last_round.elapsed() >= Duration::from_secs(interval);
            if due && SERVER.may_use_database() {
                last_round = Instant::now();
                if let Err(error) = self.round() {
                    log::warning(format!("periodic verify skipped: {error}"));
                }
            }
        }
    }

    fn round(&mut self) -> Result<(), String> {
        let redis = ThreadSafeContext::<DetachedFromClient>::new();
        let target = JOURNAL.lock(&hold_lock(&redis, Hold::Scan)).last_seq();
        if let Some(target) = target {
            WRITE_BEHIND.wait_until_committed(target)?;
        }
        for figures in list_campaigns(&redis) {
            let (db_members, db_checksum) = self
                .database
                .digest(&figures.campaign)
                .map_err(|error| error.to_string())?;
            LOADS.stats.verify_runs.fetch_add(1, Ordering::Relaxed);
            if db_members == figures.members as i64
                && db_checksum == as_sql_bigint(figures.checksum)
            {
                continue;
            }
            let ctx = hold_lock(&redis, Hold::Scan);
            select_db(&ctx, 0);
            // Changes since the listing explain a difference: not drift.
            let name = ctx.create_string(figures.campaign.as_bytes());
            let now = with_campaign(&ctx, &name, |set| {
                set.map(|set| (set.len(), set.checksum()))
            });
            let pending = JOURNAL.lock(&ctx).pending_for(&figures.campaign);
            if now != Some((figures.members, figures.checksum)) || pending > 0 {
                continue;
            }
            LOADS.stats.drift_found.fetch_add(1, Ordering::Relaxed);
            log::warning(format!(
                "'{}' drifted from the database (cache {} members, database {}): rebuilding",
                figures.campaign.escape_debug(),
                figures.members,
                db_members
            ));
            if !LOADS.is_loading(&ctx, &name) {
                LOADS.start_load(&ctx, &name, Waiter::Background);
            }
        }
        Ok(())
    }
}

/// Campaigns of db 0 with their member count and checksum, listed a few
/// scan rounds per GIL hold so the server keeps serving. A key whose name
/// the database cannot hold (renamed to one with a NUL byte) is skipped
/// and logged: it can be neither verified nor rebuilt.
fn list_campaigns(redis: &ThreadSafeContext<DetachedFromClient>) -> Vec<CacheFigures> {
    let found = RefCell::new(Vec::new());
    let skipped = RefCell::new(Vec::new());
    let cursor = KeysCursor::new();
    let collect = |_: &redis_module::Context,
                   name: &redis_module::RedisString,
                   key: Option<&redis_module::key::RedisKey>| {
        let Some(key) = key else { return };
        // Being imported by a slot migration: the source serves it still.
        if SLOT_MIGRATION.key_importing(name.as_slice()) {
            return;
        }
        let Ok(Some(set)) = key.get_value::<Campaign>(&CAMPAIGN_TYPE) else {
            return;
        };
        // Completed by their own load, not compared.
        if !set.is_complete() {
            return;
        }
        match validate_text(name.as_slice(), Some(MAX_CAMPAIGN_NAME_BYTES)) {
            Ok(campaign) => found.borrow_mut().push(CacheFigures {
                campaign: campaign.to_owned(),
                members: set.len(),
                checksum: set.checksum(),
            }),
            Err(_) => skipped.borrow_mut().push(
                String::from_utf8_lossy(name.as_slice())
                    .escape_debug()
                    .to_string(),
            ),
        }
    };
    let mut more = true;
    while more {
        let ctx = hold_lock(redis, Hold::Scan);
        select_db(&ctx, 0);
        for _ in 0..SCAN_ROUNDS_PER_LOCK {
            more = cursor.scan(&ctx, &collect);
            if !more {
                break;
            }
        }
    }
    let skipped = skipped.into_inner();
    if !skipped.is_empty() {
        log::warning(format!(
            "periodic verify skips {} campaign keys whose names the database cannot hold: {}",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    found.into_inner()
}

/// Starts the load that completes each incomplete campaign of db 0 (not
/// loading already), when there are any and the database answers.
fn complete_incomplete() {
    if INCOMPLETE_VALUES.load(Ordering::Relaxed) <= 0
        || !HEALTH.connected.load(Ordering::Relaxed)
        || !SERVER.may_use_database()
    {
        return;
    }
    let redis = ThreadSafeContext::<DetachedFromClient>::new();
    let found = RefCell::new(Vec::new());
    let cursor = KeysCursor::new();
    let collect = |_: &redis_module::Context,
                   name: &redis_module::RedisString,
                   key: Option<&redis_module::key::RedisKey>| {
        // (Not one a slot migration is importing: the source completes it.)
        let incomplete = !SLOT_MIGRATION.key_importing(name.as_slice())
            && key
                .and_then(|key| key.get_value::<Campaign>(&CAMPAIGN_TYPE).ok().flatten())
                .is_some_and(|set| !set.is_complete());
        if incomplete {
            found.borrow_mut().push(name.as_slice().to_vec());
        }
    };
    let mut more = true;
    while more {
        let ctx = hold_lock(&redis, Hold::Scan);
        select_db(&ctx, 0);
        for _ in 0..SCAN_ROUNDS_PER_LOCK {
            more = cursor.scan(&ctx, &collect);
            if !more {
                break;
            }
        }
    }
    let ctx = hold_lock(&redis, Hold::Scan);
    select_db(&ctx, 0);
    for name in found.into_inner() {
        let name = ctx.create_string(name);
        let still_incomplete =
            with_campaign(&ctx, &name, |set| set.is_some_and(|s| !s.is_complete()));
        if still_incomplete && !LOADS.is_loading(&ctx, &name) {
            LOADS.start_load(&ctx, &name, Waiter::Background);
        }
    }
}
