//! CAMPAIGN.FLUSH, CAMPAIGN.STATUS and the internal CAMPAIGN.JOURNAL.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, ContextFlags, RedisString, RedisValue};

use crate::core::{validate_text, Entry, Op};
use crate::error::CampaignError;
use crate::rebuild::LOADS;
use crate::redis_glue::background_free::BACKGROUND_FREES;
use crate::redis_glue::config;
use crate::redis_glue::panic_guard::CommandResult;
use crate::write_behind::{now_ms, WRITE_BEHIND};

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

/// One figure of STATUS and of the `campaign` INFO section.
pub enum Figure {
    Number(i64),
    Text(String),
}

/// The figures STATUS and INFO report, in that order.
pub fn status_figures() -> Vec<(&'static str, Figure)> {
    let stats = &WRITE_BEHIND.stats;
    let now = now_ms();
    let database = if config::DATABASE_URL.get().is_empty() {
        "unconfigured"
    } else if stats.connected.load(Ordering::Relaxed) {
        "connected"
    } else {
        "disconnected"
    };
    let role = if stats.is_primary.load(Ordering::Relaxed) {
        "primary"
    } else {
        "replica"
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
        ("pending", count(&stats.pending)),
        ("oldest-pending-age-ms", age(&stats.oldest_pending_ms, 0)),
        ("flushed", count(&stats.flushed)),
        ("flushed-per-second", count(&stats.flush_rate)),
        ("flush-errors", count(&stats.flush_errors)),
        ("last-error", Figure::Text(WRITE_BEHIND.last_error())),
        ("last-flush-ms-ago", age(&stats.last_flush_ms, -1)),
        (
            "rebuilding",
            Figure::Number(LOADS.active.load(Ordering::Relaxed) as i64),
        ),
        ("loads-done", count(&loads.loads_done)),
        ("loads-failed", count(&loads.loads_failed)),
        ("verify-runs", count(&loads.verify_runs)),
        ("drift-found", count(&loads.drift_found)),
        ("prefilled", count(&loads.prefilled)),
        ("role", Figure::Text(role.into())),
        ("journal-next-seq", count(&stats.next_seq)),
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

/// `CAMPAIGN.JOURNAL TRIM seq` and `CAMPAIGN.JOURNAL LOAD first-seq
/// [ADD|REM campaign member ...]`: how the journal's progress reaches
/// replicas and the AOF. Refused from ordinary clients.
pub fn journal(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() < 3 {
        return Err(CampaignError::WrongArity);
    }
    let flags = ctx.get_flags();
    let from_primary = flags.contains(ContextFlags::REPLICATED);
    let from_aof = flags.contains(ContextFlags::LOADING);
    if !from_primary && !from_aof {
        return Err(CampaignError::InternalCommand("CAMPAIGN.JOURNAL"));
    }
    let sequence = args[2]
        .parse_unsigned_integer()
        .map_err(|_| CampaignError::Syntax("the sequence number must be an integer".into()))?;
    match args[1].as_slice().to_ascii_uppercase().as_slice() {
        b"TRIM" if args.len() == 3 => {
            WRITE_BEHIND.commit_through(ctx, sequence, false);
        }
        b"LOAD" if from_aof && (args.len() - 3).is_multiple_of(3) => {
            let entries = args[3..]
                .chunks(3)
                .map(parse_entry)
                .collect::<Result<Vec<Entry>, CampaignError>>()?;
            WRITE_BEHIND
                .restore_entries(ctx, sequence, entries)
                .map_err(CampaignError::Syntax)?;
        }
        _ => {
            return Err(CampaignError::Syntax(
                "unknown CAMPAIGN.JOURNAL form".into(),
            ))
        }
    }
    // A replica's own AOF needs the trim too; while loading this is a no-op.
    ctx.replicate_verbatim();
    Ok(RedisValue::SimpleStringStatic("OK"))
}

fn parse_entry(words: &[RedisString]) -> Result<Entry, CampaignError> {
    let op = Op::from_word(words[0].as_slice())
        .ok_or_else(|| CampaignError::Syntax("journal operation must be ADD or REM".into()))?;
    let text = |position: usize| {
        validate_text(words[position].as_slice(), None)
            .map_err(|reason| CampaignError::InvalidMember { position, reason })
    };
    Ok(Entry {
        op,
        campaign: text(1)?.into(),
        member: text(2)?.into(),
    })
}
