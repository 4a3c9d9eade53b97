//! The fast path of CAMPAIGN.HAS, the login hot path: it reads its two
//! arguments in place instead of through the `Vec<RedisString>` the
//! ordinary handlers get, so a lookup in a loaded campaign allocates
//! nothing. A missing campaign (read-through) or anything unusual goes to
//! the ordinary handler (`None`).

use std::os::raw::c_int;

use crate::redis_glue::ffi::api;
use redis_module::{raw, RedisError};

use crate::core::campaign::Known;
use crate::core::{validate_text, Campaign};
use crate::error::CampaignError;
use crate::keyspace::{CAMPAIGN_TYPE, SERVED_DB};
use crate::redis_glue::config;
use crate::redis_glue::ffi::string_bytes;

/// Answers HAS for a loaded campaign; `None` leaves it to the ordinary path.
///
/// # Safety
/// `ctx` and `argv` are the live context and `argc` arguments of a call.
pub unsafe fn has_in_place(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> Option<c_int> {
    if argc != 3 {
        return None;
    }
    // SAFETY: Redis passes `argc` (3) live arguments.
    let args = unsafe { std::slice::from_raw_parts(argv, 3) };
    // SAFETY: the argument outlives this call.
    let member = unsafe { string_bytes(&args[2]) };
    // Anything refused goes to the ordinary handler, which replies with
    // the error. (Validation used to be a fifth of the call: see
    // `validate_text`'s ASCII shortcut.)
    let member = validate_text(member, Some(config::max_member_bytes())).ok()?;
    let (open, close, reply, selected_db) = (
        api!(RedisModule_OpenKey)?,
        api!(RedisModule_CloseKey)?,
        api!(RedisModule_ReplyWithLongLong)?,
        api!(RedisModule_GetSelectedDb)?,
    );
    // Another database: the ordinary handler refuses it.
    // SAFETY: a live context.
    if unsafe { selected_db(ctx) } != SERVED_DB {
        return None;
    }
    // SAFETY: a live context and key name; the key is closed below.
    let key = unsafe { open(ctx, args[1], raw::REDISMODULE_READ as c_int) };
    // SAFETY: `key` is the handle just opened (or NULL).
    let answer = unsafe { answer_from(key, member) };
    // SAFETY: as above; closing NULL is a no-op.
    unsafe { close(key) };
    match answer? {
        // SAFETY: a live context.
        Ok(present) => Some(unsafe { reply(ctx, present.into()) }),
        Err(error) => {
            let text = match error.into_redis_error() {
                RedisError::String(text) => text,
                other => other.to_string(),
            };
            let text = std::ffi::CString::new(text).ok()?;
            let reply_error = api!(RedisModule_ReplyWithError)?;
            // SAFETY: a live context; Redis copies the text.
            Some(unsafe { reply_error(ctx, text.as_ptr()) })
        }
    }
}

/// `None` for a missing key; WRONGTYPE for a key of another type.
///
/// # Safety
/// `key` is an open key handle or NULL.
unsafe fn answer_from(
    key: *mut raw::RedisModuleKey,
    member: &str,
) -> Option<Result<bool, CampaignError>> {
    if key.is_null() {
        return None;
    }
    let (key_type, type_of, value_of) = (
        api!(RedisModule_KeyType)?,
        api!(RedisModule_ModuleTypeGetType)?,
        api!(RedisModule_ModuleTypeGetValue)?,
    );
    // SAFETY: `key` is open (caller).
    if unsafe { key_type(key) } == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
        return None;
    }
    // SAFETY: as above.
    if unsafe { type_of(key) } != *CAMPAIGN_TYPE.raw_type.borrow() {
        return Some(Err(CampaignError::WrongType));
    }
    // SAFETY: a key of this module's type holds a `Campaign`, alive while
    // the key is open.
    let campaign = unsafe { value_of(key).cast::<Campaign>().as_ref()? };
    match campaign.knows(member) {
        Known::Present => Some(Ok(true)),
        Known::Absent => Some(Ok(false)),
        // An incomplete campaign not written for it: the ordinary path.
        Known::Unknown => None,
    }
}
