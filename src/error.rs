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
    #[error("CAMPAIGN.FLUSH timed out before the database committed the journal")]
    FlushTimeout,
    #[error("campaign is being rebuilt and the write could not wait (campaign.write-block-timeout-ms passed, or MULTI/script): nothing was changed")]
    WriteBlocked,
    #[error("campaign '{campaign}' is not loaded: a write first loads it from the database, which cannot be waited for inside MULTI or a script (or with campaign.write-block-timeout-ms 0): nothing was changed")]
    NotLoaded { campaign: String },
    #[error("loading campaign '{campaign}' from the database failed: {reason}")]
    LoadFailed { campaign: String, reason: String },
    #[error("{0} cannot wait inside MULTI or a script")]
    CannotBlock(&'static str),
    #[error("no database configured: set campaign.database-url")]
    DatabaseUnconfigured,
    #[error("{0} is internal: it is only accepted from the primary or the AOF")]
    InternalCommand(&'static str),
    /// A load or a held write finished after this node became a replica.
    #[error("this node became a replica before the load of the campaign finished: nothing was changed, retry on the primary")]
    NoLongerPrimary,
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
            CampaignError::JournalFull { .. } => "BUSY",
            CampaignError::FlushTimeout
            | CampaignError::WriteBlocked
            | CampaignError::NotLoaded { .. } => "TIMEOUT",
            CampaignError::WrongArity
            | CampaignError::InvalidMember { .. }
            | CampaignError::InvalidCampaignName(_)
            | CampaignError::Syntax(_)
            | CampaignError::CannotBlock(_)
            | CampaignError::InternalCommand(_)
            | CampaignError::LoadFailed { .. }
            | CampaignError::DatabaseUnconfigured
            | CampaignError::Database(_)
            | CampaignError::Internal { .. } => "ERR",
            CampaignError::NoLongerPrimary => "READONLY",
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
        assert!(reply_text(CampaignError::FlushTimeout).starts_with("TIMEOUT "));
        assert!(matches!(
            CampaignError::WrongArity.into_redis_error(),
            RedisError::WrongArity
        ));
    }
}
