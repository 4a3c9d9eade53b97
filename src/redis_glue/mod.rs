//! Everything Redis calls into besides commands: the native type callbacks,
//! configuration, command documentation, module start-up and the panic guard.

pub mod background_free;
pub mod command_docs;
pub mod config;
pub mod data_type;
pub mod events;
pub mod fast_has;
pub mod panic_guard;

use std::sync::atomic::Ordering;

use redis_module::{Context, ContextFlags, ModuleOptions, RedisString, Status};

use crate::write_behind::{flusher, WRITE_BEHIND};

/// Runs once when the module loads, after Redis has applied the settings.
pub fn on_load(ctx: &Context, args: &[RedisString]) -> Status {
    panic_guard::install_panic_hook();
    let args: Vec<String> = args.iter().map(RedisString::to_string_lossy).collect();
    if let Err(problem) = config::check_module_args(&args) {
        ctx.log_warning(&format!("campaign: refusing to load: {problem}"));
        return Status::Err;
    }
    // Lets rdb_load report a truncated stream instead of Redis exiting.
    ctx.set_module_options(ModuleOptions::HANDLE_IO_ERRORS);
    if let Err(problem) = fast_has::register(ctx).and_then(|()| command_docs::register(ctx)) {
        ctx.log_warning(&format!("campaign: refusing to load: {problem}"));
        return Status::Err;
    }
    let primary = !ctx.get_flags().contains(ContextFlags::SLAVE);
    WRITE_BEHIND
        .stats
        .is_primary
        .store(primary, Ordering::Relaxed);
    WRITE_BEHIND.refresh_figures();
    flusher::start();
    crate::rebuild::worker::start();
    crate::rebuild::reconcile::start();
    Status::Ok
}
