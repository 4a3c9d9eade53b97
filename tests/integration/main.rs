//! Integration tests: a real redis-server with the built module, and a real
//! PostgreSQL, started per test by `harness`. One test binary keeps the
//! build small.

mod harness;

mod cluster;
mod configuration;
mod connecting;
mod database_harness;
mod encoding;
mod errors;
mod faults;
mod hardening;
mod identity;
mod incomplete;
mod membership;
mod memory;
mod pauses;
mod persistence;
mod rebuild;
mod renames;
mod replication;
mod server_harness;
mod shadows;
mod versions;
mod write_behind;
