//! The internal commands replicas and the AOF receive: `CAMPAIGN.SYNC`
//! (set content, never journaled) and `CAMPAIGN.JOURNAL` (journal trims and
//! entries). Refused from ordinary clients. Their wire forms are parsed in
//! `propagation`.

use redis_module::{Context, NotifyEvent, RedisString, RedisValue};

use super::CommandResult;
use crate::error::CampaignError;
use crate::keyspace::journal::JOURNAL;
use crate::keyspace::write::{self, apply_change, IfMissing, Propagation};
use crate::keyspace::{background_free, identity, shadow};
use crate::propagation::{self, JournalCommand, ParsedShadowStep, Sync};
use crate::redis_glue::server_state::{is_import_client, is_replayed, SLOT_MIGRATION};
use crate::write_behind::WRITE_BEHIND;

/// `CAMPAIGN.SYNC campaign ...` (forms in `propagation`): a client's change
/// with its versions, journaled; set content without journaling, sent by a
/// rebuild to replicas and the AOF, and written by an AOF rewrite without
/// the RDB preamble; a campaign's version; a rebuilt set's parts and swap.
pub fn sync(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if !is_replayed(ctx) {
        return Err(CampaignError::InternalCommand(propagation::SYNC_COMMAND));
    }
    let reply = match propagation::parse_sync(args)? {
        Sync::Members {
            key,
            op,
            members,
            first_version,
        } => {
            let campaign = String::from_utf8_lossy(key.as_slice());
            let propagation = first_version.map_or(Propagation::StateOnly, |first_version| {
                Propagation::Replicated { first_version }
            });
            apply_change(
                ctx,
                key,
                &campaign,
                op,
                &members,
                propagation,
                IfMissing::Create,
            )?
            .count()
        }
        Sync::Replace { key, campaign } => {
            let count = campaign.len();
            background_free::module_replaces(|| write::replace(ctx, key, campaign))?;
            count
        }
        Sync::Version { key, version } => usize::from(write::raise_version(ctx, key, version)?),
        Sync::Prune { key, version } => {
            identity::journal_replicated_prune(ctx, key, version)?;
            1
        }
        Sync::Incomplete { key } => usize::from(write::make_incomplete(ctx, key)?),
        Sync::Rebuilt { key, version } => {
            let exists = write::raise_version(ctx, key, version)?;
            if exists {
                ctx.notify_keyspace_event(NotifyEvent::MODULE, "campaign.rebuild", key);
            }
            usize::from(exists)
        }
        // A migration's snapshot carries the source's shadows of every
        // slot (it writes them with the first key it rewrites): only those
        // of the migrating keys are collected here.
        Sync::Shadow { key, .. }
            if is_import_client(ctx) && !SLOT_MIGRATION.key_importing(key.as_slice()) =>
        {
            return Ok(RedisValue::Integer(0));
        }
        Sync::Shadow { key, id, step } => match step {
            ParsedShadowStep::Part(members) => {
                shadow::shadows().receive(id, key.as_slice(), &members);
                members.len()
            }
            ParsedShadowStep::Swap => shadow::swap_in(ctx, key, id)?,
            ParsedShadowStep::Drop => usize::from(shadow::forget(id)),
        },
    };
    // A replica's own AOF needs it too; while loading this is a no-op.
    ctx.replicate_verbatim();
    Ok(RedisValue::Integer(reply as i64))
}

/// `CAMPAIGN.JOURNAL TRIM seq` and `CAMPAIGN.JOURNAL ENTRIES first-seq
/// [ADD|REM campaign member version ...]` (or `LOAD`, without versions):
/// how the journal's progress reaches replicas and the AOF.
pub fn journal(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if !is_replayed(ctx) {
        return Err(CampaignError::InternalCommand(propagation::JOURNAL_COMMAND));
    }
    // The journal stays with a slot migration's source, which flushes it
    // (its snapshot carries the whole journal, written with the first key
    // it rewrites): neither applied nor passed on here.
    if is_import_client(ctx) {
        return Ok(RedisValue::SimpleStringStatic("OK"));
    }
    match propagation::parse_journal(args)? {
        JournalCommand::Trim { through } => {
            WRITE_BEHIND.commit_through(ctx, through, false);
        }
        JournalCommand::Load { first, entries } => {
            JOURNAL
                .restore_entries(ctx, first, entries)
                .map_err(CampaignError::Syntax)?;
        }
    }
    // A replica's own AOF needs the trim too; while loading this is a no-op.
    ctx.replicate_verbatim();
    Ok(RedisValue::SimpleStringStatic("OK"))
}
