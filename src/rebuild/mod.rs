//! Loading campaigns from PostgreSQL: REBUILD, read-through, prefill, and
//! the reconciler's repairs all run one load per campaign key at a time.
//!
//! While a load runs, reads are answered from the old set and writes to
//! that campaign are held here (the module's own lock): their clients
//! block and the writes are applied in arrival order after the swap, or
//! fail after `write-block-timeout-ms`.
//!
//! Like the journal, the registry is touched only with the Redis GIL held.

pub mod prefill;
pub mod reconcile;
pub mod registry;
pub mod swap;
pub mod worker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use redis_module::{
    BlockedClient, Context, ContextFlags, KeyType, NotifyEvent, RedisError, RedisString,
    RedisValue, ThreadSafeContext,
};

use self::registry::{HeldWrite, Reader, Registry, Waiter};
use self::swap::{Plan, Prepared};
use self::worker::{JobQueue, Lane};
use crate::core::clock::now_ms;
use crate::core::{is_storable_campaign_name, BlobWriter, Campaign, MemberSet, Op};
use crate::error::CampaignError;
use crate::keyspace::journal::JOURNAL;
use crate::keyspace::write::{apply_change, IfMissing, Propagation};
use crate::keyspace::{
    answers, deleted, negative, read_campaign, shadow, with_campaign, write, KeyId, CLOCK,
};
use crate::propagation::{self, ShadowStep};
use crate::redis_glue::config;
use crate::redis_glue::ffi::{call_text, select_db, selected_db};
use crate::redis_glue::log;
use crate::redis_glue::panic_guard::run_callback;
use crate::redis_glue::server_state::{is_replayed, SERVER};
use crate::sink::health::HEALTH;

/// What a worker hands back for the swap.
pub struct Loaded {
    pub campaign: Campaign,
    pub propagation: Prepared,
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
    /// The newest version this node knew of the campaign when its key
    /// left the keyspace (0: none, or the key exists): the load waits a
    /// while for the database to reach it (see `worker::load`).
    pub known_version: u64,
}

pub struct VerifyJob {
    pub campaign: String,
    pub cache_members: usize,
    pub cache_checksum: u64,
    pub pending: usize,
    pub client: BlockedClient,
}

pub enum Job {
    /// Queued in the lane of the most urgent waiter (`Loads::start_load`).
    Load(LoadJob),
    Verify(VerifyJob),
    /// Load what the keyspace lacks: everything (`None`), or the campaigns
    /// of these cluster slots.
    Prefill(Option<Vec<bool>>),
    /// A node became primary: drop the shadows it collected (and tell its
    /// replicas and AOF), their swap will never come.
    DropLeftoverShadows,
}

#[derive(Default)]
pub struct RebuildStats {
    pub loads_done: AtomicU64,
    pub loads_failed: AtomicU64,
    pub verify_runs: AtomicU64,
    /// Readers answered from the cache at their deadline.
    pub late_answers: AtomicU64,
    pub drift_found: AtomicU64,
    pub prefilled: AtomicU64,
}

pub struct Loads {
    registry: Mutex<Registry<BlockedClient>>,
    /// Loads running, readable without the GIL (STATUS, hot paths).
    pub active: AtomicUsize,
    pub stats: RebuildStats,
    /// The load workers' queue, most urgent lane first.
    pub(crate) queue: JobQueue<Job>,
}

/// What a client's write to a missing campaign key does.
pub enum MissingWrite {
    /// Load it first (the client waits, the write is held).
    LoadFirst,
    /// Accept it at once into an incomplete campaign.
    Incomplete,
    /// Create it: the database is known not to hold it.
    Create,
}

pub static LOADS: LazyLock<Loads> = LazyLock::new(|| Loads {
    registry: Mutex::new(Registry::default()),
    active: AtomicUsize::new(0),
    stats: RebuildStats::default(),
    queue: JobQueue::default(),
});

impl Loads {
    fn registry(&self) -> MutexGuard<'_, Registry<BlockedClient>> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues VERIFY, a prefill pass or the shadows' clean-up (loads go
    /// through `start_load`).
    pub fn submit(&self, job: Job) {
        let lane = match job {
            Job::Prefill(_) => Lane::Background,
            Job::Load(_) | Job::Verify(_) | Job::DropLeftoverShadows => Lane::Client,
        };
        self.queue.push(lane, job);
    }

    /// Starts a load of `name` (or joins the one running) for `waiter`.
    /// The caller has checked the key's type and blocked its client.
    /// A reader's load goes ahead of everything else, a REBUILD's ahead of
    /// background work (`worker::Lane`).
    pub fn start_load(&self, ctx: &Context, name: &RedisString, waiter: Waiter<BlockedClient>) {
        let lane = match waiter {
            Waiter::Reader(_) => Lane::Login,
            Waiter::Rebuild(_) => Lane::Client,
            Waiter::Background => Lane::Background,
        };
        self.start_load_in(ctx, name, waiter, lane);
    }

    /// `start_load` in `lane`: a load already queued in a less urgent lane
    /// moves up to it (a login joining a queued prefill load).
    fn start_load_in(
        &self,
        ctx: &Context,
        name: &RedisString,
        waiter: Waiter<BlockedClient>,
        lane: Lane,
    ) {
        let key = KeyId::of(ctx, name);
        let mut registry = self.registry();
        let starting = registry.join(key.clone(), waiter);
        self.active.store(registry.len(), Ordering::Relaxed);
        drop(registry);
        if !starting {
            self.promote(&key, lane);
            return;
        }
        // An incomplete campaign is no base to compare a load with.
        let snapshot = with_campaign(ctx, name, |campaign| {
            campaign
                .filter(|campaign| campaign.is_complete())
                .map(|campaign| (campaign.snapshot(), campaign.checksum()))
        });
        let campaign = String::from_utf8_lossy(name.as_slice()).into_owned();
        let journal = JOURNAL.lock(ctx);
        // Only this campaign's entries must land first; waiting for the
        // newest entry overall is simpler and at most a batch later.
        let flush_target = (journal.pending_for(&campaign) > 0)
            .then(|| journal.last_seq())
            .flatten();
        drop(journal);
        let known_version = if snapshot.is_none() {
            deleted::deleted_version(&key)
        } else {
            0
        };
        let job = LoadJob {
            key,
            campaign,
            snapshot,
            propagate: propagation_heard(ctx),
            flush_target,
            known_version,
        };
        self.queue.push(lane, Job::Load(job));
    }

    /// Moves the queued load of `key` up to `lane`, if it waits in a less
    /// urgent one (one that runs already keeps its connection and worker).
    fn promote(&self, key: &KeyId, lane: Lane) {
        self.queue.promote(
            lane,
            |job| matches!(job, Job::Load(load) if load.key == *key),
        );
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
        let applies = config::READ_THROUGH.get()
            && SERVER.may_use_database()
            && !flags.contains(ContextFlags::LOADING)
            && !is_replayed(ctx)
            && is_storable_campaign_name(name.as_slice());
        if !applies || negative::known_missing(&KeyId::of(ctx, name)) {
            return false;
        }
        if flags.contains(ContextFlags::DENY_BLOCKING) {
            // MULTI or a script: the cache's answer now, the load for the
            // next call (on the login path all the same).
            self.start_load_in(ctx, name, Waiter::Background, Lane::Login);
            return false;
        }
        let timeout_ms = config::READ_THROUGH_TIMEOUT_MS.get() as u64;
        let reader = Reader {
            client: ctx.block_client(),
            members,
            multi,
            deadline_ms: now_ms() + timeout_ms,
        };
        self.start_load(ctx, name, Waiter::Reader(reader));
        // The login path's deadline: past it, the cache's answer.
        ctx.create_timer(
            Duration::from_millis(timeout_ms + 1),
            |ctx: &Context, ()| LOADS.answer_late_readers(ctx),
            (),
        );
        true
    }

    /// ADD/REM on a campaign being loaded: true when the client now waits.
    pub fn hold_write(
        &self,
        ctx: &Context,
        name: &RedisString,
        campaign: &str,
        op: Op,
        members: &[&str],
    ) -> Result<bool, CampaignError> {
        if self.active.load(Ordering::Relaxed) == 0 || is_replayed(ctx) {
            return Ok(false);
        }
        if !self.registry().is_loading(&KeyId::of(ctx, name)) {
            return Ok(false);
        }
        // An incomplete campaign takes writes while it loads: its
        // completion puts what it knows at the swap on top of the rows.
        let state = with_campaign(ctx, name, |set| set.map(Campaign::is_complete));
        if state == Some(false) {
            return Ok(false);
        }
        check_can_hold(ctx, CampaignError::WriteBlocked)?;
        self.hold(ctx, name, campaign, op, members, state.is_none());
        Ok(true)
    }

    /// What a client's ADD/REM on a missing campaign key does, on a
    /// primary with a database (SPEC section 2: writes never wait on the
    /// database; Redis never passes part of a campaign off as whole).
    pub fn plan_missing_write(&self, ctx: &Context, name: &RedisString) -> MissingWrite {
        let key = KeyId::of(ctx, name);
        if negative::known_missing(&key) || !is_storable_campaign_name(name.as_slice()) {
            return MissingWrite::Create;
        }
        let may_wait = config::WRITE_BLOCK_TIMEOUT_MS.get() > 0
            && !ctx.get_flags().contains(ContextFlags::DENY_BLOCKING);
        if may_wait && !HEALTH.is_unreachable() {
            MissingWrite::LoadFirst
        } else {
            MissingWrite::Incomplete
        }
    }

    /// Loads the campaign first and holds the write until then (the
    /// caller checked with `plan_missing_write`). Should the load fail, or
    /// outlast `read-through-timeout-ms`, the write is applied to an
    /// incomplete campaign instead.
    pub fn load_before_write(
        &self,
        ctx: &Context,
        name: &RedisString,
        campaign: &str,
        op: Op,
        members: &[&str],
    ) {
        // A campaign deleted here after it moved, whose old owner may still
        // commit older changes: its load waits for them (catch-up), and a
        // write journaled meanwhile would end that wait early. Held as
        // before, up to write-block-timeout-ms.
        let catching_up = deleted::deleted_version(&KeyId::of(ctx, name)) > 0;
        self.start_load_in(ctx, name, Waiter::Background, Lane::Login);
        self.hold(ctx, name, campaign, op, members, !catching_up);
    }

    /// Starts completing an incomplete campaign from the database, in the
    /// background, when the database is known to answer (otherwise the
    /// completion cron does it once it does).
    pub fn start_completion(&self, ctx: &Context, name: &RedisString) {
        if !HEALTH.is_unreachable() && SERVER.may_use_database() {
            self.start_load(ctx, name, Waiter::Background);
        }
    }

    /// Readers past their deadline get the cache's answer (0, or what an
    /// incomplete campaign knows) while their load goes on.
    pub fn answer_late_readers(&self, ctx: &Context) {
        let late = self.registry().expire_readers(now_ms());
        if late.is_empty() {
            return;
        }
        in_key_dbs(ctx, late, |name, reader| {
            let members: Vec<&str> = reader.members.iter().map(String::as_str).collect();
            let reply = with_campaign(ctx, name, |set| answers(set, &members, reader.multi));
            ThreadSafeContext::with_blocked_client(reader.client).reply(Ok(reply));
        });
        self.stats.late_answers.fetch_add(1, Ordering::Relaxed);
    }

    /// Blocks the client and queues its write behind the running load (the
    /// caller checked that it may wait).
    /// `on_missing`: the write is for a missing campaign, so it waits
    /// `read-through-timeout-ms` at most, then goes to an incomplete one.
    fn hold(
        &self,
        ctx: &Context,
        name: &RedisString,
        campaign: &str,
        op: Op,
        members: &[&str],
        on_missing: bool,
    ) {
        let timeout = if on_missing {
            config::READ_THROUGH_TIMEOUT_MS
                .get()
                .min(config::WRITE_BLOCK_TIMEOUT_MS.get())
        } else {
            config::WRITE_BLOCK_TIMEOUT_MS.get()
        };
        let held = HeldWrite {
            op,
            campaign: campaign.to_owned(),
            members: members.iter().map(|member| member.to_string()).collect(),
            client: ctx.block_client(),
            deadline_ms: now_ms() + timeout as u64,
            on_missing,
        };
        // Only called with the load of `name` registered (the GIL is held).
        let key = KeyId::of(ctx, name);
        if let Err(held) = self.registry().hold(&key, held) {
            ThreadSafeContext::with_blocked_client(held.client)
                .reply(Err(CampaignError::WriteBlocked.into_redis_error()));
            return;
        }
        // A client waits on this load now: if it is still queued behind
        // background work (a reconciler's repair, a prefill), it moves up;
        // onto the login path when the write is for a missing campaign.
        self.promote(
            &key,
            if on_missing {
                Lane::Login
            } else {
                Lane::Client
            },
        );
    }

    /// A value arrived under `key` (RENAME, COPY, MOVE or RESTORE onto it,
    /// SWAPDB): a load of it running now read the database before that
    /// value's changes were journaled, so its set must not replace it.
    pub fn overtake(&self, key: &KeyId) {
        self.registry().overtake(key);
    }

    /// SWAPDB of `first` and `second`: loads of keys that exist now in
    /// either database were overtaken by what arrived there.
    pub fn overtake_swapped(&self, ctx: &Context, first: i32, second: i32) {
        let keys: Vec<(KeyId, ())> = self
            .registry()
            .keys()
            .into_iter()
            .filter(|key| key.db == first || key.db == second)
            .map(|key| (key, ()))
            .collect();
        let mut arrived = Vec::new();
        in_key_dbs(ctx, keys, |name, ()| {
            if ctx.open_key(name).key_type() != KeyType::Empty {
                arrived.push(KeyId::of(ctx, name));
            }
        });
        for key in &arrived {
            self.overtake(key);
        }
    }

    pub fn is_loading(&self, ctx: &Context, name: &RedisString) -> bool {
        self.active.load(Ordering::Relaxed) > 0 && self.registry().is_loading(&KeyId::of(ctx, name))
    }

    /// Server cron: held writes past their deadline fail.
    pub fn on_cron(&self, ctx: &Context) {
        let expired = self.registry().expire_held(now_ms());
        if expired.is_empty() {
            return;
        }
        in_key_dbs(ctx, expired, |name, held| {
            let reply = if held.on_missing && SERVER.is_primary() {
                // The database is slower than the writer may wait: the
                // write goes to an incomplete campaign, which the running
                // load completes.
                let members: Vec<&str> = held.members.iter().map(String::as_str).collect();
                run_callback("late write", Err(CampaignError::WriteBlocked), || {
                    apply_change(
                        ctx,
                        name,
                        &held.campaign,
                        held.op,
                        &members,
                        Propagation::Held,
                        IfMissing::Incomplete,
                    )
                })
                .map(|applied| RedisValue::Integer(applied.count() as i64))
                .map_err(|error| reply_error(&error))
            } else {
                Err(CampaignError::WriteBlocked.into_redis_error())
            };
            ThreadSafeContext::with_blocked_client(held.client).reply(reply);
        });
    }

    /// Completes a load on the main thread (the GIL is held): swap, send
    /// the change to replicas and the AOF, reply to everyone waiting, then
    /// apply the held writes in order.
    /// `shadow`: the id of a shadow the load sent parts of, which is
    /// swapped in, or dropped everywhere if the swap does not happen.
    pub fn finish(
        &self,
        ctx: &Context,
        job: &LoadJob,
        outcome: Result<Loaded, String>,
        shadow: Option<u64>,
        migrated: bool,
    ) {
        select_db(ctx, job.key.db);
        let name = ctx.create_string(job.key.name.clone());
        // Whatever happens in the swap, every waiter below gets its answer.
        // A node demoted while the load ran must not change its dataset:
        // its primary's stream is the only source of changes now. Nor may
        // one whose slot migrated away meanwhile (`migrated`): the key is
        // the new owner's.
        let demoted = !SERVER.is_primary() || migrated;
        let overtaken = self.registry().is_overtaken(&job.key);
        let result = run_callback("load swap", Err(internal_error(job)), || {
            if migrated {
                return Err(CampaignError::SlotMigrated);
            }
            if demoted {
                return Err(CampaignError::NoLongerPrimary);
            }
            if overtaken {
                // The arrived value is the campaign now (journaled under
                // this name as it landed); held writes go on top of it.
                return Err(CampaignError::LoadFailed {
                    campaign: job.campaign.clone(),
                    reason: "a value arrived under its name while it loaded (RENAME, COPY, \
                             MOVE, RESTORE or SWAPDB onto it): the arrived value is kept"
                        .into(),
                });
            }
            outcome
                .map_err(|error| CampaignError::LoadFailed {
                    campaign: job.campaign.clone(),
                    reason: error,
                })
                .and_then(|loaded| self.swap(ctx, job, &name, loaded))
        });
        // A shadow the swap did not take in is dropped everywhere.
        if let Some(id) = shadow {
            shadow::abandon(ctx, id, SERVER.is_primary());
        }
        let load = {
            let mut registry = self.registry();
            let load = registry.finish(&job.key);
            self.active.store(registry.len(), Ordering::Relaxed);
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
                log::warning(error.to_string());
                for client in load.rebuild_callers {
                    ThreadSafeContext::with_blocked_client(client).reply(Err(reply_error(error)));
                }
            }
        }
        // Readers get an answer either way: a failed read-through reads as
        // the (empty) cache rather than an error on the login path; one
        // whose campaign migrated away retries on its new owner.
        if migrated {
            for reader in load.readers {
                ThreadSafeContext::with_blocked_client(reader.client)
                    .reply(Err(reply_error(&CampaignError::SlotMigrated)));
            }
            for held in load.held {
                ThreadSafeContext::with_blocked_client(held.client)
                    .reply(Err(reply_error(&CampaignError::SlotMigrated)));
            }
            return;
        }
        with_campaign(ctx, &name, |current| {
            for reader in load.readers {
                let members: Vec<&str> = reader.members.iter().map(String::as_str).collect();
                ThreadSafeContext::with_blocked_client(reader.client).reply(Ok(answers(
                    current,
                    &members,
                    reader.multi,
                )));
            }
        });
        // Held writes apply in order to the loaded set, or to the old one
        // when the load failed; with no set at all they make the campaign
        // incomplete rather than create part of it.
        for held in load.held {
            let reply = match &result {
                Err(error) if demoted => Err(reply_error(error)),
                _ => run_callback("held write", Err(internal_error(job)), || {
                    let members: Vec<&str> = held.members.iter().map(String::as_str).collect();
                    apply_change(
                        ctx,
                        &name,
                        &held.campaign,
                        held.op,
                        &members,
                        Propagation::Held,
                        if result.is_ok() {
                            IfMissing::Create
                        } else {
                            IfMissing::Incomplete
                        },
                    )
                })
                .map(|applied| RedisValue::Integer(applied.count() as i64))
                .map_err(|error| reply_error(&error)),
            };
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
        let key = ctx.open_key(name);
        let current = read_campaign(&key)?;
        let base_unchanged =
            swap::base_unchanged(current, job.snapshot.as_ref().map(|(set, _)| set));
        let mut loaded = loaded;
        // Completing an incomplete campaign: what was written since goes on
        // top of the database's rows (and to replicas and the AOF after
        // the loaded set, as set content).
        let written_since = current.filter(|set| !set.is_complete()).map(|set| {
            let present: Vec<String> = set.members().iter().map(|m| m.to_string()).collect();
            let absent: Vec<String> = set
                .absent_members()
                .map(|absent| absent.iter().map(|m| m.to_string()).collect())
                .unwrap_or_default();
            loaded.campaign = set.completed(std::mem::take(&mut loaded.campaign));
            (present, absent)
        });
        // The set changes, the campaign's versions go on.
        loaded
            .campaign
            .advance_version(current.map_or(0, |set| set.version()));
        CLOCK.observe(loaded.campaign.version());
        drop(key);
        let count = loaded.campaign.len();
        if count == 0 {
            if write::delete(ctx, name)? {
                propagation::delete(name.as_slice()).replicate(ctx);
            }
            // The database does not know it: remember that for a while.
            negative::remember_missing(job.key.clone(), config::NEGATIVE_TTL_MS.get() as u64);
            return Ok(0);
        }
        let heard = matches!(loaded.propagation, Prepared::Unheard) && propagation_heard(ctx);
        // A shadow that left the registry (dropped meanwhile) cannot swap.
        let propagation = match loaded.propagation {
            Prepared::Shadow { id, complete } => Prepared::Shadow {
                id,
                complete: complete && shadow::shadows().is_sending(id),
            },
            other => other,
        };
        let plan = swap::plan(propagation, base_unchanged, heard);
        match &plan {
            Plan::Nothing => {}
            Plan::Diff { added, removed } => {
                for (op, members) in [(Op::Add, added), (Op::Remove, removed)] {
                    for command in propagation::sync_members(name.as_slice(), op, members) {
                        command.replicate(ctx);
                    }
                }
            }
            Plan::Shadow(id) => {
                shadow::shadows().take(*id);
                propagation::sync_shadow(name.as_slice(), *id, ShadowStep::Swap).replicate(ctx);
            }
            Plan::Whole => {
                let mut writer = BlobWriter::default();
                loaded.campaign.members().encode(&mut writer);
                propagation::sync_replace(name.as_slice(), &writer.bytes).replicate(ctx);
            }
        }
        if let Some((present, absent)) = &written_since {
            for (op, members) in [(Op::Add, present), (Op::Remove, absent)] {
                for command in propagation::sync_members(name.as_slice(), op, members) {
                    command.replicate(ctx);
                }
            }
        }
        if !matches!(plan, Plan::Nothing) {
            // Replicas raise the version and emit `campaign.rebuild` too.
            propagation::sync_rebuilt(name.as_slice(), loaded.campaign.version()).replicate(ctx);
        }
        write::replace(ctx, name, loaded.campaign)?;
        deleted::forget_deleted(&job.key);
        ctx.notify_keyspace_event(NotifyEvent::MODULE, "campaign.rebuild", name);
        Ok(count)
    }
}

/// Runs `visit` on each item with its key's database selected and its
/// name made; the database selected before is selected again after.
fn in_key_dbs<T>(ctx: &Context, items: Vec<(KeyId, T)>, mut visit: impl FnMut(&RedisString, T)) {
    let selected = selected_db(ctx);
    for (key, item) in items {
        select_db(ctx, key.db);
        visit(&ctx.create_string(key.name), item);
    }
    select_db(ctx, selected);
}

/// A write may wait only outside MULTI/scripts and with a timeout.
fn check_can_hold(ctx: &Context, refusal: CampaignError) -> Result<(), CampaignError> {
    let timeout = config::WRITE_BLOCK_TIMEOUT_MS.get();
    if timeout == 0 || ctx.get_flags().contains(ContextFlags::DENY_BLOCKING) {
        return Err(refusal);
    }
    Ok(())
}

fn internal_error(job: &LoadJob) -> CampaignError {
    CampaignError::Internal {
        command: format!("the load of '{}'", job.campaign.escape_debug()),
        detail: "a panic".into(),
    }
}

fn reply_error(error: &CampaignError) -> RedisError {
    RedisError::String(format!("{} {error}", error.code()))
}

/// True when a change would reach anyone: the AOF, a replica, or the
/// replication backlog a reconnecting replica resumes from.
pub fn propagation_heard(ctx: &Context) -> bool {
    if ctx.get_flags().contains(ContextFlags::AOF) {
        return true;
    }
    // Unknown: assume someone listens.
    let Some(info) = call_text(ctx, "INFO", &["replication"]) else {
        return true;
    };
    let quiet = |field: &str| info.lines().any(|line| line.trim() == format!("{field}:0"));
    !(quiet("connected_slaves") && quiet("repl_backlog_active"))
}
