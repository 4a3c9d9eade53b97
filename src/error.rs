//! The one error type of the module and its mapping to Redis error replies.
//!
//! Every command returns `Result<_, CampaignError>`; `CampaignError::into_redis_error`
//! below is the only place that decides the error code a client
//! sees (`ERR`, `WRONGTYPE`, later `BUSY` and `TIMEOUT`).

use redis_module::RedisError;
use thiserror::Error;

use crate::core::TextError;

#[derive(Debug, Error)]
pub enum CampaignError {
    /// Redis words this one itself ("wrong number of arguments for ...").
    #[error("wrong number of arguments")]
    WrongArity,
    #[error("Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("invalid member at argument {position}: the member {reason}")]
    InvalidMember { position: usize, reason: TextError },
    #[error("invalid campaign name: the name {0}")]
    InvalidCampaignName(TextError),
    #[error("{0}")]
    Syntax(String),
    #[error("campaign journal is full ({pending} entries pending, campaign.max-pending reached): retry once the database catches up")]
    JournalFull { pending: usize },
    #[error("campaign journal holds {bytes} bytes (campaign.max-pending-bytes {limit} reached): retry once the database catches up")]
    JournalBytesFull { bytes: usize, limit: usize },
    /// Under `maxmemory`, journal growth would make Redis evict keys.
    #[error("Redis memory is at {used_percent}% of maxmemory, within the module's reserve of {reserve_bytes} bytes (campaign.maxmemory-reserve-percent), and the campaign journal holds {journal_bytes} bytes: writes are refused so that the journal does not make Redis evict campaigns; retry once the database catches up")]
    MemoryReserve {
        used_percent: u32,
        journal_bytes: usize,
        reserve_bytes: u64,
    },
    #[error("CAMPAIGN.FLUSH timed out before the database committed the journal")]
    FlushTimeout,
    #[error("campaign is being rebuilt and the write could not wait (campaign.write-block-timeout-ms passed, or MULTI/script): nothing was changed")]
    WriteBlocked,
    #[error("loading campaign '{campaign}' from the database failed: {reason}")]
    LoadFailed { campaign: String, reason: String },
    #[error("{0} cannot wait inside MULTI or a script")]
    CannotBlock(&'static str),
    #[error("no database configured: set campaign.database-url")]
    DatabaseUnconfigured,
    #[error("{0} is internal: it is only accepted from the primary or the AOF")]
    InternalCommand(&'static str),
    /// A client's write reached a replica (`replica-read-only no`): only a
    /// primary journals changes (SPEC section 5, guarantee 4).
    #[error("campaigns are written on the primary only (this node is a replica, whatever replica-read-only says): nothing was changed")]
    ReplicaWrite,
    /// A campaign command or key outside the one logical database the
    /// module serves (`keyspace::SERVED_DB`).
    #[error("campaigns live in database {served} only (this call is in database {db}): nothing was changed")]
    WrongDatabase { db: i32, served: i32 },
    /// A load or a held write finished after this node became a replica.
    #[error("this node became a replica before the load of the campaign finished: nothing was changed, retry on the primary")]
    NoLongerPrimary,
    /// A load finished after an atomic slot migration moved the campaign's
    /// slot to another node.
    #[error("the campaign's slot migrated to another node before its load finished: nothing was changed, retry there")]
    SlotMigrated,
    /// CARD/VERIFY of an incomplete campaign: no figure would be true.
    #[error("campaign '{campaign}' is incomplete (written while the database could not load it): it is completed from the database as soon as the database answers; retry then")]
    Incomplete { campaign: String },
    /// A database round trip of an administrative command failed.
    #[error("{0}")]
    Database(String),
    /// A caught panic or another bug; the details are in the Redis log.
    #[error("internal error in {command}: {detail} (see the Redis log)")]
    Internal { command: String, detail: String },
}

impl CampaignError {
    /// The error code a client sees as the first word of the reply.
    pub fn code(&self) -> &'static str {
        match self {
            CampaignError::WrongType => "WRONGTYPE",
            CampaignError::JournalFull { .. }
            | CampaignError::JournalBytesFull { .. }
            | CampaignError::MemoryReserve { .. } => "BUSY",
            CampaignError::FlushTimeout | CampaignError::WriteBlocked => "TIMEOUT",
            CampaignError::WrongArity
            | CampaignError::InvalidMember { .. }
            | CampaignError::InvalidCampaignName(_)
            | CampaignError::Syntax(_)
            | CampaignError::CannotBlock(_)
            | CampaignError::InternalCommand(_)
            | CampaignError::LoadFailed { .. }
            | CampaignError::DatabaseUnconfigured
            | CampaignError::Database(_)
            | CampaignError::WrongDatabase { .. }
            | CampaignError::Internal { .. } => "ERR",
            CampaignError::NoLongerPrimary | CampaignError::ReplicaWrite => "READONLY",
            CampaignError::Incomplete { .. } | CampaignError::SlotMigrated => "TRYAGAIN",
        }
    }

    /// The reply Redis sends for this error. (`RedisError` already converts
    /// from every `std::error::Error`, so this cannot be a `From` impl.)
    pub fn into_redis_error(self) -> RedisError {
        match self {
            CampaignError::WrongArity => RedisError::WrongArity,
            other => RedisError::String(format!("{} {}", other.code(), other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_text(error: CampaignError) -> String {
        error.into_redis_error().to_string()
    }

    #[test]
    fn each_error_gets_its_code() {
        assert!(reply_text(CampaignError::WrongType).starts_with("WRONGTYPE "));
        let invalid = CampaignError::InvalidMember {
            position: 3,
            reason: TextError::ContainsNul,
        };
        assert_eq!(
            reply_text(invalid),
            "ERR invalid member at argument 3: the member contains a NUL byte"
        );
        assert!(reply_text(CampaignError::JournalFull { pending: 5 }).starts_with("BUSY "));
        let bytes = CampaignError::JournalBytesFull { bytes: 9, limit: 8 };
        assert!(reply_text(bytes).starts_with("BUSY "));
        let memory = CampaignError::MemoryReserve {
            used_percent: 96,
            journal_bytes: 1 << 20,
            reserve_bytes: 4 << 20,
        };
        assert!(reply_text(memory).starts_with("BUSY "));
        assert!(reply_text(CampaignError::FlushTimeout).starts_with("TIMEOUT "));
        assert!(matches!(
            CampaignError::WrongArity.into_redis_error(),
            RedisError::WrongArity
        ));
    }
}
