//! Server events and the INFO section: role changes start and stop the
//! flusher, loading pauses it, the cron expires waiters and starts prefill.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::server_events::{LoadingSubevent, ServerRole};
use redis_module::{raw, Context, InfoContext, RedisResult, RedisString, RedisValue};
use redis_module_macros::{
    cron_event_handler, info_command_handler, loading_event_handler, role_changed_event_handler,
};

use crate::commands::write_behind::{status_figures, Figure};
use crate::core::clock::now_ms;
use crate::keyspace::defrag::DEFRAG;
use crate::keyspace::journal::JOURNAL;
use crate::keyspace::shadow;
use crate::keyspace::{identity, memory_guard, negative, KeyId};
use crate::rebuild::{prefill, Job, LOADS};
use crate::redis_glue::ffi::{api, avoid_replica_traffic, call_text};
use crate::redis_glue::log;
use crate::redis_glue::panic_guard::run_callback;
use crate::redis_glue::server_state::{SERVER, SLOT_MIGRATION};
use crate::write_behind::WRITE_BEHIND;

/// When the shadows a primary loaded are dropped (unix ms, 0: none to do),
/// and how long after loading: a cluster replica's role is known by then.
static DROP_LEFTOVERS_AT_MS: AtomicU64 = AtomicU64::new(0);
const LEFTOVER_GRACE_MS: u64 = 10_000;

#[role_changed_event_handler]
fn on_role_changed(_ctx: &Context, role: ServerRole) {
    run_callback("role change", (), || {
        SERVER.set_primary(role == ServerRole::Primary);
        // A promoted replica flushes what it holds at once.
        JOURNAL.wake();
        if role == ServerRole::Primary {
            // Shadows it was collecting will never be swapped in.
            LOADS.submit(Job::DropLeftoverShadows);
        }
    });
}

#[loading_event_handler]
fn on_loading(_ctx: &Context, event: LoadingSubevent) {
    run_callback("loading event", (), || {
        let loading = matches!(
            event,
            LoadingSubevent::RdbStarted
                | LoadingSubevent::AofStarted
                | LoadingSubevent::ReplStarted
        );
        SERVER.set_loading(loading);
        JOURNAL.wake();
        if loading {
            // What is loaded now says which shadows exist.
            shadow::discard_received();
        } else {
            // A primary that loaded shadows (its AOF ended mid-send) will
            // never get their swap. A cluster replica still looks like a
            // primary here (its primary is set by the first cluster crons)
            // and must keep them: the rest may come by partial resync. So
            // the cron decides a little later.
            DROP_LEFTOVERS_AT_MS.store(now_ms() + LEFTOVER_GRACE_MS, Ordering::Relaxed);
        }
    });
}

#[cron_event_handler]
fn on_cron(ctx: &Context, _hz: u64) {
    run_callback("cron", (), || {
        WRITE_BEHIND.on_cron(ctx);
        LOADS.on_cron(ctx);
        let drop_at = DROP_LEFTOVERS_AT_MS.load(Ordering::Relaxed);
        if drop_at != 0 && now_ms() >= drop_at {
            DROP_LEFTOVERS_AT_MS.store(0, Ordering::Relaxed);
            if SERVER.is_primary() {
                LOADS.submit(Job::DropLeftoverShadows);
            }
        }
        negative::expire_missing();
        prefill::on_cron(ctx);
        refresh_maxmemory(ctx);
    });
}

/// When `maxmemory` was last read (unix ms).
static MAXMEMORY_READ_MS: AtomicU64 = AtomicU64::new(0);

/// Reads `maxmemory` for the memory guard about once a second (it sizes
/// the journal's allowance; the used-memory ratio is read on each write).
fn refresh_maxmemory(ctx: &Context) {
    let now = now_ms();
    if now.saturating_sub(MAXMEMORY_READ_MS.load(Ordering::Relaxed)) >= 1_000 {
        MAXMEMORY_READ_MS.store(now, Ordering::Relaxed);
        memory_guard::refresh(ctx);
    }
}

/// Subscribes to the events the crate's macros do not cover.
pub fn subscribe(ctx: &Context) -> Result<(), String> {
    let subscribe = api!(RedisModule_SubscribeToServerEvent)
        .ok_or("RedisModule_SubscribeToServerEvent is missing")?;
    let fork_child = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_FORK_CHILD,
        dataver: 1,
    };
    // SAFETY: called from OnLoad with its live context.
    let status = unsafe { subscribe(ctx.ctx, fork_child, Some(on_fork_child)) };
    if status != raw::REDISMODULE_OK as i32 {
        return Err("cannot subscribe to the fork event".into());
    }
    let swapdb = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_SWAPDB,
        dataver: 1,
    };
    // SAFETY: as above.
    let status = unsafe { subscribe(ctx.ctx, swapdb, Some(on_swapdb)) };
    if status != raw::REDISMODULE_OK as i32 {
        return Err("cannot subscribe to the SWAPDB event".into());
    }
    let keyspace = api!(RedisModule_SubscribeToKeyspaceEvents)
        .ok_or("RedisModule_SubscribeToKeyspaceEvents is missing")?;
    // SAFETY: as above.
    let status = unsafe {
        keyspace(
            ctx.ctx,
            raw::REDISMODULE_NOTIFY_GENERIC,
            Some(on_keyspace_event),
        )
    };
    if status != raw::REDISMODULE_OK as i32 {
        return Err("cannot subscribe to keyspace events".into());
    }
    Ok(())
}

/// `ValkeyModuleEvent_AtomicSlotMigration` (valkeymodule.h, Valkey 9.0)
/// and its subevents: an import or export started, was aborted, completed.
const EVENT_ATOMIC_SLOT_MIGRATION: u64 = 19;
const IMPORT_STARTED: u64 = 0;
const EXPORT_STARTED: u64 = 1;
const IMPORT_ABORTED: u64 = 2;
const EXPORT_ABORTED: u64 = 3;
const IMPORT_COMPLETED: u64 = 4;
const EXPORT_COMPLETED: u64 = 5;

/// `ValkeyModuleSlotRange`: first and last slot, inclusive.
#[repr(C)]
struct SlotRange {
    start: c_int,
    end: c_int,
}

/// `ValkeyModuleAtomicSlotMigrationInfoV1`, the event's data.
#[repr(C)]
struct SlotMigrationInfo {
    version: u64,
    job_name: [c_char; 41],
    slot_ranges: *mut SlotRange,
    num_slot_ranges: u32,
}

/// Subscribes to Valkey 9's atomic slot migration event. Only where the
/// server has it: an older server refuses the unknown event id, and a
/// Redis may give the same number to another event.
pub fn subscribe_slot_migration(ctx: &Context) -> Result<(), String> {
    let subscribe = api!(RedisModule_SubscribeToServerEvent)
        .ok_or("RedisModule_SubscribeToServerEvent is missing")?;
    let event = raw::RedisModuleEvent {
        id: EVENT_ATOMIC_SLOT_MIGRATION,
        dataver: 1,
    };
    // SAFETY: called from OnLoad with its live context.
    let status = unsafe { subscribe(ctx.ctx, event, Some(on_slot_migration)) };
    if status != raw::REDISMODULE_OK as i32 {
        return Err("cannot subscribe to the atomic slot migration event".into());
    }
    Ok(())
}

/// An atomic slot migration changed state: the slots an import brings are
/// marked while it runs (`SlotMigration`); the rest is logged.
extern "C" fn on_slot_migration(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    run_callback("slot migration event", (), || {
        let (name, ranges) = if data.is_null() {
            (String::new(), Vec::new())
        } else {
            // SAFETY: Valkey passes its info struct (version 1) for the
            // duration of the call.
            let info = unsafe { &*data.cast::<SlotMigrationInfo>() };
            let mut job = info.job_name;
            job[40] = 0;
            // SAFETY: NUL-terminated just above.
            let name = unsafe { CStr::from_ptr(job.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            let ranges = if info.slot_ranges.is_null() {
                Vec::new()
            } else {
                // SAFETY: `num_slot_ranges` ranges at `slot_ranges`.
                unsafe {
                    std::slice::from_raw_parts(info.slot_ranges, info.num_slot_ranges as usize)
                }
                .iter()
                .filter(|range| 0 <= range.start && range.start <= range.end)
                .map(|range| (range.start as u16, range.end.min(u16::MAX as c_int) as u16))
                .collect()
            };
            (name, ranges)
        };
        let what = match subevent {
            IMPORT_STARTED => "import started",
            EXPORT_STARTED => "export started",
            IMPORT_ABORTED => "import aborted",
            EXPORT_ABORTED => "export aborted",
            IMPORT_COMPLETED => "import completed",
            EXPORT_COMPLETED => "export completed",
            _ => return,
        };
        match subevent {
            IMPORT_STARTED => SLOT_MIGRATION.set_importing(&ranges, true),
            IMPORT_ABORTED | IMPORT_COMPLETED => SLOT_MIGRATION.set_importing(&ranges, false),
            // The export's snapshot (a fork child) leaves the journal out;
            // the source keeps flushing it, as after MIGRATE.
            EXPORT_STARTED => SLOT_MIGRATION.set_exporting(&ranges, true),
            _ => SLOT_MIGRATION.set_exporting(&ranges, false),
        }
        let ranges: Vec<String> = ranges
            .iter()
            .map(|(first, last)| format!("{first}-{last}"))
            .collect();
        log::notice(format!(
            "slot migration {name}: {what} (slots {})",
            ranges.join(" ")
        ));
    });
}

/// A generic keyspace event (RENAME, COPY, MOVE, RESTORE, ...): a campaign
/// that arrived under a name is journaled there (`keyspace::identity`).
extern "C" fn on_keyspace_event(
    ctx: *mut raw::RedisModuleCtx,
    _class: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    run_callback("keyspace event", raw::REDISMODULE_OK as c_int, || {
        if event.is_null() || key.is_null() {
            return raw::REDISMODULE_OK as c_int;
        }
        // SAFETY: Redis passes a NUL-terminated event name for this call.
        let event = unsafe { CStr::from_ptr(event) }.to_bytes();
        let ctx = Context::new(ctx);
        let name = RedisString::new(NonNull::new(ctx.ctx), key);
        // A load of the name, started before this value arrived, would
        // replace it with what the database held then.
        if matches!(event, b"rename_to" | b"copy_to" | b"move_to" | b"restore") {
            LOADS.overtake(&KeyId::of(&ctx, &name));
        }
        identity::on_generic_event(&ctx, event, &name);
        raw::REDISMODULE_OK as c_int
    })
}

/// SWAPDB swapped two databases: when one is the served database, the
/// campaigns that arrived there are journaled under their names
/// (`keyspace::identity`).
extern "C" fn on_swapdb(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    data: *mut c_void,
) {
    run_callback("SWAPDB event", (), || {
        if data.is_null() {
            return;
        }
        // SAFETY: for this event Redis passes a live RedisModuleSwapDbInfo.
        let info = unsafe { &*data.cast::<raw::RedisModuleSwapDbInfo>() };
        let ctx = Context::new(ctx);
        LOADS.overtake_swapped(&ctx, info.dbnum_first, info.dbnum_second);
        identity::on_swapdb(&ctx, info.dbnum_first, info.dbnum_second);
    });
}

/// A child was forked. In the parent, right after an AOF rewrite's fork,
/// Redis has opened the new incremental AOF file and no other command has
/// run yet: without the RDB preamble the rewritten base may hold no
/// campaign key to carry the journal, so the journal (and its numbering)
/// goes into that incremental file now.
extern "C" fn on_fork_child(
    ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    run_callback("fork event", (), || {
        if subevent != raw::REDISMODULE_SUBEVENT_FORK_CHILD_BORN {
            return;
        }
        let ctx = Context::new(ctx);
        // Paused clients: propagating now would abort Redis 7.0; the first
        // campaign key of the rewrite still carries the journal.
        if aof_rewrite_without_preamble(&ctx) && !avoid_replica_traffic() {
            JOURNAL.propagate_snapshot(&ctx);
            shadow::for_each_snapshot_command(|command| command.replicate(&ctx));
        }
    });
}

fn aof_rewrite_without_preamble(ctx: &Context) -> bool {
    let rewriting = call_text(ctx, "INFO", &["persistence"]).is_some_and(|info| {
        info.lines()
            .any(|line| line.trim() == "aof_rewrite_in_progress:1")
    });
    let preamble = match ctx.call("CONFIG", &["GET", "aof-use-rdb-preamble"]) {
        Ok(RedisValue::Array(reply)) => !matches!(
            reply.get(1),
            Some(RedisValue::SimpleString(value) | RedisValue::BulkString(value)) if value == "no"
        ),
        _ => true,
    };
    rewriting && !preamble
}

/// `INFO campaign`: the figures of CAMPAIGN.STATUS, with INFO-style names.
/// (The builder API names sections `campaign_<name>`; `INFO campaign` needs
/// the module's default section, which only the older calls reach.)
#[allow(deprecated)]
#[info_command_handler]
fn add_info(ctx: &InfoContext, _for_crash_report: bool) -> RedisResult<()> {
    run_callback("info", Ok(()), || {
        ctx.add_info_section(None);
        for (name, figure) in status_figures() {
            let name = name.replace('-', "_");
            match figure {
                Figure::Number(number) => ctx.add_info_field_long_long(&name, number),
                Figure::Text(text) => ctx.add_info_field_str(&name, &text),
            };
        }
        // Active defragmentation of campaign values (keyspace::defrag).
        for (name, figure) in [
            ("defrag_calls", &DEFRAG.calls),
            ("defrag_moved", &DEFRAG.moved),
            ("defrag_renewed", &DEFRAG.renewed),
            ("defrag_resumed", &DEFRAG.resumed),
        ] {
            let figure = figure.load(Ordering::Relaxed);
            ctx.add_info_field_long_long(name, i64::try_from(figure).unwrap_or(i64::MAX));
        }
        Ok(())
    })
}
