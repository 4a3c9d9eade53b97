//! The foundation every other Redis-facing layer stands on: settings, the
//! panic guard, raw API helpers and the node's role. Nothing here knows
//! about campaigns or the journal; of the database only the syntax of its
//! connection string (`conninfo`), which the setting's validation reads.

pub mod config;
pub mod conninfo;
pub mod ffi;
pub mod lock_hold;
pub mod log;
pub mod panic_guard;
pub mod server_state;
pub mod thread_priority;
