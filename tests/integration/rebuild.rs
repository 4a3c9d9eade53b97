//! Issue drills for REBUILD, read-through, the negative cache, prefill,
//! VERIFY and the periodic reconcile, against real servers.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use crate::harness::campaign::{
    add, assert_cache_holds, flush, flushing_to, members, rows_of, start_replica_of, status,
    use_database, wait_blocked_clients, wait_for_replica, write_around, TABLE,
};
use crate::harness::redis_server::{call, error, int};
use crate::harness::{wait_until, Postgres, RedisServer};

fn verify(con: &mut Connection, campaign: &str) -> HashMap<String, i64> {
    let value = call(con, &[b"CAMPAIGN.VERIFY", campaign.as_bytes()]).expect("VERIFY");
    let Value::Array(items) = value else {
        panic!("VERIFY answered {value:?}")
    };
    items
        .chunks(2)
        .map(|pair| match (&pair[0], &pair[1]) {
            (Value::BulkString(name), Value::Int(number)) => {
                (String::from_utf8_lossy(name).into_owned(), *number)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// Holds an exclusive lock on the table until dropped: a rebuild's read
/// waits on it, which makes "while a rebuild runs" deterministic.
pub(crate) struct TableLock {
    release: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TableLock {
    pub(crate) fn take(database: &Postgres) -> TableLock {
        let mut client = database.client();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut transaction = client.transaction().unwrap();
            transaction
                .batch_execute(&format!("LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"))
                .unwrap();
            locked_tx.send(()).unwrap();
            let _ = release_rx.recv();
            transaction.commit().unwrap();
        });
        locked_rx.recv().unwrap();
        TableLock {
            release,
            thread: Some(thread),
        }
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        let _ = self.release.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn wait_rebuilding(con: &mut Connection, count: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || status(con)["rebuilding"]
            == count),
        "rebuilding: {:?}",
        status(con)
    );
}

/// Drill: 500k rows written around the module show up as drift in VERIFY;
/// REBUILD repairs it and VERIFY is consistent again.
#[test]
fn verify_reports_write_around_drift_and_rebuild_repairs_it() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    add(&mut con, "drifting", &members("cached-", 0..1_000));
    flush(&mut con);
    let report = verify(&mut con, "drifting");
    assert_eq!(report["consistent"], 1, "{report:?}");
    assert_eq!(report["cache-checksum"], report["db-checksum"]);

    write_around(&database, "drifting", &members("around-", 0..500_000));
    let report = verify(&mut con, "drifting");
    assert_eq!(report["consistent"], 0, "{report:?}");
    assert_eq!(
        (report["cache-members"], report["db-members"]),
        (1_000, 501_000)
    );

    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "drifting"]), 501_000);
    assert_eq!(
        int(&mut con, &["CAMPAIGN.HAS", "drifting", "around-499999"]),
        1
    );
    let report = verify(&mut con, "drifting");
    assert_eq!(report["consistent"], 1, "{report:?}");
}

/// Drill: REBUILD while 3 clients ADD and one HASes. Every acknowledged ADD
/// is there afterwards, HAS never errors or waits, VERIFY is consistent
/// after FLUSH.
#[test]
fn rebuild_under_concurrent_writers_loses_nothing() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    add(&mut con, "busy", &members("seed-", 0..20_000));
    flush(&mut con);
    write_around(&database, "busy", &members("around-", 0..20_000));

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let mut writers = Vec::new();
    for writer in 0..3 {
        let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
        let mut con = server.connection();
        writers.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let member = format!("w{writer}-{i}");
                let added: i64 = redis::cmd("CAMPAIGN.ADD")
                    .arg("busy")
                    .arg(&member)
                    .query(&mut con)
                    .unwrap();
                assert_eq!(added, 1);
                acknowledged.lock().unwrap().insert(member);
                i += 1;
            }
        }));
    }
    let reader = {
        let stop = Arc::clone(&stop);
        let mut con = server.connection();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let present: i64 = redis::cmd("CAMPAIGN.HAS")
                    .arg("busy")
                    .arg("seed-7")
                    .query(&mut con)
                    .unwrap();
                assert_eq!(present, 1);
                slowest = slowest.max(started.elapsed());
            }
            slowest
        })
    };
    // Writers are under way before the rebuild and go on after it.
    let acknowledged_count = || acknowledged.lock().unwrap().len();
    assert!(wait_until(Duration::from_secs(20), || acknowledged_count() >= 100));
    let loaded = int(&mut con, &["CAMPAIGN.REBUILD", "busy"]);
    assert!(loaded >= 40_000, "{loaded}");
    let after_rebuild = acknowledged_count();
    assert!(wait_until(Duration::from_secs(20), || acknowledged_count()
        >= after_rebuild + 100));
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let slowest_has = reader.join().unwrap();
    assert!(
        slowest_has < Duration::from_secs(1),
        "HAS waited {slowest_has:?}"
    );

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty());
    let mut expected: BTreeSet<String> = members("seed-", 0..20_000).into_iter().collect();
    expected.extend(members("around-", 0..20_000));
    expected.extend(acknowledged);
    assert_cache_holds(&mut con, "busy", &expected);
    flush(&mut con);
    assert_eq!(rows_of(&database, "busy"), expected);
    assert_eq!(verify(&mut con, "busy")["consistent"], 1);
}

/// Writes that arrive during a rebuild wait and are applied in arrival
/// order after the swap; reads keep answering from the old set.
#[test]
fn writes_wait_for_the_rebuild_and_apply_in_order() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "held", "old"]);
    flush(&mut con);
    write_around(&database, "held", &["from-db".to_string()]);

    let lock = TableLock::take(&database);
    let mut rebuild_con = server.connection();
    let rebuild = std::thread::spawn(move || {
        redis::cmd("CAMPAIGN.REBUILD")
            .arg("held")
            .query::<i64>(&mut rebuild_con)
    });
    wait_rebuilding(&mut con, "1");

    // Writes block; each is issued from its own connection, in order.
    // Each write is sent once the previous one is blocked, so the arrival
    // order is the order below.
    let mut writes = Vec::new();
    for (index, (command, member)) in [
        ("CAMPAIGN.ADD", "x"),
        ("CAMPAIGN.REM", "x"),
        ("CAMPAIGN.ADD", "y"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut writer = server.connection();
        writes.push(std::thread::spawn(move || {
            redis::cmd(command)
                .arg("held")
                .arg(member)
                .query::<i64>(&mut writer)
                .unwrap()
        }));
        // The REBUILD caller is blocked too.
        wait_blocked_clients(&mut con, index + 2);
    }
    // Reads answer at once, from the old set.
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "held", "old"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "held", "from-db"]), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "held"]), 1);

    drop(lock);
    assert_eq!(rebuild.join().unwrap().unwrap(), 2);
    let replies: Vec<i64> = writes.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(replies, [1, 1, 1]);
    let expected: BTreeSet<String> = ["old", "from-db", "y"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert_cache_holds(&mut con, "held", &expected);
    flush(&mut con);
    assert_eq!(rows_of(&database, "held"), expected);
}

/// Drill: a write held longer than write-block-timeout-ms fails and
/// changes nothing.
#[test]
fn held_write_times_out() {
    let database = Postgres::start();
    let server = RedisServer::start_with(
        flushing_to(&database).module_args(&["write-block-timeout-ms", "300"]),
    );
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "slow", "a"]);
    flush(&mut con);
    let lock = TableLock::take(&database);
    let mut rebuild_con = server.connection();
    let rebuild = std::thread::spawn(move || {
        redis::cmd("CAMPAIGN.REBUILD")
            .arg("slow")
            .query::<i64>(&mut rebuild_con)
    });
    wait_rebuilding(&mut con, "1");

    let started = Instant::now();
    let text = error(&mut server.connection(), &["CAMPAIGN.ADD", "slow", "late"]);
    assert!(text.starts_with("TIMEOUT "), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // Inside MULTI a write cannot wait: refused at once.
    let mut multi = server.connection();
    call(&mut multi, &[b"MULTI"]).unwrap();
    call(&mut multi, &[b"CAMPAIGN.ADD", b"slow", b"in-multi"]).unwrap();
    let replies = call(&mut multi, &[b"EXEC"]);
    assert!(format!("{replies:?}").contains("TIMEOUT"), "{replies:?}");

    drop(lock);
    assert_eq!(rebuild.join().unwrap().unwrap(), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "slow", "late"]), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "slow", "in-multi"]), 0);
}

/// Drill: REBUILD with the database down keeps the old set.
#[test]
fn rebuild_with_the_database_down_keeps_the_old_set() {
    let mut database = Postgres::start_owned();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    add(&mut con, "kept", &members("k", 0..100));
    flush(&mut con);
    database.stop();
    let text = error(&mut con, &["CAMPAIGN.REBUILD", "kept"]);
    assert!(
        text.starts_with("ERR loading campaign 'kept' from the database failed"),
        "{text}"
    );
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "kept"]), 100);

    // With pending changes the flush fails first, and says so.
    int(&mut con, &["CAMPAIGN.ADD", "kept", "new"]);
    let text = error(&mut con, &["CAMPAIGN.REBUILD", "kept"]);
    assert!(text.contains("could not be committed first"), "{text}");
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "kept"]), 101);
    assert_eq!(status(&mut con)["rebuilding"], "0");

    database.start_again();
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "kept"]), 101);
}

#[test]
fn rebuild_refuses_without_a_database_or_on_a_wrong_type() {
    let server = RedisServer::start();
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "a"]);
    let text = error(&mut con, &["CAMPAIGN.REBUILD", "c"]);
    assert!(text.starts_with("ERR no database configured"), "{text}");
    int(&mut con, &["SADD", "native", "a"]);
    let database = Postgres::start();
    use_database(&mut con, &database);
    assert!(error(&mut con, &["CAMPAIGN.REBUILD", "native"]).starts_with("WRONGTYPE"));
    assert!(error(&mut con, &["CAMPAIGN.VERIFY", "native"]).starts_with("WRONGTYPE"));
    assert!(error(&mut con, &["CAMPAIGN.REBUILD"]).starts_with("ERR wrong number"));
}

/// Drill: read-through after DEL loads the campaign back; concurrent
/// readers share one load.
#[test]
fn read_through_after_del_loads_from_the_database() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    add(&mut con, "evicted", &members("e", 0..5_000));
    int(&mut con, &["CAMPAIGN.REM", "evicted", "e1"]);
    int(&mut con, &["DEL", "evicted"]);
    // No FLUSH: read-through commits the campaign's pending entries first.

    let readers: Vec<_> = (0..5)
        .map(|i| {
            let mut con = server.connection();
            std::thread::spawn(move || {
                let member = format!("e{}", i * 1000 + 2);
                redis::cmd("CAMPAIGN.HAS")
                    .arg("evicted")
                    .arg(member)
                    .query::<i64>(&mut con)
                    .unwrap()
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), 1);
    }
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "evicted"]), 4_999);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "evicted", "e1"]), 0);
    let mhas: Vec<i64> = redis::cmd("CAMPAIGN.MHAS")
        .arg("evicted")
        .arg("e0")
        .arg("e1")
        .query(&mut con)
        .unwrap();
    assert_eq!(mhas, [1, 0]);
    let loads: i64 = status(&mut con)["loads-done"].parse().unwrap();
    assert!(loads <= 2, "readers shared the load: {loads} loads");

    // read-through off: a missing campaign is just empty.
    int(&mut con, &["DEL", "evicted"]);
    call(
        &mut con,
        &[b"CONFIG", b"SET", b"campaign.read-through", b"no"],
    )
    .unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "evicted", "e2"]), 0);
    assert_eq!(int(&mut con, &["EXISTS", "evicted"]), 0);
}

/// Drill: a campaign the database does not know answers 0 and is
/// remembered for negative-ttl-ms.
#[test]
fn unknown_campaigns_are_remembered_for_the_negative_ttl() {
    let database = Postgres::start();
    let server =
        RedisServer::start_with(flushing_to(&database).module_args(&["negative-ttl-ms", "3000"]));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "other", "x"]);
    flush(&mut con);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "ghost", "m"]), 0);
    let loads_after_first: i64 = status(&mut con)["loads-done"].parse().unwrap();

    write_around(&database, "ghost", &["m".to_string()]);
    assert_eq!(
        int(&mut con, &["CAMPAIGN.HAS", "ghost", "m"]),
        0,
        "cached as unknown"
    );
    let loads: i64 = status(&mut con)["loads-done"].parse().unwrap();
    assert_eq!(loads, loads_after_first, "no second load within the TTL");

    let reloaded = wait_until(Duration::from_secs(20), || {
        int(&mut con, &["CAMPAIGN.HAS", "ghost", "m"]) == 1
    });
    assert!(reloaded, "loaded again once the TTL passed");
}

/// Drill: prefill on a cold start without persistence.
#[test]
fn prefill_loads_every_campaign_on_a_cold_start() {
    let database = Postgres::start();
    {
        let seeder = RedisServer::start_with(flushing_to(&database));
        let mut con = seeder.connection();
        for c in 0..5 {
            add(
                &mut con,
                &format!("pre-{c}"),
                &members("p", 0..(c + 1) * 100),
            );
        }
        flush(&mut con);
    }
    let server = RedisServer::start_with(flushing_to(&database).module_args(&["prefill", "yes"]));
    let mut con = server.connection();
    let filled = wait_until(Duration::from_secs(20), || {
        (0..5).all(|c| int(&mut con, &["CAMPAIGN.CARD", &format!("pre-{c}")]) == (c + 1) * 100)
    });
    assert!(filled, "{:?}", status(&mut con));
    assert_eq!(status(&mut con)["prefilled"], "5");
}

/// Drill: a replica receives the rebuilt set, as a diff and as a whole.
#[test]
fn replica_receives_the_rebuilt_set() {
    let database = Postgres::start();
    let primary = RedisServer::start_with(flushing_to(&database));
    let replica = start_replica_of(&primary, flushing_to(&database));
    let mut replica_con = replica.connection();
    let mut con = primary.connection();
    add(&mut con, "mirror", &members("m", 0..1_000));
    flush(&mut con);

    // A few members changed: sent as a diff.
    write_around(&database, "mirror", &members("small-", 0..10));
    database
        .client()
        .batch_execute(&format!("DELETE FROM {TABLE} WHERE member = 'm5'"))
        .unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "mirror"]), 1_009);
    // Many changed: sent whole.
    write_around(&database, "mirror", &members("big-", 0..30_000));
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "mirror"]), 31_009);
    wait_for_replica(&mut con);

    let expected = rows_of(&database, "mirror");
    assert_cache_holds(&mut replica_con, "mirror", &expected);
    assert_eq!(int(&mut replica_con, &["CAMPAIGN.HAS", "mirror", "m5"]), 0);
    // The rebuild journals nothing: the replica's journal stays empty.
    assert_eq!(status(&mut replica_con)["pending"], "0");
    assert_eq!(status(&mut con)["pending"], "0");
}

/// Drill: a rebuild that races a DEL of the same key ends with the
/// database's set on the primary and the same on the replica.
#[test]
fn rebuild_racing_a_del_stays_consistent() {
    let database = Postgres::start();
    let primary = RedisServer::start_with(flushing_to(&database));
    let replica = start_replica_of(&primary, flushing_to(&database));
    let mut replica_con = replica.connection();
    let mut con = primary.connection();
    add(&mut con, "raced", &members("r", 0..500));
    flush(&mut con);

    let lock = TableLock::take(&database);
    let mut rebuild_con = primary.connection();
    let rebuild = std::thread::spawn(move || {
        redis::cmd("CAMPAIGN.REBUILD")
            .arg("raced")
            .query::<i64>(&mut rebuild_con)
    });
    wait_rebuilding(&mut con, "1");
    assert_eq!(int(&mut con, &["DEL", "raced"]), 1);
    drop(lock);
    assert_eq!(rebuild.join().unwrap().unwrap(), 500);

    wait_for_replica(&mut con);
    let expected: BTreeSet<String> = members("r", 0..500).into_iter().collect();
    assert_cache_holds(&mut con, "raced", &expected);
    assert_cache_holds(&mut replica_con, "raced", &expected);
}

/// Drill: with verify-interval-s, drift is found and repaired by itself.
#[test]
fn periodic_verify_repairs_drift() {
    let database = Postgres::start();
    let server =
        RedisServer::start_with(flushing_to(&database).module_args(&["verify-interval-s", "1"]));
    let mut con = server.connection();
    add(&mut con, "watched", &members("w", 0..100));
    add(&mut con, "calm", &members("c", 0..100));
    flush(&mut con);
    write_around(&database, "watched", &members("extra-", 0..50));

    let repaired = wait_until(Duration::from_secs(15), || {
        int(&mut con, &["CAMPAIGN.CARD", "watched"]) == 150
    });
    assert!(repaired, "{:?}", status(&mut con));
    let figures = status(&mut con);
    assert_eq!(figures["drift-found"], "1", "{figures:?}");
    assert!(server.log().contains("drifted from the database"));
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "calm"]), 100);
}

/// In Redis Cluster, prefill loads only the campaigns of this node's slots.
#[test]
fn prefill_in_a_cluster_loads_only_this_nodes_slots() {
    let database = Postgres::start();
    let campaigns: Vec<String> = (0..20).map(|c| format!("shard-{c}")).collect();
    {
        let seeder = RedisServer::start_with(flushing_to(&database));
        let mut con = seeder.connection();
        for campaign in &campaigns {
            add(&mut con, campaign, &members("s", 0..10));
        }
        flush(&mut con);
    }
    let mut node = RedisServer::start_with(
        flushing_to(&database)
            .module_args(&["prefill", "yes"])
            .config("cluster-enabled yes")
            .config("cluster-require-full-coverage no"),
    );
    let mut con = node.connection();
    call(&mut con, &[b"CLUSTER", b"ADDSLOTSRANGE", b"0", b"8191"]).unwrap();
    let ours: Vec<&String> = campaigns
        .iter()
        .filter(|c| int(&mut con, &["CLUSTER", "KEYSLOT", c]) < 8192)
        .collect();
    assert!(!ours.is_empty() && ours.len() < campaigns.len(), "{ours:?}");

    // The slot map is kept in nodes.conf: a restart prefills with it.
    node.restart();
    let mut con = node.connection();
    let filled = wait_until(Duration::from_secs(20), || {
        status(&mut con)["loads-done"] == ours.len().to_string()
    });
    assert!(filled, "{:?}", status(&mut con));
    assert_eq!(status(&mut con)["prefilled"], ours.len().to_string());
    assert_eq!(int(&mut con, &["DBSIZE"]), ours.len() as i64);
    let serving = wait_until(Duration::from_secs(20), || {
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).unwrap();
        info.contains("cluster_state:ok")
    });
    assert!(serving);
    for campaign in ours {
        assert_eq!(
            int(&mut con, &["CAMPAIGN.CARD", campaign]),
            10,
            "{campaign}"
        );
    }
}

/// Drill: prefill on a brand-new cluster node, which gets its slots only
/// after it started (as `redis-cli --cluster create` does), and more later.
#[test]
fn prefill_in_a_new_cluster_follows_the_slots_given() {
    let database = Postgres::start();
    let campaigns: Vec<String> = (0..30).map(|c| format!("fresh-{c}")).collect();
    {
        let seeder = RedisServer::start_with(flushing_to(&database));
        let mut con = seeder.connection();
        for campaign in &campaigns {
            add(&mut con, campaign, &members("f", 0..5));
        }
        flush(&mut con);
    }
    let node = RedisServer::start_with(
        flushing_to(&database)
            .module_args(&["prefill", "yes"])
            .config("cluster-enabled yes")
            .config("cluster-require-full-coverage no"),
    );
    let mut con = node.connection();
    let slot_of =
        |con: &mut Connection, campaign: &str| int(con, &["CLUSTER", "KEYSLOT", campaign]);
    let (low, high): (Vec<String>, Vec<String>) = campaigns
        .iter()
        .cloned()
        .partition(|campaign| slot_of(&mut con, campaign) < 8192);
    assert!(!low.is_empty() && !high.is_empty());
    // No slot yet: nothing to load (a few prefill checks pass meanwhile).
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(status(&mut con)["prefilled"], "0");

    let loaded = |con: &mut Connection, expected: usize| {
        wait_until(Duration::from_secs(30), || {
            status(con)["loads-done"] == expected.to_string()
        })
    };
    call(&mut con, &[b"CLUSTER", b"ADDSLOTSRANGE", b"0", b"8191"]).unwrap();
    assert!(loaded(&mut con, low.len()), "{:?}", status(&mut con));
    assert_eq!(int(&mut con, &["DBSIZE"]), low.len() as i64);

    call(&mut con, &[b"CLUSTER", b"ADDSLOTSRANGE", b"8192", b"16383"]).unwrap();
    assert!(loaded(&mut con, campaigns.len()), "{:?}", status(&mut con));
    assert_eq!(status(&mut con)["prefilled"], campaigns.len().to_string());
    let serving = wait_until(Duration::from_secs(20), || {
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).unwrap();
        info.contains("cluster_state:ok")
    });
    assert!(serving);
    for campaign in &campaigns {
        assert_eq!(int(&mut con, &["CAMPAIGN.CARD", campaign]), 5, "{campaign}");
    }
}

/// An ADD to a campaign the negative cache holds clears it: after a DEL,
/// read-through asks the database again at once.
#[test]
fn a_write_clears_the_negative_cache() {
    let database = Postgres::start();
    let server =
        RedisServer::start_with(flushing_to(&database).module_args(&["negative-ttl-ms", "600000"]));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "warm", "w"]);
    flush(&mut con);
    assert_eq!(
        int(&mut con, &["CAMPAIGN.HAS", "late", "m"]),
        0,
        "unknown: cached"
    );
    int(&mut con, &["CAMPAIGN.ADD", "late", "m"]);
    flush(&mut con);
    int(&mut con, &["DEL", "late"]);
    assert_eq!(
        int(&mut con, &["CAMPAIGN.HAS", "late", "m"]),
        1,
        "loaded again"
    );
}
