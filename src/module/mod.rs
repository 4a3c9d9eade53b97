//! Start-up wiring, the top of the Redis-facing layers: module load, the
//! command table and its documentation, the HAS fast path, server events,
//! the INFO section, and the background threads.

pub mod command_docs;
pub mod command_table;
pub mod events;
pub mod fast_has;
pub mod fast_write;

use redis_module::{Context, ContextFlags, ModuleOptions, RedisString, Status};

use crate::keyspace::journal::JOURNAL;
use crate::redis_glue::config;
use crate::redis_glue::ffi::call_text;
use crate::redis_glue::log;
use crate::redis_glue::panic_guard;
use crate::redis_glue::server_state::{SERVER, SLOT_MIGRATION};
use crate::{rebuild, write_behind};

/// Runs once when the module loads (`redis_module!` has created the data
/// type): settings, commands, documentation, then the threads.
pub fn on_load(ctx: &Context, args: &[RedisString]) -> Status {
    panic_guard::install_panic_hook();
    let server = server_name_and_version(ctx);
    // Lets rdb_load report a truncated stream instead of Redis exiting.
    let mut options = ModuleOptions::HANDLE_IO_ERRORS;
    if has_atomic_slot_migration(&server) {
        // Valkey 9 refuses `CLUSTER MIGRATESLOTS` while a loaded module
        // does not declare it handles the migration (the bit is set only
        // there: other servers have no such option, or another at 1 << 5).
        SLOT_MIGRATION.set_supported();
        options |= ModuleOptions::from_bits_retain(HANDLE_ATOMIC_SLOT_MIGRATION);
    }
    ctx.set_module_options(options);
    let registered = config::register(ctx, args)
        .and_then(|()| command_table::register(ctx))
        .and_then(|()| command_docs::register(ctx, &command_table::COMMANDS))
        .and_then(|()| events::subscribe(ctx))
        .and_then(|()| {
            if SLOT_MIGRATION.is_supported() {
                events::subscribe_slot_migration(ctx)
            } else {
                Ok(())
            }
        });
    if let Err(problem) = registered {
        log::warning(format!("refusing to load: {problem}"));
        return Status::Err;
    }
    log::notice(format!(
        "module {} loaded into {server}{}",
        env!("CARGO_PKG_VERSION"),
        if SLOT_MIGRATION.is_supported() {
            " (atomic slot migration handled)"
        } else {
            ""
        }
    ));
    SERVER.set_primary(!ctx.get_flags().contains(ContextFlags::SLAVE));
    JOURNAL.refresh_figures();
    write_behind::flusher::start();
    rebuild::worker::start();
    rebuild::reconcile::start();
    Status::Ok
}

/// `VALKEYMODULE_OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION` (Valkey 9.0).
const HANDLE_ATOMIC_SLOT_MIGRATION: i32 = 1 << 5;

/// Valkey 9.0 and later migrate slots atomically (`CLUSTER MIGRATESLOTS`).
fn has_atomic_slot_migration(server: &str) -> bool {
    let Some(version) = server.strip_prefix("valkey ") else {
        return false;
    };
    version
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 9)
}

/// "valkey 9.1.2", "redis 7.0.15": from INFO server.
fn server_name_and_version(ctx: &Context) -> String {
    let info = call_text(ctx, "INFO", &["server"]).unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    match (field("valkey_version"), field("redis_version")) {
        (Some(version), _) => format!("valkey {version}"),
        (None, Some(version)) => format!("redis {version}"),
        (None, None) => "an unknown server".into(),
    }
}
