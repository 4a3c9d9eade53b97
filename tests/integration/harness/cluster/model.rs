//! The acknowledged model: what PostgreSQL must hold after FLUSH on every
//! primary, from what clients were told.
//!
//! Per (campaign, member) the order of operations is known (each writer
//! owns its members). An acknowledged ADD makes the member expected
//! present, an acknowledged REM expected absent; an operation that may or
//! may not have happened (connection lost, WAIT unconfirmed, refused) lets
//! the member end either way, until a later acknowledged operation on it
//! decides again. `Writers` runs such writers on a cluster.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;

use super::client::{ClusterClient, Outcome, Stats};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Rem,
}

impl Op {
    pub fn command(self) -> &'static str {
        match self {
            Op::Add => "CAMPAIGN.ADD",
            Op::Rem => "CAMPAIGN.REM",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Present,
    Absent,
    Either,
}

#[derive(Clone, Debug)]
struct Entry {
    expect: Expect,
    /// The campaign key was deleted since the last reply: the next one may
    /// come from a reload that cannot see what another node still holds.
    reloaded: bool,
    /// The last few operations, for the report.
    history: VecDeque<String>,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            expect: Expect::Absent,
            reloaded: false,
            history: VecDeque::new(),
        }
    }
}

impl Entry {
    fn note(&mut self, text: String) {
        if self.history.len() == 12 {
            self.history.pop_front();
        }
        self.history.push_back(text);
    }
}

type Key = (String, String);

#[derive(Clone, Debug, Default)]
pub struct Acknowledged {
    entries: BTreeMap<Key, Entry>,
    /// Acknowledged replies that contradict the model (the cache answered
    /// something the acknowledged history rules out).
    reply_mismatches: Vec<String>,
    pub acknowledged: u64,
    pub ambiguous: u64,
}

/// A member's history as one line.
fn describe(key: &Key, entry: &Entry) -> String {
    let history: Vec<&str> = entry.history.iter().map(String::as_str).collect();
    format!("{}/{}: {}", key.0, key.1, history.join(" -> "))
}

impl Acknowledged {
    /// Records what became of `op` on (campaign, member).
    pub fn record(&mut self, campaign: &str, member: &str, op: Op, outcome: &Outcome) {
        let key = (campaign.to_string(), member.to_string());
        let entry = self.entries.entry(key.clone()).or_default();
        let before = entry.expect;
        match outcome {
            Outcome::Acknowledged {
                reply,
                port,
                doubted,
            } => {
                self.acknowledged += 1;
                let changed = match reply {
                    Value::Int(n) => Some(*n),
                    _ => None,
                };
                entry.note(format!(
                    "{op:?}@{port}={}{}",
                    changed.map_or_else(|| format!("{reply:?}"), |n| n.to_string()),
                    if *doubted { "(after doubt)" } else { "" }
                ));
                let expected_change = match (op, before) {
                    (Op::Add, Expect::Absent) | (Op::Rem, Expect::Present) => Some(1),
                    (Op::Add, Expect::Present) | (Op::Rem, Expect::Absent) => Some(0),
                    (_, Expect::Either) => None,
                };
                let unchecked = *doubted || std::mem::take(&mut entry.reloaded);
                if let (Some(expected), false) = (expected_change, unchecked) {
                    if changed != Some(expected) {
                        self.reply_mismatches
                            .push(format!("{} (expected {expected})", describe(&key, entry)));
                    }
                }
                entry.expect = match op {
                    Op::Add => Expect::Present,
                    Op::Rem => Expect::Absent,
                };
            }
            Outcome::Ambiguous { why, port } | Outcome::Refused { error: why, port } => {
                self.ambiguous += 1;
                entry.note(format!("{op:?}@{port}?({why})"));
                entry.expect = match (op, before) {
                    (Op::Add, Expect::Present) => Expect::Present,
                    (Op::Rem, Expect::Absent) => Expect::Absent,
                    _ => Expect::Either,
                };
            }
        }
    }

    /// The campaign key was deleted (DEL): the next reply on each member may
    /// come from a reload out of the database, which lacks what other nodes
    /// still have pending, so it is not checked against the model.
    pub fn deleted(&mut self, campaign: &str) {
        for ((c, _), entry) in self.entries.iter_mut() {
            if c == campaign {
                entry.reloaded = true;
                entry.note("DEL".into());
            }
        }
    }

    /// `record` of a reply received straight from one node.
    pub fn replied(&mut self, campaign: &str, member: &str, op: Op, port: u16, reply: i64) {
        let outcome = Outcome::Acknowledged {
            reply: Value::Int(reply),
            port,
            doubted: false,
        };
        self.record(campaign, member, op, &outcome);
    }

    /// Joins the model of another writer (disjoint members).
    pub fn merge(&mut self, other: Acknowledged) {
        for (key, entry) in other.entries {
            let previous = self.entries.insert(key.clone(), entry);
            assert!(previous.is_none(), "{key:?} has two writers");
        }
        self.reply_mismatches.extend(other.reply_mismatches);
        self.acknowledged += other.acknowledged;
        self.ambiguous += other.ambiguous;
    }

    pub fn campaigns(&self) -> BTreeSet<String> {
        self.entries.keys().map(|(c, _)| c.clone()).collect()
    }

    /// Compares every campaign's cached set, on the node serving it, with
    /// the model: a member expected present must be cached, one expected
    /// absent must not, and CARD must lie between the members expected
    /// present and those that may be.
    pub fn cache_differences(&self, client: &mut ClusterClient) -> Vec<String> {
        let mut differences = Vec::new();
        for campaign in self.campaigns() {
            let entries: Vec<(&String, &Entry)> = self
                .entries
                .iter()
                .filter(|((c, _), _)| *c == campaign)
                .map(|((_, m), entry)| (m, entry))
                .collect();
            let mut cached = Vec::new();
            for chunk in entries.chunks(1_000) {
                let mut args = vec!["CAMPAIGN.MHAS", campaign.as_str()];
                args.extend(chunk.iter().map(|(m, _)| m.as_str()));
                match client.read(&campaign, &args) {
                    Value::Array(answers) => cached.extend(answers),
                    other => panic!("MHAS {campaign}: {other:?}"),
                }
            }
            for ((member, entry), answer) in entries.iter().zip(&cached) {
                let in_cache = *answer == Value::Int(1);
                let wrong = match entry.expect {
                    Expect::Present => !in_cache,
                    Expect::Absent => in_cache,
                    Expect::Either => false,
                };
                if wrong {
                    differences.push(format!(
                        "{} (cached: {in_cache})",
                        describe(&(campaign.clone(), member.to_string()), entry)
                    ));
                }
            }
            let sure = entries
                .iter()
                .filter(|(_, e)| e.expect == Expect::Present)
                .count() as i64;
            let maybe = entries
                .iter()
                .filter(|(_, e)| e.expect == Expect::Either)
                .count() as i64;
            match client.read(&campaign, &["CAMPAIGN.CARD", &campaign]) {
                Value::Int(card) if sure <= card && card <= sure + maybe => {}
                other => differences.push(format!(
                    "{campaign}: CARD {other:?}, expected {sure}..={}",
                    sure + maybe
                )),
            }
        }
        differences
    }

    /// Compares the rows with the model: lost (expected present, missing),
    /// resurrected (expected absent, or never written, yet present).
    pub fn compare(&self, rows: &BTreeSet<Key>) -> Comparison {
        let mut comparison = Comparison {
            checked: self.entries.len(),
            ambiguous: 0,
            lost: Vec::new(),
            resurrected: Vec::new(),
            reply_mismatches: self.reply_mismatches.clone(),
            acknowledged: self.acknowledged,
            ambiguous_ops: self.ambiguous,
        };
        for (key, entry) in &self.entries {
            let found = rows.contains(key);
            match (entry.expect, found) {
                (Expect::Present, false) => comparison.lost.push(describe(key, entry)),
                (Expect::Absent, true) => comparison.resurrected.push(describe(key, entry)),
                (Expect::Either, _) => comparison.ambiguous += 1,
                _ => {}
            }
        }
        for key in rows {
            if !self.entries.contains_key(key) {
                comparison
                    .resurrected
                    .push(format!("{}/{}: never written", key.0, key.1));
            }
        }
        comparison
    }
}

#[derive(Debug)]
pub struct Comparison {
    pub checked: usize,
    /// Members allowed either way.
    pub ambiguous: usize,
    pub lost: Vec<String>,
    pub resurrected: Vec<String>,
    pub reply_mismatches: Vec<String>,
    pub acknowledged: u64,
    pub ambiguous_ops: u64,
}

fn examples(out: &mut String, what: &str, list: &[String]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "{what} ({}), for example:", list.len());
    for line in list.iter().take(10) {
        let _ = writeln!(out, "  {line}");
    }
}

impl Comparison {
    pub fn summary(&self) -> String {
        format!(
            "{} lost, {} resurrected, {} reply mismatches; {} members checked ({} ambiguous), \
             {} operations acknowledged, {} ambiguous",
            self.lost.len(),
            self.resurrected.len(),
            self.reply_mismatches.len(),
            self.checked,
            self.ambiguous,
            self.acknowledged,
            self.ambiguous_ops
        )
    }

    pub fn is_exact(&self) -> bool {
        self.lost.is_empty() && self.resurrected.is_empty() && self.reply_mismatches.is_empty()
    }

    pub fn details(&self) -> String {
        let mut out = self.summary();
        out.push('\n');
        examples(&mut out, "lost", &self.lost);
        examples(&mut out, "resurrected", &self.resurrected);
        examples(
            &mut out,
            "replies contradicting the model",
            &self.reply_mismatches,
        );
        out
    }
}

/// A small xorshift generator: reproducible from its seed, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// What the writers do.
#[derive(Clone, Debug)]
pub struct Workload {
    pub campaigns: Vec<String>,
    pub writers: usize,
    pub members_per_writer: usize,
    /// `WAIT replicas timeout-ms` after every write; only confirmed writes
    /// are acknowledged.
    pub confirm: Option<(i64, u64)>,
    /// A writer stops after this many operations even if not told to.
    pub max_ops_per_writer: u64,
}

struct WriterResult {
    model: Acknowledged,
    stats: Stats,
}

/// Writer threads, each with its own members and its own client.
pub struct Writers {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handles: Vec<JoinHandle<WriterResult>>,
}

impl Writers {
    pub fn start(seeds: Vec<u16>, workload: Workload) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let handles = (0..workload.writers)
            .map(|writer| {
                let (stop, done) = (stop.clone(), done.clone());
                let seeds = seeds.clone();
                let workload = workload.clone();
                let seed = seed.wrapping_add(writer as u64);
                std::thread::Builder::new()
                    .name(format!("writer-{writer}"))
                    .spawn(move || write(writer, seed, seeds, workload, &stop, &done))
                    .expect("writer thread")
            })
            .collect();
        Writers {
            stop,
            done,
            handles,
        }
    }

    /// Operations answered so far, over every writer.
    pub fn ops(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Lets the writers run for `duration`, then until at least `min_ops`
    /// operations were answered meanwhile; panics if they stall (20 s more
    /// at most). Returns the operations answered meanwhile.
    pub fn run_for(&self, duration: Duration, min_ops: u64) -> u64 {
        let before = self.ops();
        std::thread::sleep(duration);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ops() < before + min_ops {
            assert!(
                Instant::now() < deadline,
                "the writers stalled: {} operations in {duration:?} and 20 s more",
                self.ops() - before
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.ops() - before
    }

    /// Stops the writers and returns their joined model and client stats.
    pub fn stop(mut self) -> (Acknowledged, Stats) {
        self.stop.store(true, Ordering::Relaxed);
        let mut model = Acknowledged::default();
        let mut stats = Stats::default();
        for handle in std::mem::take(&mut self.handles) {
            match handle.join() {
                Ok(result) => {
                    model.merge(result.model);
                    stats.add(&result.stats);
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        (model, stats)
    }
}

impl Drop for Writers {
    /// A test that panics with writers running stops them (without
    /// waiting): they must not go on against servers that are gone.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn write(
    writer: usize,
    seed: u64,
    seeds: Vec<u16>,
    workload: Workload,
    stop: &AtomicBool,
    done: &AtomicU64,
) -> WriterResult {
    let mut rng = Rng::new(seed);
    let mut client = ClusterClient::new(seeds);
    let mut model = Acknowledged::default();
    let members: Vec<String> = (0..workload.members_per_writer)
        .map(|i| format!("w{writer}-{i}"))
        .collect();
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) && count < workload.max_ops_per_writer {
        let campaign = &workload.campaigns[rng.below(workload.campaigns.len())];
        let member = &members[rng.below(members.len())];
        let op = if rng.below(2) == 0 { Op::Add } else { Op::Rem };
        let outcome = client.write(
            campaign,
            &[op.command(), campaign, member],
            workload.confirm,
        );
        model.record(campaign, member, op, &outcome);
        count += 1;
        done.fetch_add(1, Ordering::Relaxed);
    }
    WriterResult {
        model,
        stats: client.stats,
    }
}
