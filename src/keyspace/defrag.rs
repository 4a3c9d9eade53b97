//! Active defragmentation of campaign values (`activedefrag yes` on a
//! server built with its own jemalloc): the type's `defrag` callback.
//!
//! Every buffer of the module lives in Redis's allocator (`RedisAlloc` is
//! the global allocator), so `RedisModule_DefragAlloc` can move it: the
//! value's own allocation here, its containers' buffers through
//! `core::relocate` (roaring bitmaps and hash sets, whose buffers are
//! private to their crates, are renewed by a copy). A large value (its
//! `free_effort` past `active-defrag-max-scan-fields`) is defragmented
//! late, in time slices: the walk stops between two units when
//! `RedisModule_DefragShouldStop` says so and resumes from the unit kept
//! with `RedisModule_DefragCursorSet`. A set's bitmaps and hash sets are
//! copied at most once per `RENEW_INTERVAL_S` (a server that stays
//! fragmented for other reasons visits every key again and again); its
//! other buffers are offered to `RedisModule_DefragAlloc` on every visit,
//! which moves only what jemalloc says is worth moving.
//!
//! Redis calls the callback on its main thread, holding the lock, so no
//! command runs meanwhile; a set shared with a reader off the main thread
//! (a rebuild's snapshot) is skipped. A server without the defrag API
//! (the function pointers are null) never calls it, and the callback then
//! does nothing; a server without active defragmentation (no jemalloc, as
//! Debian's 7.0 or the PyPI Valkey builds) never calls it either.

use std::alloc::Layout;
use std::os::raw::{c_int, c_ulong, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::raw;

use crate::core::relocate::{Relocator, Walk};
use crate::core::Campaign;
use crate::redis_glue::ffi::{api, cached_now_ms};
use crate::redis_glue::panic_guard::run_callback;

/// What defragmentation did since start-up (INFO campaign).
pub struct DefragFigures {
    /// Calls of the callback (a late value's time slices count each).
    pub calls: AtomicU64,
    /// Allocations `RedisModule_DefragAlloc` moved.
    pub moved: AtomicU64,
    /// Bitmaps and hash sets renewed by a copy.
    pub renewed: AtomicU64,
    /// Calls that stopped for time and left a cursor.
    pub resumed: AtomicU64,
}

pub static DEFRAG: DefragFigures = DefragFigures {
    calls: AtomicU64::new(0),
    moved: AtomicU64::new(0),
    renewed: AtomicU64::new(0),
    resumed: AtomicU64::new(0),
};

type DefragAlloc = unsafe extern "C" fn(*mut raw::RedisModuleDefragCtx, *mut c_void) -> *mut c_void;
type ShouldStop = unsafe extern "C" fn(*mut raw::RedisModuleDefragCtx) -> c_int;

/// `RedisModule_DefragAlloc` behind `core::relocate::Relocator`.
struct ServerRelocator {
    ctx: *mut raw::RedisModuleDefragCtx,
    defrag_alloc: DefragAlloc,
    should_stop: Option<ShouldStop>,
}

// SAFETY: `RedisModule_DefragAlloc` either returns NULL and leaves the
// allocation alone, or copies the whole usable size of it into a new
// allocation of the same size class of Redis's allocator (the one behind
// `RedisAlloc`, which frees it whatever the layout) and frees the old one.
unsafe impl Relocator for ServerRelocator {
    unsafe fn relocate(&mut self, ptr: NonNull<u8>, _layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: a live defrag context for this callback, and (the
        // caller's contract) a live allocation of Redis's allocator.
        NonNull::new(unsafe { (self.defrag_alloc)(self.ctx, ptr.as_ptr().cast()) }.cast())
    }

    fn should_stop(&mut self) -> bool {
        // SAFETY: a live defrag context for this callback.
        self.should_stop
            .is_some_and(|should_stop| unsafe { should_stop(self.ctx) } != 0)
    }
}

/// The type's `defrag` callback: 0 when the value is done, 1 when a late
/// defragmentation stopped for time (the cursor says where it resumes).
pub extern "C" fn defrag(
    ctx: *mut raw::RedisModuleDefragCtx,
    _key: *mut raw::RedisModuleString,
    value: *mut *mut c_void,
) -> c_int {
    run_callback("defrag", 0, || {
        let Some(defrag_alloc) = api!(RedisModule_DefragAlloc) else {
            return 0;
        };
        if ctx.is_null() || value.is_null() {
            return 0;
        }
        DEFRAG.calls.fetch_add(1, Ordering::Relaxed);
        let start = cursor(ctx);
        // SAFETY: Redis passes the key's value slot, holding a campaign
        // this module boxed, for the duration of the callback.
        let slot = unsafe { &mut *value };
        if start == 0 && !slot.is_null() {
            // The value's own allocation, once per walk.
            // SAFETY: a live context and an allocation of Redis's allocator.
            let moved = unsafe { defrag_alloc(ctx, *slot) };
            if !moved.is_null() {
                *slot = moved;
                DEFRAG.moved.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: as above; nothing else refers to the value while Redis
        // holds its lock and runs this callback.
        let Some(campaign) = (unsafe { slot.cast::<Campaign>().as_mut() }) else {
            return 0;
        };
        let mut relocator = ServerRelocator {
            ctx,
            defrag_alloc,
            should_stop: api!(RedisModule_DefragShouldStop),
        };
        let now_s = u32::try_from(cached_now_ms() / 1000).unwrap_or(u32::MAX);
        let (walk, moved) = campaign.relocate(start, &mut relocator, now_s);
        DEFRAG.moved.fetch_add(moved.moved, Ordering::Relaxed);
        DEFRAG.renewed.fetch_add(moved.renewed, Ordering::Relaxed);
        match walk {
            Walk::Done => 0,
            Walk::StoppedAt(unit) if set_cursor(ctx, unit) => {
                DEFRAG.resumed.fetch_add(1, Ordering::Relaxed);
                1
            }
            // Not a late defragmentation: nothing to resume with.
            Walk::StoppedAt(_) => 0,
        }
    })
}

/// The unit a late defragmentation resumes from (0: a new walk).
fn cursor(ctx: *mut raw::RedisModuleDefragCtx) -> usize {
    let Some(get) = api!(RedisModule_DefragCursorGet) else {
        return 0;
    };
    let mut cursor: c_ulong = 0;
    // SAFETY: a live context; `cursor` is written only on success.
    let got = unsafe { get(ctx, &mut cursor) };
    if got == raw::REDISMODULE_OK as c_int {
        usize::try_from(cursor).unwrap_or(0)
    } else {
        0
    }
}

/// Keeps `unit` for the next slice; false outside a late defragmentation.
fn set_cursor(ctx: *mut raw::RedisModuleDefragCtx, unit: usize) -> bool {
    let Some(set) = api!(RedisModule_DefragCursorSet) else {
        return false;
    };
    // SAFETY: a live context.
    unsafe { set(ctx, unit as c_ulong) == raw::REDISMODULE_OK as c_int }
}
