//! A campaign's name is its identity in PostgreSQL (SPEC section 2): when
//! a campaign value lands under a name in the served database (RENAME,
//! COPY, MOVE, SWAPDB, a client's RESTORE under another name than the
//! value was saved under), the primary journals "the campaign is now
//! exactly this set" there: one prune (`Op::Prune`: at FLUSH the rows of
//! that name older than its version go, markers left) and every member as
//! added with higher versions, and sends the same entries to replicas and
//! the AOF. After FLUSH the rows under the new name are exactly the key's
//! members. The name left behind keeps its rows, as after DEL ("reload on
//! next use").
//!
//! A RESTORE under the same name journals nothing: it is how MIGRATE and
//! slot migration move a key, which must change nothing in the database
//! (a reload after a migration waits for the old owner's commits, which
//! journaling the value here would skip). The value carries the name it
//! was saved under (encoding 7) so the load callback can tell the two.

use std::sync::Mutex;

use std::cell::RefCell;

use redis_module::key::RedisKey;
use redis_module::{Context, KeysCursor, RedisString};

use super::journal::JOURNAL;
use super::{read_campaign, write_campaign, CLOCK, SERVED_DB};
use crate::core::member_set::MemberRef;
use crate::core::{validate_text, Op, MAX_CAMPAIGN_NAME_BYTES, PRUNE_MEMBER};
use crate::error::CampaignError;
use crate::propagation::{self, MEMBERS_PER_SYNC};
use crate::redis_glue::ffi::{cached_now_ms, select_db, selected_db};
use crate::redis_glue::log;
use crate::redis_glue::server_state::{SERVER, SLOT_MIGRATION};

/// The key a client's RESTORE on this primary just loaded a value into
/// that was saved under another name (noted by the type's load callback,
/// taken by the `restore` event of the same command).
static RESTORED_UNDER_NEW_NAME: Mutex<Option<Vec<u8>>> = Mutex::new(None);

fn restored_under_new_name() -> std::sync::MutexGuard<'static, Option<Vec<u8>>> {
    RESTORED_UNDER_NEW_NAME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The type's load callback: a client's RESTORE put a value saved under
/// another name at key `target`.
pub fn note_restored_under_new_name(target: &[u8]) {
    *restored_under_new_name() = Some(target.to_vec());
}

/// A keyspace event of the generic class: `event` happened to `name`.
pub fn on_generic_event(ctx: &Context, event: &[u8], name: &RedisString) {
    let arrived = match event {
        b"rename_to" | b"copy_to" | b"move_to" => true,
        // Only a RESTORE under another name than the value's own: one
        // under the same name (MIGRATE, slot migration) changes nothing.
        b"restore" => restored_under_new_name()
            .take()
            .is_some_and(|target| target == name.as_slice()),
        _ => false,
    };
    // Only a primary journals; a replica gets the entries from it, and an
    // AOF being loaded holds them already.
    if !arrived || !SERVER.is_primary() || SERVER.is_loading() {
        return;
    }
    // A RENAME (or COPY) a slot migration's source sends: the source
    // journaled the members under the new name and sends those entries
    // after it (`CAMPAIGN.SYNC ... CHANGE`), applied here unjournaled.
    if SLOT_MIGRATION.key_importing(name.as_slice()) {
        return;
    }
    if selected_db(ctx) != SERVED_DB {
        return;
    }
    journal_whole(ctx, name);
}

/// SWAPDB of `first` and `second`: when one of them is the served
/// database, every campaign now in it arrived under its name (the ones
/// that left behave as after DEL: their rows stay, reloaded on next use)
/// and is journaled there as after a RENAME. (A swap of the served
/// database with itself changes nothing.)
pub fn on_swapdb(ctx: &Context, first: i32, second: i32) {
    let served = first == SERVED_DB || second == SERVED_DB;
    if !served || first == second || !SERVER.is_primary() || SERVER.is_loading() {
        return;
    }
    select_db(ctx, SERVED_DB);
    let found = RefCell::new(Vec::new());
    let cursor = KeysCursor::new();
    let collect = |_: &Context, name: &RedisString, key: Option<&RedisKey>| {
        let is_campaign = key.is_some_and(|key| read_campaign(key).is_ok_and(|set| set.is_some()));
        if is_campaign {
            found.borrow_mut().push(name.as_slice().to_vec());
        }
    };
    while cursor.scan(ctx, &collect) {}
    let found = found.into_inner();
    if !found.is_empty() {
        log::notice(format!(
            "SWAPDB brought {} campaigns into database {SERVED_DB}: journaled under their names",
            found.len()
        ));
    }
    for name in found {
        journal_whole(ctx, &ctx.create_string(name));
    }
}

/// Journals "the campaign at `name` is now exactly what it holds": one
/// prune (`Op::Prune`: the rows this name held before, from an earlier
/// campaign of that name, go) and then every member as added, with fresh
/// versions above the prune's, so after FLUSH its rows are its members.
fn journal_whole(ctx: &Context, name: &RedisString) {
    // A name no write could have (not text, NUL, too long) has no rows
    // and can get none: nothing is journaled, as for any other key.
    let Ok(campaign) = validate_text(name.as_slice(), Some(MAX_CAMPAIGN_NAME_BYTES)) else {
        log::warning(
            "a campaign was renamed or copied to a name that cannot be stored: not journaled",
        );
        return;
    };
    let (members, floor, complete) = {
        let key = ctx.open_key(name);
        let Ok(Some(set)) = read_campaign(&key) else {
            return;
        };
        let members: Vec<String> = set
            .members()
            .iter()
            .map(|member: MemberRef| member.as_str().to_owned())
            .collect();
        (
            members,
            set.version().max(CLOCK.newest()),
            set.is_complete(),
        )
    };
    // An incomplete campaign knows only the members written since; what
    // else it holds is its rows', under the name it left. Its rows under
    // this name are not pruned: it is completed from them (a documented
    // gap).
    let prune = complete;
    let count = members.len() as u64 + u64::from(prune);
    if count == 0 {
        return;
    }
    let first = CLOCK.issue(count, floor, cached_now_ms());
    {
        let key = ctx.open_key_writable(name);
        if let Ok(Some(set)) = write_campaign(&key) {
            set.advance_version(first + count - 1);
        }
    }
    let mut version = first;
    if prune {
        JOURNAL.record(ctx, Op::Prune, campaign, &[PRUNE_MEMBER], version);
        propagation::sync_prune(name.as_slice(), version).replicate(ctx);
        version += 1;
    }
    for chunk in members.chunks(MEMBERS_PER_SYNC) {
        let words: Vec<&str> = chunk.iter().map(String::as_str).collect();
        JOURNAL.record(ctx, Op::Add, campaign, &words, version);
        propagation::sync_change(name.as_slice(), Op::Add, version, &words).replicate(ctx);
        version += chunk.len() as u64;
    }
}

/// `CAMPAIGN.SYNC key PRUNE v` from the primary or the AOF: the same
/// prune journaled with its version.
pub fn journal_replicated_prune(
    ctx: &Context,
    name: &RedisString,
    version: u64,
) -> Result<(), CampaignError> {
    let campaign =
        validate_text(name.as_slice(), None).map_err(|reason| CampaignError::InvalidMember {
            position: 1,
            reason,
        })?;
    CLOCK.observe(version);
    if let Some(set) = write_campaign(&ctx.open_key_writable(name))? {
        set.advance_version(version);
    }
    JOURNAL.record(ctx, Op::Prune, campaign, &[PRUNE_MEMBER], version);
    Ok(())
}
