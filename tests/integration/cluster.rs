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

use crate::harness::campaign::{flush, info_field, pending, rows, rows_of, status, use_database};
use crate::harness::cluster::client::{ClusterClient, Stats};
use crate::harness::cluster::model::{Acknowledged, Op, Workload, Writers};
use crate::harness::cluster::Cluster;
use crate::harness::redis_server::{call, int};
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
