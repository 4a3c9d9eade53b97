//! CAMPAIGN.HAS registered by hand: the login hot path reads its two
//! arguments in place instead of through the `Vec<RedisString>` the
//! `redis_module!` wrapper builds for every call, so a lookup in a loaded
//! campaign allocates nothing. A missing campaign (read-through) takes the
//! ordinary handler.

use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{raw, Context, RedisError};

use super::data_type::CAMPAIGN_TYPE;
use super::panic_guard::run_command;
use crate::commands::membership;
use crate::core::{validate_text, Campaign};
use crate::error::CampaignError;
use crate::redis_glue::config;

pub fn register(ctx: &Context) -> Result<(), String> {
    // SAFETY: called from OnLoad with its context; the API table is filled.
    let status = unsafe {
        let Some(create) = raw::RedisModule_CreateCommand else {
            return Err("RedisModule_CreateCommand is missing".into());
        };
        create(
            ctx.ctx,
            c"campaign.has".as_ptr(),
            Some(has_command),
            c"readonly fast".as_ptr(),
            1,
            1,
            1,
        )
    };
    if status == raw::REDISMODULE_OK as c_int {
        Ok(())
    } else {
        Err("cannot register campaign.has".into())
    }
}

extern "C" fn has_command(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: Redis passes a live context and `argc` live arguments.
    let answered = catch_unwind(AssertUnwindSafe(|| unsafe {
        has_in_place(ctx, argv, argc)
    }));
    match answered {
        Ok(Some(status)) => status,
        // Missing campaign, or a panic: the guarded ordinary handler answers.
        Ok(None) | Err(_) => {
            let context = Context::new(ctx);
            let args = redis_module::decode_args(ctx, argv, argc);
            let result = run_command(&context, args, membership::has);
            context.reply(result) as c_int
        }
    }
}

/// Answers HAS for a loaded campaign; `None` leaves it to the ordinary path.
unsafe fn has_in_place(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> Option<c_int> {
    if argc != 3 {
        return None;
    }
    let args = std::slice::from_raw_parts(argv, 3);
    let member = bytes_of(args[2]);
    if validate_text(member, Some(config::max_member_bytes())).is_err() {
        return None;
    }
    let key = raw::RedisModule_OpenKey?(ctx, args[1], raw::REDISMODULE_READ as c_int);
    let answer = answer_from(key, member);
    raw::RedisModule_CloseKey?(key);
    match answer? {
        Ok(present) => Some(raw::RedisModule_ReplyWithLongLong?(ctx, present.into())),
        Err(error) => {
            let text = match error.into_redis_error() {
                RedisError::String(text) => text,
                other => other.to_string(),
            };
            let text = std::ffi::CString::new(text).ok()?;
            Some(raw::RedisModule_ReplyWithError?(ctx, text.as_ptr()))
        }
    }
}

/// `None` for a missing key; WRONGTYPE for a key of another type.
unsafe fn answer_from(
    key: *mut raw::RedisModuleKey,
    member: &[u8],
) -> Option<Result<bool, CampaignError>> {
    if key.is_null() || raw::RedisModule_KeyType?(key) == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
        return None;
    }
    if raw::RedisModule_ModuleTypeGetType?(key) != *CAMPAIGN_TYPE.raw_type.borrow() {
        return Some(Err(CampaignError::WrongType));
    }
    let campaign = raw::RedisModule_ModuleTypeGetValue?(key).cast::<Campaign>();
    // validate_text accepted it: the member is UTF-8.
    let member = std::str::from_utf8_unchecked(member);
    Some(Ok(campaign.as_ref()?.contains(member)))
}

unsafe fn bytes_of<'a>(string: *mut raw::RedisModuleString) -> &'a [u8] {
    let mut length = 0;
    let Some(pointer_of) = raw::RedisModule_StringPtrLen else {
        return &[];
    };
    let pointer: *const c_char = pointer_of(string, &mut length);
    std::slice::from_raw_parts(pointer.cast(), length)
}
