//! Module configuration (`campaign.*`): every setting, its default, range
//! and validation, listed once in `SETTINGS`; registration with Redis and
//! the check of `name value` pairs after the module path both read it.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use redis_module::configuration::{
    get_bool_default_config_value, get_i64_default_config_value, get_string_default_config_value,
    register_bool_configuration, register_i64_configuration, register_string_configuration,
    ConfigurationContext, ConfigurationFlags, ConfigurationValue,
};
use redis_module::{raw, Context, RedisError, RedisString};

use super::ffi::api;

/// A numeric setting that refuses values outside its range itself, so a bad
/// value is refused the same way from redis.conf, module args and CONFIG SET.
pub struct NumberSetting {
    name: &'static str,
    value: AtomicI64,
    default: i64,
    min: i64,
    max: i64,
}

impl NumberSetting {
    const fn new(name: &'static str, default: i64, min: i64, max: i64) -> Self {
        Self {
            name,
            value: AtomicI64::new(default),
            default,
            min,
            max,
        }
    }

    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl ConfigurationValue<i64> for NumberSetting {
    fn get(&self, _ctx: &ConfigurationContext) -> i64 {
        NumberSetting::get(self)
    }

    fn set(&self, _ctx: &ConfigurationContext, value: i64) -> Result<(), RedisError> {
        if value < self.min || value > self.max {
            return Err(RedisError::String(format!(
                "campaign.{} must be between {} and {}",
                self.name, self.min, self.max
            )));
        }
        self.value.store(value, Ordering::Relaxed);
        Ok(())
    }
}

/// A string setting with a validation rule applied before the value is kept.
pub struct StringSetting {
    name: &'static str,
    /// `None` until Redis first sets it; reads then fall back to the default.
    value: Mutex<Option<String>>,
    /// Whether the value is non-empty, readable on hot paths without the
    /// lock or a copy.
    non_empty: AtomicBool,
    default: &'static str,
    validate: fn(&str) -> Result<(), String>,
    /// Redacted from SLOWLOG and MONITOR (it may hold a password).
    sensitive: bool,
}

impl StringSetting {
    const fn new(
        name: &'static str,
        default: &'static str,
        validate: fn(&str) -> Result<(), String>,
        sensitive: bool,
    ) -> Self {
        Self {
            name,
            value: Mutex::new(None),
            non_empty: AtomicBool::new(!default.is_empty()),
            default,
            validate,
            sensitive,
        }
    }

    /// The value is not empty (cheap: no lock, no copy).
    pub fn is_set(&self) -> bool {
        self.non_empty.load(Ordering::Relaxed)
    }

    pub fn get(&self) -> String {
        let value = self
            .value
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        value.as_deref().unwrap_or(self.default).to_owned()
    }
}

impl ConfigurationValue<RedisString> for StringSetting {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        RedisString::create(None, StringSetting::get(self))
    }

    fn set(&self, _ctx: &ConfigurationContext, value: RedisString) -> Result<(), RedisError> {
        let text = value
            .try_as_str()
            .map_err(|_| RedisError::Str("the value must be valid UTF-8"))?;
        (self.validate)(text).map_err(RedisError::String)?;
        let mut stored = self
            .value
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *stored = Some(text.to_owned());
        self.non_empty.store(!text.is_empty(), Ordering::Relaxed);
        Ok(())
    }
}

/// A yes/no setting.
pub struct FlagSetting {
    name: &'static str,
    value: AtomicBool,
    default: bool,
}

impl FlagSetting {
    const fn new(name: &'static str, default: bool) -> Self {
        Self {
            name,
            value: AtomicBool::new(default),
            default,
        }
    }

    pub fn get(&self) -> bool {
        self.value.load(Ordering::Relaxed)
    }
}

impl ConfigurationValue<bool> for FlagSetting {
    fn get(&self, _ctx: &ConfigurationContext) -> bool {
        FlagSetting::get(self)
    }

    fn set(&self, _ctx: &ConfigurationContext, value: bool) -> Result<(), RedisError> {
        self.value.store(value, Ordering::Relaxed);
        Ok(())
    }
}

pub static DATABASE_URL: StringSetting =
    StringSetting::new("database-url", "", validate_database_url, true);
pub static TABLE: StringSetting =
    StringSetting::new("table", "campaign_members", validate_table_name, false);

pub static FLUSH_INTERVAL_MS: NumberSetting =
    NumberSetting::new("flush-interval-ms", 100, 1, 3_600_000);
pub static FLUSH_BATCH_SIZE: NumberSetting =
    NumberSetting::new("flush-batch-size", 10_000, 1, 1_000_000);
pub static MAX_PENDING: NumberSetting =
    NumberSetting::new("max-pending", 10_000_000, 1, 1_000_000_000);
pub static NEGATIVE_TTL_MS: NumberSetting =
    NumberSetting::new("negative-ttl-ms", 5_000, 0, 86_400_000);
pub static VERIFY_INTERVAL_S: NumberSetting =
    NumberSetting::new("verify-interval-s", 0, 0, 604_800);
pub static WRITE_BLOCK_TIMEOUT_MS: NumberSetting =
    NumberSetting::new("write-block-timeout-ms", 30_000, 0, 3_600_000);
/// Deadline of every database round trip (a flush batch, a load, a
/// digest): past it the connection is abandoned and the work retried.
pub static DB_TIMEOUT_MS: NumberSetting =
    NumberSetting::new("db-timeout-ms", 10_000, 100, 3_600_000);
/// Most PostgreSQL connections this node holds at once, every use
/// together (the flusher, loads, VERIFY, the reconciler, prefill).
pub static MAX_CONNECTIONS: NumberSetting = NumberSetting::new("max-connections", 6, 1, 1_000);
/// How long removal markers (`<table>_removed`) are kept: a change that
/// reaches the database later than this after a removal of the same member
/// could undo it (SPEC section 4).
pub static REMOVED_RETENTION_S: NumberSetting =
    NumberSetting::new("removed-retention-s", 604_800, 60, 315_360_000);
/// PostgreSQL refuses b-tree index entries above about 2700 bytes, and every
/// member is part of the primary key, so the limit stays well below that.
pub static MAX_MEMBER_BYTES: NumberSetting = NumberSetting::new("max-member-bytes", 256, 1, 2_048);

pub static READ_THROUGH: FlagSetting = FlagSetting::new("read-through", true);
pub static PREFILL: FlagSetting = FlagSetting::new("prefill", false);

/// One module setting, whatever its kind.
pub enum Setting {
    Number(&'static NumberSetting),
    Text(&'static StringSetting),
    Flag(&'static FlagSetting),
}

/// Every setting of the module: the one list registration and the module
/// argument check read.
pub const SETTINGS: &[Setting] = &[
    Setting::Text(&DATABASE_URL),
    Setting::Text(&TABLE),
    Setting::Number(&FLUSH_INTERVAL_MS),
    Setting::Number(&FLUSH_BATCH_SIZE),
    Setting::Number(&MAX_PENDING),
    Setting::Flag(&READ_THROUGH),
    Setting::Number(&NEGATIVE_TTL_MS),
    Setting::Flag(&PREFILL),
    Setting::Number(&VERIFY_INTERVAL_S),
    Setting::Number(&WRITE_BLOCK_TIMEOUT_MS),
    Setting::Number(&MAX_MEMBER_BYTES),
    Setting::Number(&DB_TIMEOUT_MS),
    Setting::Number(&MAX_CONNECTIONS),
    Setting::Number(&REMOVED_RETENTION_S),
];

impl Setting {
    pub fn name(&self) -> &'static str {
        match self {
            Setting::Number(setting) => setting.name,
            Setting::Text(setting) => setting.name,
            Setting::Flag(setting) => setting.name,
        }
    }

    /// Registers the setting with Redis; a value given after the module
    /// path becomes its starting value.
    fn register(&self, ctx: &Context, args: &[RedisString]) -> Result<(), RedisError> {
        match self {
            Setting::Number(setting) => {
                let start = get_i64_default_config_value(args, setting.name, setting.default)?;
                register_i64_configuration(
                    ctx,
                    setting.name,
                    *setting,
                    start,
                    setting.min,
                    setting.max,
                    ConfigurationFlags::DEFAULT,
                    None,
                );
            }
            Setting::Text(setting) => {
                let start = get_string_default_config_value(args, setting.name, setting.default)?;
                let flags = if setting.sensitive {
                    ConfigurationFlags::SENSITIVE
                } else {
                    ConfigurationFlags::DEFAULT
                };
                register_string_configuration(ctx, setting.name, *setting, start, flags, None);
            }
            Setting::Flag(setting) => {
                let start = get_bool_default_config_value(args, setting.name, setting.default)?;
                register_bool_configuration(
                    ctx,
                    setting.name,
                    *setting,
                    start,
                    ConfigurationFlags::DEFAULT,
                    None,
                );
            }
        }
        Ok(())
    }
}

/// Registers every setting, then lets Redis apply redis.conf and
/// `MODULE LOADEX ... CONFIG` values. Module arguments are checked first.
pub fn register(ctx: &Context, args: &[RedisString]) -> Result<(), String> {
    let words: Vec<String> = args.iter().map(RedisString::to_string_lossy).collect();
    check_module_args(&words)?;
    for setting in SETTINGS {
        setting
            .register(ctx, args)
            .map_err(|error| format!("campaign.{}: {error}", setting.name()))?;
    }
    if let Some(load_configs) = api!(RedisModule_LoadConfigs) {
        // SAFETY: called from OnLoad with its live context.
        if unsafe { load_configs(ctx.ctx) } != raw::REDISMODULE_OK as i32 {
            return Err("Redis refused the campaign.* settings".into());
        }
    }
    Ok(())
}

/// Longest member currently accepted, in bytes.
pub fn max_member_bytes() -> usize {
    MAX_MEMBER_BYTES.get() as usize
}

/// An empty URL means "no database yet"; anything else must parse as a libpq
/// connection string or URL. The message never repeats the value: it may
/// hold a password.
fn validate_database_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Ok(());
    }
    tokio_postgres::Config::from_str(url)
        .map(|_| ())
        .map_err(|error| {
            format!("campaign.database-url is not a valid libpq connection string or URL ({error})")
        })
}

/// `name` or `schema.name`, each a plain PostgreSQL identifier (it is
/// always quoted in SQL, after folding to lower case as PostgreSQL does for
/// unquoted names, so reserved words such as `user` work too), outside the
/// schemas whose tables do not persist.
fn validate_table_name(table: &str) -> Result<(), String> {
    let parts: Vec<&str> = table.split('.').collect();
    let valid = parts.len() <= 2
        && parts.iter().all(|part| is_plain_identifier(part))
        && parts
            .last()
            .is_some_and(|name| name.len() <= MAX_TABLE_NAME_BYTES);
    if !valid {
        return Err(format!(
            "campaign.table must be an identifier or schema.identifier \
             (letters, digits, _ and $, not starting with a digit or $, a schema of at most \
             63 bytes, a table name of at most {MAX_TABLE_NAME_BYTES}), got '{}'",
            table.escape_debug()
        ));
    }
    if parts.len() == 2 && !is_persistent_schema(parts[0]) {
        return Err(format!(
            "campaign.table cannot be in schema '{}': its rows would not persist \
             or belong to the system",
            parts[0]
        ));
    }
    Ok(())
}

/// Schemas whose tables do not outlive a session (`pg_temp*`) or belong to
/// PostgreSQL itself. Names are compared as PostgreSQL folds unquoted ones.
fn is_persistent_schema(schema: &str) -> bool {
    let schema = schema.to_ascii_lowercase();
    let system = ["pg_catalog", "information_schema"];
    !(schema.starts_with("pg_temp")
        || schema.starts_with("pg_toast")
        || system.contains(&schema.as_str()))
}

/// PostgreSQL cuts identifiers at 63 bytes; the longest name made from the
/// table's is its markers' index, `<table>_removed_version` (16 more).
const MAX_TABLE_NAME_BYTES: usize = 63 - "_removed_version".len();

fn is_plain_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    starts_well
        && part.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Checks the `name value` pairs given after the module path. Redis applies
/// the values itself; this catches what it would accept silently: unknown
/// names (typos) and booleans other than yes/no.
pub fn check_module_args(args: &[String]) -> Result<(), String> {
    if !args.len().is_multiple_of(2) {
        return Err(format!(
            "module arguments must be 'name value' pairs, got {} words",
            args.len()
        ));
    }
    for pair in args.chunks(2) {
        let (name, value) = (pair[0].as_str(), pair[1].as_str());
        match SETTINGS.iter().find(|setting| setting.name() == name) {
            None => return Err(format!("unknown module argument '{name}'")),
            Some(Setting::Flag(_)) if value != "yes" && value != "no" => {
                return Err(format!("{name} must be yes or no, got '{value}'"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        for good in ["campaign_members", "app.members", "_t1", "t$1", "Members"] {
            assert!(validate_table_name(good).is_ok(), "{good}");
        }
        for good in ["user", "select", "public.user", "app.order"] {
            assert!(validate_table_name(good).is_ok(), "{good}");
        }
        for bad in [
            "pg_temp.x",
            "PG_TEMP_3.x",
            "pg_toast.x",
            "pg_catalog.members",
            "information_schema.members",
            "",
            "1table",
            "a.b.c",
            "a.",
            "members; DROP TABLE users",
            "\"quoted\"",
            "naïve",
            &"x".repeat(64),
            // Its markers' names would be cut to the table's own.
            &"x".repeat(48),
        ] {
            assert!(validate_table_name(bad).is_err(), "{bad}");
        }
        let longest = format!("{}.{}", "s".repeat(63), "t".repeat(47));
        assert!(validate_table_name(&longest).is_ok());
    }

    #[test]
    fn database_urls() {
        assert!(validate_database_url("").is_ok());
        assert!(validate_database_url("host=/tmp port=5432 user=postgres").is_ok());
        assert!(validate_database_url("postgresql://app:secret@localhost:5432/db").is_ok());
        let error =
            validate_database_url("postgresql://app:s3cret@localhost:notaport/db").unwrap_err();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(validate_database_url("host=/tmp bogus_option=1").is_err());
    }

    #[test]
    fn module_args() {
        let args = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert!(check_module_args(&args(&["max-member-bytes", "10", "prefill", "yes"])).is_ok());
        assert!(check_module_args(&args(&["max-member-bytes"])).is_err());
        assert!(check_module_args(&args(&["read-through", "maybe"])).is_err());
        assert!(check_module_args(&args(&["max-members-bytes", "10"])).is_err());
    }
}
