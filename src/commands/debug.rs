//! CAMPAIGN.DEBUG: fault injection for the test suite. Like Redis's own DEBUG
//! command it exists only when the server runs with `enable-debug-command`
//! (`yes` or `local`): otherwise it is not registered at all.

use redis_module::{Context, RedisString, RedisValue};

use super::CommandResult;
use std::sync::atomic::Ordering;

use crate::error::CampaignError;
use crate::redis_glue::panic_guard::PANIC_IN_NEXT_LOAD;

/// `CAMPAIGN.DEBUG PANIC` → panics inside the handler, to prove the guard
/// turns it into an error reply instead of an aborted server.
pub fn debug(_ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() != 2 {
        return Err(CampaignError::WrongArity);
    }
    let subcommand = args[1].to_string_lossy().to_ascii_uppercase();
    match subcommand.as_str() {
        "PANIC" => panic!("CAMPAIGN.DEBUG PANIC was called"),
        "PANIC-IN-NEXT-LOAD" => {
            PANIC_IN_NEXT_LOAD.store(true, Ordering::Relaxed);
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
        _ => Err(CampaignError::Syntax(format!(
            "unknown CAMPAIGN.DEBUG subcommand '{}'",
            subcommand.escape_debug()
        ))),
    }
}

/// Whether CAMPAIGN.DEBUG is registered: `enable-debug-command` is not `no`
/// (read once, at load; Redis does not let it change at run time).
pub fn registered(ctx: &Context) -> bool {
    match ctx.call("CONFIG", &["GET", "enable-debug-command"]) {
        Ok(RedisValue::Array(reply)) => matches!(
            reply.get(1),
            Some(RedisValue::SimpleString(value) | RedisValue::BulkString(value))
                if value != "no"
        ),
        _ => false,
    }
}
