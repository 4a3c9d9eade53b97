//! What this node is allowed to do right now, answered in one place: only
//! a primary that is not loading its dataset, with a database configured,
//! talks to PostgreSQL (flushes, loads, prefill, reconcile).

use std::sync::atomic::{AtomicBool, Ordering};

use super::config;

pub struct ServerState {
    primary: AtomicBool,
    loading: AtomicBool,
}

pub static SERVER: ServerState = ServerState {
    primary: AtomicBool::new(true),
    loading: AtomicBool::new(false),
};

impl ServerState {
    pub fn set_primary(&self, primary: bool) {
        self.primary.store(primary, Ordering::Relaxed);
    }

    pub fn set_loading(&self, loading: bool) {
        self.loading.store(loading, Ordering::Relaxed);
    }

    pub fn is_primary(&self) -> bool {
        self.primary.load(Ordering::Relaxed)
    }

    pub fn is_loading(&self) -> bool {
        self.loading.load(Ordering::Relaxed)
    }

    /// `campaign.database-url` is set.
    pub fn database_configured(&self) -> bool {
        config::DATABASE_URL.is_set()
    }

    /// May this node use the database now: a primary, not loading, with a
    /// database configured.
    pub fn may_use_database(&self) -> bool {
        self.is_primary() && !self.is_loading() && self.database_configured()
    }

    pub fn role_name(&self) -> &'static str {
        if self.is_primary() {
            "primary"
        } else {
            "replica"
        }
    }
}

/// Commands replayed from the primary or the AOF were accepted once: they
/// are applied whatever this node's limits say now.
pub fn is_replayed(ctx: &redis_module::Context) -> bool {
    use redis_module::ContextFlags;
    ctx.get_flags()
        .intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
}
