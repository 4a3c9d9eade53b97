//! Server events and the INFO section: role changes start and stop the
//! flusher, loading pauses it, the cron expires waiters and starts prefill.

use redis_module::server_events::{LoadingSubevent, ServerRole};
use redis_module::{Context, InfoContext, RedisResult};
use redis_module_macros::{
    cron_event_handler, info_command_handler, loading_event_handler, role_changed_event_handler,
};

use crate::commands::write_behind::{status_figures, Figure};
use crate::keyspace::journal::JOURNAL;
use crate::keyspace::negative;
use crate::rebuild::{prefill, LOADS};
use crate::redis_glue::panic_guard::run_callback;
use crate::redis_glue::server_state::SERVER;
use crate::write_behind::WRITE_BEHIND;

#[role_changed_event_handler]
fn on_role_changed(_ctx: &Context, role: ServerRole) {
    run_callback("role change", (), || {
        SERVER.set_primary(role == ServerRole::Primary);
        // A promoted replica flushes what it holds at once.
        JOURNAL.wake();
    });
}

#[loading_event_handler]
fn on_loading(_ctx: &Context, event: LoadingSubevent) {
    run_callback("loading event", (), || {
        let loading = matches!(
            event,
            LoadingSubevent::RdbStarted
                | LoadingSubevent::AofStarted
                | LoadingSubevent::ReplStarted
        );
        SERVER.set_loading(loading);
        JOURNAL.wake();
    });
}

#[cron_event_handler]
fn on_cron(ctx: &Context, _hz: u64) {
    run_callback("cron", (), || {
        WRITE_BEHIND.on_cron(ctx);
        LOADS.on_cron();
        negative::expire_missing();
        prefill::on_cron(ctx);
    });
}

/// `INFO campaign`: the figures of CAMPAIGN.STATUS, with INFO-style names.
/// (The builder API names sections `campaign_<name>`; `INFO campaign` needs
/// the module's default section, which only the older calls reach.)
#[allow(deprecated)]
#[info_command_handler]
fn add_info(ctx: &InfoContext, _for_crash_report: bool) -> RedisResult<()> {
    run_callback("info", Ok(()), || {
        ctx.add_info_section(None);
        for (name, figure) in status_figures() {
            let name = name.replace('-', "_");
            match figure {
                Figure::Number(number) => ctx.add_info_field_long_long(&name, number),
                Figure::Text(text) => ctx.add_info_field_str(&name, &text),
            };
        }
        Ok(())
    })
}
