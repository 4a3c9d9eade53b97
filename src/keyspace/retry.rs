//! `CAMPAIGN.REJECTED RETRY`: changes the database once refused, journaled
//! anew with fresh versions (so they win over the rows and markers that
//! were written around them), applied to the campaign's set when Redis
//! holds it, and sent to replicas and the AOF like any journal entry.

use std::collections::HashSet;

use redis_module::Context;

use super::journal::JOURNAL;
use super::write::{apply_change, IfMissing, Propagation};
use super::{read_campaign, CLOCK};
use crate::core::Op;
use crate::error::CampaignError;
use crate::propagation;
use crate::redis_glue::ffi::{cached_now_ms, select_db};

/// A parked change to journal again.
pub struct Retried {
    pub campaign: String,
    pub member: String,
    pub op: Op,
}

/// Journals `changes` anew, each with a fresh version, except those of a
/// member that has a change pending in the journal (newer than any parked
/// one: it was made after the database had committed everything older).
/// Returns how many were journaled. Runs on the primary under the GIL.
pub fn journal_again(ctx: &Context, changes: &[Retried]) -> Result<usize, CampaignError> {
    select_db(ctx, 0);
    let wanted: HashSet<&str> = changes.iter().map(|c| c.campaign.as_str()).collect();
    let pending: HashSet<(String, String)> = JOURNAL
        .lock(ctx)
        .iter()
        .filter(|(_, entry)| wanted.contains(entry.campaign))
        .map(|(_, entry)| (entry.campaign.to_owned(), entry.member_text().into_owned()))
        .collect();
    let first_seq = JOURNAL.lock(ctx).next_seq();
    let mut journaled = 0;
    for change in changes {
        // A prune journaled anew would remove every row of its campaign
        // older than now, the campaign's own current members among them
        // when Redis does not hold it: a parked prune is never re-sent.
        if change.op == Op::Prune {
            continue;
        }
        if pending.contains(&(change.campaign.clone(), change.member.clone())) {
            continue;
        }
        JOURNAL.check_capacity(ctx)?;
        let name = ctx.create_string(change.campaign.as_bytes());
        let floor = {
            let key = ctx.open_key(&name);
            read_campaign(&key)?.map_or_else(|| CLOCK.newest(), |set| set.version())
        };
        let version = CLOCK.issue(1, floor, cached_now_ms());
        JOURNAL.record(ctx, change.op, &change.campaign, &[&change.member], version);
        journaled += 1;
        // The set Redis holds follows; a campaign it does not hold is
        // loaded whole (with this change) on its next use.
        let members = [change.member.as_str()];
        let applied = apply_change(
            ctx,
            &name,
            &change.campaign,
            change.op,
            &members,
            Propagation::StateOnly,
            IfMissing::Report,
        )?;
        if applied.count() > 0 {
            for command in propagation::sync_members(name.as_slice(), change.op, &members) {
                command.replicate(ctx);
            }
        }
        if let Some(set) = super::write_campaign(&ctx.open_key_writable(&name))? {
            set.advance_version(version);
        }
    }
    // The new entries, as the journal holds them, to replicas and the AOF.
    let journal = JOURNAL.lock(ctx);
    let entries = journal
        .iter()
        .skip_while(|(seq, _)| *seq < first_seq)
        .map(|(_, entry)| entry);
    propagation::journal_load(first_seq, entries).replicate(ctx);
    Ok(journaled)
}
