//! CAMPAIGN.REBUILD and CAMPAIGN.VERIFY: only the caller waits; the work
//! runs on the load workers (`crate::rebuild`).

use redis_module::{Context, ContextFlags, RedisString, RedisValue};

use super::{campaign_name, refuse_replica_write, CommandResult};
use crate::error::CampaignError;
use crate::keyspace::journal::JOURNAL;
use crate::keyspace::{check_served_db, read_campaign};
use crate::rebuild::registry::Waiter;
use crate::rebuild::{Job, VerifyJob, LOADS};
use crate::redis_glue::server_state::SERVER;

/// Checks shared by REBUILD and VERIFY before the caller blocks.
fn check_can_wait(
    ctx: &Context,
    args: &[RedisString],
    command: &'static str,
) -> Result<(), CampaignError> {
    if args.len() != 2 {
        return Err(CampaignError::WrongArity);
    }
    check_served_db(ctx)?;
    campaign_name(ctx, &args[1])?;
    read_campaign(&ctx.open_key(&args[1]))?;
    if !SERVER.database_configured() {
        return Err(CampaignError::DatabaseUnconfigured);
    }
    if ctx.get_flags().contains(ContextFlags::DENY_BLOCKING) {
        return Err(CampaignError::CannotBlock(command));
    }
    Ok(())
}

/// `CAMPAIGN.REBUILD campaign` → members loaded from the database.
pub fn rebuild(ctx: &Context, args: &[RedisString]) -> CommandResult {
    refuse_replica_write(ctx)?;
    check_can_wait(ctx, args, "CAMPAIGN.REBUILD")?;
    let client = ctx.block_client();
    LOADS.start_load(ctx, &args[1], Waiter::Rebuild(client));
    Ok(RedisValue::NoReply)
}

/// `CAMPAIGN.VERIFY campaign` → cache-members, db-members, cache-checksum,
/// db-checksum, pending, consistent. The cache side is read now; the
/// database side by a worker.
pub fn verify(ctx: &Context, args: &[RedisString]) -> CommandResult {
    check_can_wait(ctx, args, "CAMPAIGN.VERIFY")?;
    let campaign = campaign_name(ctx, &args[1])?.to_owned();
    let key = ctx.open_key(&args[1]);
    if read_campaign(&key)?.is_some_and(|set| !set.is_complete()) {
        return Err(CampaignError::Incomplete { campaign });
    }
    let (cache_members, cache_checksum) =
        read_campaign(&key)?.map_or((0, 0), |set| (set.len(), set.checksum()));
    let pending = JOURNAL.lock(ctx).pending_for(&campaign);
    LOADS.submit(Job::Verify(VerifyJob {
        campaign,
        cache_members,
        cache_checksum,
        pending,
        client: ctx.block_client(),
    }));
    Ok(RedisValue::NoReply)
}
