//! The command layer: each handler parses its arguments, checks holds,
//! calls the services below and builds the reply. Nothing here decides an
//! error code (see `error.rs`).

pub mod debug;
pub mod internal;
pub mod membership;
pub mod rebuild;
pub mod write_behind;

use redis_module::{Context, ContextFlags, RedisString};

use crate::core::{validate_text, MAX_CAMPAIGN_NAME_BYTES};
use crate::error::CampaignError;
use crate::redis_glue::config;
use crate::redis_glue::server_state::is_replayed;

pub use crate::redis_glue::panic_guard::CommandResult;

/// The member length limit for this call. Commands from the primary or the
/// AOF were accepted once already, so a replica or a restart with a smaller
/// limit must not refuse them.
fn member_length_limit(ctx: &Context) -> Option<usize> {
    if is_replayed(ctx) {
        None
    } else {
        Some(config::max_member_bytes())
    }
}

/// A client's write to a campaign on a replica is refused, also with
/// `replica-read-only no`: a replica's journal is its primary's, and a
/// change made there alone would never reach the database. What the
/// primary sends and what an AOF replays are applied.
fn refuse_replica_write(ctx: &Context) -> Result<(), CampaignError> {
    let flags = ctx.get_flags();
    let replayed = flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING);
    if flags.contains(ContextFlags::SLAVE) && !replayed {
        return Err(CampaignError::ReplicaWrite);
    }
    Ok(())
}

/// Validates every member (`args[first..]`) before anything is touched, so a
/// call with one bad member changes nothing.
fn parse_members<'a>(
    ctx: &Context,
    args: &'a [RedisString],
    first: usize,
) -> Result<Vec<&'a str>, CampaignError> {
    parse_members_within(args, first, member_length_limit(ctx))
}

/// `parse_members` with the member length limit already known.
fn parse_members_within(
    args: &[RedisString],
    first: usize,
    limit: Option<usize>,
) -> Result<Vec<&str>, CampaignError> {
    args.iter()
        .enumerate()
        .skip(first)
        .map(|(position, arg)| {
            validate_text(arg.as_slice(), limit)
                .map_err(|reason| CampaignError::InvalidMember { position, reason })
        })
        .collect()
}

/// The campaign name of a write, as text: it is journaled and ends up in
/// the database's primary key, so it follows the member rules.
fn campaign_name<'a>(ctx: &Context, name: &'a RedisString) -> Result<&'a str, CampaignError> {
    campaign_name_within(name, member_length_limit(ctx))
}

/// `campaign_name` with the member length limit already known (`None`:
/// no limit applies to this call).
fn campaign_name_within(
    name: &RedisString,
    member_limit: Option<usize>,
) -> Result<&str, CampaignError> {
    let limit = member_limit.map(|_| MAX_CAMPAIGN_NAME_BYTES);
    validate_text(name.as_slice(), limit).map_err(CampaignError::InvalidCampaignName)
}
