//! redis-campaign: campaign membership sets in Redis, written behind to
//! PostgreSQL.
//!
//! - `core`: the pure data structures (no Redis import), unit-tested.
//! - `commands`: one file per command group; parse, call the core, reply.
//! - `redis_glue`: callbacks Redis calls (type, config, docs, start-up).
//! - `error`: the one error enum and its mapping to Redis error replies.

// Command registration is left out of unit-test builds (it needs a live
// Redis allocator), which leaves the command layer unused there.
#![cfg_attr(test, allow(dead_code, unused_imports))]

mod commands;
pub mod core;
mod error;
mod rebuild;
mod redis_glue;
mod sink;
mod write_behind;

#[cfg(not(test))]
mod registration {
    use redis_module::configuration::ConfigurationFlags;
    use redis_module::redis_module;

    use crate::commands::{debug, membership, rebuild, write_behind};
    use crate::redis_glue::config::*;
    use crate::redis_glue::data_type::CAMPAIGN_TYPE;
    use crate::redis_glue::on_load;
    use crate::redis_glue::panic_guard::run_command;

    /// Wraps a handler so a panic becomes an error reply, never an abort.
    macro_rules! guarded {
        ($handler:path) => {
            |ctx: &redis_module::Context, args: Vec<redis_module::RedisString>| {
                run_command(ctx, args, $handler)
            }
        };
    }

    redis_module! {
        name: "campaign",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [CAMPAIGN_TYPE],
        init: on_load,
        commands: [
            // name, handler, flags, first key, last key, key step, ACL categories
            // (campaign.has is registered by redis_glue::fast_has)
            ["campaign.add", guarded!(membership::add), "write deny-oom", 1, 1, 1, ""],
            ["campaign.sync", guarded!(membership::sync), "write deny-oom", 1, 1, 1, ""],
            ["campaign.rebuild", guarded!(rebuild::rebuild), "write", 1, 1, 1, ""],
            ["campaign.verify", guarded!(rebuild::verify), "readonly", 1, 1, 1, ""],
            ["campaign.rem", guarded!(membership::rem), "write", 1, 1, 1, ""],
            ["campaign.mhas", guarded!(membership::mhas), "readonly", 1, 1, 1, ""],
            ["campaign.card", guarded!(membership::card), "readonly fast", 1, 1, 1, ""],
            ["campaign.flush", guarded!(write_behind::flush), "", 0, 0, 0, ""],
            ["campaign.status", guarded!(write_behind::status), "readonly", 0, 0, 0, ""],
            ["campaign.journal", guarded!(write_behind::journal), "write", 0, 0, 0, ""],
            ["campaign.debug", guarded!(debug::debug), "admin", 0, 0, 0, ""],
        ],
        configurations: [
            i64: [
                ["flush-interval-ms", &FLUSH_INTERVAL_MS, FLUSH_INTERVAL_MS.default, FLUSH_INTERVAL_MS.min, FLUSH_INTERVAL_MS.max, ConfigurationFlags::DEFAULT, None],
                ["flush-batch-size", &FLUSH_BATCH_SIZE, FLUSH_BATCH_SIZE.default, FLUSH_BATCH_SIZE.min, FLUSH_BATCH_SIZE.max, ConfigurationFlags::DEFAULT, None],
                ["max-pending", &MAX_PENDING, MAX_PENDING.default, MAX_PENDING.min, MAX_PENDING.max, ConfigurationFlags::DEFAULT, None],
                ["negative-ttl-ms", &NEGATIVE_TTL_MS, NEGATIVE_TTL_MS.default, NEGATIVE_TTL_MS.min, NEGATIVE_TTL_MS.max, ConfigurationFlags::DEFAULT, None],
                ["verify-interval-s", &VERIFY_INTERVAL_S, VERIFY_INTERVAL_S.default, VERIFY_INTERVAL_S.min, VERIFY_INTERVAL_S.max, ConfigurationFlags::DEFAULT, None],
                ["write-block-timeout-ms", &WRITE_BLOCK_TIMEOUT_MS, WRITE_BLOCK_TIMEOUT_MS.default, WRITE_BLOCK_TIMEOUT_MS.min, WRITE_BLOCK_TIMEOUT_MS.max, ConfigurationFlags::DEFAULT, None],
                ["max-member-bytes", &MAX_MEMBER_BYTES, MAX_MEMBER_BYTES.default, MAX_MEMBER_BYTES.min, MAX_MEMBER_BYTES.max, ConfigurationFlags::DEFAULT, None],
            ],
            string: [
                ["database-url", &DATABASE_URL, DATABASE_URL.default, ConfigurationFlags::SENSITIVE, None],
                ["table", &TABLE, TABLE.default, ConfigurationFlags::DEFAULT, None],
            ],
            bool: [
                ["read-through", &READ_THROUGH, true, ConfigurationFlags::DEFAULT, None],
                ["prefill", &PREFILL, false, ConfigurationFlags::DEFAULT, None],
            ],
            enum: [],
            module_args_as_configuration: true,
        ]
    }
}
