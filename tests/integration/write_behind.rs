//! Issue drills for the write-behind journal: every acknowledged change
//! reaches PostgreSQL, whatever fails in between.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::campaign::{
    add, assert_cache_holds, flush, flushing_to, info_field, members, pending, rows, rows_of,
    start_replica_of, status, use_database, wait_blocked_clients, wait_for_aof_rewrite,
    wait_for_replica, TABLE,
};
use crate::harness::redis_server::{call, error, int};
use crate::harness::{wait_until, Postgres, RedisOptions, RedisServer};

/// Drill a: 100k members over 10 campaigns; after FLUSH table equals cache.
#[test]
fn hundred_thousand_members_reach_the_table() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    let mut expected: HashMap<String, BTreeSet<String>> = HashMap::new();
    for c in 0..10 {
        let campaign = format!("campaign-{c}");
        add(
            &mut con,
            &campaign,
            &members("user-", c * 10_000..(c + 1) * 10_000),
        );
        expected.insert(
            campaign.clone(),
            members("user-", c * 10_000..(c + 1) * 10_000)
                .into_iter()
                .collect(),
        );
    }
    flush(&mut con);
    assert_eq!(pending(&mut con), 0);
    for (campaign, members) in &expected {
        assert_eq!(&rows_of(&database, campaign), members, "{campaign}");
        assert_cache_holds(&mut con, campaign, members);
    }
    assert_eq!(rows(&database).len(), 100_000);
    let figures = status(&mut con);
    assert_eq!(figures["database"], "connected");
    assert_eq!(figures["flushed"], "100000");
}

/// Drill b: order per campaign is kept, within one batch and across.
#[test]
fn add_remove_add_keeps_order() {
    let database = Postgres::start();
    for interval in ["20", "5000"] {
        let server = RedisServer::start_with(RedisOptions::default().module_args(&[
            "database-url",
            database.url(),
            "flush-interval-ms",
            interval,
        ]));
        let mut con = server.connection();
        let campaign = format!("ordered-{interval}");
        int(&mut con, &["CAMPAIGN.ADD", &campaign, "m1", "m2"]);
        int(&mut con, &["CAMPAIGN.REM", &campaign, "m1"]);
        int(&mut con, &["CAMPAIGN.ADD", &campaign, "m3"]);
        int(&mut con, &["CAMPAIGN.REM", &campaign, "m3"]);
        int(&mut con, &["CAMPAIGN.ADD", &campaign, "m3"]);
        flush(&mut con);
        let expected: BTreeSet<String> = ["m2".to_string(), "m3".to_string()].into();
        assert_eq!(
            rows_of(&database, &campaign),
            expected,
            "interval {interval}"
        );
    }
}

/// Drill c: PostgreSQL down while 20k members are added.
#[test]
fn database_outage_keeps_writes_and_drains_after() {
    let mut database = Postgres::start_owned();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "outage", "before"]);
    flush(&mut con);

    database.stop();
    let added = members("m", 0..20_000);
    for chunk in added.chunks(500) {
        assert_eq!(add(&mut con, "outage", chunk), 500);
        assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "outage", &chunk[0]]), 1);
    }
    let noticed = wait_until(Duration::from_secs(20), || {
        let figures = status(&mut con);
        figures["database"] == "disconnected" && figures["flush-errors"] != "0"
    });
    assert!(noticed, "{:?}", status(&mut con));
    let figures = status(&mut con);
    assert_eq!(figures["pending"], "20000", "{figures:?}");
    assert!(!figures["last-error"].is_empty());
    assert!(server.log().contains("flushing"), "failures are logged");

    database.start_again();
    flush(&mut con);
    let mut expected: BTreeSet<String> = added.into_iter().collect();
    expected.insert("before".into());
    assert_eq!(rows_of(&database, "outage"), expected);
    assert_eq!(status(&mut con)["database"], "connected");
}

/// Drill d: kill -9 mid-stream with appendfsync always loses nothing
/// acknowledged.
#[test]
fn kill_nine_loses_no_acknowledged_add() {
    let database = Postgres::start();
    let mut server = RedisServer::start_with(
        flushing_to(&database)
            .config("appendonly yes")
            .config("appendfsync always"),
    );
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let acknowledged = Arc::clone(&acknowledged);
        let mut con = server.connection();
        std::thread::spawn(move || {
            for i in 0..1_000_000 {
                let member = format!("acked-{i}");
                let reply = redis::cmd("CAMPAIGN.ADD")
                    .arg("stream")
                    .arg(&member)
                    .query::<i64>(&mut con);
                match reply {
                    Ok(1) => acknowledged.lock().unwrap().push(member),
                    Ok(other) => panic!("ADD answered {other}"),
                    Err(_) => return, // the server died
                }
            }
        })
    };
    assert!(wait_until(Duration::from_secs(20), || acknowledged
        .lock()
        .unwrap()
        .len()
        >= 2_000));
    server.kill();
    writer.join().unwrap();
    let acknowledged: BTreeSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();

    server.restart();
    let mut con = server.connection();
    for member in &acknowledged {
        assert_eq!(
            int(&mut con, &["CAMPAIGN.HAS", "stream", member]),
            1,
            "{member} lost"
        );
    }
    flush(&mut con);
    let stored = rows_of(&database, "stream");
    assert!(
        acknowledged.is_subset(&stored),
        "{} acknowledged members missing",
        acknowledged.difference(&stored).count()
    );
}

/// Drill e: a promoted replica flushes what the dead primary left pending.
#[test]
fn promoted_replica_flushes_the_pending_journal() {
    let mut database = Postgres::start_owned();
    let mut primary = RedisServer::start_with(flushing_to(&database));
    let replica = start_replica_of(&primary, flushing_to(&database));
    let mut replica_con = replica.connection();
    let mut con = primary.connection();
    // Loaded while the database is up: later writes need no load.
    let added = members("r", 0..10_000);
    add(&mut con, "failover", &added[..1]);
    flush(&mut con);

    database.stop();
    add(&mut con, "failover", &added[1..]);
    wait_for_replica(&mut con);
    assert_eq!(
        pending(&mut replica_con),
        9_999,
        "the replica holds the journal"
    );
    assert_eq!(status(&mut replica_con)["role"], "replica");

    primary.kill();
    call(&mut replica_con, &[b"REPLICAOF", b"NO", b"ONE"]).unwrap();
    database.start_again();
    flush(&mut replica_con);
    assert_eq!(rows_of(&database, "failover"), added.into_iter().collect());
    let figures = status(&mut replica_con);
    assert_eq!(
        (figures["role"].as_str(), figures["pending"].as_str()),
        ("primary", "0")
    );
}

/// Only a primary writes; its trims reach the replica, whose journal then
/// empties instead of growing forever.
#[test]
fn replica_never_flushes_and_follows_the_primary_trims() {
    let database = Postgres::start();
    let primary = RedisServer::start_with(flushing_to(&database));
    let replica = start_replica_of(&primary, flushing_to(&database));
    let mut replica_con = replica.connection();
    let mut con = primary.connection();
    add(&mut con, "mirrored", &members("x", 0..3_000));
    flush(&mut con);
    let trimmed = wait_until(Duration::from_secs(10), || pending(&mut replica_con) == 0);
    assert!(trimmed, "replica journal: {:?}", status(&mut replica_con));
    assert_eq!(
        status(&mut replica_con)["flushed"],
        "0",
        "a replica never flushes"
    );
    // FLUSH on a replica waits for the primary's commit, which it sees.
    assert_eq!(int(&mut replica_con, &["CAMPAIGN.FLUSH", "1000"]), 0);
}

/// Drill f: DEL, EXPIRE, RENAME and FLUSHALL keep pending entries (the
/// old name's rows stay, as after DEL).
#[test]
fn deleted_campaigns_still_reach_the_table() {
    let database = Postgres::start();
    let server = RedisServer::start();
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "deleted", "d1", "d2"]);
    int(&mut con, &["CAMPAIGN.ADD", "expired", "e1"]);
    int(&mut con, &["CAMPAIGN.ADD", "renamed", "n1"]);
    int(&mut con, &["CAMPAIGN.ADD", "flushed", "f1"]);
    int(&mut con, &["DEL", "deleted"]);
    int(&mut con, &["PEXPIRE", "expired", "10"]);
    call(&mut con, &[b"RENAME", b"renamed", b"new-name"]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    call(&mut con, &[b"FLUSHALL"]).unwrap();
    // The rename journaled a prune and n1 under its new name too
    // (docs/keyspace.md).
    assert_eq!(pending(&mut con), 7);

    use_database(&mut con, &database);
    flush(&mut con);
    let expected: BTreeSet<(String, String)> = [
        ("deleted", "d1"),
        ("deleted", "d2"),
        ("expired", "e1"),
        ("renamed", "n1"),
        ("new-name", "n1"),
        ("flushed", "f1"),
    ]
    .iter()
    .map(|(c, m)| (c.to_string(), m.to_string()))
    .collect();
    assert_eq!(rows(&database), expected);
}

/// Drill g: a full journal answers BUSY and changes nothing.
#[test]
fn full_journal_pushes_back_with_busy() {
    let database = Postgres::start();
    let server =
        RedisServer::start_with(RedisOptions::default().module_args(&["max-pending", "100"]));
    let mut con = server.connection();
    assert_eq!(add(&mut con, "busy", &members("b", 0..100)), 100);

    let text = error(&mut con, &["CAMPAIGN.ADD", "busy", "one-more"]);
    assert!(text.starts_with("BUSY "), "{text}");
    let text = error(&mut con, &["CAMPAIGN.REM", "busy", "b1"]);
    assert!(text.starts_with("BUSY "), "{text}");
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "busy"]), 100);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "busy", "one-more"]), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "busy", "b1"]), 1);
    assert_eq!(pending(&mut con), 100);

    use_database(&mut con, &database);
    flush(&mut con);
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "busy", "one-more"]), 1);
    flush(&mut con);
    let mut expected: BTreeSet<String> = members("b", 0..100).into_iter().collect();
    expected.insert("one-more".into());
    assert_eq!(rows_of(&database, "busy"), expected);
    assert_cache_holds(&mut con, "busy", &expected);
}

/// Drill h: text that looks like SQL lands verbatim.
#[test]
fn hostile_text_lands_verbatim() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    let campaigns = [
        "it's; DROP TABLE campaign_members;--",
        "back\\slash \"quoted\"",
    ];
    let members: Vec<String> = [
        "'; DELETE FROM campaign_members; --",
        "tab\there",
        "new\nline",
        "carriage\rreturn",
        "back\\slash\\N",
        "\\.",
        "$1 $$ dollar",
        "zoë 🚀",
    ]
    .iter()
    .map(|m| m.to_string())
    .collect();
    for campaign in campaigns {
        add(&mut con, campaign, &members);
    }
    int(&mut con, &["CAMPAIGN.REM", campaigns[0], "tab\there"]);
    flush(&mut con);
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for campaign in campaigns {
        for member in &members {
            expected.insert((campaign.to_string(), member.clone()));
        }
    }
    expected.remove(&(campaigns[0].to_string(), "tab\there".to_string()));
    assert_eq!(rows(&database), expected);

    let text = error(
        &mut con,
        &["CONFIG", "SET", "campaign.table", "members; DROP TABLE x"],
    );
    assert!(text.contains("must be an identifier"), "{text}");
}

#[test]
fn custom_table_in_a_schema_is_created_and_used() {
    let database = Postgres::start();
    database
        .client()
        .batch_execute("CREATE SCHEMA marketing")
        .unwrap();
    let server = RedisServer::start_with(
        flushing_to(&database).module_args(&["table", "marketing.members"]),
    );
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "m"]);
    flush(&mut con);
    let count: i64 = database
        .client()
        .query_one("SELECT count(*) FROM marketing.members", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

/// The journal survives a restart from RDB, and from an AOF rewritten
/// with and without the RDB preamble, with campaign keys present and with
/// none left (DEL, FLUSHALL); replay never journals twice.
#[test]
fn journal_survives_restarts_without_duplicates() {
    for (name, lines) in [
        ("rdb", vec!["save 3600 1"]),
        (
            "aof-preamble",
            vec![
                "appendonly yes",
                "appendfsync always",
                "aof-use-rdb-preamble yes",
            ],
        ),
        (
            "aof-plain",
            vec![
                "appendonly yes",
                "appendfsync always",
                "aof-use-rdb-preamble no",
            ],
        ),
    ] {
        for keys_left in [true, false] {
            let case = format!("{name}, keys left: {keys_left}");
            let mut options = RedisOptions::default();
            for line in &lines {
                options = options.config(line);
            }
            let mut server = RedisServer::start_with(options);
            let mut con = server.connection();
            int(&mut con, &["CAMPAIGN.ADD", "kept", "a", "b", "c"]);
            int(&mut con, &["CAMPAIGN.ADD", "gone", "x"]);
            int(&mut con, &["DEL", "gone"]);
            if !keys_left {
                call(&mut con, &[b"FLUSHALL"]).unwrap();
                assert_eq!(int(&mut con, &["DBSIZE"]), 0);
            }
            if name == "rdb" {
                call(&mut con, &[b"SAVE"]).unwrap();
            } else {
                call(&mut con, &[b"BGREWRITEAOF"]).unwrap();
                wait_for_aof_rewrite(&mut con);
                // After the rewrite: lands in the incremental AOF.
                int(&mut con, &["CAMPAIGN.ADD", "late", "z"]);
            }
            let expected = pending(&mut con);
            assert!(expected >= 4, "{case}");
            server.kill();
            server.restart();
            let mut con = server.connection();
            assert_eq!(
                pending(&mut con),
                expected,
                "{case}: {:?}",
                status(&mut con)
            );

            let database = Postgres::start();
            use_database(&mut con, &database);
            flush(&mut con);
            let abc: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
            assert_eq!(rows_of(&database, "kept"), abc, "{case}");
            assert_eq!(
                rows_of(&database, "gone"),
                ["x".to_string()].into(),
                "{case}"
            );
            let late = rows_of(&database, "late");
            assert_eq!(late.len(), usize::from(name != "rdb"), "{case}");
        }
    }
}

/// The same when Redis starts the rewrite itself (from its cron, outside
/// any command) with no campaign key left.
#[test]
fn automatic_aof_rewrite_keeps_the_journal() {
    let mut server = RedisServer::start_with(
        RedisOptions::default()
            .config("appendonly yes")
            .config("appendfsync always")
            .config("aof-use-rdb-preamble no")
            .config("auto-aof-rewrite-percentage 1")
            .config("auto-aof-rewrite-min-size 1"),
    );
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "gone", "x", "y"]);
    call(&mut con, &[b"FLUSHALL"]).unwrap();
    wait_for_aof_rewrite(&mut con);
    let rewrites = |con: &mut redis::Connection| -> i64 {
        info_field(con, "persistence", "aof_rewrites")
            .parse()
            .unwrap()
    };
    let before = rewrites(&mut con);
    // Growth past the last rewrite: Redis rewrites on its own.
    call(&mut con, &[b"SET", b"filler", &[b'f'; 256]]).unwrap();
    call(&mut con, &[b"DEL", b"filler"]).unwrap();
    let rewritten = wait_until(Duration::from_secs(20), || rewrites(&mut con) > before);
    assert!(rewritten, "no automatic rewrite");
    wait_for_aof_rewrite(&mut con);
    assert_eq!(int(&mut con, &["DBSIZE"]), 0);
    server.kill();
    server.restart();
    let mut con = server.connection();
    assert_eq!(pending(&mut con), 2, "{:?}", status(&mut con));
}

/// A replica's full sync carries the journal, keys or none.
#[test]
fn full_sync_carries_the_journal_with_or_without_keys() {
    for keys_left in [true, false] {
        let primary = RedisServer::start();
        let mut con = primary.connection();
        int(&mut con, &["CAMPAIGN.ADD", "kept", "a", "b"]);
        if !keys_left {
            call(&mut con, &[b"FLUSHALL"]).unwrap();
        }
        let replica = start_replica_of(&primary, RedisOptions::default());
        let mut replica_con = replica.connection();
        assert_eq!(pending(&mut replica_con), 2, "keys left: {keys_left}");
        assert_eq!(
            status(&mut replica_con)["journal-next-seq"],
            status(&mut con)["journal-next-seq"]
        );
    }
}

/// An AOF rewrite without the preamble, taken when nothing is pending,
/// still carries the journal's numbering. Without it, replay numbers the
/// entries written after the rewrite from zero, and a later trim of one
/// committed entry drops uncommitted ones too. Here `slow` is committed
/// while the trigger holds `late`'s batch, then the server dies.
#[test]
fn aof_rewrite_keeps_the_journal_numbering() {
    let database = Postgres::start();
    let mut server = RedisServer::start_with(
        flushing_to(&database)
            .module_args(&["flush-batch-size", "1"])
            .config("appendonly yes")
            .config("appendfsync always")
            .config("aof-use-rdb-preamble no"),
    );
    let mut con = server.connection();
    add(&mut con, "before", &members("b", 0..50));
    flush(&mut con);
    call(&mut con, &[b"BGREWRITEAOF"]).unwrap();
    wait_for_aof_rewrite(&mut con);

    database
        .client()
        .batch_execute(&format!(
            "CREATE FUNCTION hold_late() RETURNS trigger AS $$
             BEGIN IF NEW.member = 'late' THEN PERFORM pg_sleep(600); END IF; RETURN NEW; END
             $$ LANGUAGE plpgsql;
             CREATE TRIGGER hold_late BEFORE INSERT ON {TABLE}
             FOR EACH ROW EXECUTE FUNCTION hold_late();"
        ))
        .unwrap();
    int(&mut con, &["CAMPAIGN.ADD", "after", "first", "late"]);
    let first_committed = wait_until(Duration::from_secs(20), || {
        rows_of(&database, "after").contains("first") && pending(&mut con) == 1
    });
    assert!(first_committed, "{:?}", status(&mut con));
    server.kill();
    // The held transaction outlives its client: end it. The trigger stays
    // until the restarted server's journal is checked, so its flusher
    // (flush-batch-size 1: due at once) cannot commit "late" before that.
    let end_held = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE application_name = 'redis-campaign';";
    database.client().batch_execute(end_held).unwrap();

    server.restart();
    let mut con = server.connection();
    assert_eq!(pending(&mut con), 1, "{:?}", status(&mut con));
    database
        .client()
        .batch_execute(&format!("{end_held} DROP TRIGGER hold_late ON {TABLE};"))
        .unwrap();
    flush(&mut con);
    let after: BTreeSet<String> = ["first", "late"].map(String::from).into();
    assert_eq!(rows_of(&database, "after"), after);
}

#[test]
fn flush_barrier_replies_counts_and_times_out() {
    let server = RedisServer::start();
    let mut con = server.connection();
    assert_eq!(int(&mut con, &["CAMPAIGN.FLUSH"]), 0, "nothing pending");
    int(&mut con, &["CAMPAIGN.ADD", "c", "a", "b"]);
    let text = error(&mut con, &["CAMPAIGN.FLUSH", "200"]);
    assert!(text.starts_with("TIMEOUT "), "{text}");
    assert!(error(&mut con, &["CAMPAIGN.FLUSH", "-1"]).starts_with("ERR timeout-ms"));
    assert!(error(&mut con, &["CAMPAIGN.FLUSH", "1", "2"]).starts_with("ERR wrong number"));
    // The server is still fine and the entries still pending.
    assert_eq!(pending(&mut con), 2);
    assert_eq!(status(&mut con)["database"], "unconfigured");
}

/// FLUSH replies how many entries it waited for: those pending when it was
/// called. Deterministic because no database is configured until the FLUSH
/// is blocked, so the flusher cannot commit anything before it.
#[test]
fn flush_replies_the_entries_it_waited_for() {
    let database = Postgres::start();
    let server = RedisServer::start();
    let mut con = server.connection();
    add(&mut con, "counted", &members("c", 0..250));
    let mut waiter = server.connection();
    let flush_call = std::thread::spawn(move || flush(&mut waiter));
    wait_blocked_clients(&mut con, 1);
    use_database(&mut con, &database);
    assert_eq!(flush_call.join().unwrap(), 250);
    assert_eq!(rows_of(&database, "counted").len(), 250);
    assert_eq!(int(&mut con, &["CAMPAIGN.FLUSH"]), 0, "nothing pending now");
}

#[test]
fn journal_command_is_refused_from_clients() {
    let server = RedisServer::start();
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "a"]);
    let text = error(&mut con, &["CAMPAIGN.JOURNAL", "TRIM", "100"]);
    assert!(
        text.starts_with("ERR CAMPAIGN.JOURNAL is internal"),
        "{text}"
    );
    assert_eq!(pending(&mut con), 1);
}

#[test]
fn password_never_shows_in_status_info_or_log() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "loaded"]);
    flush(&mut con);
    // Same server, wrong password user: the connection fails and says why.
    let url = "postgresql://nobody:T0pS3cretPw@127.0.0.1:1/none?connect_timeout=1";
    call(
        &mut con,
        &[b"CONFIG", b"SET", b"campaign.database-url", url.as_bytes()],
    )
    .unwrap();
    int(&mut con, &["CAMPAIGN.ADD", "c", "a"]);
    assert!(wait_until(Duration::from_secs(20), || status(&mut con)
        ["flush-errors"]
        != "0"));
    let figures = status(&mut con);
    assert!(!figures["last-error"].is_empty());
    assert_eq!(
        info_field(&mut con, "campaign", "campaign_database"),
        "disconnected"
    );
    let info: String = redis::cmd("INFO").arg("campaign").query(&mut con).unwrap();
    for place in [format!("{figures:?}"), info, server.log()] {
        assert!(!place.contains("T0pS3cretPw"), "password leaked: {place}");
    }
}

/// Rows already in the table (written around the module, or flushed before
/// a crash) make the fast COPY fail; the batch still lands, once.
#[test]
fn rows_already_in_the_table_take_the_idempotent_path() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "warmup", "w"]);
    flush(&mut con);
    database
        .client()
        .batch_execute(&format!(
            "INSERT INTO {TABLE} (campaign, member) VALUES ('c', 'm2')"
        ))
        .unwrap();
    int(&mut con, &["CAMPAIGN.ADD", "c", "m1", "m2", "m3"]);
    flush(&mut con);
    let expected: BTreeSet<String> = ["m1", "m2", "m3"].iter().map(|m| m.to_string()).collect();
    assert_eq!(rows_of(&database, "c"), expected);
    assert_eq!(status(&mut con)["flush-errors"], "0");
}

/// A committed batch's trim is in the AOF: after kill -9 and a restart the
/// journal does not come back.
#[test]
fn trims_survive_kill_nine() {
    let database = Postgres::start();
    let mut server = RedisServer::start_with(
        flushing_to(&database)
            .config("appendonly yes")
            .config("appendfsync always"),
    );
    let mut con = server.connection();
    add(&mut con, "trimmed", &members("t", 0..1_000));
    flush(&mut con);
    server.kill();
    server.restart();
    let mut con = server.connection();
    assert_eq!(pending(&mut con), 0, "{:?}", status(&mut con));
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "trimmed"]), 1_000);
}

/// With entries pending and no database, the flusher sleeps: the server
/// stays idle (it once spun a core).
#[test]
fn pending_entries_without_a_database_leave_the_server_idle() {
    let server = RedisServer::start();
    let mut con = server.connection();
    add(&mut con, "waiting", &members("w", 0..10));
    let cpu = |con: &mut redis::Connection| -> f64 {
        let user: f64 = info_field(con, "cpu", "used_cpu_user").parse().unwrap();
        let system: f64 = info_field(con, "cpu", "used_cpu_sys").parse().unwrap();
        user + system
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu(&mut con);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu(&mut con) - before;
    assert!(
        used < 0.5,
        "the server used {used:.2} s of CPU in 2 s while idle"
    );
    assert_eq!(pending(&mut con), 10);
}

/// The journal stores ids and UUIDs in binary and everything else as text:
/// after a restart from an RDB (packed journal) or a plain AOF (the journal
/// as `CAMPAIGN.JOURNAL LOAD` commands), every member reaches the table
/// byte for byte, and STATUS shows how long the flusher held the lock.
#[test]
fn members_of_every_form_reach_the_table_exactly_after_a_restart() {
    let odd = [
        "0",
        "42",
        "12345678",
        "18446744073709551615",
        "18446744073709551616",
        "007",
        "-1",
        "123e4567-e89b-12d3-a456-426614174000",
        "123E4567-E89B-12D3-A456-426614174000",
        "zoë",
    ];
    for (name, lines) in [
        ("rdb", vec!["save 3600 1"]),
        (
            "aof-plain",
            vec![
                "appendonly yes",
                "appendfsync always",
                "aof-use-rdb-preamble no",
            ],
        ),
    ] {
        let mut options = RedisOptions::default();
        for line in &lines {
            options = options.config(line);
        }
        let mut server = RedisServer::start_with(options);
        let mut con = server.connection();
        for member in odd {
            // One member per call (the fast path), then all at once.
            int(&mut con, &["CAMPAIGN.ADD", "one", member]);
        }
        let mut all = vec!["CAMPAIGN.ADD", "many"];
        all.extend(odd);
        assert_eq!(int(&mut con, &all), odd.len() as i64);
        int(&mut con, &["CAMPAIGN.REM", "one", "-1"]);
        int(
            &mut con,
            &[
                "CAMPAIGN.REM",
                "many",
                "42",
                "123e4567-e89b-12d3-a456-426614174000",
            ],
        );
        if name == "rdb" {
            call(&mut con, &[b"SAVE"]).unwrap();
        } else {
            call(&mut con, &[b"BGREWRITEAOF"]).unwrap();
            wait_for_aof_rewrite(&mut con);
        }
        let expected = pending(&mut con);
        assert_eq!(expected, 2 * odd.len() as i64 + 3, "{name}");
        server.kill();
        server.restart();
        let mut con = server.connection();
        assert_eq!(pending(&mut con), expected, "{name}");

        let database = Postgres::start();
        use_database(&mut con, &database);
        flush(&mut con);
        let without = |gone: &[&str]| -> BTreeSet<String> {
            odd.iter()
                .filter(|m| !gone.contains(m))
                .map(|m| m.to_string())
                .collect()
        };
        assert_eq!(rows_of(&database, "one"), without(&["-1"]), "{name}");
        assert_eq!(
            rows_of(&database, "many"),
            without(&["42", "123e4567-e89b-12d3-a456-426614174000"]),
            "{name}"
        );
        let figures = status(&mut con);
        let take: u64 = figures["longest-batch-take-us"].parse().unwrap();
        let hold: u64 = figures["longest-lock-hold-us"].parse().unwrap();
        assert!(take <= hold, "{figures:?}");
    }
}

/// One batch of removals mixing a campaign removed whole (its own
/// deletion), a few hundred removals from a much larger campaign (probed
/// one by one) and a handful elsewhere: every removed row goes, every other
/// stays, and each removal leaves its marker.
#[test]
fn removals_of_whole_and_large_campaigns_in_one_batch() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    let wide = members("w", 0..2_500);
    let whole = members("h", 0..600);
    add(&mut con, "wide", &wide);
    add(&mut con, "whole", &whole);
    add(&mut con, "few", &members("f", 0..10));
    flush(&mut con);

    let mut removals = 0;
    for (campaign, gone) in [("wide", &wide[..500]), ("whole", &whole[..]), ("few", &[])] {
        let gone: Vec<String> = if campaign == "few" {
            members("f", 0..3)
        } else {
            gone.to_vec()
        };
        let removed: i64 = redis::cmd("CAMPAIGN.REM")
            .arg(campaign)
            .arg(&gone)
            .query(&mut con)
            .unwrap();
        assert_eq!(removed, gone.len() as i64);
        removals += removed;
    }
    assert_eq!(pending(&mut con), removals);
    flush(&mut con);
    assert_eq!(pending(&mut con), 0);
    let expected: BTreeSet<String> = wide[500..].iter().cloned().collect();
    assert_eq!(rows_of(&database, "wide"), expected);
    assert!(rows_of(&database, "whole").is_empty());
    assert_eq!(
        rows_of(&database, "few"),
        members("f", 3..10).into_iter().collect()
    );
    let markers: i64 = database
        .client()
        .query_one("SELECT count(*) FROM campaign_members_removed", &[])
        .unwrap()
        .get(0);
    assert_eq!(markers, removals);
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "wide"]), 2_000);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "whole", "h0"]), 0);
}
