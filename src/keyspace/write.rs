//! The one write path: every change to a campaign's members — a client's
//! ADD/REM, a write held during a rebuild, replicated set content — goes
//! through `apply_change` with parsed input, so journaling, propagation,
//! keyspace events and "the last removal deletes the key" live here once.

use std::borrow::Cow;

use redis_module::key::RedisKeyWritable;
use redis_module::{Context, NotifyEvent, RedisString};

use super::journal::JOURNAL;
use super::negative::forget_missing;
use super::{write_campaign, KeyId, CAMPAIGN_TYPE, CLOCK};
use crate::core::{Campaign, Op};
use crate::error::CampaignError;
use crate::propagation;
use crate::redis_glue::ffi::{cached_now_ms, notify_keyspace_event};
use crate::redis_glue::server_state::{is_imported, is_replayed};

/// How a change reaches replicas, the AOF and the journal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Propagation {
    /// A client's write, in its own command: the members that changed get
    /// new versions and are journaled. When the versions follow from the
    /// campaign's own (its newest plus one, on: a burst within one
    /// millisecond) the command goes to replicas and the AOF as it came,
    /// and they derive the same versions; otherwise as `CAMPAIGN.SYNC key
    /// CHANGE` with the versions. Executed from the primary's stream or an
    /// AOF, such a command takes the versions that follow the campaign's.
    Client,
    /// A write held during a rebuild, applied by the module after it
    /// (outside the client's command): journaled, and always sent as
    /// `CAMPAIGN.SYNC key CHANGE` with its versions.
    Held,
    /// A primary's (or the AOF's) `CAMPAIGN.SYNC key CHANGE`: every listed
    /// member is journaled with the versions the primary gave, numbered
    /// from `first_version`, whatever this copy of the set says.
    Replicated { first_version: u64 },
    /// Set content that is already in the journal or the database
    /// (`CAMPAIGN.SYNC key ADD|REM`): neither journaled nor re-propagated.
    StateOnly,
}

/// What a write does when the campaign key does not exist.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IfMissing {
    /// Create the campaign (no database to load it from, or it was loaded).
    Create,
    /// Change nothing and say so: the caller loads the campaign first, so
    /// that Redis never holds part of a campaign the database holds whole.
    Report,
    /// Create an **incomplete** campaign (the database cannot be waited
    /// for): it knows the members written since, and the module completes
    /// it from the database later.
    Incomplete,
}

/// What `apply_change` did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Applied {
    /// This many members changed.
    Changed(usize),
    /// The key was missing and `IfMissing::Report` was asked: nothing done.
    Missing,
}

/// Adds or removes `members` (validated by the caller) of the campaign at
/// key `name`.
pub fn apply_change(
    ctx: &Context,
    name: &RedisString,
    campaign: &str,
    op: Op,
    members: &[&str],
    propagation: Propagation,
    if_missing: IfMissing,
) -> Result<Applied, CampaignError> {
    if op == Op::Prune {
        // Not a change of members: journaled by `identity` only.
        return Ok(Applied::Changed(0));
    }
    let key = ctx.open_key_writable(name);
    let existing = write_campaign(&key)?;
    if existing.is_none() && if_missing == IfMissing::Report {
        return Ok(Applied::Missing);
    }
    // The campaign's newest version before this write; a campaign created
    // by it starts above everything this node has seen.
    let before = existing.as_deref().map(Campaign::version);
    if propagation != Propagation::StateOnly {
        JOURNAL.check_capacity(ctx)?;
    }
    let incomplete = match &existing {
        Some(set) => !set.is_complete(),
        None => if_missing == IfMissing::Incomplete,
    };
    if incomplete {
        let created = existing.is_none();
        return apply_incomplete(ctx, &key, name, campaign, op, members, propagation, created);
    }
    // One member (a queue consumer's ADD) needs no list of its own.
    let changed: Cow<[&str]> = match (op, existing) {
        (Op::Add, Some(set)) if members.len() == 1 => {
            Cow::Borrowed(if set.insert(members[0]) { members } else { &[] })
        }
        (Op::Remove, Some(set)) if members.len() == 1 => {
            Cow::Borrowed(if set.remove(members[0]) { members } else { &[] })
        }
        (Op::Add, Some(set)) => members.iter().copied().filter(|m| set.insert(m)).collect(),
        (Op::Add, None) => {
            let mut set = Campaign::new();
            let added = members.iter().copied().filter(|m| set.insert(m)).collect();
            key.set_value(&CAMPAIGN_TYPE, set)
                .map_err(|_| CampaignError::WrongType)?;
            forget_missing(&KeyId::of(ctx, name));
            added
        }
        (Op::Remove, Some(set)) => members.iter().copied().filter(|m| set.remove(m)).collect(),
        (Op::Remove | Op::Prune, None) | (Op::Prune, Some(_)) => Cow::Borrowed(&[]),
    };
    match propagation {
        Propagation::Client | Propagation::Held if !changed.is_empty() => {
            let count = changed.len() as u64;
            let floor = before.unwrap_or_else(|| CLOCK.newest());
            let replayed = propagation == Propagation::Client && is_replayed(ctx);
            let first = if replayed {
                CLOCK.follow(count, floor)
            } else {
                CLOCK.issue(count, floor, cached_now_ms())
            };
            advance_version(&key, first + count - 1)?;
            // A slot migration's source journaled this change and flushes
            // it: here it only moves the set and its version.
            if !(replayed && is_imported(ctx, name.as_slice())) {
                JOURNAL.record(ctx, op, campaign, &changed, first);
            }
            let derivable = before.is_some() && first == floor + 1;
            if replayed || (propagation == Propagation::Client && derivable) {
                // (From the primary's stream: for this node's own AOF and
                // replicas; while an AOF loads this does nothing.)
                ctx.replicate_verbatim();
            } else if let [member] = changed[..] {
                propagation::replicate_one_change(ctx, name, op, first, member);
            } else {
                propagation::sync_change(name.as_slice(), op, first, &changed).replicate(ctx);
            }
        }
        Propagation::Replicated { first_version } if !members.is_empty() => {
            let last = first_version + members.len() as u64 - 1;
            CLOCK.observe(last);
            advance_version(&key, last)?;
            if !is_imported(ctx, name.as_slice()) {
                JOURNAL.record(ctx, op, campaign, members, first_version);
            }
        }
        Propagation::Client
        | Propagation::Held
        | Propagation::Replicated { .. }
        | Propagation::StateOnly => {}
    }
    if changed.is_empty() {
        return Ok(Applied::Changed(0));
    }
    // Set content (a rebuild's diff) shows as the primary showed it: one
    // `campaign.rebuild` at its end (`CAMPAIGN.SYNC key REBUILT`).
    if propagation != Propagation::StateOnly {
        let event = match op {
            Op::Add => c"campaign.add",
            Op::Remove | Op::Prune => c"campaign.rem",
        };
        notify_keyspace_event(ctx, NotifyEvent::MODULE, event, name);
    }
    if op == Op::Remove {
        delete_if_empty(ctx, &key, name);
    }
    Ok(Applied::Changed(changed.len()))
}

/// A write to an incomplete campaign (created here when `created`): every
/// member is journaled, whatever the set knew (its effect in the database
/// is unknown), and always sent with its versions. The reply counts the
/// members whose known state changed (ADD: not known present before; REM:
/// not known absent before).
#[allow(clippy::too_many_arguments)]
fn apply_incomplete(
    ctx: &Context,
    key: &RedisKeyWritable,
    name: &RedisString,
    campaign: &str,
    op: Op,
    members: &[&str],
    propagation: Propagation,
    created: bool,
) -> Result<Applied, CampaignError> {
    if created {
        key.set_value(&CAMPAIGN_TYPE, Campaign::incomplete())
            .map_err(|_| CampaignError::WrongType)?;
        forget_missing(&KeyId::of(ctx, name));
        if matches!(propagation, Propagation::Client | Propagation::Held) {
            // Replicas and the AOF make it incomplete too, not whole.
            propagation::sync_incomplete(name.as_slice()).replicate(ctx);
        }
    }
    let set = write_campaign(key)?.ok_or(CampaignError::WrongType)?;
    let mut unique: Vec<&str> = Vec::with_capacity(members.len());
    for member in members {
        if !unique.contains(member) {
            unique.push(member);
        }
    }
    let count = unique
        .iter()
        .filter(|member| match op {
            Op::Add => set.insert(member),
            Op::Remove => set.remove(member),
            Op::Prune => false,
        })
        .count();
    let floor = set.version();
    match propagation {
        Propagation::Client | Propagation::Held => {
            let total = unique.len() as u64;
            let replayed = propagation == Propagation::Client && is_replayed(ctx);
            let first = if replayed {
                CLOCK.follow(total, floor)
            } else {
                CLOCK.issue(total, floor, cached_now_ms())
            };
            set.advance_version(first + total - 1);
            if !(replayed && is_imported(ctx, name.as_slice())) {
                JOURNAL.record(ctx, op, campaign, &unique, first);
            }
            if is_replayed(ctx) {
                ctx.replicate_verbatim();
            } else {
                propagation::sync_change(name.as_slice(), op, first, &unique).replicate(ctx);
            }
        }
        Propagation::Replicated { first_version } => {
            let last = first_version + members.len() as u64 - 1;
            CLOCK.observe(last);
            set.advance_version(last);
            if !is_imported(ctx, name.as_slice()) {
                JOURNAL.record(ctx, op, campaign, members, first_version);
            }
        }
        Propagation::StateOnly => {}
    }
    let event = match op {
        Op::Add => c"campaign.add",
        Op::Remove | Op::Prune => c"campaign.rem",
    };
    notify_keyspace_event(ctx, NotifyEvent::MODULE, event, name);
    Ok(Applied::Changed(count))
}

/// `CAMPAIGN.SYNC key INCOMPLETE`: the primary made the campaign
/// incomplete; a missing key becomes an empty incomplete campaign.
pub fn make_incomplete(ctx: &Context, name: &RedisString) -> Result<bool, CampaignError> {
    let key = ctx.open_key_writable(name);
    if write_campaign(&key)?.is_some() {
        return Ok(false);
    }
    key.set_value(&CAMPAIGN_TYPE, Campaign::incomplete())
        .map_err(|_| CampaignError::WrongType)?;
    forget_missing(&KeyId::of(ctx, name));
    Ok(true)
}

/// Raises the version of the campaign at `key`, if it exists.
fn advance_version(key: &RedisKeyWritable, version: u64) -> Result<(), CampaignError> {
    if let Some(set) = write_campaign(key)? {
        set.advance_version(version);
    }
    Ok(())
}

/// `CAMPAIGN.SYNC key VERSION v`: the campaign's newest version, sent with
/// a rebuilt set and by an AOF rewrite.
pub fn raise_version(
    ctx: &Context,
    name: &RedisString,
    version: u64,
) -> Result<bool, CampaignError> {
    CLOCK.observe(version);
    let key = ctx.open_key_writable(name);
    let exists = write_campaign(&key)?.is_some();
    advance_version(&key, version)?;
    Ok(exists)
}

impl Applied {
    /// The members changed; a missing campaign changed none.
    pub fn count(self) -> usize {
        match self {
            Applied::Changed(count) => count,
            Applied::Missing => 0,
        }
    }
}

/// Puts `campaign` at key `name` in place of whatever campaign is there;
/// nothing is journaled or propagated here.
pub fn replace(ctx: &Context, name: &RedisString, campaign: Campaign) -> Result<(), CampaignError> {
    let key = ctx.open_key_writable(name);
    write_campaign(&key)?;
    key.set_value(&CAMPAIGN_TYPE, campaign)
        .map_err(|_| CampaignError::WrongType)?;
    forget_missing(&KeyId::of(ctx, name));
    Ok(())
}

/// Deletes the campaign at key `name` if there is one; nothing is
/// journaled (the database is unchanged).
pub fn delete(ctx: &Context, name: &RedisString) -> Result<bool, CampaignError> {
    let key = ctx.open_key_writable(name);
    if write_campaign(&key)?.is_none() {
        return Ok(false);
    }
    let _ = key.delete();
    ctx.notify_keyspace_event(NotifyEvent::GENERIC, "del", name);
    Ok(true)
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
