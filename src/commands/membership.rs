//! CAMPAIGN.ADD, REM, HAS, MHAS, CARD, and the internal CAMPAIGN.SYNC.

use redis_module::key::RedisKeyWritable;
use redis_module::{Context, NotifyEvent, RedisString, RedisValue};

use super::{campaign_name, parse_members, read_campaign, write_campaign};
use crate::core::{validate_text, BlobReader, Campaign, Op};
use crate::error::CampaignError;
use crate::rebuild::LOADS;
use crate::redis_glue::config;
use crate::redis_glue::data_type::CAMPAIGN_TYPE;
use crate::redis_glue::panic_guard::CommandResult;
use crate::write_behind::WRITE_BEHIND;

/// How a write reaches replicas and the AOF.
#[derive(Clone, Copy, PartialEq)]
enum Propagation {
    /// The client's command, as it came (the normal path).
    Verbatim,
    /// Re-issued explicitly: a write held during a rebuild and applied
    /// from the rebuild's completion, outside the client's command.
    Explicit,
    /// Not propagated, not journaled: CAMPAIGN.SYNC carries state that is
    /// already in the journal (or in the database).
    StateOnly,
}

/// `CAMPAIGN.ADD campaign member [member ...]` → members that were new.
pub fn add(ctx: &Context, args: &[RedisString]) -> CommandResult {
    change_members(ctx, args, Op::Add, Propagation::Verbatim)
}

/// `CAMPAIGN.REM campaign member [member ...]` → members removed. Like SREM,
/// removing the last member deletes the key.
pub fn rem(ctx: &Context, args: &[RedisString]) -> CommandResult {
    change_members(ctx, args, Op::Remove, Propagation::Verbatim)
}

/// Applies an ADD or REM that waited for a rebuild of its campaign.
pub fn apply_held_write(ctx: &Context, args: &[RedisString]) -> CommandResult {
    let op = if args[0].as_slice().eq_ignore_ascii_case(b"CAMPAIGN.REM") {
        Op::Remove
    } else {
        Op::Add
    };
    change_members(ctx, args, op, Propagation::Explicit)
}

/// `CAMPAIGN.SYNC campaign ADD|REM member ...` and `CAMPAIGN.SYNC campaign
/// REPLACE version blob`: set content without journaling, sent by a
/// rebuild to replicas and the AOF, and written by an AOF rewrite without
/// the RDB preamble. Only accepted from the primary or the AOF.
pub fn sync(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if !crate::write_behind::is_replayed(ctx) {
        return Err(CampaignError::InternalCommand("CAMPAIGN.SYNC"));
    }
    if args.len() < 4 {
        return Err(CampaignError::WrongArity);
    }
    let form = args[2].as_slice().to_ascii_uppercase();
    let mut members: Vec<RedisString> = Vec::with_capacity(args.len() - 1);
    members.push(args[0].clone());
    members.push(args[1].clone());
    members.extend(args[3..].iter().cloned());
    let reply = match form.as_slice() {
        b"ADD" => change_members(ctx, &members, Op::Add, Propagation::StateOnly)?,
        b"REM" => change_members(ctx, &members, Op::Remove, Propagation::StateOnly)?,
        b"REPLACE" if args.len() == 5 => {
            let version = args[3]
                .parse_integer()
                .map_err(|_| CampaignError::Syntax("bad encoding version".into()))?;
            let campaign =
                Campaign::decode(&mut BlobReader::new(args[4].as_slice()), version as i32)
                    .map_err(|error| {
                        CampaignError::Syntax(format!("bad campaign payload: {error}"))
                    })?;
            let count = campaign.len();
            let key = ctx.open_key_writable(&args[1]);
            write_campaign(&key)?;
            key.set_value(&CAMPAIGN_TYPE, campaign)
                .map_err(|_| CampaignError::WrongType)?;
            RedisValue::Integer(count as i64)
        }
        _ => return Err(CampaignError::Syntax("unknown CAMPAIGN.SYNC form".into())),
    };
    // A replica's own AOF needs it too; while loading this is a no-op.
    ctx.replicate_verbatim();
    Ok(reply)
}

fn change_members(
    ctx: &Context,
    args: &[RedisString],
    op: Op,
    propagation: Propagation,
) -> CommandResult {
    if args.len() < 3 {
        return Err(CampaignError::WrongArity);
    }
    let name = &args[1];
    let campaign = campaign_name(ctx, name)?;
    let members = parse_members(ctx, args, 2)?;
    if propagation == Propagation::Verbatim && LOADS.hold_write(ctx, name, args)? {
        // A rebuild of this campaign is running: the write waits its turn.
        return Ok(RedisValue::NoReply);
    }
    let key = ctx.open_key_writable(name);
    let existing = write_campaign(&key)?;
    if propagation != Propagation::StateOnly {
        WRITE_BEHIND.check_capacity(ctx)?;
    }
    let changed: Vec<&str> = match (op, existing) {
        (Op::Add, Some(set)) => members.into_iter().filter(|m| set.insert(m)).collect(),
        (Op::Add, None) => {
            let mut set = Campaign::new();
            let added = members.into_iter().filter(|m| set.insert(m)).collect();
            key.set_value(&CAMPAIGN_TYPE, set)
                .map_err(|_| CampaignError::WrongType)?;
            LOADS.forget_missing(ctx, name);
            added
        }
        (Op::Remove, Some(set)) => members.into_iter().filter(|m| set.remove(m)).collect(),
        (Op::Remove, None) => Vec::new(),
    };
    if changed.is_empty() {
        return Ok(RedisValue::Integer(0));
    }
    if propagation != Propagation::StateOnly {
        WRITE_BEHIND.record(ctx, op, campaign, &changed);
        match propagation {
            Propagation::Verbatim => ctx.replicate_verbatim(),
            _ => {
                let words: Vec<&RedisString> = args[1..].iter().collect();
                ctx.replicate(&args[0].to_string_lossy(), &words[..]);
            }
        }
    }
    let event = if op == Op::Add {
        "campaign.add"
    } else {
        "campaign.rem"
    };
    ctx.notify_keyspace_event(NotifyEvent::MODULE, event, name);
    if op == Op::Remove {
        delete_if_empty(ctx, &key, name);
    }
    Ok(RedisValue::Integer(changed.len() as i64))
}

/// Like SREM, the last removal deletes the key.
fn delete_if_empty(ctx: &Context, key: &RedisKeyWritable, name: &RedisString) {
    let emptied = write_campaign(key)
        .ok()
        .flatten()
        .is_some_and(|set| set.is_empty());
    if emptied {
        let _ = key.delete();
        ctx.notify_keyspace_event(NotifyEvent::GENERIC, "del", name);
    }
}

/// `CAMPAIGN.HAS campaign member` → 1 or 0. The login hot path: no
/// allocation beyond what Redis hands us when the campaign is loaded.
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
    match read_campaign(&key)? {
        Some(set) => Ok(RedisValue::Integer(set.contains(member).into())),
        None => read_through(ctx, &args[1], vec![member.to_owned()], false),
    }
}

/// `CAMPAIGN.MHAS campaign member [member ...]` → 1/0 per member, in order.
pub fn mhas(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() < 3 {
        return Err(CampaignError::WrongArity);
    }
    let members = parse_members(ctx, args, 2)?;
    let key = ctx.open_key(&args[1]);
    match read_campaign(&key)? {
        Some(set) => Ok(answers(Some(set), &members, true)),
        None => {
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

/// The reply of HAS (one integer) or MHAS (an array) against `set`.
pub fn answers(set: Option<&Campaign>, members: &[&str], multi: bool) -> RedisValue {
    let answer =
        |member: &&str| RedisValue::Integer(set.is_some_and(|s| s.contains(member)).into());
    if multi {
        RedisValue::Array(members.iter().map(answer).collect())
    } else {
        members.first().map_or(RedisValue::Integer(0), answer)
    }
}

/// `CAMPAIGN.CARD campaign` → number of members (0 for a missing key).
pub fn card(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() != 2 {
        return Err(CampaignError::WrongArity);
    }
    let key = ctx.open_key(&args[1]);
    let count = read_campaign(&key)?.map_or(0, Campaign::len);
    Ok(RedisValue::Integer(count as i64))
}
