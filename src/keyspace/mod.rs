//! Campaign keys: the `campaigns` native type and its callbacks, the
//! module-wide journal, the negative cache, and the one write path every
//! change to a campaign goes through.

pub mod background_free;
pub mod data_type;
pub mod deleted;
pub mod journal;
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

/// This node's version clock (SPEC section 4): advanced past every
/// campaign value and journal entry loaded here, so a version issued here
/// exceeds them all.
pub static CLOCK: VersionClock = VersionClock::new();

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
