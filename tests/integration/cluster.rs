//! Redis Cluster: after FLUSH on every primary, PostgreSQL holds exactly
//! the newest acknowledged change of every (campaign, member), whatever
//! moved between nodes meanwhile (SPEC sections 4 and 5, guarantee 3):
//! slot moves with changes pending on the old owner (both directions), a
//! DEL and reload on the new owner, resharding under writers, CLUSTER
//! FAILOVER and kill -9 of a primary during writes.
//!
//! Every test here is in `cluster::`; run them alone with
//! `scripts/test.sh cluster:: -- --test-threads=1`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redis::Value;

use crate::harness::campaign::{
    flush, info_field, pending, rows, rows_of, status, use_database, TABLE,
};
use crate::harness::cluster::client::{ClusterClient, Stats};
use crate::harness::cluster::model::{Acknowledged, Op, Workload, Writers};
use crate::harness::cluster::Cluster;
use crate::harness::redis_server::{call, has_atomic_slot_migration, int};
use crate::harness::{free_port, wait_until, Postgres, RedisOptions};

/// Every node: the database, a flush interval, and held writes that give up
/// well before the test client's read timeout.
fn options(database: &Postgres, flush_interval_ms: u64) -> RedisOptions {
    RedisOptions::default().module_args(&[
        "database-url",
        database.url(),
        "flush-interval-ms",
        &flush_interval_ms.to_string(),
        "write-block-timeout-ms",
        "5000",
    ])
}

/// Points `node` at a database nobody listens on: from now on it cannot
/// commit (`assert_stuck` checks it).
fn cut_off(cluster: &Cluster, node: usize) {
    let dead = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=2",
        free_port()
    );
    cluster.config_set(node, "campaign.database-url", &dead);
}

/// Waits until `node`'s flusher failed after the writes just made, and
/// checks they are still pending.
fn assert_stuck(cluster: &Cluster, node: usize, errors_before: u64, writes: i64) {
    let mut con = cluster.connection(node);
    let failed = wait_until(Duration::from_secs(20), || {
        flush_errors(&mut con) > errors_before
    });
    assert!(
        failed,
        "node {node} never failed to flush: {:?}",
        status(&mut con)
    );
    assert_eq!(
        pending(&mut con),
        writes,
        "node {node} must hold its writes: {:?}",
        status(&mut con)
    );
}

fn flush_errors(con: &mut redis::Connection) -> u64 {
    status(con)["flush-errors"].parse().unwrap()
}

/// FLUSH on every primary, then: every node alive, the rows equal the
/// model (0 lost, 0 resurrected, no reply that contradicts it), and every
/// campaign's cache agrees with the model too.
fn assert_converged(
    cluster: &mut Cluster,
    database: &Postgres,
    model: &Acknowledged,
    stats: &Stats,
    started: Instant,
) {
    cluster.flush_primaries();
    cluster.assert_alive();
    let comparison = model.compare(&rows(database));
    let mut client = ClusterClient::new(cluster.ports());
    let cache = model.cache_differences(&mut client);
    eprintln!(
        "{} in {:.1} s; client: {stats:?}",
        comparison.summary(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        comparison.is_exact() && cache.is_empty(),
        "rows or caches differ from the acknowledged model: {}\n\
         caches differing from the model ({}): {:#?}\nclient: {stats:?}\n{}",
        comparison.details(),
        cache.len(),
        &cache[..cache.len().min(10)],
        cluster.logs()
    );
}

/// The race of issue 11, deterministic: `first` on member m is pending on
/// the old owner A (which cannot reach the database), the slot moves to
/// B, `second` on m is acknowledged and committed by B, then A commits.
/// The database must end with `second`'s effect.
fn slot_move_with_a_change_pending_on_the_old_owner(first: Op, second: Op) {
    let started = Instant::now();
    let database = Postgres::start();
    let mut cluster = Cluster::start(2, 0, options(&database, 20));
    let (a, b) = (0, 1);
    let (port_a, port_b) = (cluster.port(a), cluster.port(b));
    let campaign = cluster.key_served_by(a, "race-");
    let slot = cluster.slot_of(&campaign);
    let mut model = Acknowledged::default();
    let mut con_a = cluster.connection(a);

    // Committed members; m among them when the pending change removes it.
    let mut committed = vec!["c0", "c1", "c2"];
    if first == Op::Rem {
        committed.push("m");
    }
    for member in &committed {
        let added = int(&mut con_a, &["CAMPAIGN.ADD", &campaign, member]);
        model.replied(&campaign, member, Op::Add, port_a, added);
    }
    flush(&mut con_a);
    let committed: BTreeSet<String> = committed.iter().map(|m| m.to_string()).collect();
    assert_eq!(rows_of(&database, &campaign), committed);

    // The old owner acknowledges `first` but cannot commit it.
    let errors = flush_errors(&mut con_a);
    cut_off(&cluster, a);
    let changed = int(&mut con_a, &[first.command(), &campaign, "m"]);
    assert_eq!(changed, 1, "{first:?} m on A");
    model.replied(&campaign, "m", first, port_a, changed);
    assert_stuck(&cluster, a, errors, 1);
    assert_eq!(rows_of(&database, &campaign), committed);

    // The slot moves; the new owner changes m back and commits first.
    cluster.move_slot(slot, b);
    let mut con_b = cluster.connection(b);
    let changed = int(&mut con_b, &[second.command(), &campaign, "m"]);
    assert_eq!(changed, 1, "{second:?} m on B: the value moved with m");
    model.replied(&campaign, "m", second, port_b, changed);
    flush(&mut con_b);

    // Now the old owner reaches the database and commits its older change.
    use_database(&mut con_a, &database);
    flush(&mut con_a);
    assert_eq!(pending(&mut con_a), 0, "{:?}", status(&mut con_a));
    assert_converged(&mut cluster, &database, &model, &Stats::default(), started);
}

/// ADD m pending on the old owner, REM m on the new one: m must stay
/// removed (today it is resurrected).
#[test]
fn add_pending_on_the_old_owner_then_rem_on_the_new_owner() {
    slot_move_with_a_change_pending_on_the_old_owner(Op::Add, Op::Rem);
}

/// REM m pending on the old owner, ADD m on the new one: m must stay
/// (today the add is lost).
#[test]
fn rem_pending_on_the_old_owner_then_add_on_the_new_owner() {
    slot_move_with_a_change_pending_on_the_old_owner(Op::Rem, Op::Add);
}

/// The old owner A holds changes it cannot commit; the slot moves to B,
/// where the campaign is deleted and written again: the first write
/// reloads it from the database, which lacks A's changes, and B then
/// changes members A changed too. A's older changes must not undo B's
/// newer ones, and A's changes that B did not touch must still land.
///
/// A is given its database back as soon as B has either answered its
/// writes (a reload that does not wait: B's changes are committed first,
/// then A's) or held the first one for a second (a reload that waits for
/// the old owner's commit: A commits, then B's writes go on). Either way
/// the rows and B's cache must end equal to the acknowledged model.
#[test]
fn del_and_recreate_on_the_new_owner_while_the_old_owner_holds_changes() {
    let started = Instant::now();
    let database = Postgres::start();
    let mut cluster = Cluster::start(2, 0, options(&database, 20));
    let (a, b) = (0, 1);
    let (port_a, port_b) = (cluster.port(a), cluster.port(b));
    let campaign = cluster.key_served_by(a, "recreated-");
    let slot = cluster.slot_of(&campaign);
    let mut model = Acknowledged::default();
    let mut con_a = cluster.connection(a);
    let committed = ["c1", "c2", "c3", "c4", "c5"];
    for member in committed {
        let added = int(&mut con_a, &["CAMPAIGN.ADD", &campaign, member]);
        model.replied(&campaign, member, Op::Add, port_a, added);
    }
    flush(&mut con_a);

    let errors = flush_errors(&mut con_a);
    cut_off(&cluster, a);
    let on_a = [
        (Op::Add, "x"),
        (Op::Rem, "c1"),
        (Op::Add, "y"),
        (Op::Rem, "c2"),
    ];
    for (op, member) in on_a {
        let changed = int(&mut con_a, &[op.command(), &campaign, member]);
        assert_eq!(changed, 1, "{op:?} {member} on A");
        model.replied(&campaign, member, op, port_a, changed);
    }
    assert_stuck(&cluster, a, errors, on_a.len() as i64);

    cluster.move_slot(slot, b);
    let mut con_b = cluster.connection(b);
    assert_eq!(int(&mut con_b, &["DEL", &campaign]), 1);
    model.deleted(&campaign);
    let on_b = [
        (Op::Add, "x"),
        (Op::Rem, "x"),
        (Op::Rem, "c1"),
        (Op::Add, "c1"),
        (Op::Add, "z"),
    ];
    let writer = {
        let mut con = cluster.connection(b);
        let campaign = campaign.clone();
        std::thread::spawn(move || {
            on_b.map(|(op, member)| {
                let args = [op.command(), campaign.as_str(), member];
                let bytes: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
                (op, member, call(&mut con, &bytes))
            })
        })
    };
    // A plain reload takes milliseconds; one that waits for the old
    // owner's commit holds the write until A commits (or up to its limit).
    let mut watcher = cluster.connection(b);
    let mut held_since: Option<Instant> = None;
    let progressed = wait_until(Duration::from_secs(30), || {
        if writer.is_finished() {
            return true;
        }
        if info_field(&mut watcher, "clients", "blocked_clients") == "0" {
            held_since = None;
        } else {
            held_since.get_or_insert_with(Instant::now);
        }
        held_since.is_some_and(|since| since.elapsed() >= Duration::from_secs(1))
    });
    assert!(
        progressed,
        "B neither answered its writes nor held them\n{}",
        cluster.logs()
    );
    let reload_waited = !writer.is_finished();
    if !reload_waited {
        flush(&mut con_b);
    }
    use_database(&mut con_a, &database);
    let replies = writer.join().expect("B's writer");
    for (op, member, reply) in replies {
        match reply {
            Ok(Value::Int(changed)) => model.replied(&campaign, member, op, port_b, changed),
            other => panic!(
                "{op:?} {member} on B after the DEL: {other:?}\n{}",
                cluster.logs()
            ),
        }
    }
    eprintln!(
        "B's reload {} for A's commit",
        if reload_waited {
            "waited"
        } else {
            "did not wait"
        }
    );
    flush(&mut con_b);
    flush(&mut con_a);
    assert_eq!(pending(&mut con_a), 0, "{:?}", status(&mut con_a));
    assert_converged(&mut cluster, &database, &model, &Stats::default(), started);
}

/// `prefix0` .. `prefix{count-1}`.
fn campaigns(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

/// Three writers ADD/REM their own members of 100 campaigns while
/// `redis-cli --cluster reshard` moves 3,000 slots three times around the
/// three primaries. The writers stop as soon as the last reshard is done:
/// later writes to the same members would repair what a late commit of an
/// old owner broke, and hide it. A long flush interval keeps changes
/// pending across the moves.
#[test]
fn reshard_under_concurrent_writers() {
    let started = Instant::now();
    let database = Postgres::start();
    let mut cluster = Cluster::start(3, 0, options(&database, 1_000));
    let campaigns = campaigns("resharded-", 100);
    let writers = Writers::start(cluster.ports(), workload(campaigns, None));
    writers.run_for(Duration::from_secs(1), 1_000);
    let [p0, p1, p2] = cluster.primaries()[..] else {
        panic!("three primaries")
    };
    for (from, to) in [(p0, p1), (p1, p2), (p2, p0)] {
        writers.run_for(Duration::from_millis(300), 100);
        cluster.reshard(from, to, 3_000);
    }
    let (model, stats) = writers.stop();
    assert_converged(&mut cluster, &database, &model, &stats, started);
}

fn workload(campaigns: Vec<String>, confirm: Option<(i64, u64)>) -> Workload {
    Workload {
        campaigns,
        writers: 3,
        members_per_writer: 20,
        confirm,
        max_ops_per_writer: 1_000_000,
    }
}

/// `CLUSTER FAILOVER` of one shard and back while three writers run.
#[test]
fn cluster_failover_during_writes() {
    let started = Instant::now();
    let database = Postgres::start();
    let mut cluster = Cluster::start(3, 1, options(&database, 100));
    let writers = Writers::start(
        cluster.ports(),
        workload(campaigns("failed-over-", 100), None),
    );
    writers.run_for(Duration::from_secs(2), 1_000);
    let primary = cluster.primaries()[0];
    let replica = cluster.replicas_of(primary)[0];
    cluster.failover(replica);
    writers.run_for(Duration::from_secs(1), 1_000);
    cluster.failover(primary);
    // Not long: later writes to the same members would hide a stale commit.
    writers.run_for(Duration::from_millis(300), 100);
    let (model, stats) = writers.stop();
    assert_converged(&mut cluster, &database, &model, &stats, started);
}

/// kill -9 of a primary while three writers run, each write followed by
/// `WAIT 1 1000`: only confirmed writes count. The replica takes over, a
/// new replica joins it, the writers go on.
#[test]
fn kill_9_of_a_primary_during_confirmed_writes() {
    let started = Instant::now();
    let database = Postgres::start();
    let mut cluster = Cluster::start(3, 1, options(&database, 100));
    let writers = Writers::start(
        cluster.ports(),
        workload(campaigns("killed-", 100), Some((1, 1_000))),
    );
    writers.run_for(Duration::from_secs(2), 1_000);
    let victim = cluster.primaries()[0];
    let promoted = cluster.kill_primary(victim);
    // A moment with no replica behind the promoted node: nothing written
    // there is confirmed.
    writers.run_for(Duration::from_secs(1), 0);
    cluster.add_replica(promoted);
    writers.run_for(Duration::from_secs(1), 100);
    let (model, stats) = writers.stop();
    assert_converged(&mut cluster, &database, &model, &stats, started);
}

/// Valkey 9's atomic slot migration (`CLUSTER MIGRATESLOTS`) works with the
/// module loaded; elsewhere there is no such command and these tests skip.
fn skip_without_atomic_slot_migration(test: &str) -> bool {
    if has_atomic_slot_migration() {
        return false;
    }
    eprintln!(
        "{test}: skipped: this server has no atomic slot migration (CLUSTER MIGRATESLOTS, \
         Valkey 9.0 and later)"
    );
    true
}

/// The first half of the first slot range `node` serves.
fn half_of_the_slots_of(cluster: &Cluster, node: usize) -> Vec<(u16, u16)> {
    let (first, last) = cluster.slot_ranges_of(node)[0];
    vec![(first, first + (last - first) / 2)]
}

/// `DEBUG SLOTMIGRATION PREVENT-PAUSE 1|0` on `node` (Valkey 9): a
/// migration it exports stays in its streaming phase (the writes made
/// meanwhile travel as a replication stream) until released.
fn hold_migrations_streaming(cluster: &Cluster, node: usize, hold: bool) {
    let mut con = cluster.connection(node);
    let flag: &[u8] = if hold { b"1" } else { b"0" };
    call(
        &mut con,
        &[b"DEBUG", b"SLOTMIGRATION", b"PREVENT-PAUSE", flag],
    )
    .unwrap_or_else(|error| panic!("DEBUG SLOTMIGRATION on node {node}: {error}"));
}

/// Three writers ADD/REM their members of 100 campaigns while atomic slot
/// migrations move half of one primary's slots to the other and back, twice;
/// one move of each pair stays a second in its streaming phase so that
/// writes reach the target as the source's replication stream. The flush
/// interval keeps changes pending on the source across each move (it goes
/// on flushing them). Afterwards the rows and every cache equal the
/// acknowledged model.
#[test]
fn atomic_slot_migration_back_and_forth_under_writers() {
    if skip_without_atomic_slot_migration("atomic_slot_migration_back_and_forth_under_writers") {
        return;
    }
    let started = Instant::now();
    let database = Postgres::start();
    let mut cluster = Cluster::start(2, 0, options(&database, 1_000));
    let writers = Writers::start(cluster.ports(), workload(campaigns("migrated-", 100), None));
    writers.run_for(Duration::from_secs(1), 1_000);
    let (a, b) = (0, 1);
    // Half of A's slots: a primary left with none would become a replica
    // of the node that took them (cluster-allow-replica-migration).
    let ranges = half_of_the_slots_of(&cluster, a);
    for round in 0..2 {
        for (from, to) in [(a, b), (b, a)] {
            let held = (round + from) % 2 == 0;
            if held {
                hold_migrations_streaming(&cluster, from, true);
                cluster.start_migrate_slots(&ranges, to);
                cluster.wait_migration(from, &["waiting-to-pause"]);
                writers.run_for(Duration::from_secs(1), 200);
                hold_migrations_streaming(&cluster, from, false);
                cluster.wait_migration(from, &["success"]);
                cluster.wait_stable(&format!("slots {ranges:?} to migrate to node {to}"));
            } else {
                writers.run_for(Duration::from_millis(300), 100);
                cluster.migrate_slots(&ranges, to);
            }
            writers.run_for(Duration::from_millis(300), 100);
        }
    }
    let (model, stats) = writers.stop();
    assert_converged(&mut cluster, &database, &model, &stats, started);
}

/// The race of issue 11 with an atomic slot migration: `first` on member m
/// is pending on the source A (cut off from the database) when its slot
/// migrates to B, made before the migration (it travels in the snapshot)
/// or while it streams (it travels as the source's replication stream).
/// B and its replica get the campaign with m's change applied and its
/// version, and journal nothing of it; B takes `second` on m and commits
/// it; then A commits its older change. The database ends with `second`.
fn atomic_migration_with_a_change_pending_on_the_source(first: Op, second: Op, streamed: bool) {
    let started = Instant::now();
    let database = Postgres::start();
    let mut cluster = Cluster::start(2, 1, options(&database, 20));
    let (a, b) = (0, 1);
    let (port_a, port_b) = (cluster.port(a), cluster.port(b));
    let campaign = cluster.key_served_by(a, "asm-race-");
    let slot = cluster.slot_of(&campaign);
    let mut model = Acknowledged::default();
    let mut con_a = cluster.connection(a);
    let mut committed = vec!["c0", "c1", "c2"];
    if first == Op::Rem {
        committed.push("m");
    }
    for member in &committed {
        let added = int(&mut con_a, &["CAMPAIGN.ADD", &campaign, member]);
        model.replied(&campaign, member, Op::Add, port_a, added);
    }
    flush(&mut con_a);

    let errors = flush_errors(&mut con_a);
    cut_off(&cluster, a);
    if streamed {
        hold_migrations_streaming(&cluster, a, true);
        cluster.start_migrate_slots(&[(slot, slot)], b);
        cluster.wait_migration(a, &["waiting-to-pause"]);
    }
    let changed = int(&mut con_a, &[first.command(), &campaign, "m"]);
    assert_eq!(changed, 1, "{first:?} m on A");
    model.replied(&campaign, "m", first, port_a, changed);
    assert_stuck(&cluster, a, errors, 1);
    if streamed {
        hold_migrations_streaming(&cluster, a, false);
        cluster.wait_migration(a, &["success"]);
        cluster.wait_stable(&format!("slot {slot} to migrate to node {b}"));
    } else {
        cluster.migrate_slots(&[(slot, slot)], b);
    }

    let mut con_b = cluster.connection(b);
    assert_eq!(
        pending(&mut con_b),
        0,
        "the target journals nothing it imported: {:?}",
        status(&mut con_b)
    );
    let replica = cluster.replicas_of(b)[0];
    let mut con_replica = cluster.connection(replica);
    assert_eq!(
        pending(&mut con_replica),
        0,
        "nor does its replica: {:?}",
        status(&mut con_replica)
    );
    assert_eq!(pending(&mut con_a), 1, "the source keeps its change");
    let has_m = int(&mut con_b, &["CAMPAIGN.HAS", &campaign, "m"]);
    assert_eq!(
        has_m,
        i64::from(first == Op::Add),
        "m's change moved with the set"
    );
    let changed = int(&mut con_b, &[second.command(), &campaign, "m"]);
    assert_eq!(changed, 1, "{second:?} m on B");
    model.replied(&campaign, "m", second, port_b, changed);
    flush(&mut con_b);

    use_database(&mut con_a, &database);
    flush(&mut con_a);
    assert_eq!(pending(&mut con_a), 0, "{:?}", status(&mut con_a));
    assert_converged(&mut cluster, &database, &model, &Stats::default(), started);
}

/// ADD m pending on the source, in the migration's snapshot; REM m on
/// the target.
#[test]
fn atomic_slot_migration_add_pending_on_the_source_then_rem_on_the_target() {
    if skip_without_atomic_slot_migration(
        "atomic_slot_migration_add_pending_on_the_source_then_rem_on_the_target",
    ) {
        return;
    }
    atomic_migration_with_a_change_pending_on_the_source(Op::Add, Op::Rem, false);
}

/// REM m pending on the source, in the migration's stream; ADD m on the
/// target.
#[test]
fn atomic_slot_migration_rem_pending_on_the_source_then_add_on_the_target() {
    if skip_without_atomic_slot_migration(
        "atomic_slot_migration_rem_pending_on_the_source_then_add_on_the_target",
    ) {
        return;
    }
    atomic_migration_with_a_change_pending_on_the_source(Op::Rem, Op::Add, true);
}

/// A migration cancelled in its streaming phase, while writers run: the
/// target drops what it imported (keys, and no journal entry, no load),
/// the source serves and flushes on; a second attempt then completes.
/// The rows and every cache equal the acknowledged model.
#[test]
fn atomic_slot_migration_cancelled_then_retried_under_writers() {
    if skip_without_atomic_slot_migration(
        "atomic_slot_migration_cancelled_then_retried_under_writers",
    ) {
        return;
    }
    let started = Instant::now();
    let database = Postgres::start();
    let mut cluster = Cluster::start(2, 0, options(&database, 1_000));
    let writers = Writers::start(
        cluster.ports(),
        workload(campaigns("cancelled-", 100), None),
    );
    writers.run_for(Duration::from_secs(1), 1_000);
    let (a, b) = (0, 1);
    let ranges = half_of_the_slots_of(&cluster, a);

    hold_migrations_streaming(&cluster, a, true);
    cluster.start_migrate_slots(&ranges, b);
    cluster.wait_migration(a, &["waiting-to-pause"]);
    writers.run_for(Duration::from_secs(1), 200);
    let mut con_b = cluster.connection(b);
    let mut con_a = cluster.connection(a);
    call(&mut con_a, &[b"CLUSTER", b"CANCELSLOTMIGRATIONS"]).expect("CANCELSLOTMIGRATIONS");
    cluster.wait_migration(a, &["cancelled"]);
    cluster.wait_migration(b, &["failed"]);
    hold_migrations_streaming(&cluster, a, false);
    // The target dropped every key it was importing.
    let dropped = wait_until(Duration::from_secs(20), || {
        ranges.iter().all(|&(first, last)| {
            (first..=last).step_by(97).all(|slot| {
                let count: i64 = redis::cmd("CLUSTER")
                    .arg("COUNTKEYSINSLOT")
                    .arg(slot)
                    .query(&mut con_b)
                    .unwrap();
                count == 0
            })
        })
    });
    assert!(dropped, "node {b} kept imported keys\n{}", cluster.logs());
    writers.run_for(Duration::from_millis(500), 100);

    cluster.migrate_slots(&ranges, b);
    writers.run_for(Duration::from_millis(300), 100);
    let (model, stats) = writers.stop();
    assert_converged(&mut cluster, &database, &model, &stats, started);
}

/// A load that ends while its campaign's slot is being exported would
/// propagate its swap where the migration does not forward it (Valkey
/// forwards what client commands propagate, not a module thread's): the
/// swap waits until the export ends. Here the export completes: the
/// REBUILD and a write held behind it answer TRYAGAIN and change nothing;
/// the target holds the set as it was, and a REBUILD there then works.
#[test]
fn atomic_slot_migration_waits_for_a_load_of_a_migrating_campaign() {
    if skip_without_atomic_slot_migration(
        "atomic_slot_migration_waits_for_a_load_of_a_migrating_campaign",
    ) {
        return;
    }
    let database = Postgres::start();
    let cluster = Cluster::start(2, 0, options(&database, 20));
    let (a, b) = (0, 1);
    let campaign = cluster.key_served_by(a, "asm-load-");
    let slot = cluster.slot_of(&campaign);
    let mut con_a = cluster.connection(a);
    for member in ["c0", "c1", "c2"] {
        int(&mut con_a, &["CAMPAIGN.ADD", &campaign, member]);
    }
    flush(&mut con_a);
    // A row the cache lacks: only a rebuild brings it.
    database
        .client()
        .execute(
            &format!("INSERT INTO {TABLE} (campaign, member, version) VALUES ($1, 'db-only', 1)"),
            &[&campaign],
        )
        .unwrap();

    hold_migrations_streaming(&cluster, a, true);
    cluster.start_migrate_slots(&[(slot, slot)], b);
    cluster.wait_migration(a, &["waiting-to-pause"]);
    let background = |args: Vec<String>| {
        let mut con = cluster.connection(a);
        std::thread::spawn(move || {
            let bytes: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
            call(&mut con, &bytes)
        })
    };
    let rebuild = background(vec!["CAMPAIGN.REBUILD".into(), campaign.clone()]);
    let mut watcher = cluster.connection(a);
    let blocked = wait_until(Duration::from_secs(20), || {
        info_field(&mut watcher, "clients", "blocked_clients") == "1"
    });
    assert!(blocked, "the REBUILD waits\n{}", cluster.logs());
    let held = background(vec!["CAMPAIGN.ADD".into(), campaign.clone(), "held".into()]);
    let both = wait_until(Duration::from_secs(20), || {
        info_field(&mut watcher, "clients", "blocked_clients") == "2"
    });
    assert!(both, "the write waits behind the load\n{}", cluster.logs());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!rebuild.is_finished(), "the swap waits for the export");

    hold_migrations_streaming(&cluster, a, false);
    cluster.wait_migration(a, &["success"]);
    cluster.wait_stable(&format!("slot {slot} to migrate to node {b}"));
    for (what, reply) in [("REBUILD", rebuild.join()), ("ADD", held.join())] {
        match reply.expect("thread") {
            Err(error) if error.contains("migrated to another node") => {}
            other => panic!("{what} on the old owner: {other:?}\n{}", cluster.logs()),
        }
    }
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut con_a).unwrap();
    assert_eq!(dbsize, 0, "the old owner created nothing");
    let mut con_b = cluster.connection(b);
    assert_eq!(int(&mut con_b, &["CAMPAIGN.CARD", &campaign]), 3);
    assert_eq!(int(&mut con_b, &["CAMPAIGN.HAS", &campaign, "held"]), 0);
    assert_eq!(int(&mut con_b, &["CAMPAIGN.REBUILD", &campaign]), 4);
    assert_eq!(int(&mut con_b, &["CAMPAIGN.HAS", &campaign, "db-only"]), 1);
}
