//! The foundation every other Redis-facing layer stands on: settings, the
//! panic guard, raw API helpers and the node's role. Nothing here knows
//! about campaigns, the journal or the database.

pub mod config;
pub mod ffi;
pub mod lock_hold;
pub mod log;
pub mod panic_guard;
pub mod server_state;
pub mod thread_priority;
