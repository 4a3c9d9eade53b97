//! The `campaigns` native type: the callbacks Redis calls for persistence,
//! AOF rewrite, COPY, MEMORY USAGE and freeing a campaign value, and for
//! the module-wide journal (RDB aux data).

use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use redis_module::native_types::RedisType;
use redis_module::raw;

use super::background_free;
use super::journal::JOURNAL;
use super::{deleted, identity, shadow, KeyId, CLOCK, SERVED_DB};
use crate::core::campaign::ENCODING_VERSION;
use crate::core::clock::now_ms;
use crate::core::journal;
use crate::core::member_set::MemberRef;
use crate::core::shadow::Shadows;
use crate::core::version::{plausible_limit, version_ms, MAX_AHEAD_MS, MAX_VERSION};
use crate::core::{Campaign, DecodeError, Journal, Op, RecordReader, RecordWriter};
use crate::propagation;
use crate::redis_glue::ffi::{api, string_bytes};
use crate::redis_glue::lock_hold::module_thread_holds_lock;
use crate::redis_glue::log;
use crate::redis_glue::panic_guard::run_callback;
use crate::redis_glue::server_state::{SERVER, SLOT_MIGRATION};

/// Version of the aux data, written first so it can evolve: 4 = the
/// journal in its format 3 followed by the shadows (`core::shadow`); 3
/// (packed journal records with versions), 2 and 1, written by earlier
/// releases, hold the journal alone and still load.
const AUX_FORMAT: u64 = 4;
const AUX_JOURNAL_FORMAT: u64 = journal::FORMAT;

pub static CAMPAIGN_TYPE: RedisType = RedisType::new(
    // Redis requires exactly nine characters.
    "campaigns",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        free: Some(free),
        // The journal is module-wide data saved beside the keyspace.
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save2: None,
        aux_save_triggers: raw::REDISMODULE_AUX_BEFORE_RDB as c_int,
        free_effort: Some(free_effort),
        unlink: None,
        copy: None,
        // Active defragmentation (see `defrag`).
        defrag: Some(super::defrag::defrag),
        copy2: Some(copy),
        free_effort2: None,
        mem_usage2: None,
        unlink2: Some(unlink),
    },
);

/// Writes records into an RDB stream (also used by DUMP and replication).
struct RdbWriter(*mut raw::RedisModuleIO);

impl RecordWriter for RdbWriter {
    fn write_unsigned(&mut self, value: u64) {
        raw::save_unsigned(self.0, value);
    }
    fn write_bytes(&mut self, bytes: &[u8]) {
        raw::save_slice(self.0, bytes);
    }
}

/// Reads records from an RDB stream (also used by RESTORE and replication).
struct RdbReader(*mut raw::RedisModuleIO);

impl RecordReader for RdbReader {
    fn read_unsigned(&mut self) -> Result<u64, DecodeError> {
        raw::load_unsigned(self.0).map_err(|_| DecodeError::Truncated)
    }
    fn read_bytes<T>(&mut self, use_bytes: impl FnOnce(&[u8]) -> T) -> Result<T, DecodeError> {
        let buffer = raw::load_string_buffer(self.0).map_err(|_| DecodeError::Truncated)?;
        Ok(use_bytes(buffer.as_ref()))
    }
}

// The callbacks below are plain `extern "C" fn`s: Redis is their only
// caller, and each states what it relies on where it touches a pointer.

/// Runs `body` on the campaign value Redis handed to a callback.
fn with_value<T>(value: *const c_void, body: impl FnOnce(&Campaign) -> T) -> T {
    // SAFETY: Redis passes a live value of this type, created by this
    // module, for the duration of the callback.
    body(unsafe { &*value.cast::<Campaign>() })
}

extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    run_callback("rdb_load", ptr::null_mut(), || {
        match Campaign::decode_named(&mut RdbReader(rdb), encver) {
            // An empty campaign cannot exist (the last REM deletes the key,
            // read-through would skip it): RESTORE of one is refused. While
            // loading a dataset it is kept, with a warning, so an RDB made
            // by an older version still starts.
            Ok((set, _)) if set.is_empty() && set.is_complete() && !SERVER.is_loading() => {
                log::warning("refused a campaign payload with no members (RESTORE)");
                ptr::null_mut()
            }
            Ok((mut set, saved_as)) => {
                if let Err(reason) = admit_database(rdb).and_then(|()| admit_version(&mut set)) {
                    log::warning(format!("refused a campaign payload (RESTORE): {reason}"));
                    return ptr::null_mut();
                }
                note_renaming_restore(rdb, saved_as.as_deref());
                if set.is_empty() && set.is_complete() {
                    log::warning("loaded a campaign with no members");
                }
                // RDB, RESTORE, MIGRATE, a full sync: later changes made
                // here continue above the versions the value carries.
                CLOCK.observe(set.version());
                Box::into_raw(Box::new(set)).cast()
            }
            Err(error) => {
                log::warning(format!("cannot load a campaign: {error}"));
                ptr::null_mut()
            }
        }
    })
}

/// A client's RESTORE into another database than `SERVED_DB` is refused
/// (MOVE and SWAPDB give the module no say; commands refuse what they
/// put elsewhere). A dataset being loaded keeps what it holds.
fn admit_database(rdb: *mut raw::RedisModuleIO) -> Result<(), String> {
    let Some(db_of) = api!(RedisModule_GetDbIdFromIO) else {
        return Ok(());
    };
    // SAFETY: Redis passes the live IO handle of this load.
    let db = unsafe { db_of(rdb) };
    if db != SERVED_DB && !SERVER.is_loading() {
        return Err(format!(
            "campaigns live in database {SERVED_DB} only, not {db}: nothing was changed"
        ));
    }
    Ok(())
}

/// Versions stay plausible (SPEC section 4). A client's RESTORE on a
/// primary (MIGRATE's import included) of a value whose version lies
/// further ahead of this node's clock than `MAX_AHEAD_MS` is refused: it
/// would push this campaign's changes that far ahead. What a node loads
/// (RDB, AOF, a full sync) or a replica receives from its primary is
/// taken whatever the clock, so a replica holds what its primary holds;
/// a version above `MAX_VERSION` (only an older release could write one)
/// is lowered to it, with a warning. The node's clock ignores either
/// beyond the bound (`VersionClock::observe`).
fn admit_version(set: &mut Campaign) -> Result<(), String> {
    let now = now_ms();
    let version = set.version();
    let restored_by_client = !SERVER.is_loading() && SERVER.is_primary();
    if restored_by_client && version > plausible_limit(now) {
        let ahead_ms = version_ms(version).saturating_sub(now);
        return Err(format!(
            "its version {version} lies {ahead_ms} ms ahead of this node's clock, more than \
             the {MAX_AHEAD_MS} ms allowed: nothing was changed"
        ));
    }
    if set.clamp_version() {
        log::warning(format!(
            "a loaded campaign carried version {version}, above the largest \
             ({MAX_VERSION}): lowered to it"
        ));
    }
    Ok(())
}

/// A client's RESTORE on a primary of a value saved under another name
/// than the key it is restored to is noted for the `restore` keyspace
/// event that follows (`identity`), which journals it there. A value
/// saved under the same name (MIGRATE, slot migration) or under an
/// unknown one (an encoding before 7) journals nothing.
fn note_renaming_restore(rdb: *mut raw::RedisModuleIO, saved_as: Option<&[u8]>) {
    let Some(saved_as) = saved_as else {
        return;
    };
    if SERVER.is_loading() || !SERVER.is_primary() {
        return;
    }
    with_io_key_name(rdb, |target| {
        if !target.is_empty() && target != saved_as {
            identity::note_restored_under_new_name(target);
        }
    });
}

/// Runs `body` on the name of the key being saved or loaded through
/// `rdb` (empty when Redis does not say).
fn with_io_key_name<T>(rdb: *mut raw::RedisModuleIO, body: impl FnOnce(&[u8]) -> T) -> T {
    let Some(name_of) = api!(RedisModule_GetKeyNameFromIO) else {
        return body(&[]);
    };
    // SAFETY: Redis passes the live IO handle of this save or load.
    let name = unsafe { name_of(rdb) };
    if name.is_null() {
        return body(&[]);
    }
    let name = name.cast_mut();
    // SAFETY: a key name Redis owns for the duration of the callback.
    body(unsafe { string_bytes(&name) })
}

extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    run_callback("rdb_save", (), || {
        with_io_key_name(rdb, |name| {
            with_value(value, |campaign| {
                campaign.encode_named(&mut RdbWriter(rdb), name)
            })
        })
    });
}

extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    run_callback("aof_rewrite", (), || {
        // SAFETY: Redis passes the live IO handle and key of this call.
        unsafe { emit_journal_once(aof) };
        // SAFETY: as above; the key outlives this callback.
        let key = unsafe { string_bytes(&key) };
        with_value(value, |campaign| {
            if !campaign.is_complete() {
                // SAFETY: `aof` is the live handle of this rewrite.
                unsafe { propagation::sync_incomplete(key).emit_aof(aof) };
            }
            // Members come formatted on the fly (ids and UUIDs are stored
            // as numbers), so they go out a command's worth at a time.
            let mut chunk: Vec<MemberRef> = Vec::with_capacity(propagation::MEMBERS_PER_SYNC);
            let emit = |chunk: &mut Vec<MemberRef>| {
                let words: Vec<&str> = chunk.iter().map(MemberRef::as_str).collect();
                for command in propagation::sync_members(key, Op::Add, &words) {
                    // SAFETY: `aof` is the live handle of this rewrite.
                    unsafe { command.emit_aof(aof) };
                }
                chunk.clear();
            };
            for member in campaign.members().iter() {
                chunk.push(member);
                if chunk.len() == propagation::MEMBERS_PER_SYNC {
                    emit(&mut chunk);
                }
            }
            if !chunk.is_empty() {
                emit(&mut chunk);
            }
            // An incomplete campaign's absent members, as removals.
            if let Some(absent) = campaign.absent_members() {
                let absent: Vec<MemberRef> = absent.iter().collect();
                let words: Vec<&str> = absent.iter().map(MemberRef::as_str).collect();
                for command in propagation::sync_members(key, Op::Remove, &words) {
                    // SAFETY: `aof` is the live handle of this rewrite.
                    unsafe { command.emit_aof(aof) };
                }
            }
            if campaign.version() > 0 {
                let command = propagation::sync_version(key, campaign.version());
                // SAFETY: `aof` is the live handle of this rewrite.
                unsafe { command.emit_aof(aof) };
            }
        });
    });
}

/// Pid of the rewrite child that already wrote the journal out.
static JOURNAL_EMITTED_BY: AtomicU32 = AtomicU32::new(0);

/// Without the RDB preamble an AOF rewrite has no place for module-wide
/// data, so the first campaign key rewritten also carries the journal as
/// `CAMPAIGN.JOURNAL LOAD` commands into the base file. (With no campaign
/// key at all, the copy `SharedJournal::propagate_snapshot` writes into
/// the incremental file when the rewrite starts carries it alone; the two
/// are applied once.) A rewrite child is a fresh process: the pid tells
/// whether this one did it already.
///
/// # Safety
/// `aof` is the live IO handle of the rewrite in progress.
unsafe fn emit_journal_once(aof: *mut raw::RedisModuleIO) {
    let pid = std::process::id();
    if JOURNAL_EMITTED_BY.swap(pid, Ordering::Relaxed) == pid {
        return;
    }
    if in_slot_migration_child() {
        // Valkey 9's atomic slot migration sends the rewrite of the
        // migrating slots to the target: the journal stays here (this node
        // flushes it) and only the shadows of those keys travel, so that
        // a rebuild's swap streamed after them finds its parts.
        shadow::for_each_snapshot_command_of(
            |key| SLOT_MIGRATION.key_exporting(key),
            |command| {
                // SAFETY: `aof` is live (caller).
                unsafe { command.emit_aof(aof) }
            },
        );
        return;
    }
    let journal = JOURNAL.lock_in_callback();
    for command in propagation::journal_snapshot(&journal) {
        // SAFETY: `aof` is live (caller).
        unsafe { command.emit_aof(aof) };
    }
    // Shadows being sent or collected, likewise.
    shadow::for_each_snapshot_command(|command| {
        // SAFETY: `aof` is live (caller).
        unsafe { command.emit_aof(aof) }
    });
}

/// This process is the fork child of a Valkey 9 atomic slot migration's
/// snapshot, not an AOF rewrite: its title says so ("valkey-slot-migration-
/// to-target", "valkey-aof-rewrite"); with `set-proc-title no`, an export
/// the parent had started before the fork does.
fn in_slot_migration_child() -> bool {
    if !SLOT_MIGRATION.is_supported() {
        return false;
    }
    let title = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    let says = |word: &[u8]| title.windows(word.len()).any(|w| w == word);
    if says(b"slot-migration") {
        return true;
    }
    if says(b"aof-rewrite") {
        return false;
    }
    SLOT_MIGRATION.exporting()
}

extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, when: c_int) {
    if when != raw::REDISMODULE_AUX_BEFORE_RDB as c_int {
        return;
    }
    run_callback("aux_save", (), || {
        let mut writer = RdbWriter(rdb);
        writer.write_unsigned(AUX_FORMAT);
        JOURNAL.lock_in_callback().encode(&mut writer);
        shadow::shadows().encode(&mut writer);
    });
}

extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, _encver: c_int, when: c_int) -> c_int {
    if when != raw::REDISMODULE_AUX_BEFORE_RDB as c_int {
        return raw::REDISMODULE_OK as c_int;
    }
    run_callback("aux_load", raw::REDISMODULE_ERR as c_int, || {
        let mut reader = RdbReader(rdb);
        let loaded = reader.read_unsigned().and_then(|format| {
            let journal_format = if format == AUX_FORMAT {
                AUX_JOURNAL_FORMAT
            } else {
                format
            };
            let journal = Journal::decode(&mut reader, journal_format, now_ms())?;
            let shadows = if format == AUX_FORMAT {
                Shadows::decode(&mut reader)?
            } else {
                Shadows::default()
            };
            Ok((journal, shadows))
        });
        match loaded {
            Ok((journal, shadows)) => {
                JOURNAL.replace(journal);
                shadow::shadows().restore(shadows);
                raw::REDISMODULE_OK as c_int
            }
            Err(error) => {
                log::warning(format!("cannot load the journal and shadows: {error}"));
                raw::REDISMODULE_ERR as c_int
            }
        }
    })
}

/// `DEBUG DIGEST-VALUE` and `DEBUG DIGEST`: the members (their
/// order-independent checksum and count) and the version, so two copies
/// differ in the digest when they differ in content or version.
extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    run_callback("digest", (), || {
        let (Some(add), Some(end)) = (
            api!(RedisModule_DigestAddLongLong),
            api!(RedisModule_DigestEndSequence),
        ) else {
            return;
        };
        let figures = with_value(value, |campaign| {
            [
                campaign.checksum(),
                campaign.len() as u64,
                campaign.version(),
            ]
        });
        for figure in figures {
            // SAFETY: Redis passes the live digest of this call.
            unsafe { add(md, figure as i64) };
        }
        // SAFETY: as above.
        unsafe { end(md) };
    });
}

extern "C" fn mem_usage(value: *const c_void) -> usize {
    run_callback("mem_usage", 0, || {
        with_value(value, |campaign| {
            std::mem::size_of::<Campaign>() + campaign.heap_bytes()
        })
    })
}

/// How much work freeing the value is, for Redis's lazy free: above 64
/// (`LAZYFREE_THRESHOLD`) UNLINK, `FLUSHALL ASYNC` and the `lazyfree-lazy-*`
/// settings hand it to Redis's lazy-free thread, which counts it
/// (`lazyfree_pending_objects`, `lazyfreed_objects`). A set is a few large
/// buffers, not an allocation per member, so the cost follows its bytes:
/// freeing 1M string members (32 MB) took 5.8 ms here, about 11 us per
/// 64 KiB, so one unit per KiB puts the threshold near what Redis's own
/// 64 small allocations cost. (Never 0: Redis frees 0 lazily, always.)
extern "C" fn free_effort(_key: *mut raw::RedisModuleString, value: *const c_void) -> usize {
    run_callback("free_effort", 1, || {
        with_value(value, |campaign| 1 + campaign.heap_bytes() / 1024)
    })
}

/// Frees the value here and now when Redis frees it on its own threads: its
/// main thread (DEL, an overwrite, eviction, expiry with lazy freeing off) or
/// its lazy-free thread (when `free_effort` and the `lazyfree-*` settings
/// say so). Redis then sees the memory come back when it expects to:
/// eviction measures what each evicted key gave back and stops once it has
/// freed enough, and it counts the frees it deferred. (Sets handed to a
/// thread of the module's own looked to eviction like keys that freed
/// nothing, so it went on evicting every key.) Only where the module
/// itself swaps a rebuilt set in over the old one — one of its threads
/// holding the lock, or a replica or AOF applying the swap
/// (`background_free::module_replaces`) — does a large old set go to the
/// module's free thread: the server answers no client meanwhile, and
/// eviction never runs inside it.
extern "C" fn free(value: *mut c_void) {
    run_callback("free", (), || {
        // SAFETY: Redis hands back a value this module boxed, exactly once.
        let set = unsafe { Box::from_raw(value.cast::<Campaign>()) };
        if module_thread_holds_lock() || background_free::in_module_replace() {
            background_free::release(set);
        } else {
            drop(set);
        }
    });
}

/// A campaign leaves the keyspace (DEL, UNLINK, expiry, eviction, an
/// overwrite, MIGRATE): its newest version is remembered (see `deleted`).
extern "C" fn unlink(ctx: *mut raw::RedisModuleKeyOptCtx, value: *const c_void) {
    run_callback("unlink", (), || {
        let (Some(key_name), Some(db_of)) = (
            api!(RedisModule_GetKeyNameFromOptCtx),
            api!(RedisModule_GetDbIdFromOptCtx),
        ) else {
            return;
        };
        // SAFETY: Redis passes the live options context of this call.
        let (name, db) = unsafe { (key_name(ctx), db_of(ctx)) };
        if name.is_null() {
            return;
        }
        let name = name.cast_mut();
        // SAFETY: a key name Redis owns for the duration of the callback.
        let bytes = unsafe { string_bytes(&name) };
        let version = with_value(value, Campaign::version);
        deleted::remember_deleted(
            KeyId {
                db,
                name: bytes.to_vec(),
            },
            version,
        );
    });
}

/// COPY: refused (NULL: "module key failed to copy") into another
/// database than `SERVED_DB`.
extern "C" fn copy(ctx: *mut raw::RedisModuleKeyOptCtx, value: *const c_void) -> *mut c_void {
    run_callback("copy", ptr::null_mut(), || {
        if let Some(to_db_of) = api!(RedisModule_GetToDbIdFromOptCtx) {
            // SAFETY: Redis passes the live options context of this call.
            let to_db = unsafe { to_db_of(ctx) };
            if to_db != SERVED_DB {
                log::warning(format!(
                    "refused a COPY of a campaign into database {to_db}: campaigns live in \
                     database {SERVED_DB} only"
                ));
                return ptr::null_mut();
            }
        }
        with_value(value, |campaign| {
            Box::into_raw(Box::new(campaign.clone())).cast()
        })
    })
}
