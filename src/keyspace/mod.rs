//! Campaign keys: the `campaigns` native type and its callbacks, the
//! module-wide journal, the negative cache, and the one write path every
//! change to a campaign goes through.

pub mod background_free;
pub mod data_type;
pub mod defrag;
pub mod deleted;
pub mod identity;
pub mod journal;
pub mod memory_guard;
pub mod negative;
pub mod retry;
pub mod shadow;
pub mod write;

use redis_module::key::{RedisKey, RedisKeyWritable};
use redis_module::{Context, RedisString, RedisValue};

pub use data_type::CAMPAIGN_TYPE;

use crate::core::version::VersionClock;
use crate::core::Campaign;
use crate::error::CampaignError;
use crate::redis_glue::ffi::selected_db;
use crate::redis_glue::server_state::is_replayed;

/// This node's version clock (SPEC section 4): advanced past every
/// campaign value and journal entry loaded here, so a version issued here
/// exceeds them all.
pub static CLOCK: VersionClock = VersionClock::new();

/// The one logical database whose keys are campaigns (SPEC section 2:
/// databases never share rows silently). PostgreSQL keys rows by campaign
/// name alone, so campaign commands and keys elsewhere are refused
/// (`check_served_db`, RESTORE and COPY in `data_type`); Redis Cluster
/// has this database only.
pub const SERVED_DB: i32 = 0;

/// Refuses a client's call in another database than `SERVED_DB`. What
/// the primary or the AOF sends was accepted once and is applied.
pub fn check_served_db(ctx: &Context) -> Result<(), CampaignError> {
    let db = selected_db(ctx);
    if db != SERVED_DB && !is_replayed(ctx) {
        return Err(CampaignError::WrongDatabase {
            db,
            served: SERVED_DB,
        });
    }
    Ok(())
}

/// A campaign key: database index and key name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId {
    pub db: i32,
    pub name: Vec<u8>,
}

impl KeyId {
    pub fn of(ctx: &Context, name: &RedisString) -> KeyId {
        KeyId {
            db: selected_db(ctx),
            name: name.as_slice().to_vec(),
        }
    }
}

/// The campaign stored at `key`, `None` if the key does not exist.
pub fn read_campaign(key: &RedisKey) -> Result<Option<&Campaign>, CampaignError> {
    key.get_value::<Campaign>(&CAMPAIGN_TYPE)
        .map_err(|_| CampaignError::WrongType)
}

pub fn write_campaign(key: &RedisKeyWritable) -> Result<Option<&mut Campaign>, CampaignError> {
    key.get_value::<Campaign>(&CAMPAIGN_TYPE)
        .map_err(|_| CampaignError::WrongType)
}

/// Runs `read` on the campaign named `name` in the selected db (`None`:
/// missing, or a key of another type). The borrow ends with the call.
pub fn with_campaign<T>(
    ctx: &Context,
    name: &RedisString,
    read: impl FnOnce(Option<&Campaign>) -> T,
) -> T {
    let key = ctx.open_key(name);
    read(key.get_value::<Campaign>(&CAMPAIGN_TYPE).ok().flatten())
}

/// The reply of HAS (one integer) or MHAS (an array) against `set`.
pub fn answers(set: Option<&Campaign>, members: &[&str], multi: bool) -> RedisValue {
    let answer =
        |member: &&str| RedisValue::Integer(set.is_some_and(|s| s.contains(member)).into());
    if multi {
        RedisValue::Array(members.iter().map(answer).collect())
    } else {
        members.first().map_or(RedisValue::Integer(0), answer)
    }
}
