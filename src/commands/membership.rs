//! CAMPAIGN.ADD, REM, HAS, MHAS and CARD.

use redis_module::{Context, ContextFlags, NotifyEvent, RedisString, RedisValue};

use super::{campaign_name, parse_members, read_campaign, write_campaign};
use crate::core::{validate_text, MemberSet, Op};
use crate::error::CampaignError;
use crate::redis_glue::config;
use crate::redis_glue::data_type::CAMPAIGN_TYPE;
use crate::redis_glue::panic_guard::CommandResult;
use crate::write_behind::WRITE_BEHIND;

/// `CAMPAIGN.ADD campaign member [member ...]` → members that were new.
pub fn add(ctx: &Context, args: &[RedisString]) -> CommandResult {
    insert_members(ctx, args, Journaling::On)
}

/// `CAMPAIGN.LOADSET campaign member [member ...]`: how an AOF rewrite
/// without the RDB preamble writes a set's content. The content is state,
/// not change: its journal entries come separately (CAMPAIGN.JOURNAL LOAD),
/// so replaying it must not journal again. Only accepted from the AOF.
pub fn loadset(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if !ctx.get_flags().contains(ContextFlags::LOADING) {
        return Err(CampaignError::InternalCommand("CAMPAIGN.LOADSET"));
    }
    insert_members(ctx, args, Journaling::Off)
}

#[derive(PartialEq)]
enum Journaling {
    On,
    Off,
}

fn insert_members(ctx: &Context, args: &[RedisString], journaling: Journaling) -> CommandResult {
    if args.len() < 3 {
        return Err(CampaignError::WrongArity);
    }
    let name = &args[1];
    let campaign = campaign_name(ctx, name)?;
    let members = parse_members(ctx, args, 2)?;
    let key = ctx.open_key_writable(name);
    let existing = write_campaign(&key)?;
    WRITE_BEHIND.check_capacity(ctx)?;
    let added: Vec<&str> = match existing {
        Some(set) => members
            .into_iter()
            .filter(|member| set.insert(member))
            .collect(),
        None => {
            let mut set = MemberSet::new();
            let added = members
                .into_iter()
                .filter(|member| set.insert(member))
                .collect();
            key.set_value(&CAMPAIGN_TYPE, set)
                .map_err(|_| CampaignError::WrongType)?;
            added
        }
    };
    if !added.is_empty() && journaling == Journaling::On {
        WRITE_BEHIND.record(ctx, Op::Add, campaign, &added);
        ctx.replicate_verbatim();
        ctx.notify_keyspace_event(NotifyEvent::MODULE, "campaign.add", name);
    }
    Ok(RedisValue::Integer(added.len() as i64))
}

/// `CAMPAIGN.REM campaign member [member ...]` → members removed. Like SREM,
/// removing the last member deletes the key.
pub fn rem(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() < 3 {
        return Err(CampaignError::WrongArity);
    }
    let name = &args[1];
    let campaign = campaign_name(ctx, name)?;
    let members = parse_members(ctx, args, 2)?;
    let key = ctx.open_key_writable(name);
    let Some(set) = write_campaign(&key)? else {
        return Ok(RedisValue::Integer(0));
    };
    WRITE_BEHIND.check_capacity(ctx)?;
    let removed: Vec<&str> = members
        .into_iter()
        .filter(|member| set.remove(member))
        .collect();
    let emptied = set.is_empty();
    if !removed.is_empty() {
        WRITE_BEHIND.record(ctx, Op::Remove, campaign, &removed);
        ctx.replicate_verbatim();
        ctx.notify_keyspace_event(NotifyEvent::MODULE, "campaign.rem", name);
        if emptied {
            // Deleting through the key handle frees the set: don't touch it after.
            let _ = key.delete();
            ctx.notify_keyspace_event(NotifyEvent::GENERIC, "del", name);
        }
    }
    Ok(RedisValue::Integer(removed.len() as i64))
}

/// `CAMPAIGN.HAS campaign member` → 1 or 0. The login hot path: no
/// allocation beyond what Redis hands us.
pub fn has(ctx: &Context, args: &[RedisString]) -> CommandResult {
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
    let present = read_campaign(&key)?.is_some_and(|set| set.contains(member));
    Ok(RedisValue::Integer(present.into()))
}

/// `CAMPAIGN.MHAS campaign member [member ...]` → 1/0 per member, in order.
pub fn mhas(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() < 3 {
        return Err(CampaignError::WrongArity);
    }
    let members = parse_members(ctx, args, 2)?;
    let key = ctx.open_key(&args[1]);
    let set = read_campaign(&key)?;
    let answers = members
        .iter()
        .map(|member| RedisValue::Integer(set.is_some_and(|set| set.contains(member)).into()))
        .collect();
    Ok(RedisValue::Array(answers))
}

/// `CAMPAIGN.CARD campaign` → number of members (0 for a missing key).
pub fn card(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() != 2 {
        return Err(CampaignError::WrongArity);
    }
    let key = ctx.open_key(&args[1]);
    let count = read_campaign(&key)?.map_or(0, MemberSet::len);
    Ok(RedisValue::Integer(count as i64))
}
