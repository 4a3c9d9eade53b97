//! CAMPAIGN.ADD, REM, HAS, MHAS and CARD.

use redis_module::{Context, RedisString, RedisValue};

use std::sync::atomic::Ordering;

use super::{
    campaign_name_within, member_length_limit, parse_members, parse_members_within,
    refuse_replica_write, CommandResult, MAX_CAMPAIGN_NAME_BYTES,
};
use crate::core::campaign::Known;
use crate::core::{validate_text, Op};
use crate::error::CampaignError;
use crate::keyspace::write::{apply_change, Applied, IfMissing, Propagation};
use crate::keyspace::{answers, check_served_db, read_campaign, SERVED_DB};
use crate::rebuild::{MissingWrite, LOADS};
use crate::redis_glue::config;
use crate::redis_glue::ffi::selected_db;
use crate::redis_glue::server_state::{is_replayed, SERVER};

/// `CAMPAIGN.ADD campaign member [member ...]` → members that were new.
pub fn add(ctx: &Context, args: &[RedisString]) -> CommandResult {
    change_members(ctx, args, Op::Add)
}

/// `CAMPAIGN.REM campaign member [member ...]` → members removed. Like SREM,
/// removing the last member deletes the key.
pub fn rem(ctx: &Context, args: &[RedisString]) -> CommandResult {
    change_members(ctx, args, Op::Remove)
}

fn change_members(ctx: &Context, args: &[RedisString], op: Op) -> CommandResult {
    if args.len() < 3 {
        return Err(CampaignError::WrongArity);
    }
    refuse_replica_write(ctx)?;
    check_served_db(ctx)?;
    let name = &args[1];
    // The context flags are read once per call.
    let limit = member_length_limit(ctx);
    let campaign = campaign_name_within(name, limit)?;
    let members = parse_members_within(args, 2, limit)?;
    if LOADS.hold_write(ctx, name, campaign, op, &members)? {
        // A load of this campaign is running: the write waits its turn.
        return Ok(RedisValue::NoReply);
    }
    let apply = |if_missing| {
        apply_change(
            ctx,
            name,
            campaign,
            op,
            &members,
            Propagation::Client,
            if_missing,
        )
    };
    match apply(if_missing(ctx))? {
        Applied::Changed(count) => Ok(RedisValue::Integer(count as i64)),
        Applied::Missing => match LOADS.plan_missing_write(ctx, name) {
            MissingWrite::LoadFirst => {
                LOADS.load_before_write(ctx, name, campaign, op, &members);
                Ok(RedisValue::NoReply)
            }
            // The database cannot be waited for: accepted at once, the
            // campaign incomplete until the database completes it.
            MissingWrite::Incomplete => {
                let count = apply(IfMissing::Incomplete)?.count();
                LOADS.start_completion(ctx, name);
                Ok(RedisValue::Integer(count as i64))
            }
            // The database is known not to hold it: created as it is.
            MissingWrite::Create => {
                Ok(RedisValue::Integer(apply(IfMissing::Create)?.count() as i64))
            }
        },
    }
}

/// A one-member ADD or REM (a queue consumer adding one user per message),
/// from arguments read in place (`module::fast_write`); `None` leaves the
/// call to the ordinary handler: a load is running (the write may have to
/// wait), or the name or member breaks a rule (the ordinary handler knows
/// whether the limits apply and words the error).
pub fn change_one(
    ctx: &Context,
    name: &RedisString,
    member: &RedisString,
    op: Op,
) -> Option<CommandResult> {
    if LOADS.active.load(Ordering::Relaxed) > 0 {
        return None;
    }
    // A replica's own client, another database: the ordinary handler
    // words the refusal.
    if !SERVER.is_primary() && refuse_replica_write(ctx).is_err() {
        return None;
    }
    if selected_db(ctx) != SERVED_DB {
        return None;
    }
    let campaign = validate_text(name.as_slice(), Some(MAX_CAMPAIGN_NAME_BYTES)).ok()?;
    let member = validate_text(member.as_slice(), Some(config::max_member_bytes())).ok()?;
    // A missing campaign is loaded first: the ordinary handler does that.
    let if_missing = if_missing(ctx);
    let applied = apply_change(
        ctx,
        name,
        campaign,
        op,
        &[member],
        Propagation::Client,
        if_missing,
    );
    match applied {
        Ok(Applied::Missing) => None,
        Ok(Applied::Changed(count)) => Some(Ok(RedisValue::Integer(count as i64))),
        Err(error) => Some(Err(error)),
    }
}

/// With a database to load from, a client's write to a missing campaign
/// loads it first; otherwise (no database, a replica, AOF replay) the
/// write creates it.
fn if_missing(ctx: &Context) -> IfMissing {
    if SERVER.may_use_database() && !is_replayed(ctx) {
        IfMissing::Report
    } else {
        IfMissing::Create
    }
}

/// `CAMPAIGN.HAS campaign member` → 1 or 0. The login hot path answers a
/// loaded campaign without this handler (`module::commands`); this one
/// serves the rest: errors and read-through.
pub fn has(ctx: &Context, args: &[RedisString]) -> CommandResult {
    check_served_db(ctx)?;
    if args.len() != 3 {
        return Err(CampaignError::WrongArity);
    }
    let member =
        validate_text(args[2].as_slice(), Some(config::max_member_bytes())).map_err(|reason| {
            CampaignError::InvalidMember {
                position: 2,
                reason,
            }
        })?;
    let key = ctx.open_key(&args[1]);
    match read_campaign(&key)?.map(|set| set.knows(member)) {
        Some(Known::Present) => Ok(RedisValue::Integer(1)),
        Some(Known::Absent) => Ok(RedisValue::Integer(0)),
        // Missing, or incomplete and not written since: as a missing one.
        Some(Known::Unknown) | None => read_through(ctx, &args[1], vec![member.to_owned()], false),
    }
}

/// `CAMPAIGN.MHAS campaign member [member ...]` → 1/0 per member, in order.
pub fn mhas(ctx: &Context, args: &[RedisString]) -> CommandResult {
    check_served_db(ctx)?;
    if args.len() < 3 {
        return Err(CampaignError::WrongArity);
    }
    let members = parse_members(ctx, args, 2)?;
    let key = ctx.open_key(&args[1]);
    match read_campaign(&key)? {
        Some(set) if members.iter().all(|m| set.knows(m) != Known::Unknown) => {
            Ok(answers(Some(set), &members, true))
        }
        _ => {
            let owned = members.iter().map(|m| m.to_string()).collect();
            read_through(ctx, &args[1], owned, true)
        }
    }
}

/// A missing campaign: load it from the database (the client waits) when
/// read-through applies, else answer from the empty cache.
fn read_through(
    ctx: &Context,
    name: &RedisString,
    members: Vec<String>,
    multi: bool,
) -> CommandResult {
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let missing = answers(None, &refs, multi);
    if LOADS.read_through(ctx, name, members, multi) {
        Ok(RedisValue::NoReply)
    } else {
        Ok(missing)
    }
}

/// `CAMPAIGN.CARD campaign` → number of members (0 for a missing key).
pub fn card(ctx: &Context, args: &[RedisString]) -> CommandResult {
    check_served_db(ctx)?;
    if args.len() != 2 {
        return Err(CampaignError::WrongArity);
    }
    let key = ctx.open_key(&args[1]);
    let count = match read_campaign(&key)? {
        Some(set) if !set.is_complete() => {
            return Err(CampaignError::Incomplete {
                campaign: args[1].to_string_lossy(),
            })
        }
        Some(set) => set.len(),
        None => 0,
    };
    Ok(RedisValue::Integer(count as i64))
}
