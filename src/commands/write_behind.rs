//! CAMPAIGN.FLUSH and CAMPAIGN.STATUS (whose figures `INFO campaign` shows too).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, ContextFlags, RedisString, RedisValue};

use super::CommandResult;
use crate::core::campaign::INCOMPLETE_VALUES;
use crate::core::clock::now_ms;
use crate::error::CampaignError;
use crate::keyspace::background_free::BACKGROUND_FREES;
use crate::keyspace::journal::JOURNAL;
use crate::keyspace::shadow;
use crate::rebuild::LOADS;
use crate::redis_glue::lock_hold::LOCK_HOLDS;
use crate::redis_glue::server_state::SERVER;
use crate::sink::health::HEALTH;
use crate::sink::pool::POOL;
use crate::write_behind::WRITE_BEHIND;

/// `CAMPAIGN.FLUSH [timeout-ms]` → entries waited for, once all that were
/// journaled when it was called are committed. 0 or no timeout waits on.
pub fn flush(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() > 2 {
        return Err(CampaignError::WrongArity);
    }
    let timeout_ms = match args.get(1) {
        None => None,
        Some(arg) => match arg.parse_integer() {
            Ok(0) => None,
            Ok(ms) if ms > 0 => Some(ms as u64),
            _ => {
                return Err(CampaignError::Syntax(
                    "timeout-ms must be a non-negative integer".into(),
                ))
            }
        },
    };
    match WRITE_BEHIND.wait_for_flush(ctx, timeout_ms)? {
        Some(nothing_pending) => Ok(RedisValue::Integer(nothing_pending as i64)),
        // The flusher or the cron replies to the blocked client.
        None => Ok(RedisValue::NoReply),
    }
}

/// `CAMPAIGN.REJECTED RETRY [campaign]` → how many parked changes were
/// journaled again (see `write_behind::retry`).
pub fn rejected(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if !(2..=3).contains(&args.len()) {
        return Err(CampaignError::WrongArity);
    }
    if !args[1].as_slice().eq_ignore_ascii_case(b"RETRY") {
        return Err(CampaignError::Syntax(
            "unknown subcommand: CAMPAIGN.REJECTED RETRY [campaign]".into(),
        ));
    }
    let campaign = match args.get(2) {
        Some(name) => Some(super::campaign_name(ctx, name)?.to_owned()),
        None => None,
    };
    if !SERVER.database_configured() {
        return Err(CampaignError::DatabaseUnconfigured);
    }
    if !SERVER.is_primary() {
        return Err(CampaignError::Syntax(
            "CAMPAIGN.REJECTED RETRY runs on the primary".into(),
        ));
    }
    if ctx.get_flags().contains(ContextFlags::DENY_BLOCKING) {
        return Err(CampaignError::CannotBlock("CAMPAIGN.REJECTED RETRY"));
    }
    crate::write_behind::retry::start(campaign, ctx.block_client());
    Ok(RedisValue::NoReply)
}

/// One figure of STATUS and of the `campaign` INFO section.
pub enum Figure {
    Number(i64),
    Text(String),
}

/// The figures STATUS and INFO report, in that order.
pub fn status_figures() -> Vec<(&'static str, Figure)> {
    let stats = &WRITE_BEHIND.stats;
    let journal = &JOURNAL.figures;
    let now = now_ms();
    let database = if !SERVER.database_configured() {
        "unconfigured"
    } else if HEALTH.connected.load(Ordering::Relaxed) {
        "connected"
    } else {
        "disconnected"
    };
    let count = |counter: &AtomicU64| Figure::Number(counter.load(Ordering::Relaxed) as i64);
    // Age of a unix-ms timestamp; `none` when it was never set.
    let age = |counter: &AtomicU64, none: i64| match counter.load(Ordering::Relaxed) {
        0 => Figure::Number(none),
        ms => Figure::Number(now.saturating_sub(ms) as i64),
    };
    let loads = &LOADS.stats;
    vec![
        ("database", Figure::Text(database.into())),
        ("pending", count(&journal.pending)),
        ("pending-bytes", count(&journal.pending_bytes)),
        ("busy-refusals", count(&journal.busy_refusals)),
        ("oldest-pending-age-ms", age(&journal.oldest_pending_ms, 0)),
        ("flushed", count(&stats.flushed)),
        ("flushed-per-second", count(&stats.flush_rate)),
        ("flush-errors", count(&stats.flush_errors)),
        ("rejected", count(&stats.rejected)),
        ("last-error", Figure::Text(WRITE_BEHIND.last_error())),
        (
            "last-error-ms-ago",
            Figure::Number(HEALTH.last_error_ms_ago()),
        ),
        ("last-database-ok-ms-ago", age(&HEALTH.last_ok_ms, -1)),
        (
            "connections",
            Figure::Number(POOL.open.load(Ordering::Relaxed) as i64),
        ),
        (
            "connections-opened",
            Figure::Number(POOL.opened.load(Ordering::Relaxed) as i64),
        ),
        ("last-flush-ms-ago", age(&stats.last_flush_ms, -1)),
        (
            "rebuilding",
            Figure::Number(LOADS.active.load(Ordering::Relaxed) as i64),
        ),
        ("shadows", Figure::Number(shadow::count())),
        (
            "incomplete",
            Figure::Number(INCOMPLETE_VALUES.load(Ordering::Relaxed)),
        ),
        ("loads-queued", Figure::Number(LOADS.queue.waiting() as i64)),
        ("loads-done", count(&loads.loads_done)),
        ("loads-failed", count(&loads.loads_failed)),
        ("late-answers", count(&loads.late_answers)),
        ("verify-runs", count(&loads.verify_runs)),
        ("drift-found", count(&loads.drift_found)),
        ("prefilled", count(&loads.prefilled)),
        ("role", Figure::Text(SERVER.role_name().into())),
        ("journal-next-seq", count(&journal.next_seq)),
        ("longest-lock-hold-us", count(&LOCK_HOLDS.longest_us)),
        (
            "longest-batch-take-us",
            count(&LOCK_HOLDS.longest_batch_take_us),
        ),
        ("longest-swap-us", count(&LOCK_HOLDS.longest_swap_us)),
        (
            "longest-shadow-part-us",
            count(&LOCK_HOLDS.longest_shadow_part_us),
        ),
        ("background-frees", count(&BACKGROUND_FREES)),
    ]
}

/// `CAMPAIGN.STATUS` → field/value pairs (a map under RESP3).
pub fn status(_ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() != 1 {
        return Err(CampaignError::WrongArity);
    }
    let fields: BTreeMap<RedisValueKey, RedisValue> = status_figures()
        .into_iter()
        .map(|(name, figure)| {
            let value = match figure {
                Figure::Number(number) => RedisValue::Integer(number),
                Figure::Text(text) => RedisValue::BulkString(text),
            };
            (RedisValueKey::String(name.into()), value)
        })
        .collect();
    Ok(RedisValue::OrderedMap(fields))
}
