//! Writes never wait on the database: during an outage a write to a
//! campaign Redis does not hold is accepted at once into an incomplete
//! campaign, answered from what was written, carried by persistence and
//! replication, and completed from the database once it answers. Each
//! test compares PostgreSQL's rows and the caches' answers with what was
//! acknowledged.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redis::Connection;

use crate::harness::campaign::{
    flush, flushing_to, hung_database_url, info_field, rows_of, start_replica_of, status,
    wait_blocked_clients, wait_connected, wait_for_aof_rewrite, wait_for_replica, write_around,
};
use crate::harness::redis_server::{call, error, int};
use crate::harness::{wait_until, Postgres, RedisServer};

fn set_of(members: &[String]) -> BTreeSet<String> {
    members.iter().cloned().collect()
}

fn wait_disconnected(con: &mut Connection) {
    let noticed = wait_until(Duration::from_secs(20), || {
        status(con)["database"] == "disconnected"
    });
    assert!(noticed, "{:?}", status(con));
}

/// Waits until no campaign is incomplete, then checks `campaign` is whole
/// and equal to the database.
fn assert_completed(con: &mut Connection, database: &Postgres, campaign: &str) {
    let done = wait_until(Duration::from_secs(30), || status(con)["incomplete"] == "0");
    assert!(done, "{:?}", status(con));
    let verified: Vec<(String, i64)> = redis::cmd("CAMPAIGN.VERIFY")
        .arg(campaign)
        .query(con)
        .unwrap();
    assert!(verified.contains(&("consistent".into(), 1)), "{verified:?}");
    let card = int(con, &["CAMPAIGN.CARD", campaign]);
    assert_eq!(card as usize, rows_of(database, campaign).len());
}

/// 1,000 pipelined one-member ADDs to `campaign`; all answered.
fn pipelined_adds(con: &mut Connection, campaign: &str, members: &[String]) -> Duration {
    let mut pipe = redis::pipe();
    for member in members {
        pipe.cmd("CAMPAIGN.ADD").arg(campaign).arg(member);
    }
    let started = Instant::now();
    let replies: Vec<i64> = pipe.query(con).unwrap();
    assert_eq!(replies.len(), members.len());
    started.elapsed()
}

/// PostgreSQL stopped: writes to a never-loaded, a deleted-with-pending
/// and an expired campaign are all answered at once and read back; once
/// PostgreSQL is back the rows are the old rows plus the acknowledged
/// changes and every campaign is complete and consistent.
#[test]
fn an_outage_never_blocks_writes_to_campaigns_redis_does_not_hold() {
    let mut database = Postgres::start_owned();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    wait_connected(&mut con);
    let old: Vec<String> = (0..50).map(|i| format!("old-{i}")).collect();
    write_around(&database, "never", &old);
    for campaign in ["deleted", "expired"] {
        call(&mut con, &[b"CAMPAIGN.ADD", campaign.as_bytes(), b"kept"]).unwrap();
    }
    flush(&mut con);
    database.stop();
    wait_disconnected(&mut con);
    // A change left pending, then the key goes.
    int(&mut con, &["CAMPAIGN.ADD", "deleted", "pending-one"]);
    int(&mut con, &["DEL", "deleted"]);
    int(&mut con, &["PEXPIRE", "expired", "1"]);
    thread_sleep(20);

    let mut total = Duration::ZERO;
    let mut written = Vec::new();
    for campaign in ["never", "deleted", "expired"] {
        let members: Vec<String> = (0..1_000).map(|i| format!("{campaign}-{i}")).collect();
        total += pipelined_adds(&mut con, campaign, &members);
        written.push((campaign, members));
    }
    assert!(total < Duration::from_secs(1), "{total:?}");
    int(&mut con, &["CAMPAIGN.REM", "never", "old-3"]);
    for (campaign, members) in &written {
        let answers: Vec<i64> = redis::cmd("CAMPAIGN.MHAS")
            .arg(*campaign)
            .arg(&members[..])
            .query(&mut con)
            .unwrap();
        assert!(answers.iter().all(|&answer| answer == 1), "{campaign}");
    }
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "never", "old-3"]), 0);
    assert_eq!(status(&mut con)["incomplete"], "3");
    assert!(error(&mut con, &["CAMPAIGN.CARD", "never"]).starts_with("TRYAGAIN"));

    database.start_again();
    flush(&mut con);
    let mut expected_never = set_of(&old);
    expected_never.remove("old-3");
    expected_never.extend(written[0].1.iter().cloned());
    assert_eq!(rows_of(&database, "never"), expected_never);
    let mut expected_deleted = set_of(&written[1].1);
    expected_deleted.extend(["kept".to_string(), "pending-one".to_string()]);
    assert_eq!(rows_of(&database, "deleted"), expected_deleted);
    let mut expected_expired = set_of(&written[2].1);
    expected_expired.insert("kept".into());
    assert_eq!(rows_of(&database, "expired"), expected_expired);
    for campaign in ["never", "deleted", "expired"] {
        assert_completed(&mut con, &database, campaign);
    }
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "never", "old-7"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "deleted", "kept"]), 1);
}

fn thread_sleep(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Inside MULTI and a script, where nothing may block, a write to a
/// campaign only PostgreSQL holds is accepted into an incomplete campaign
/// and completed in the background; HAS there answers the cache.
#[test]
fn writes_inside_multi_and_scripts_are_accepted_and_completed() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    wait_connected(&mut con);
    let old: Vec<String> = (0..20).map(|i| format!("old-{i}")).collect();
    write_around(&database, "in-multi", &old);
    write_around(&database, "in-script", &old);
    let (added, has): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("CAMPAIGN.ADD")
        .arg("in-multi")
        .arg("new")
        .cmd("CAMPAIGN.HAS")
        .arg("in-multi")
        .arg("new")
        .query(&mut con)
        .unwrap();
    assert_eq!((added, has), (1, 1));
    let scripted: i64 = redis::cmd("EVAL")
        .arg("return redis.call('CAMPAIGN.ADD', KEYS[1], 'new')")
        .arg(1)
        .arg("in-script")
        .query(&mut con)
        .unwrap();
    assert_eq!(scripted, 1);
    flush(&mut con);
    let mut expected = set_of(&old);
    expected.insert("new".into());
    for campaign in ["in-multi", "in-script"] {
        assert_eq!(rows_of(&database, campaign), expected);
        assert_completed(&mut con, &database, campaign);
        assert_eq!(int(&mut con, &["CAMPAIGN.HAS", campaign, "old-5"]), 1);
    }
}

/// An incomplete campaign survives DEBUG RELOAD, AOF rewrites with and
/// without the RDB preamble, a replica's full sync and a failover to that
/// replica, which then completes it.
#[test]
fn an_incomplete_campaign_survives_persistence_replication_and_failover() {
    let mut database = Postgres::start_owned();
    let options = flushing_to(&database)
        .config("appendonly yes")
        .config("appendfsync always");
    let primary = RedisServer::start_with(options.clone());
    let mut con = primary.connection();
    wait_connected(&mut con);
    let old: Vec<String> = (0..10).map(|i| format!("old-{i}")).collect();
    write_around(&database, "c", &old);
    database.stop();
    wait_disconnected(&mut con);
    int(&mut con, &["CAMPAIGN.ADD", "c", "new-1", "new-2"]);
    int(&mut con, &["CAMPAIGN.REM", "c", "old-1"]);
    let expect_answers = |con: &mut Connection| {
        assert_eq!(status(con)["incomplete"], "1", "{:?}", status(con));
        assert_eq!(int(con, &["CAMPAIGN.HAS", "c", "new-2"]), 1);
        assert_eq!(int(con, &["CAMPAIGN.HAS", "c", "old-1"]), 0);
        assert!(error(con, &["CAMPAIGN.CARD", "c"]).starts_with("TRYAGAIN"));
    };
    expect_answers(&mut con);
    call(&mut con, &[b"DEBUG", b"RELOAD"]).unwrap();
    expect_answers(&mut con);
    for preamble in ["no", "yes"] {
        call(
            &mut con,
            &[
                b"CONFIG",
                b"SET",
                b"aof-use-rdb-preamble",
                preamble.as_bytes(),
            ],
        )
        .unwrap();
        call(&mut con, &[b"BGREWRITEAOF"]).unwrap();
        wait_for_aof_rewrite(&mut con);
        call(&mut con, &[b"DEBUG", b"LOADAOF"]).unwrap();
        expect_answers(&mut con);
    }
    let replica = start_replica_of(&primary, flushing_to(&database));
    let mut replica_con = replica.connection();
    wait_for_replica(&mut con);
    expect_answers(&mut replica_con);
    // The primary goes; the replica takes over and completes it.
    drop(primary);
    call(&mut replica_con, &[b"REPLICAOF", b"NO", b"ONE"]).unwrap();
    database.start_again();
    flush(&mut replica_con);
    let mut expected = set_of(&old);
    expected.remove("old-1");
    expected.extend(["new-1".to_string(), "new-2".to_string()]);
    assert_eq!(rows_of(&database, "c"), expected);
    assert_completed(&mut replica_con, &database, "c");
    assert_eq!(int(&mut replica_con, &["CAMPAIGN.HAS", "c", "old-4"]), 1);
    let role = info_field(&mut replica_con, "replication", "role");
    assert_eq!(role, "master");
}

/// The login path's deadline: with a database that accepts and never
/// answers, a HAS of a campaign Redis does not hold answers the cache's 0
/// within read-through-timeout-ms (+100 ms), p99 over 50 calls.
#[test]
fn a_has_never_waits_past_the_read_through_deadline() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database).module_args(&[
        "read-through-timeout-ms",
        "200",
        "db-timeout-ms",
        "30000",
    ]));
    let mut con = server.connection();
    wait_connected(&mut con);
    let hung = hung_database_url("");
    call(
        &mut con,
        &[b"CONFIG", b"SET", b"campaign.database-url", hung.as_bytes()],
    )
    .unwrap();
    let mut waits: Vec<Duration> = (0..50)
        .map(|index| {
            let campaign = format!("missing-{index}");
            let started = Instant::now();
            assert_eq!(int(&mut con, &["CAMPAIGN.HAS", &campaign, "m"]), 0);
            started.elapsed()
        })
        .collect();
    waits.sort();
    let p99 = waits[waits.len() * 99 / 100 - 1];
    assert!(
        p99 <= Duration::from_millis(300),
        "p99 {p99:?}; all {waits:?}"
    );
    assert!(status(&mut con)["late-answers"].parse::<i64>().unwrap() >= 1);
}

/// A login-path call on a campaign Redis does not hold, timed: it answers
/// `expected` within read-through-timeout-ms (+100 ms).
fn answered_in_time(con: &mut Connection, args: &[&str], expected: i64, timeout_ms: u64) {
    let started = Instant::now();
    let answer = int(con, args);
    let waited = started.elapsed();
    assert_eq!(
        answer,
        expected,
        "{args:?} after {waited:?}: {:?}",
        status(con)
    );
    assert!(
        waited <= Duration::from_millis(timeout_ms + 100),
        "{args:?} took {waited:?}: {:?}",
        status(con)
    );
}

/// Loads a client waits for go ahead of background work: while a prefill
/// of 10,000 campaigns is queued and a REBUILD of 1,000,000 members runs,
/// a HAS, an MHAS and an ADD on campaigns Redis does not hold (some the
/// prefill has queued, some it has not) are answered from the database
/// within read-through-timeout-ms (+100 ms): the HAS with the row's 1,
/// the ADD with the campaign loaded whole (not left incomplete). With
/// max-connections 3, the background work shares two connections.
#[test]
fn logins_go_ahead_of_a_prefill_and_a_rebuild() {
    const TIMEOUT_MS: u64 = 300;
    const PREFILLED: usize = 10_000;
    let database = Postgres::start();
    {
        // The module makes its tables.
        let seeder = RedisServer::start_with(flushing_to(&database));
        wait_connected(&mut seeder.connection());
    }
    database
        .client()
        .batch_execute(&format!(
            "INSERT INTO campaign_members (campaign, member) \
             SELECT 'big', 'm' || g FROM generate_series(1, 1000000) g;
             INSERT INTO campaign_members (campaign, member) \
             SELECT 'many-' || g, 'x' FROM generate_series(1, {PREFILLED}) g;
             INSERT INTO campaign_members (campaign, member) \
             SELECT 'queued-' || g, 'user-' || g FROM generate_series(0, 19) g;"
        ))
        .unwrap();
    let timeout = TIMEOUT_MS.to_string();
    let server = RedisServer::start_with(flushing_to(&database).module_args(&[
        "prefill",
        "yes",
        "read-through-timeout-ms",
        &timeout,
        // Two for the prefill, the REBUILD and the flusher to share, one
        // kept for the logins.
        "max-connections",
        "3",
    ]));
    let mut con = server.connection();
    // The prefill has listed the campaigns and queued their loads.
    let queued = wait_until(Duration::from_secs(60), || {
        status(&mut con)["loads-queued"].parse::<usize>().unwrap() >= PREFILLED / 4
    });
    assert!(queued, "{:?}", status(&mut con));
    let mut rebuilder = server.connection();
    let rebuild = std::thread::spawn(move || int(&mut rebuilder, &["CAMPAIGN.REBUILD", "big"]));
    wait_blocked_clients(&mut con, 1);
    // Campaigns the prefill did not list: their loads start behind it.
    for index in 0..10 {
        write_around(
            &database,
            &format!("fresh-{index}"),
            &[format!("user-{index}")],
        );
    }
    for index in 0..10 {
        let (campaign, member) = (format!("fresh-{index}"), format!("user-{index}"));
        answered_in_time(
            &mut con,
            &["CAMPAIGN.HAS", &campaign, &member],
            1,
            TIMEOUT_MS,
        );
    }
    // Campaigns the prefill queued (those not loaded yet move up).
    for index in 0..20 {
        let (campaign, member) = (format!("queued-{index}"), format!("user-{index}"));
        answered_in_time(
            &mut con,
            &["CAMPAIGN.HAS", &campaign, &member],
            1,
            TIMEOUT_MS,
        );
    }
    let old: Vec<String> = (0..5).map(|i| format!("old-{i}")).collect();
    write_around(&database, "fresh-mhas", &old);
    let started = Instant::now();
    let answers: Vec<i64> = redis::cmd("CAMPAIGN.MHAS")
        .arg("fresh-mhas")
        .arg("old-1")
        .arg("nobody")
        .arg("old-4")
        .query(&mut con)
        .unwrap();
    assert_eq!(answers, [1, 0, 1], "after {:?}", started.elapsed());
    assert!(started.elapsed() <= Duration::from_millis(TIMEOUT_MS + 100));
    write_around(&database, "fresh-write", &old);
    answered_in_time(
        &mut con,
        &["CAMPAIGN.ADD", "fresh-write", "new"],
        1,
        TIMEOUT_MS,
    );
    assert_eq!(
        int(&mut con, &["CAMPAIGN.CARD", "fresh-write"]),
        6,
        "loaded whole"
    );

    assert_eq!(rebuild.join().unwrap(), 1_000_000);
    let filled = wait_until(Duration::from_secs(120), || {
        status(&mut con)["loads-queued"] == "0" && status(&mut con)["rebuilding"] == "0"
    });
    assert!(filled, "{:?}", status(&mut con));
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "many-777", "x"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "big"]), 1_000_000);
    assert_eq!(status(&mut con)["late-answers"], "0");
}
