//! The load workers: a few threads that talk to PostgreSQL for REBUILD,
//! read-through, prefill and VERIFY, and build new sets off the main thread.
//! Each borrows a connection from the pool per use; the GIL is taken only
//! for the swap.
//!
//! Jobs wait in three lanes (`Lane`) and a worker always takes the most
//! urgent first: loads a client waits for on the login path, then work an
//! administrator waits for, then background work. One worker takes only
//! login-path loads, so a REBUILD of a million members or a prefill of
//! thousands of campaigns never stands between a login and its load.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, DetachedFromClient, RedisValue, ThreadSafeContext};

use super::prefill::{my_cluster_slots, PassOutcome};
use super::registry::Waiter;
use super::swap::{self, Prepared};
use super::{propagation_heard, Job, LoadJob, Loaded, VerifyJob, LOADS};
use crate::core::checksum::as_sql_bigint;
use crate::core::clock::now_ms;
use crate::core::cluster::key_slot;
use crate::core::shadow::{encode_parts, PART_BYTES};
use crate::core::version::version_ms;
use crate::core::Campaign;
use crate::error::CampaignError;
use crate::keyspace::{shadow, with_campaign};
use crate::redis_glue::ffi::{aof_buffer_bytes, lock_to_propagate, select_db};
use crate::redis_glue::lock_hold::{hold_lock, Hold};
use crate::redis_glue::panic_guard::{run_callback, PANIC_IN_NEXT_LOAD};
use crate::redis_glue::server_state::{SERVER, SLOT_MIGRATION};
use crate::redis_glue::{config, log};
use crate::sink::connection::Database;
use crate::sink::health::Use;
use crate::sink::pool::Priority;
use crate::sink::{PartsOut, Source};
use crate::write_behind::WRITE_BEHIND;

const INTERNAL_ERROR: &str = "internal error (see the Redis log)";

/// Loads run side by side up to this many (read-through of many campaigns
/// at once), each on its own connection.
const WORKERS: usize = 4;
/// Of those, this many take only loads on the login path (`Lane::Login`).
const LOGIN_WORKERS: usize = 1;

/// How urgent a queued job is; a worker takes the most urgent first, in
/// arrival order within a lane.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Lane {
    /// A load a client waits for on the login path: a HAS/MHAS on a
    /// missing campaign, a write held until its campaign is loaded (or a
    /// HAS inside MULTI, whose next call wants the campaign).
    Login = 0,
    /// Work an administrator's client waits for: REBUILD, VERIFY, and
    /// dropping a former primary's leftover shadows.
    Client = 1,
    /// Nobody waits: prefill, the reconciler's repairs, completing
    /// incomplete campaigns.
    Background = 2,
}

const LANES: usize = 3;

/// The load workers' queue: one FIFO per lane. A job may move to a more
/// urgent lane while it waits (a reader joins a queued prefill load).
pub struct JobQueue<J> {
    lanes: Mutex<[VecDeque<J>; LANES]>,
    ready: Condvar,
}

impl<J> Default for JobQueue<J> {
    fn default() -> Self {
        JobQueue {
            lanes: Mutex::new(std::array::from_fn(|_| VecDeque::new())),
            ready: Condvar::new(),
        }
    }
}

impl<J> JobQueue<J> {
    fn lanes(&self) -> MutexGuard<'_, [VecDeque<J>; LANES]> {
        self.lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn push(&self, lane: Lane, job: J) {
        self.lanes()[lane as usize].push_back(job);
        // Workers differ in the lanes they take: wake them all.
        self.ready.notify_all();
    }

    /// Moves the first job that `matches` and waits in a less urgent lane
    /// than `to` to the back of `to`; false when none waits there (it
    /// runs already, or waits in `to` or a more urgent lane).
    pub fn promote(&self, to: Lane, matches: impl Fn(&J) -> bool) -> bool {
        let mut lanes = self.lanes();
        for lane in (to as usize + 1)..LANES {
            if let Some(index) = lanes[lane].iter().position(&matches) {
                let job = lanes[lane].remove(index).expect("the index was found");
                lanes[to as usize].push_back(job);
                drop(lanes);
                self.ready.notify_all();
                return true;
            }
        }
        false
    }

    /// The most urgent job of the lanes up to `lowest`, if one waits.
    #[cfg(test)]
    pub fn try_pop(&self, lowest: Lane) -> Option<(Lane, J)> {
        Self::take(&mut self.lanes(), lowest)
    }

    /// Waits for the most urgent job of the lanes up to `lowest`.
    pub fn pop(&self, lowest: Lane) -> (Lane, J) {
        let mut lanes = self.lanes();
        loop {
            if let Some(found) = Self::take(&mut lanes, lowest) {
                return found;
            }
            lanes = self
                .ready
                .wait(lanes)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Jobs waiting, all lanes together.
    pub fn waiting(&self) -> usize {
        self.lanes().iter().map(VecDeque::len).sum()
    }

    fn take(lanes: &mut [VecDeque<J>; LANES], lowest: Lane) -> Option<(Lane, J)> {
        [Lane::Login, Lane::Client, Lane::Background]
            .into_iter()
            .filter(|lane| *lane <= lowest)
            .find_map(|lane| lanes[lane as usize].pop_front().map(|job| (lane, job)))
    }
}

pub fn start() {
    static START: Once = Once::new();
    START.call_once(|| {
        for index in 0..WORKERS {
            let lowest = if index < LOGIN_WORKERS {
                Lane::Login
            } else {
                Lane::Background
            };
            let spawned = std::thread::Builder::new()
                .name(format!("campaign-load-{index}"))
                .spawn(move || loop {
                    let (lane, job) = LOADS.queue.pop(lowest);
                    run_callback("load worker", (), || run(lane, job));
                });
            if let Err(error) = spawned {
                log::warning(format!("cannot start a load worker: {error}"));
            }
        }
    });
}

fn run(lane: Lane, job: Job) {
    match job {
        Job::Load(job) => {
            // A login-path load may take the connection the pool keeps
            // free of every other use.
            let mut database = Database::new(Use::Load).with_priority(if lane == Lane::Login {
                Priority::Login
            } else {
                Priority::Ordinary
            });
            let database = &mut database;
            let mut shadow = None;
            // Even a panic must reach `finish`: it unblocks the waiters.
            let outcome = run_callback("load", Err(INTERNAL_ERROR.into()), || {
                if let Some(target) = job.flush_target {
                    WRITE_BEHIND.wait_until_committed(target)?;
                }
                let mut loaded = load(database, &job, CATCH_UP_WAIT)?;
                if plan_outdated(&job, &loaded) {
                    let part_bytes = SHADOW_TUNING.part_bytes.load(Ordering::Relaxed);
                    let parts = encode_parts(loaded.campaign.members(), part_bytes);
                    loaded.propagation = Prepared::Parts(parts);
                }
                // Sent after the load, not while it reads: the main thread
                // writes every part to the AOF and replicas, and while the
                // load takes both cores that showed as HAS p99 4x idle.
                if let Prepared::Parts(parts) = loaded.propagation {
                    let mut sender = ShadowSender::new(&job);
                    parts.into_iter().for_each(|part| sender.send(part));
                    loaded.propagation = sender.prepared();
                    shadow = Some(sender);
                }
                Ok(loaded)
            });
            // What the swap propagates from here would not reach the
            // target of an atomic slot migration exporting the campaign
            // (Valkey forwards only what client commands propagate): the
            // swap waits until the export ended, and is dropped if the
            // slot went with it.
            let waited = wait_while_exported(&job.key.name);
            let redis = ThreadSafeContext::<DetachedFromClient>::new();
            // The swap and the held writes are propagated: never while
            // clients are paused.
            let shadow_id = shadow.as_ref().and_then(ShadowSender::id);
            let ctx = lock_to_propagate(&redis, Hold::Swap);
            let migrated = waited && !serves_key(&ctx, &job.key.name);
            LOADS.finish(&ctx, &job, outcome, shadow_id, migrated);
            drop(ctx);
            // Dropped here, without the GIL: after the swap the job's
            // snapshot may be the last handle on a large old set, and the
            // sender's copies of the parts the last ones.
            drop(shadow);
            drop(job);
        }
        Job::Verify(job) => verify(&mut Database::new(Use::Verify), job),
        Job::DropLeftoverShadows => {
            let redis = ThreadSafeContext::<DetachedFromClient>::new();
            let ctx = lock_to_propagate(&redis, Hold::Scan);
            if SERVER.is_primary() && !SERVER.is_loading() {
                let dropped = shadow::drop_leftovers(&ctx);
                if dropped > 0 {
                    log::notice(format!(
                        "dropped {dropped} rebuilt sets a former primary had not finished sending"
                    ));
                }
            }
        }
        Job::Prefill(slots) => {
            let outcome = prefill(&mut Database::new(Use::Prefill), slots.as_ref());
            super::prefill::pass_ended(slots, outcome);
        }
    }
}

/// Waits while an atomic slot migration exports the slot of `key` (at most
/// `EXPORT_WAIT`); true if it had to wait.
fn wait_while_exported(key: &[u8]) -> bool {
    const EXPORT_WAIT: Duration = Duration::from_secs(300);
    if !SLOT_MIGRATION.key_exporting(key) {
        return false;
    }
    let started = Instant::now();
    while SLOT_MIGRATION.key_exporting(key) && started.elapsed() < EXPORT_WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// This node serves the slot of `key` (always, outside a cluster).
fn serves_key(ctx: &redis_module::Context, key: &[u8]) -> bool {
    my_cluster_slots(ctx).is_none_or(|slots| slots.get(key_slot(key) as usize) == Some(&true))
}

/// Whether what the load prepared for replicas and the AOF no longer fits
/// (a replica attached although nobody listened when it started; the key
/// a diff was computed against changed meanwhile): the whole set then goes
/// as a shadow, in parts, rather than in one command at the swap. Checked
/// under a short hold; a change between this check and the swap still
/// falls back to the one command.
fn plan_outdated(job: &LoadJob, loaded: &Loaded) -> bool {
    if loaded.campaign.is_empty() {
        return false;
    }
    let check = |ctx: &Context| match &loaded.propagation {
        Prepared::Unheard => propagation_heard(ctx),
        Prepared::Diff { .. } => {
            let name = ctx.create_string(job.key.name.clone());
            let snapshot = job.snapshot.as_ref().map(|(set, _)| set);
            !with_campaign(ctx, &name, |current| {
                swap::base_unchanged(current, snapshot)
            })
        }
        Prepared::Parts(_) | Prepared::Shadow { .. } => false,
    };
    let redis = ThreadSafeContext::<DetachedFromClient>::new();
    let ctx = hold_lock(&redis, Hold::Scan);
    select_db(&ctx, job.key.db);
    check(&ctx)
}

/// Loads the job's campaign from `source` and prepares how the swap will
/// reach replicas and the AOF: the parts of the whole set are written as
/// the rows come, and kept in case the change is too large for a diff.
///
/// A campaign whose key left this node knowing a newer version than the
/// database holds (after a slot moved, its old owner is still committing
/// changes the deleted value had) is loaded once the database has caught
/// up, or after `catch_up` anyway (those changes may be lost for good: a
/// node that died with them), with a warning.
pub fn load(source: &mut impl Source, job: &LoadJob, catch_up: Duration) -> Result<Loaded, String> {
    if PANIC_IN_NEXT_LOAD.swap(false, Ordering::Relaxed) {
        panic!("CAMPAIGN.DEBUG PANIC-IN-NEXT-LOAD");
    }
    if job.known_version > 0 {
        wait_for_catch_up(source, job, Instant::now() + catch_up)?;
    }
    let part_bytes = SHADOW_TUNING.part_bytes.load(Ordering::Relaxed);
    let parts = if job.propagate {
        PartsOut::Collect(part_bytes)
    } else {
        PartsOut::None
    };
    let mut loaded = source
        .load_members(&job.campaign, parts)
        .map_err(|error| error.to_string())?;
    if loaded.skipped > 0 {
        log::warning(format!(
            "{} rows of campaign '{}' are not valid members and were skipped",
            loaded.skipped,
            job.campaign.escape_debug()
        ));
    }
    let propagation = if job.propagate {
        swap::prepare(
            job.snapshot.as_ref(),
            &loaded.members,
            loaded.checksum,
            loaded.parts.take(),
            part_bytes,
        )
    } else {
        Prepared::Unheard
    };
    let mut campaign = Campaign::from_parts(loaded.members, loaded.checksum);
    // Changes made after the load continue above the database's versions.
    campaign.advance_version(loaded.newest_version);
    Ok(Loaded {
        campaign,
        propagation,
    })
}

/// Test hooks (`CAMPAIGN.DEBUG SHADOW-PARTS`): the size of a shadow's
/// parts, and a pause after that many parts until `SHADOW-RESUME`.
pub struct ShadowTuning {
    pub part_bytes: AtomicUsize,
    pub pause_after: AtomicUsize,
    /// A load is paused now (`CAMPAIGN.DEBUG SHADOW-PAUSED`).
    pub paused: AtomicBool,
}

pub static SHADOW_TUNING: ShadowTuning = ShadowTuning {
    part_bytes: AtomicUsize::new(PART_BYTES),
    pause_after: AtomicUsize::new(0),
    paused: AtomicBool::new(false),
};

/// Between two parts of a shadow, the main thread's turn.
const PART_PAUSE: Duration = Duration::from_micros(100);

/// AOF bytes Redis may hold unwritten before the next part waits, how
/// often it looks again, and the longest it waits per part.
const AOF_BACKLOG_BYTES: u64 = 16 << 20;
const AOF_BACKLOG_POLL: Duration = Duration::from_millis(2);
const AOF_BACKLOG_WAIT: Duration = Duration::from_secs(2);

/// The longest a test pause holds a shadow's parts.
const TEST_PAUSE_LIMIT: Duration = Duration::from_secs(60);

/// Sends a loaded set's parts to replicas and the AOF as a shadow, each
/// under its own hold of the Redis lock (the main thread serves clients in
/// between); the swap then sends one small command. Stops if this node
/// stops being a primary (the swap then fails).
pub struct ShadowSender<'a> {
    redis: ThreadSafeContext<DetachedFromClient>,
    job: &'a LoadJob,
    id: u64,
    /// The parts sent, shared with the registry (freed here, off the lock).
    sent: Vec<Arc<[u8]>>,
    interrupted: bool,
}

impl<'a> ShadowSender<'a> {
    fn new(job: &'a LoadJob) -> Self {
        ShadowSender {
            redis: ThreadSafeContext::new(),
            job,
            id: shadow::new_id(),
            sent: Vec::new(),
            interrupted: false,
        }
    }

    /// The shadow's id, once a part went out.
    fn id(&self) -> Option<u64> {
        (!self.sent.is_empty()).then_some(self.id)
    }

    /// What the swap does: swap the shadow in if every part went out.
    fn prepared(&self) -> Prepared {
        Prepared::Shadow {
            id: self.id,
            complete: !self.interrupted && !self.sent.is_empty(),
        }
    }

    fn send(&mut self, part: Vec<u8>) {
        if self.interrupted {
            return;
        }
        let part: Arc<[u8]> = Arc::from(part);
        let mut waited = Duration::ZERO;
        loop {
            let ctx = lock_to_propagate(&self.redis, Hold::ShadowPart);
            if !SERVER.is_primary() {
                self.interrupted = true;
                return;
            }
            // While a background fsync runs, Redis keeps the AOF in its
            // buffer; appending to a large one reallocates it under the
            // lock (3 ms seen at 20 MB). Wait for it to be written.
            if waited < AOF_BACKLOG_WAIT && aof_buffer_bytes(&ctx) > AOF_BACKLOG_BYTES {
                drop(ctx);
                std::thread::sleep(AOF_BACKLOG_POLL);
                waited += AOF_BACKLOG_POLL;
                continue;
            }
            select_db(&ctx, self.job.key.db);
            shadow::send_part(&ctx, self.id, &self.job.key.name, &part);
            break;
        }
        self.sent.push(part);
        // The lock is not queued fairly: taken again at once, the main
        // thread could wait out many parts (measured: 43 ms). Pausing lets
        // it take the lock and write each part to the AOF and replicas.
        std::thread::sleep(PART_PAUSE);
        let pause_after = SHADOW_TUNING.pause_after.load(Ordering::Relaxed);
        if pause_after == self.sent.len() {
            let until = Instant::now() + TEST_PAUSE_LIMIT;
            SHADOW_TUNING.paused.store(true, Ordering::Relaxed);
            while SHADOW_TUNING.pause_after.load(Ordering::Relaxed) == pause_after
                && Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            SHADOW_TUNING.paused.store(false, Ordering::Relaxed);
        }
    }
}

/// How long a load waits for the database to reach the version this node
/// knew of a deleted campaign.
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

fn wait_for_catch_up(
    source: &mut impl Source,
    job: &LoadJob,
    deadline: Instant,
) -> Result<(), String> {
    // Markers older than the retention may be gone: nothing to wait for.
    let retention_ms = config::REMOVED_RETENTION_S.get() as u64 * 1_000;
    if version_ms(job.known_version) + retention_ms < now_ms() {
        return Ok(());
    }
    loop {
        let newest = source
            .newest_version(&job.campaign)
            .map_err(|error| error.to_string())?;
        if newest >= job.known_version {
            return Ok(());
        }
        if Instant::now() >= deadline {
            log::warning(format!(
                "campaign '{}' is loaded although the database has not reached the newest \
                 change this node knew of it (another node has not committed it yet, or lost it)",
                job.campaign.escape_debug()
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn verify(database: &mut Database, job: VerifyJob) {
    let digest = run_callback("verify", Err(INTERNAL_ERROR.into()), || {
        database
            .digest(&job.campaign)
            .map_err(|error| error.to_string())
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
        Err(error) => Err(CampaignError::LoadFailed {
            campaign: job.campaign.clone(),
            reason: error,
        }
        .into_redis_error()),
    };
    ThreadSafeContext::with_blocked_client(job.client).reply(reply);
}

/// Loads every campaign the table holds that db 0 lacks; in a cluster only
/// those of `slots` that this node still serves.
fn prefill(database: &mut Database, slots: Option<&Vec<bool>>) -> PassOutcome {
    let campaigns = match database.campaigns() {
        Ok(campaigns) => campaigns,
        Err(error) => {
            log::warning(format!("prefill failed (retried with backoff): {error}"));
            return PassOutcome::Again;
        }
    };
    let redis = ThreadSafeContext::<DetachedFromClient>::new();
    // Slots move: only those given and still served now.
    let serving = |slot: usize, owned: &Option<Vec<bool>>| {
        owned.as_ref().is_none_or(|owned| owned[slot])
            && slots.as_ref().is_none_or(|slots| slots[slot])
    };
    let owned = my_cluster_slots(&hold_lock(&redis, Hold::Scan));
    let mut started = 0;
    for campaign in campaigns {
        if !serving(key_slot(campaign.as_bytes()) as usize, &owned) {
            continue;
        }
        let ctx = hold_lock(&redis, Hold::Scan);
        select_db(&ctx, 0);
        let name = ctx.create_string(campaign.as_bytes());
        let absent = ctx.open_key(&name).is_null();
        if absent && !LOADS.is_loading(&ctx, &name) {
            LOADS.start_load(&ctx, &name, Waiter::Background);
            started += 1;
        }
    }
    LOADS.stats.prefilled.fetch_add(started, Ordering::Relaxed);
    if started == 0 {
        return PassOutcome::Complete;
    }
    log::notice(format!(
        "prefill is loading {started} campaigns from the database"
    ));
    PassOutcome::Again
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::KeyId;
    use crate::sink::memory::MemorySink;

    fn job(campaign: &str, snapshot: Option<&Campaign>, propagate: bool) -> LoadJob {
        LoadJob {
            key: KeyId {
                db: 0,
                name: campaign.as_bytes().to_vec(),
            },
            campaign: campaign.into(),
            snapshot: snapshot.map(|set| (set.snapshot(), set.checksum())),
            propagate,
            flush_target: None,
            known_version: 0,
        }
    }

    /// A database whose campaign reaches `version` after `polls_behind`
    /// polls of its newest version, as when another node commits late.
    struct CatchingUp {
        database: MemorySink,
        polls: usize,
        polls_behind: usize,
        version: u64,
    }

    impl Source for CatchingUp {
        fn load_members(
            &mut self,
            campaign: &str,
            parts: PartsOut,
        ) -> Result<crate::sink::LoadedMembers, crate::sink::SinkError> {
            self.database.load_members(campaign, parts)
        }
        fn digest(&mut self, campaign: &str) -> Result<(i64, i64), crate::sink::SinkError> {
            self.database.digest(campaign)
        }
        fn campaigns(&mut self) -> Result<Vec<String>, crate::sink::SinkError> {
            self.database.campaigns()
        }
        fn newest_version(&mut self, _campaign: &str) -> Result<u64, crate::sink::SinkError> {
            self.polls += 1;
            Ok(if self.polls > self.polls_behind {
                self.version
            } else {
                0
            })
        }
    }

    #[test]
    fn the_most_urgent_lane_goes_first_in_arrival_order() {
        let queue = JobQueue::default();
        queue.push(Lane::Background, "prefill-1");
        queue.push(Lane::Background, "prefill-2");
        queue.push(Lane::Client, "rebuild");
        queue.push(Lane::Login, "login-1");
        queue.push(Lane::Login, "login-2");
        assert_eq!(queue.waiting(), 5);
        // The login worker takes only the login path.
        assert_eq!(queue.try_pop(Lane::Login), Some((Lane::Login, "login-1")));
        assert_eq!(queue.pop(Lane::Background), (Lane::Login, "login-2"));
        assert_eq!(queue.try_pop(Lane::Login), None);
        assert_eq!(queue.pop(Lane::Background), (Lane::Client, "rebuild"));
        assert_eq!(queue.pop(Lane::Background), (Lane::Background, "prefill-1"));
        assert_eq!(queue.pop(Lane::Background), (Lane::Background, "prefill-2"));
        assert_eq!(queue.waiting(), 0);
    }

    #[test]
    fn a_queued_job_moves_up_never_down() {
        let queue = JobQueue::default();
        for job in ["a", "b", "c"] {
            queue.push(Lane::Background, job);
        }
        queue.push(Lane::Client, "rebuild");
        assert!(queue.promote(Lane::Login, |job| *job == "c"));
        assert!(
            !queue.promote(Lane::Login, |job| *job == "c"),
            "moved already"
        );
        assert!(queue.promote(Lane::Client, |job| *job == "b"));
        // Never down: a job already more urgent stays where it is.
        assert!(!queue.promote(Lane::Background, |job| *job == "rebuild"));
        assert!(!queue.promote(Lane::Client, |job| *job == "c"));
        assert!(!queue.promote(Lane::Login, |job| *job == "missing"));
        let order: Vec<_> = std::iter::from_fn(|| queue.try_pop(Lane::Background)).collect();
        assert_eq!(
            order,
            [
                (Lane::Login, "c"),
                (Lane::Client, "rebuild"),
                (Lane::Client, "b"),
                (Lane::Background, "a")
            ]
        );
    }

    #[test]
    fn a_waiting_worker_wakes_for_its_lane_only() {
        let queue = Arc::new(JobQueue::default());
        let login_worker = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || queue.pop(Lane::Login))
        };
        queue.push(Lane::Background, "prefill");
        queue.push(Lane::Login, "login");
        assert_eq!(login_worker.join().unwrap(), (Lane::Login, "login"));
        assert_eq!(
            queue.try_pop(Lane::Background),
            Some((Lane::Background, "prefill"))
        );
    }

    #[test]
    fn a_load_builds_the_set_its_checksum_and_the_diff() {
        let mut database = MemorySink::default();
        for member in ["a", "b", "42"] {
            database.insert("c", member);
        }
        database.insert("other", "x");
        let mut cached = Campaign::new();
        cached.insert("a");
        cached.insert("gone");
        let loaded = load(
            &mut database,
            &job("c", Some(&cached), true),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(loaded.campaign.len(), 3);
        assert!(loaded.campaign.contains("42") && !loaded.campaign.contains("x"));
        let (_, db_checksum) = database.digest("c").unwrap();
        assert_eq!(as_sql_bigint(loaded.campaign.checksum()), db_checksum);
        let Prepared::Diff { mut added, removed } = loaded.propagation else {
            panic!("a small change is a diff");
        };
        added.sort();
        assert_eq!(
            (added, removed),
            (vec!["42".into(), "b".into()], vec!["gone".into()])
        );
    }

    #[test]
    fn nothing_is_prepared_when_nobody_listens() {
        let mut database = MemorySink::default();
        database.insert("c", "a");
        let loaded = load(&mut database, &job("c", None, false), Duration::ZERO).unwrap();
        assert_eq!(loaded.propagation, Prepared::Unheard);
    }

    #[test]
    fn a_failing_database_fails_the_load() {
        let mut database = MemorySink::failing(1);
        let error = load(&mut database, &job("c", None, true), Duration::ZERO)
            .err()
            .unwrap();
        assert!(error.contains("down"), "{error}");
        // The next attempt reconnects and works.
        assert!(load(&mut database, &job("c", None, true), Duration::ZERO).is_ok());
    }

    #[test]
    fn a_load_waits_for_the_database_to_reach_the_version_this_node_knew() {
        let known = crate::core::version::version_at(now_ms());
        let mut database = CatchingUp {
            database: MemorySink::default(),
            polls: 0,
            polls_behind: 3,
            version: known,
        };
        database.database.insert("c", "late");
        let mut waiting = job("c", None, false);
        waiting.known_version = known;
        let loaded = load(&mut database, &waiting, Duration::from_secs(60)).unwrap();
        assert_eq!(database.polls, 4, "polled until the database caught up");
        assert!(loaded.campaign.contains("late"));

        // Never caught up: loaded anyway once the wait is over.
        database.polls = 0;
        database.polls_behind = usize::MAX;
        let loaded = load(&mut database, &waiting, Duration::from_millis(20)).unwrap();
        assert!(database.polls >= 1 && loaded.campaign.contains("late"));

        // A version older than the markers' retention is not waited for.
        database.polls = 0;
        waiting.known_version = 5;
        load(&mut database, &waiting, Duration::from_secs(60)).unwrap();
        assert_eq!(database.polls, 0);
    }
}
