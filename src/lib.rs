//! redis-campaign: campaign membership sets in Redis, written behind to
//! PostgreSQL. The layers, top first; each uses only those below it
//! (checked by `../shared/tools/layers.py` in CI):
//!
//! - `module`: start-up wiring — the command table, the HAS fast path,
//!   command docs, server events, INFO, thread start-up.
//! - `commands`: one file per command group; parse, check holds, reply.
//! - `rebuild` + `write_behind`: the services — loads from the database
//!   with held writes; the flusher and FLUSH waiters.
//! - `keyspace`: the `campaigns` type and its callbacks, the journal, and
//!   the one write path (`keyspace::write::apply_change`).
//! - `propagation`: every internal wire form, built and parsed.
//! - `sink`: the database behind the `Sink` and `Source` traits.
//! - `redis_glue`: settings, panic guard, raw API helpers, server state.
//! - `error`: the one error enum and its mapping to Redis error replies.
//! - `core`: the pure data structures (no Redis import), unit-tested.

// Registration is left out of unit-test builds (it needs a live Redis
// allocator), which leaves the Redis-facing layers partly unused there.
#![cfg_attr(test, allow(dead_code, unused_imports))]
#![deny(unsafe_op_in_unsafe_fn)]

mod commands;
pub mod core;
mod error;
mod keyspace;
mod module;
mod propagation;
mod rebuild;
mod redis_glue;
mod sink;
mod write_behind;

#[cfg(not(test))]
mod registration {
    use redis_module::redis_module;

    use crate::keyspace::CAMPAIGN_TYPE;
    use crate::module::on_load;

    // Commands and settings are registered by `on_load` from their tables
    // (`module::command_table`, `redis_glue::config::SETTINGS`).
    redis_module! {
        name: "campaign",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [CAMPAIGN_TYPE],
        init: on_load,
    }
}
