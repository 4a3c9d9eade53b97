//! The load workers: a few threads that talk to PostgreSQL for REBUILD,
//! read-through, prefill and VERIFY, and build new sets off the main thread.
//! Each holds its own connection; the GIL is taken only for the swap.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Once;
use std::time::Duration;

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, ContextFlags, DetachedFromClient, RedisValue, ThreadSafeContext};

use super::{Job, LoadJob, Loaded, Prepared, Requester, VerifyJob, DIFF_LIMIT, LOADS};
use crate::core::checksum::as_sql_bigint;
use crate::core::cluster::{key_slot, my_slots};
use std::sync::Arc;

use crate::core::{BlobWriter, Campaign, MemberSet};
use crate::redis_glue::config;
use crate::redis_glue::panic_guard::run_callback;
use crate::sink::postgres::{redact_password, PostgresSink};
use crate::write_behind::WRITE_BEHIND;

const INTERNAL_ERROR: &str = "internal error (see the Redis log)";

/// Loads run side by side up to this many (read-through of many campaigns
/// at once), each on its own connection.
const WORKERS: usize = 4;

pub fn start() {
    static START: Once = Once::new();
    START.call_once(|| {
        for index in 0..WORKERS {
            let spawned = std::thread::Builder::new()
                .name(format!("campaign-load-{index}"))
                .spawn(|| {
                    let mut worker = Worker::default();
                    loop {
                        let Ok(job) = LOADS.job_receiver.recv() else {
                            return;
                        };
                        run_callback("load worker", (), || worker.run(job));
                    }
                });
            if let Err(error) = spawned {
                redis_module::logging::log_warning(format!(
                    "campaign: cannot start a load worker: {error}"
                ));
            }
        }
    });
}

#[derive(Default)]
pub struct Worker {
    connection: Option<(String, String, PostgresSink)>,
}

impl Worker {
    fn run(&mut self, job: Job) {
        match job {
            Job::Load(job) => {
                // Even a panic must reach `finish`: it unblocks the waiters.
                let outcome = run_callback("load", Err(INTERNAL_ERROR.into()), || self.load(&job));
                let redis = ThreadSafeContext::<DetachedFromClient>::new();
                LOADS.finish(&redis.lock(), &job, outcome);
                // Dropped here, without the GIL: after the swap the job's
                // snapshot may be the last handle on a large old set.
                drop(job);
            }
            Job::Verify(job) => self.verify(job),
            Job::Prefill => self.prefill(),
        }
    }

    /// A connection for the current settings, reused while they hold.
    pub fn database(&mut self) -> Result<&mut PostgresSink, String> {
        let url = config::DATABASE_URL.get();
        if url.is_empty() {
            return Err("no database configured (campaign.database-url is empty)".into());
        }
        let table = config::TABLE.get();
        let reusable = self
            .connection
            .as_ref()
            .is_some_and(|(u, t, sink)| *u == url && *t == table && !sink.is_closed());
        if !reusable {
            self.connection = None;
            let sink = PostgresSink::connect(&url, &table)
                .map_err(|error| redact_password(&error.to_string(), &url))?;
            self.connection = Some((url, table, sink));
        }
        Ok(&mut self.connection.as_mut().expect("connected above").2)
    }

    fn load(&mut self, job: &LoadJob) -> Result<Loaded, String> {
        if let Some(target) = job.flush_target {
            wait_until_committed(target)?;
        }
        let url = config::DATABASE_URL.get();
        let result = self.database().and_then(|database| {
            database
                .load_members(&job.campaign)
                .map_err(|error| redact_password(&error.to_string(), &url))
        });
        let loaded = match result {
            Ok(loaded) => loaded,
            Err(error) => {
                self.connection = None;
                return Err(error);
            }
        };
        let (members, checksum, skipped) = (loaded.members, loaded.checksum, loaded.skipped);
        if skipped > 0 {
            redis_module::logging::log_warning(format!(
                "campaign: {skipped} rows of campaign '{}' are not valid members and were skipped",
                job.campaign.escape_debug()
            ));
        }
        let propagation = if job.propagate {
            prepare_propagation(job.snapshot.as_ref(), &members, checksum)
        } else {
            Prepared::Unheard
        };
        Ok(Loaded {
            campaign: Campaign::from_parts(members, checksum),
            propagation,
        })
    }

    fn verify(&mut self, job: VerifyJob) {
        let url = config::DATABASE_URL.get();
        let digest = run_callback("verify", Err(INTERNAL_ERROR.into()), || {
            self.database().and_then(|database| {
                database
                    .digest(&job.campaign)
                    .map_err(|error| redact_password(&error.to_string(), &url))
            })
        });
        LOADS.stats.verify_runs.fetch_add(1, Ordering::Relaxed);
        let reply = match digest {
            Ok((db_members, db_checksum)) => {
                let cache_checksum = as_sql_bigint(job.cache_checksum);
                let consistent = job.pending == 0
                    && db_members == job.cache_members as i64
                    && db_checksum == cache_checksum;
                let field = |name: &str| RedisValueKey::String(name.into());
                let fields: BTreeMap<RedisValueKey, RedisValue> = [
                    (
                        field("cache-members"),
                        RedisValue::Integer(job.cache_members as i64),
                    ),
                    (field("db-members"), RedisValue::Integer(db_members)),
                    (field("cache-checksum"), RedisValue::Integer(cache_checksum)),
                    (field("db-checksum"), RedisValue::Integer(db_checksum)),
                    (field("pending"), RedisValue::Integer(job.pending as i64)),
                    (field("consistent"), RedisValue::Integer(consistent.into())),
                ]
                .into_iter()
                .collect();
                Ok(RedisValue::OrderedMap(fields))
            }
            Err(error) => {
                self.connection = None;
                Err(crate::error::CampaignError::LoadFailed {
                    campaign: job.campaign.clone(),
                    reason: error,
                }
                .into_redis_error())
            }
        };
        ThreadSafeContext::with_blocked_client(job.client).reply(reply);
    }

    /// Loads every campaign the table holds that db 0 lacks.
    fn prefill(&mut self) {
        let url = config::DATABASE_URL.get();
        let campaigns = match self.database().and_then(|database| {
            database
                .campaigns()
                .map_err(|error| redact_password(&error.to_string(), &url))
        }) {
            Ok(campaigns) => campaigns,
            Err(error) => {
                redis_module::logging::log_warning(format!("campaign: prefill failed: {error}"));
                return;
            }
        };
        let redis = ThreadSafeContext::<DetachedFromClient>::new();
        let owned = my_cluster_slots(&redis.lock());
        let mut started = 0;
        for campaign in campaigns {
            if owned
                .as_ref()
                .is_some_and(|owned| !owned[key_slot(campaign.as_bytes()) as usize])
            {
                continue;
            }
            let ctx = redis.lock();
            super::select_db(&ctx, 0);
            let name = ctx.create_string(campaign.as_bytes());
            let absent = ctx.open_key(&name).is_null();
            if absent && !LOADS.is_loading(&ctx, &name) {
                LOADS.start_load(&ctx, &name, Requester::Background);
                started += 1;
            }
        }
        LOADS.stats.prefilled.fetch_add(started, Ordering::Relaxed);
        redis_module::logging::log_notice(format!(
            "campaign: prefill is loading {started} campaigns from the database"
        ));
    }
}

/// In cluster mode, the slots this node serves (None: not a cluster).
fn my_cluster_slots(ctx: &Context) -> Option<Vec<bool>> {
    if !ctx.get_flags().contains(ContextFlags::CLUSTER) {
        return None;
    }
    let nodes = match ctx.call("CLUSTER", &["NODES"]) {
        Ok(RedisValue::BulkString(text) | RedisValue::SimpleString(text)) => text,
        Ok(RedisValue::StringBuffer(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    };
    Some(my_slots(&nodes))
}

/// Waits until the journal is committed through `target`; fails as soon as
/// the flusher reports a new error (the database is down).
pub fn wait_until_committed(target: u64) -> Result<(), String> {
    let stats = &WRITE_BEHIND.stats;
    let errors_before = stats.flush_errors.load(Ordering::Relaxed);
    WRITE_BEHIND.want_flush_through(target);
    loop {
        if stats.committed_through.load(Ordering::Relaxed) >= target {
            return Ok(());
        }
        if config::DATABASE_URL.get().is_empty() {
            return Err("no database configured (campaign.database-url is empty)".into());
        }
        if !stats.is_primary.load(Ordering::Relaxed) {
            return Err("this node is not a primary: it does not flush".into());
        }
        if stats.flush_errors.load(Ordering::Relaxed) > errors_before {
            return Err(format!(
                "pending changes could not be committed first: {}",
                WRITE_BEHIND.last_error()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The diff against the set the load started from when it is small, else
/// the whole new set encoded for one CAMPAIGN.SYNC REPLACE.
fn prepare_propagation(
    old: Option<&(Arc<MemberSet>, u64)>,
    new: &MemberSet,
    new_checksum: u64,
) -> Prepared {
    let empty = MemberSet::new();
    let (old, old_checksum) = old.map_or((&empty, 0), |(set, checksum)| (&**set, *checksum));
    let unchanged = Prepared::Diff {
        added: Vec::new(),
        removed: Vec::new(),
    };
    // Same size and checksum: the sets are equal (up to a 64-bit collision).
    if old.len() == new.len() && old_checksum == new_checksum {
        return unchanged;
    }
    let mut added = Vec::new();
    let mut small = new
        .iter()
        .filter(|member| !old.contains(member))
        .all(|member| {
            added.push(member.to_string());
            added.len() <= DIFF_LIMIT
        });
    // |old| - |removed| = |new| - |added|: a second pass only when needed.
    let mut removed = Vec::new();
    if small && old.len() + added.len() > new.len() {
        small = old
            .iter()
            .filter(|member| !new.contains(member))
            .all(|member| {
                removed.push(member.to_string());
                added.len() + removed.len() <= DIFF_LIMIT
            });
    }
    if small {
        Prepared::Diff { added, removed }
    } else {
        let mut writer = BlobWriter::default();
        new.encode(&mut writer);
        Prepared::Blob(writer.bytes)
    }
}
