//! A panic that unwinds into Redis aborts the server. Every entry point from
//! Redis goes through one of the guards below, which turn a panic into an
//! error reply (commands) or a fallback value (type callbacks) plus a log line.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::Once;
use std::time::Duration;

use redis_module::{Context, RedisResult, RedisString, RedisValue};

use crate::error::CampaignError;

pub type CommandResult = Result<RedisValue, CampaignError>;
pub type CommandHandler = fn(&Context, &[RedisString]) -> CommandResult;

/// Set by `CAMPAIGN.DEBUG PANIC-IN-NEXT-LOAD` (tests only): the next load
/// on a worker thread panics, to prove its waiters are still answered.
pub static PANIC_IN_NEXT_LOAD: AtomicBool = AtomicBool::new(false);

/// Sends panic messages to the Redis log: a daemonized server has no stderr.
pub fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            super::log::warning(format!(
                "panic in thread '{}': {info}",
                thread.name().unwrap_or("unnamed")
            ));
        }));
    });
}

/// Runs a command handler; a panic becomes an `ERR internal error` reply.
pub fn run_command(ctx: &Context, args: Vec<RedisString>, handler: CommandHandler) -> RedisResult {
    match catch_unwind(AssertUnwindSafe(|| handler(ctx, &args))) {
        Ok(result) => result.map_err(CampaignError::into_redis_error),
        Err(payload) => {
            let command = args
                .first()
                .map(RedisString::to_string_lossy)
                .unwrap_or_default();
            Err(CampaignError::Internal {
                command,
                detail: panic_message(payload.as_ref()),
            }
            .into_redis_error())
        }
    }
}

/// Runs a type callback; a panic is logged (by the hook) and `fallback`
/// is returned to Redis instead.
pub fn run_callback<T>(callback: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        super::log::warning(format!(
            "{callback} failed: {}",
            panic_message(payload.as_ref())
        ));
        fallback
    })
}

/// Starts a named background thread that runs `body` for good: a panic in
/// it is logged and `body` starts over after `restart_delay`.
pub fn spawn_supervised(name: &'static str, restart_delay: Duration, body: fn()) {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            run_callback(name, (), body);
            std::thread::sleep(restart_delay);
        });
    if let Err(error) = spawned {
        super::log::warning(format!("cannot start thread {name}: {error}"));
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic".to_owned()
    }
}
