//! A campaign's name is its identity in PostgreSQL (SPEC section 2): when
//! a campaign value lands under a name by RENAME, COPY or MOVE into the
//! served database, the primary journals
//! every member it holds under that name, with fresh versions, as one
//! client's ADD would, and sends the same entries to replicas and the
//! AOF. After FLUSH the rows under the new name hold at least the key's
//! members, and later changes continue above those versions. The name
//! left behind keeps its rows, as after DEL ("reload on next use").
//!
//! RESTORE journals nothing: it is how MIGRATE and slot migration move a
//! key under the same name, which must change nothing in the database (a
//! reload after a migration waits for the old owner's commits, which
//! journaling the value here would skip). A RESTORE under another name
//! is therefore not recorded (a documented gap: RESTORE under the old
//! name, then RENAME).

use redis_module::{Context, RedisString};

use super::journal::JOURNAL;
use super::{read_campaign, write_campaign, CLOCK, SERVED_DB};
use crate::core::member_set::MemberRef;
use crate::core::{validate_text, Op, MAX_CAMPAIGN_NAME_BYTES};
use crate::propagation::{self, MEMBERS_PER_SYNC};
use crate::redis_glue::ffi::{cached_now_ms, selected_db};
use crate::redis_glue::log;
use crate::redis_glue::server_state::{SERVER, SLOT_MIGRATION};

/// A keyspace event of the generic class: `event` happened to `name`.
pub fn on_generic_event(ctx: &Context, event: &[u8], name: &RedisString) {
    let arrived = matches!(event, b"rename_to" | b"copy_to" | b"move_to");
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

/// Journals every member of the campaign at `name` as added now.
fn journal_whole(ctx: &Context, name: &RedisString) {
    // A name no write could have (not text, NUL, too long) has no rows
    // and can get none: nothing is journaled, as for any other key.
    let Ok(campaign) = validate_text(name.as_slice(), Some(MAX_CAMPAIGN_NAME_BYTES)) else {
        log::warning(
            "a campaign was renamed or copied to a name that cannot be stored: not journaled",
        );
        return;
    };
    let (members, floor) = {
        let key = ctx.open_key(name);
        let Ok(Some(set)) = read_campaign(&key) else {
            return;
        };
        let members: Vec<String> = set
            .members()
            .iter()
            .map(|member: MemberRef| member.as_str().to_owned())
            .collect();
        (members, set.version().max(CLOCK.newest()))
    };
    if members.is_empty() {
        return;
    }
    let count = members.len() as u64;
    let first = CLOCK.issue(count, floor, cached_now_ms());
    {
        let key = ctx.open_key_writable(name);
        if let Ok(Some(set)) = write_campaign(&key) {
            set.advance_version(first + count - 1);
        }
    }
    let mut version = first;
    for chunk in members.chunks(MEMBERS_PER_SYNC) {
        let words: Vec<&str> = chunk.iter().map(String::as_str).collect();
        JOURNAL.record(ctx, Op::Add, campaign, &words, version);
        propagation::sync_change(name.as_slice(), Op::Add, version, &words).replicate(ctx);
        version += chunk.len() as u64;
    }
}
