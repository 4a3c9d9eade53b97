//! CAMPAIGN.DEBUG: fault injection for the test suite. Like Redis's own DEBUG
//! command it exists only when the server runs with `enable-debug-command`
//! (`yes` or `local`): otherwise it is not registered at all.

use redis_module::{Context, RedisString, RedisValue};

use super::CommandResult;
use std::sync::atomic::Ordering;

use crate::core::Campaign;
use crate::error::CampaignError;
use crate::keyspace::write;
use crate::rebuild::worker::SHADOW_TUNING;
use crate::redis_glue::panic_guard::PANIC_IN_NEXT_LOAD;

/// `CAMPAIGN.DEBUG PANIC` → panics inside the handler, to prove the guard
/// turns it into an error reply instead of an aborted server.
/// `CAMPAIGN.DEBUG PANIC-IN-NEXT-LOAD` → the next load on a worker panics.
/// `CAMPAIGN.DEBUG SHADOW-PARTS bytes pause-after` → a rebuilt set goes to
/// replicas in parts of about `bytes`, and the sending load pauses after
/// `pause-after` parts (0: never) until `CAMPAIGN.DEBUG SHADOW-RESUME`
/// (`SHADOW-PAUSED` answers 1 while a load is paused).
/// `CAMPAIGN.DEBUG EMPTY key` → puts an empty campaign at `key` (which no
/// command can make), so a test can DUMP it and check RESTORE refuses it.
pub fn debug(ctx: &Context, args: &[RedisString]) -> CommandResult {
    if args.len() < 2 {
        return Err(CampaignError::WrongArity);
    }
    let subcommand = args[1].to_string_lossy().to_ascii_uppercase();
    match subcommand.as_str() {
        "EMPTY" if args.len() == 3 => {
            write::replace(ctx, &args[2], Campaign::new())?;
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
        "SHADOW-PARTS" if args.len() == 4 => {
            let number = |arg: &RedisString| {
                arg.parse_unsigned_integer()
                    .map(|value| value as usize)
                    .map_err(|_| CampaignError::Syntax("expected a number".into()))
            };
            let (part_bytes, pause_after) = (number(&args[2])?.max(1), number(&args[3])?);
            SHADOW_TUNING
                .part_bytes
                .store(part_bytes, Ordering::Relaxed);
            SHADOW_TUNING
                .pause_after
                .store(pause_after, Ordering::Relaxed);
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
        _ if args.len() != 2 => Err(CampaignError::WrongArity),
        "PANIC" => panic!("CAMPAIGN.DEBUG PANIC was called"),
        "SHADOW-PAUSED" => Ok(RedisValue::Integer(
            SHADOW_TUNING.paused.load(Ordering::Relaxed).into(),
        )),
        "SHADOW-RESUME" => {
            SHADOW_TUNING.pause_after.store(0, Ordering::Relaxed);
            Ok(RedisValue::SimpleStringStatic("OK"))
        }
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
