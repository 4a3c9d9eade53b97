//! Small safe wrappers around raw Redis module API calls the crate's
//! `Context` does not expose. Each checks that the function exists (older
//! servers lack some) and keeps the unsafe part in one line.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::ptr;

use std::time::Duration;

use redis_module::{
    raw, Context, DetachedFromClient, NotifyEvent, RedisString, RedisValue, ThreadSafeContext,
};

use super::lock_hold::{Hold, TimedLock};
use crate::core::clock::now_ms;

/// Reads one function of Redis's module API table (`None` when the server
/// lacks it).
macro_rules! api {
    ($name:ident) => {
        // SAFETY: Redis fills the API table once, in RedisModule_Init,
        // before any other code of this module runs; afterwards it is only
        // read.
        unsafe { redis_module::raw::$name }
    };
}
pub(crate) use api;

/// Unix ms for the write path, from the kernel's coarse clock (a few ms of
/// resolution): reading the precise clock costs as much as a tenth of a
/// one-member ADD on a virtual machine. (Not the time Redis caches per
/// command: while an AOF loads, Valkey runs the commands without updating
/// it, so replayed entries would seem to have waited since start-up.)
pub fn cached_now_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec for the call to fill.
        let read = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
        if read == 0 && now.tv_sec > 0 {
            return now.tv_sec as u64 * 1_000 + now.tv_nsec as u64 / 1_000_000;
        }
    }
    now_ms()
}

/// Fires a keyspace event; unlike the crate's wrapper it allocates nothing.
pub fn notify_keyspace_event(ctx: &Context, class: NotifyEvent, event: &CStr, key: &RedisString) {
    if let Some(notify) = api!(RedisModule_NotifyKeyspaceEvent) {
        // SAFETY: a live context and key; Redis copies what it keeps.
        unsafe { notify(ctx.ctx, class.bits(), event.as_ptr(), key.inner) };
    }
}

/// The database the context has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: `ctx.ctx` is a live context.
    api!(RedisModule_GetSelectedDb).map_or(0, |get| unsafe { get(ctx.ctx) })
}

/// Selects `db` on the context (a thread-safe context starts on db 0).
pub fn select_db(ctx: &Context, db: i32) {
    if let Some(select) = api!(RedisModule_SelectDb) {
        // SAFETY: as above.
        unsafe { select(ctx.ctx, db) };
    }
}

/// The bytes of a raw Redis string, borrowed for as long as the reference
/// to the pointer: the caller's argument vector, or a callback parameter.
///
/// # Safety
/// `*string` must be a live Redis string for as long as that reference.
pub unsafe fn string_bytes(string: &*mut raw::RedisModuleString) -> &[u8] {
    let Some(pointer_of) = api!(RedisModule_StringPtrLen) else {
        return &[];
    };
    let mut length = 0;
    // SAFETY: the caller guarantees `*string` is live.
    let pointer: *const c_char = unsafe { pointer_of(*string, &mut length) };
    if pointer.is_null() {
        return &[];
    }
    // SAFETY: Redis returns a pointer to `length` bytes owned by the string.
    unsafe { std::slice::from_raw_parts(pointer.cast(), length) }
}

/// Runs `body` with `words` as a temporary array of Redis strings (freed
/// afterwards), for API calls that take `RedisModuleString **`.
pub fn with_redis_strings<T>(
    words: &[&[u8]],
    body: impl FnOnce(*mut *mut raw::RedisModuleString, usize) -> T,
) -> Option<T> {
    let (Some(create), Some(free)) = (api!(RedisModule_CreateString), api!(RedisModule_FreeString))
    else {
        return None;
    };
    let mut argv: Vec<*mut raw::RedisModuleString> = words
        .iter()
        // SAFETY: a NULL context makes an unmanaged string, freed below.
        .map(|word| unsafe { create(ptr::null_mut(), word.as_ptr().cast(), word.len()) })
        .collect();
    let result = body(argv.as_mut_ptr(), argv.len());
    for string in argv {
        // SAFETY: created above with a NULL context, freed once.
        unsafe { free(ptr::null_mut(), string) };
    }
    Some(result)
}

/// The text reply of a Redis command called from the module (`INFO`,
/// `CLUSTER NODES`), or `None` if it failed.
pub fn call_text(ctx: &Context, command: &str, args: &[&str]) -> Option<String> {
    match ctx.call(command, args) {
        Ok(RedisValue::SimpleString(text) | RedisValue::BulkString(text)) => Some(text),
        Ok(RedisValue::StringBuffer(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
}

/// Whether the server asks modules not to add to the replication stream
/// now (`CLIENT PAUSE`, `FAILOVER`, `CLUSTER FAILOVER`). Propagating from a
/// background thread meanwhile aborts Redis 7.0.
pub fn avoid_replica_traffic() -> bool {
    // SAFETY: a plain query of server state; it takes no arguments.
    api!(RedisModule_AvoidReplicaTraffic).is_some_and(|avoid| unsafe { avoid() } != 0)
}

/// How often a thread that must propagate looks again while the server
/// asks it not to.
const PROPAGATION_RETRY: Duration = Duration::from_millis(5);

/// Takes the GIL for a background thread that is about to propagate, at a
/// moment the server allows it: while it asks to avoid replica traffic the
/// lock is released and taken again a little later (the pause ends by
/// itself), so the thread's change reaches replicas and the AOF after it.
pub fn lock_to_propagate(redis: &ThreadSafeContext<DetachedFromClient>, hold: Hold) -> TimedLock {
    loop {
        let ctx = redis.lock();
        if !avoid_replica_traffic() {
            return TimedLock::new(ctx, hold);
        }
        drop(ctx);
        std::thread::sleep(PROPAGATION_RETRY);
    }
}

/// Bytes of AOF waiting in Redis's buffer for the main thread to write
/// (`INFO persistence` `aof_buffer_length`; 0 without an AOF).
pub fn aof_buffer_bytes(ctx: &Context) -> u64 {
    ctx.server_info("persistence")
        .field("aof_buffer_length")
        .and_then(|value| value.to_string_lossy().parse().ok())
        .unwrap_or(0)
}

/// Redis's used memory as a share of `maxmemory`, counted as eviction
/// counts it (replica and AOF buffers left out): 0 without `maxmemory`,
/// `None` on a server without `RedisModule_GetUsedMemoryRatio`. Cheap: an
/// atomic read and a walk over the replicas' buffers.
pub fn used_memory_ratio() -> Option<f32> {
    // SAFETY: a plain query of server state; it takes no arguments.
    api!(RedisModule_GetUsedMemoryRatio).map(|ratio| unsafe { ratio() })
}

/// The server's `maxmemory` in bytes (0: no limit), from `INFO memory`;
/// `None` if it cannot be read.
pub fn maxmemory_bytes(ctx: &Context) -> Option<u64> {
    ctx.server_info("memory")
        .field("maxmemory")
        .and_then(|value| value.to_string_lossy().parse().ok())
}
