//! Starts the real servers the integration tests talk to: redis-server with
//! the freshly built module, and PostgreSQL. Each runs on a free port in its
//! own temporary directory and is stopped when its handle drops.

pub mod campaign;
pub mod cluster;
pub mod pgbouncer;
pub mod postgres;
pub mod redis_server;
pub mod tls;

pub use self::postgres::Postgres;
pub use redis_server::{RedisOptions, RedisServer};

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("no free port")
}

/// A free port whose cluster bus port (10000 above it) is free too: a
/// cluster node listens on both, and a bus port already taken by another
/// process stopped a node from starting.
pub fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= u16::MAX - 10_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
