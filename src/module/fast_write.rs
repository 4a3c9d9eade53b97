//! The fast path of a one-member CAMPAIGN.ADD / CAMPAIGN.REM, the shape of
//! a queue consumer adding one user per message: the arguments are read
//! in place instead of through the `Vec<RedisString>` (each retained and
//! released) the ordinary handlers get. The change itself goes through
//! the one write path (`commands::membership::change_one` →
//! `keyspace::write::apply_change`); anything unusual goes to the ordinary
//! handler (`None`) before anything is touched.

use std::mem::ManuallyDrop;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{raw, Context, RedisString};

use crate::commands::membership::change_one;
use crate::core::Op;
use crate::error::CampaignError;

/// # Safety
/// `ctx` and `argv` are the live context and `argc` arguments of a call.
pub unsafe fn add_in_place(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> Option<c_int> {
    // SAFETY: forwarded from the caller.
    unsafe { write_in_place(ctx, argv, argc, Op::Add) }
}

/// # Safety
/// As `add_in_place`.
pub unsafe fn rem_in_place(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> Option<c_int> {
    // SAFETY: forwarded from the caller.
    unsafe { write_in_place(ctx, argv, argc, Op::Remove) }
}

/// # Safety
/// As `add_in_place`.
unsafe fn write_in_place(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    op: Op,
) -> Option<c_int> {
    if argc != 3 {
        return None;
    }
    // SAFETY: Redis passes `argc` (3) live arguments.
    let args = unsafe { std::slice::from_raw_parts(argv, 3) };
    // Borrowed, not retained: never dropped (which would release them).
    let name = ManuallyDrop::new(RedisString::from_redis_module_string(ctx, args[1]));
    let member = ManuallyDrop::new(RedisString::from_redis_module_string(ctx, args[2]));
    let context = Context::new(ctx);
    // A panic must not fall through to the ordinary handler, which would
    // apply the write a second time: it is answered here.
    let result = match catch_unwind(AssertUnwindSafe(|| {
        change_one(&context, &name, &member, op)
    })) {
        Ok(None) => return None,
        Ok(Some(result)) => result,
        Err(_) => Err(CampaignError::Internal {
            command: op.word().to_owned(),
            detail: "panic in the write path".to_owned(),
        }),
    };
    Some(context.reply(result.map_err(CampaignError::into_redis_error)) as c_int)
}
