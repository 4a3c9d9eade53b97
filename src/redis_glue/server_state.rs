//! What this node is allowed to do right now, answered in one place: only
//! a primary that is not loading its dataset, with a database configured,
//! talks to PostgreSQL (flushes, loads, prefill, reconcile).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis_module::raw;

use super::config;
use crate::core::cluster::{key_slot, SLOTS};

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
/// are applied whatever this node's limits say now. So are those a slot
/// migration's source sends (Valkey 9's import client).
pub fn is_replayed(ctx: &redis_module::Context) -> bool {
    let mut replayed = raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING;
    if SLOT_MIGRATION.is_supported() {
        replayed |= CTX_FLAGS_SLOT_IMPORT_CLIENT as u32;
    }
    context_flags(ctx) & replayed != 0
}

/// The context's flags, raw: the crate's `ContextFlags` drops the bits it
/// does not know.
fn context_flags(ctx: &redis_module::Context) -> u32 {
    // SAFETY: `ctx.ctx` is the live context of the call.
    crate::redis_glue::ffi::api!(RedisModule_GetContextFlags)
        .map_or(0, |flags_of| unsafe { flags_of(ctx.ctx) }) as u32
}

/// `VALKEYMODULE_CTX_FLAGS_SLOT_IMPORT_CLIENT` (Valkey 9.0): the command
/// comes from the source of an atomic slot migration. Read only where the
/// server has atomic slot migration (elsewhere the bit may mean another
/// thing, or nothing).
const CTX_FLAGS_SLOT_IMPORT_CLIENT: i32 = 1 << 25;

/// The command runs on a slot migration's import client (Valkey 9).
pub fn is_import_client(ctx: &redis_module::Context) -> bool {
    SLOT_MIGRATION.is_supported() && context_flags(ctx) & CTX_FLAGS_SLOT_IMPORT_CLIENT as u32 != 0
}

/// Valkey 9's atomic slot migration (`CLUSTER MIGRATESLOTS`) as this node
/// sees it: whether the server has it (the module then opts in), and the
/// slots it is importing now (from `ValkeyModuleEvent_AtomicSlotMigration`,
/// on the target primary and its replicas alike). A key in such a slot is
/// hidden from clients until the migration completes: whatever touches it
/// comes from the source, which journaled the change and flushes it (SPEC
/// section 6: imported keys are not journaled as new changes).
pub struct SlotMigration {
    supported: AtomicBool,
    importing: [AtomicU64; SLOTS / 64],
    /// The slots this node is exporting, and how many exports run.
    exporting: [AtomicU64; SLOTS / 64],
    exports: AtomicU64,
}

pub static SLOT_MIGRATION: SlotMigration = SlotMigration {
    supported: AtomicBool::new(false),
    importing: [const { AtomicU64::new(0) }; SLOTS / 64],
    exporting: [const { AtomicU64::new(0) }; SLOTS / 64],
    exports: AtomicU64::new(0),
};

fn mark(bits: &[AtomicU64; SLOTS / 64], ranges: &[(u16, u16)], set: bool) {
    for &(first, last) in ranges {
        for slot in first..=last.min(SLOTS as u16 - 1) {
            let (word, bit) = (slot as usize / 64, 1_u64 << (slot % 64));
            if set {
                bits[word].fetch_or(bit, Ordering::Relaxed);
            } else {
                bits[word].fetch_and(!bit, Ordering::Relaxed);
            }
        }
    }
}

fn marked(bits: &[AtomicU64; SLOTS / 64], slot: u16) -> bool {
    let slot = slot as usize % SLOTS;
    bits[slot / 64].load(Ordering::Relaxed) & (1 << (slot % 64)) != 0
}

impl SlotMigration {
    pub fn set_supported(&self) {
        self.supported.store(true, Ordering::Relaxed);
    }

    pub fn is_supported(&self) -> bool {
        self.supported.load(Ordering::Relaxed)
    }

    /// An import of the slots `first..=last` of each range started (true)
    /// or ended (false). Out-of-range slots are ignored.
    pub fn set_importing(&self, ranges: &[(u16, u16)], importing: bool) {
        mark(&self.importing, ranges, importing);
    }

    /// An export of these slot ranges started (true) or ended (false).
    pub fn set_exporting(&self, ranges: &[(u16, u16)], exporting: bool) {
        mark(&self.exporting, ranges, exporting);
        if exporting {
            self.exports.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self
                .exports
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    pub fn slot_importing(&self, slot: u16) -> bool {
        marked(&self.importing, slot)
    }

    /// The key `name` lies in a slot this node is exporting.
    pub fn key_exporting(&self, name: &[u8]) -> bool {
        self.is_supported() && marked(&self.exporting, key_slot(name))
    }

    /// An export started and has not ended yet.
    pub fn exporting(&self) -> bool {
        self.is_supported() && self.exports.load(Ordering::Relaxed) > 0
    }

    /// The key `name` lies in a slot this node is importing.
    pub fn key_importing(&self, name: &[u8]) -> bool {
        self.is_supported() && self.slot_importing(key_slot(name))
    }
}

/// A change to campaign `name` arrives by a slot migration (the import
/// client, or the target primary's stream to its replicas): applied with
/// the versions the source gave, never journaled here, never loaded from
/// the database meanwhile.
pub fn is_imported(ctx: &redis_module::Context, name: &[u8]) -> bool {
    SLOT_MIGRATION.key_importing(name) || is_import_client(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> SlotMigration {
        SlotMigration {
            supported: AtomicBool::new(true),
            importing: [const { AtomicU64::new(0) }; SLOTS / 64],
            exporting: [const { AtomicU64::new(0) }; SLOTS / 64],
            exports: AtomicU64::new(0),
        }
    }

    #[test]
    fn importing_slots_are_marked_from_the_event_ranges_and_cleared_at_the_end() {
        let migration = fresh();
        // "b" hashes to slot 3300, "{b}x" too; "c" to 7365.
        migration.set_importing(&[(3300, 3300), (16_000, 16_383)], true);
        assert!(migration.key_importing(b"b"));
        assert!(migration.key_importing(b"{b}x"));
        assert!(!migration.key_importing(b"c"));
        assert!(migration.slot_importing(16_383));
        migration.set_importing(&[(3300, 3300), (16_000, 16_383)], false);
        assert!(!migration.key_importing(b"b"));
        assert!(!migration.slot_importing(16_383));
    }

    #[test]
    fn exports_count_and_never_go_below_zero() {
        let migration = fresh();
        assert!(!migration.exporting());
        migration.set_exporting(&[(0, 100)], true);
        assert!(migration.exporting());
        assert!(!migration.key_exporting(b"b"), "slot 3300 is not in 0-100");
        migration.set_exporting(&[(0, 100)], false);
        migration.set_exporting(&[(0, 100)], false);
        assert!(!migration.exporting());
        migration.set_exporting(&[(7365, 7365)], true);
        assert!(migration.key_exporting(b"c"));
    }

    #[test]
    fn nothing_is_marked_where_the_server_has_no_slot_migration() {
        let migration = fresh();
        migration.supported.store(false, Ordering::Relaxed);
        migration.set_importing(&[(0, 16_383)], true);
        assert!(!migration.key_importing(b"b"));
        assert!(!migration.key_exporting(b"b"));
    }
}
