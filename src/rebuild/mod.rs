//! Loading campaigns from PostgreSQL: REBUILD, read-through, prefill, and
//! the reconciler's repairs all run one load per campaign key at a time.
//!
//! While a load runs, reads are answered from the old set and writes to
//! that campaign are held here (the module's own lock): their clients
//! block and the writes are applied in arrival order after the swap, or
//! fail after `write-block-timeout-ms`.
//!
//! Like the journal, this registry is touched only with the Redis GIL held.

pub mod reconcile;
pub mod worker;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};
use redis_module::{
    raw, BlockedClient, Context, ContextFlags, NotifyEvent, RedisError, RedisString, RedisValue,
    ThreadSafeContext,
};

use crate::commands::membership::{answers, apply_held_write};
use crate::core::member_set::ENCODING_VERSION;
use crate::core::{BlobWriter, Campaign, MemberSet};
use crate::error::CampaignError;
use crate::redis_glue::config;
use crate::redis_glue::data_type::CAMPAIGN_TYPE;
use crate::write_behind::{now_ms, WRITE_BEHIND};

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

pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: a live context; the API table is filled before OnLoad.
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |get| get(ctx.ctx)) }
}

pub fn select_db(ctx: &Context, db: i32) {
    // SAFETY: as above.
    unsafe {
        if let Some(select) = raw::RedisModule_SelectDb {
            select(ctx.ctx, db);
        }
    }
}

/// Who waits on a load.
pub enum Requester {
    /// CAMPAIGN.REBUILD: replied the member count.
    Rebuild(BlockedClient),
    /// HAS / MHAS on a missing campaign: replied their answers.
    Reader(Reader),
    /// Prefill and the reconciler: nobody waits.
    Background,
}

pub struct Reader {
    pub client: BlockedClient,
    pub members: Vec<String>,
    pub multi: bool,
}

struct HeldWrite {
    args: Vec<Vec<u8>>,
    client: BlockedClient,
    deadline_ms: u64,
}

#[derive(Default)]
struct Load {
    rebuild_callers: Vec<BlockedClient>,
    readers: Vec<Reader>,
    held: VecDeque<HeldWrite>,
}

/// What a worker hands back for the swap.
pub struct Loaded {
    pub campaign: Campaign,
    pub propagation: Prepared,
}

/// How the swap reaches replicas and the AOF, prepared off the main thread.
pub enum Prepared {
    /// Few members changed against the set the load started from.
    Diff {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// Many changed: the whole set as one encoded argument.
    Blob(Vec<u8>),
    /// No AOF, no replica and no replication backlog when the load began:
    /// nothing to prepare (checked again at the swap).
    Unheard,
}

pub struct LoadJob {
    pub key: KeyId,
    pub campaign: String,
    /// The set when the load started (None: no key), to diff against,
    /// with its checksum.
    pub snapshot: Option<(Arc<MemberSet>, u64)>,
    /// Whether anyone (AOF, replicas, a backlog) will receive the swap.
    pub propagate: bool,
    /// Journal entries through this number must be committed first.
    pub flush_target: Option<u64>,
}

pub struct VerifyJob {
    pub campaign: String,
    pub cache_members: usize,
    pub cache_checksum: u64,
    pub pending: usize,
    pub client: BlockedClient,
}

pub enum Job {
    Load(LoadJob),
    Verify(VerifyJob),
    Prefill,
}

#[derive(Default)]
pub struct RebuildStats {
    pub loads_done: AtomicU64,
    pub loads_failed: AtomicU64,
    pub verify_runs: AtomicU64,
    pub drift_found: AtomicU64,
    pub prefilled: AtomicU64,
}

pub struct Loads {
    inflight: Mutex<HashMap<KeyId, Load>>,
    /// Campaigns the database did not know, until the given unix ms.
    negative: Mutex<HashMap<KeyId, u64>>,
    /// `inflight.len()`, readable without the GIL (STATUS, hot paths).
    pub active: AtomicUsize,
    pub stats: RebuildStats,
    jobs: Sender<Job>,
    pub(crate) job_receiver: Receiver<Job>,
}

pub static LOADS: LazyLock<Loads> = LazyLock::new(|| {
    let (jobs, job_receiver) = crossbeam_channel::unbounded();
    Loads {
        inflight: Mutex::new(HashMap::new()),
        negative: Mutex::new(HashMap::new()),
        active: AtomicUsize::new(0),
        stats: RebuildStats::default(),
        jobs,
        job_receiver,
    }
});

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Most members sent to replicas as ADD/REM; beyond, the whole set goes.
pub const DIFF_LIMIT: usize = 10_000;
/// Members per propagated CAMPAIGN.SYNC ADD/REM command.
const SYNC_CHUNK: usize = 1_000;

impl Loads {
    pub fn submit(&self, job: Job) {
        let _ = self.jobs.send(job);
    }

    /// Starts a load of `name` (or joins the one running) for `requester`.
    /// The caller has checked the key's type and blocked its client.
    pub fn start_load(&self, ctx: &Context, name: &RedisString, requester: Requester) {
        let key = KeyId::of(ctx, name);
        let mut inflight = lock(&self.inflight);
        let starting = !inflight.contains_key(&key);
        let load = inflight.entry(key.clone()).or_default();
        match requester {
            Requester::Rebuild(client) => load.rebuild_callers.push(client),
            Requester::Reader(reader) => load.readers.push(reader),
            Requester::Background => {}
        }
        self.active.store(inflight.len(), Ordering::Relaxed);
        drop(inflight);
        if starting {
            let snapshot = ctx
                .open_key(name)
                .get_value::<Campaign>(&CAMPAIGN_TYPE)
                .ok()
                .flatten()
                .map(|campaign| (campaign.snapshot(), campaign.checksum()));
            let campaign = String::from_utf8_lossy(name.as_slice()).into_owned();
            let journal = WRITE_BEHIND.journal(ctx);
            // Only this campaign's entries must land first; waiting for the
            // newest entry overall is simpler and at most a batch later.
            let flush_target = (journal.pending_for(&campaign) > 0)
                .then(|| journal.last_seq())
                .flatten();
            drop(journal);
            self.submit(Job::Load(LoadJob {
                key,
                campaign,
                snapshot,
                propagate: propagation_heard(ctx),
                flush_target,
            }));
        }
    }

    /// HAS/MHAS on a missing key: blocks the client on a load when
    /// read-through applies; false means answer from the cache now.
    pub fn read_through(
        &self,
        ctx: &Context,
        name: &RedisString,
        members: Vec<String>,
        multi: bool,
    ) -> bool {
        let flags = ctx.get_flags();
        let applies = config::READ_THROUGH.load(Ordering::Relaxed)
            && WRITE_BEHIND.stats.is_primary.load(Ordering::Relaxed)
            && !flags.intersects(ContextFlags::DENY_BLOCKING | ContextFlags::LOADING)
            && std::str::from_utf8(name.as_slice()).is_ok()
            && !config::DATABASE_URL.get().is_empty();
        if !applies || self.known_missing(&KeyId::of(ctx, name)) {
            return false;
        }
        let reader = Reader {
            client: ctx.block_client(),
            members,
            multi,
        };
        self.start_load(ctx, name, Requester::Reader(reader));
        true
    }

    /// A write created the campaign: it is no longer "unknown".
    pub fn forget_missing(&self, ctx: &Context, name: &RedisString) {
        let mut negative = lock(&self.negative);
        if !negative.is_empty() {
            negative.remove(&KeyId::of(ctx, name));
        }
    }

    fn known_missing(&self, key: &KeyId) -> bool {
        let negative = lock(&self.negative);
        negative.get(key).is_some_and(|&until| now_ms() < until)
    }

    /// ADD/REM on a campaign being loaded: true when the client now waits.
    pub fn hold_write(
        &self,
        ctx: &Context,
        name: &RedisString,
        args: &[RedisString],
    ) -> Result<bool, CampaignError> {
        if self.active.load(Ordering::Relaxed) == 0 || crate::write_behind::is_replayed(ctx) {
            return Ok(false);
        }
        let key = KeyId::of(ctx, name);
        let mut inflight = lock(&self.inflight);
        let Some(load) = inflight.get_mut(&key) else {
            return Ok(false);
        };
        let timeout = config::WRITE_BLOCK_TIMEOUT_MS.get() as u64;
        if timeout == 0 || ctx.get_flags().contains(ContextFlags::DENY_BLOCKING) {
            return Err(CampaignError::WriteBlocked);
        }
        load.held.push_back(HeldWrite {
            args: args.iter().map(|arg| arg.as_slice().to_vec()).collect(),
            client: ctx.block_client(),
            deadline_ms: now_ms() + timeout,
        });
        Ok(true)
    }

    pub fn is_loading(&self, ctx: &Context, name: &RedisString) -> bool {
        self.active.load(Ordering::Relaxed) > 0
            && lock(&self.inflight).contains_key(&KeyId::of(ctx, name))
    }

    /// Server cron: held writes past their deadline fail; stale negative
    /// entries go.
    pub fn on_cron(&self) {
        let now = now_ms();
        let mut inflight = lock(&self.inflight);
        for load in inflight.values_mut() {
            while load
                .held
                .front()
                .is_some_and(|held| now >= held.deadline_ms)
            {
                let held = load.held.pop_front().expect("checked above");
                ThreadSafeContext::with_blocked_client(held.client)
                    .reply(Err(CampaignError::WriteBlocked.into_redis_error()));
            }
        }
        drop(inflight);
        lock(&self.negative).retain(|_, until| now < *until);
    }

    /// Completes a load on the main thread (the GIL is held): swap, send
    /// the change to replicas and the AOF, reply to everyone waiting, then
    /// apply the held writes in order.
    pub fn finish(&self, ctx: &Context, job: &LoadJob, outcome: Result<Loaded, String>) {
        select_db(ctx, job.key.db);
        let name = ctx.create_string(job.key.name.clone());
        let result = outcome
            .map_err(|error| CampaignError::LoadFailed {
                campaign: job.campaign.clone(),
                reason: error,
            })
            .and_then(|loaded| self.swap(ctx, job, &name, loaded));
        let load = {
            let mut inflight = lock(&self.inflight);
            let load = inflight.remove(&job.key).unwrap_or_default();
            self.active.store(inflight.len(), Ordering::Relaxed);
            load
        };
        match &result {
            Ok(count) => {
                self.stats.loads_done.fetch_add(1, Ordering::Relaxed);
                for client in load.rebuild_callers {
                    ThreadSafeContext::with_blocked_client(client)
                        .reply(Ok(RedisValue::Integer(*count as i64)));
                }
            }
            Err(error) => {
                self.stats.loads_failed.fetch_add(1, Ordering::Relaxed);
                ctx.log_warning(&format!("campaign: {error}"));
                let reply = format!("{} {error}", error.code());
                for client in load.rebuild_callers {
                    ThreadSafeContext::with_blocked_client(client)
                        .reply(Err(RedisError::String(reply.clone())));
                }
            }
        }
        // Readers get an answer either way: a failed read-through reads as
        // the (empty) cache rather than an error on the login path.
        {
            let read_key = ctx.open_key(&name);
            let current = read_key
                .get_value::<Campaign>(&CAMPAIGN_TYPE)
                .ok()
                .flatten();
            for reader in load.readers {
                let members: Vec<&str> = reader.members.iter().map(String::as_str).collect();
                ThreadSafeContext::with_blocked_client(reader.client).reply(Ok(answers(
                    current,
                    &members,
                    reader.multi,
                )));
            }
        }
        for held in load.held {
            let args: Vec<RedisString> = held
                .args
                .into_iter()
                .map(|arg| ctx.create_string(arg))
                .collect();
            let reply = apply_held_write(ctx, &args).map_err(CampaignError::into_redis_error);
            ThreadSafeContext::with_blocked_client(held.client).reply(reply);
        }
    }

    /// Puts the loaded set in place; returns its member count.
    fn swap(
        &self,
        ctx: &Context,
        job: &LoadJob,
        name: &RedisString,
        loaded: Loaded,
    ) -> Result<usize, CampaignError> {
        let key = ctx.open_key_writable(name);
        let current = key
            .get_value::<Campaign>(&CAMPAIGN_TYPE)
            .map_err(|_| CampaignError::WrongType)?;
        let count = loaded.campaign.len();
        if count == 0 {
            if current.is_some() {
                let _ = key.delete();
                ctx.replicate("DEL", &[name.as_slice()]);
                ctx.notify_keyspace_event(NotifyEvent::GENERIC, "del", name);
            }
            // The database does not know it: remember that for a while.
            let ttl = config::NEGATIVE_TTL_MS.get() as u64;
            if ttl > 0 {
                lock(&self.negative).insert(job.key.clone(), now_ms() + ttl);
            }
            return Ok(0);
        }
        let unchanged_base = match (current.as_deref(), &job.snapshot) {
            (Some(campaign), Some((snapshot, _))) => campaign.is_snapshot(snapshot),
            (None, None) => true,
            _ => false,
        };
        match loaded.propagation {
            Prepared::Unheard if !propagation_heard(ctx) => {}
            Prepared::Diff { added, removed } if unchanged_base => {
                for (form, members) in [("ADD", added), ("REM", removed)] {
                    for chunk in members.chunks(SYNC_CHUNK) {
                        let mut words: Vec<&[u8]> = vec![name.as_slice(), form.as_bytes()];
                        words.extend(chunk.iter().map(|member| member.as_bytes()));
                        ctx.replicate("CAMPAIGN.SYNC", &words[..]);
                    }
                }
            }
            Prepared::Blob(blob) => replicate_whole(ctx, name, &blob),
            // The key changed under the load (deleted, replaced): the diff
            // no longer applies, so the whole set goes. (Or a replica came.)
            Prepared::Diff { .. } | Prepared::Unheard => {
                let mut writer = BlobWriter::default();
                loaded.campaign.encode(&mut writer);
                replicate_whole(ctx, name, &writer.bytes);
            }
        }
        key.set_value(&CAMPAIGN_TYPE, loaded.campaign)
            .map_err(|_| CampaignError::WrongType)?;
        ctx.notify_keyspace_event(NotifyEvent::MODULE, "campaign.rebuild", name);
        lock(&self.negative).remove(&job.key);
        Ok(count)
    }
}

/// True when a change would reach anyone: the AOF, a replica, or the
/// replication backlog a reconnecting replica resumes from.
pub fn propagation_heard(ctx: &Context) -> bool {
    if ctx.get_flags().contains(ContextFlags::AOF) {
        return true;
    }
    let info = match ctx.call("INFO", &["replication"]) {
        Ok(RedisValue::SimpleString(text) | RedisValue::BulkString(text)) => text,
        Ok(RedisValue::StringBuffer(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        // Unknown: assume someone listens.
        _ => return true,
    };
    let quiet = |field: &str| info.lines().any(|line| line.trim() == format!("{field}:0"));
    !(quiet("connected_slaves") && quiet("repl_backlog_active"))
}

fn replicate_whole(ctx: &Context, name: &RedisString, blob: &[u8]) {
    let version = ENCODING_VERSION.to_string();
    let words: [&[u8]; 4] = [name.as_slice(), b"REPLACE", version.as_bytes(), blob];
    ctx.replicate("CAMPAIGN.SYNC", &words[..]);
}
