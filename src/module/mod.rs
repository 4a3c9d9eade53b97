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
use crate::redis_glue::server_state::SERVER;
use crate::{rebuild, write_behind};

/// Runs once when the module loads (`redis_module!` has created the data
/// type): settings, commands, documentation, then the threads.
pub fn on_load(ctx: &Context, args: &[RedisString]) -> Status {
    panic_guard::install_panic_hook();
    // Lets rdb_load report a truncated stream instead of Redis exiting.
    ctx.set_module_options(ModuleOptions::HANDLE_IO_ERRORS);
    let registered = config::register(ctx, args)
        .and_then(|()| command_table::register(ctx))
        .and_then(|()| command_docs::register(ctx, &command_table::COMMANDS))
        .and_then(|()| events::subscribe(ctx));
    if let Err(problem) = registered {
        log::warning(format!("refusing to load: {problem}"));
        return Status::Err;
    }
    log::notice(format!(
        "module {} loaded into {}",
        env!("CARGO_PKG_VERSION"),
        server_name_and_version(ctx)
    ));
    SERVER.set_primary(!ctx.get_flags().contains(ContextFlags::SLAVE));
    JOURNAL.refresh_figures();
    write_behind::flusher::start();
    rebuild::worker::start();
    rebuild::reconcile::start();
    Status::Ok
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
