//! A campaign's name is its identity (SPEC sections 2, 4, 5 and 6): a
//! replica refuses clients' writes, versions stay plausible, the type has
//! a digest, one logical database is served, and RENAME/COPY/MOVE/RESTORE
//! leave PostgreSQL holding what the keys hold.

use std::time::Duration;

use redis::Value;

use crate::harness::campaign::*;
use crate::harness::redis_server::{call, error, int};
use crate::harness::{wait_until, Postgres, RedisOptions, RedisServer};

/// Guarantee 4: a replica with `replica-read-only no` refuses a client's
/// ADD, REM and REBUILD, also inside MULTI and scripts, and still applies
/// what its primary sends and what its own AOF replays.
#[test]
fn a_writable_replica_refuses_campaign_writes() {
    let database = Postgres::start();
    let primary = RedisServer::start_with(flushing_to(&database));
    let mut replica = start_replica_of(
        &primary,
        flushing_to(&database)
            .config("replica-read-only no")
            .config("appendonly yes")
            .config("appendfsync always"),
    );
    let mut con = primary.connection();
    assert_eq!(add(&mut con, "acked", &members("m", 0..3)), 3);
    wait_for_replica(&mut con);

    let mut replica_con = replica.connection();
    for command in [
        &["CAMPAIGN.ADD", "acked", "lost"][..],
        &["CAMPAIGN.ADD", "acked", "lost", "lost2"],
        &["CAMPAIGN.REM", "acked", "m0"],
        &["CAMPAIGN.ADD", "elsewhere", "lost"],
        &["CAMPAIGN.REBUILD", "acked"],
    ] {
        let text = error(&mut replica_con, command);
        assert!(text.starts_with("READONLY"), "{command:?}: {text}");
    }
    // A plain key is still writable there: only campaigns are refused.
    call(&mut replica_con, &[b"SET", b"plain", b"1"]).unwrap();
    let script = call(
        &mut replica_con,
        &[
            b"EVAL",
            b"return redis.call('CAMPAIGN.ADD', KEYS[1], 'lost')",
            b"1",
            b"acked",
        ],
    );
    assert!(script.unwrap_err().contains("READONLY"));
    let transaction: Value = redis::pipe()
        .atomic()
        .cmd("CAMPAIGN.ADD")
        .arg("acked")
        .arg("lost")
        .query(&mut replica_con)
        .unwrap_or_else(|error| Value::SimpleString(error.to_string()));
    let text = format!("{transaction:?}");
    assert!(
        text.contains("READONLY") || text.contains("ReadOnly"),
        "{text}"
    );

    // The primary's writes still apply there, and the journals agree.
    int(&mut con, &["CAMPAIGN.REM", "acked", "m0"]);
    int(&mut con, &["CAMPAIGN.ADD", "acked", "m9"]);
    wait_for_replica(&mut con);
    let expected = ["m1", "m2", "m9"];
    assert_cache_holds(&mut replica_con, "acked", expected);
    assert_eq!(int(&mut replica_con, &["EXISTS", "elsewhere"]), 0);
    flush(&mut con);
    assert_eq!(rows_of(&database, "acked"), set(&expected));
    assert_eq!(rows(&database).len(), 3);
    assert_cache_holds(&mut con, "acked", expected);
    let reached = wait_until(Duration::from_secs(10), || pending(&mut replica_con) == 0);
    assert!(reached, "the replica's journal kept entries");

    // Its own AOF, replayed at a restart with its primary gone, applies
    // (once the rewrite a full sync starts is done).
    wait_for_aof_rewrite(&mut replica_con);
    drop(primary);
    replica.restart();
    let mut replica_con = replica.connection();
    assert_cache_holds(&mut replica_con, "acked", expected);
    assert_eq!(int(&mut replica_con, &["CAMPAIGN.HAS", "acked", "lost"]), 0);
    assert_eq!(rows_of(&database, "acked"), set(&expected));
}

pub fn set(members: &[&str]) -> std::collections::BTreeSet<String> {
    members.iter().map(|m| m.to_string()).collect()
}

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The module's versions: milliseconds above 21 counter bits.
fn version_at(ms: u64) -> u64 {
    ms << 21
}

/// CRC-64 as Redis computes it for DUMP payloads (Jones polynomial,
/// reflected, initial value 0).
fn crc64(bytes: &[u8]) -> u64 {
    let mut crc = 0u64;
    for &byte in bytes {
        crc ^= u64::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x95ac_9329_ac4b_c9b5
            } else {
                crc >> 1
            };
        }
    }
    crc
}

pub fn dump(con: &mut redis::Connection, key: &str) -> Vec<u8> {
    match call(con, &[b"DUMP", key.as_bytes()]).unwrap() {
        Value::BulkString(bytes) => bytes,
        other => panic!("DUMP {key} gave {other:?}"),
    }
}

/// A campaign's DUMP payload (encoding 7) ends with its version (an
/// unsigned: opcode 2, then 0x81 and 8 bytes big-endian), its complete
/// state (the unsigned 0: opcode 2, then 0x00), the key name it was saved
/// under (a string: opcode 5, a 6-bit length, the bytes), the EOF opcode,
/// 2 bytes of RDB version and the CRC-64 (little-endian) of everything
/// before it. Returns where the version's 8 bytes start.
fn version_offset(payload: &[u8]) -> usize {
    let name_end = payload.len() - 8 - 2 - 1;
    let name_len = (0..64)
        .find(|&n| {
            name_end >= n + 2
                && payload[name_end - n - 2] == 0x05
                && payload[name_end - n - 1] == n as u8
                && payload[..name_end - n - 2].ends_with(&[0x02, 0x00])
        })
        .expect("a short key name record");
    name_end - name_len - 2 - 2 - 8
}

pub fn payload_version(payload: &[u8]) -> u64 {
    let (body, crc) = payload.split_at(payload.len() - 8);
    assert_eq!(
        crc64(body).to_le_bytes(),
        crc,
        "CRC-64 computed as Redis does"
    );
    let at = version_offset(payload);
    assert_eq!(
        &payload[at - 2..at],
        &[0x02, 0x81],
        "an unsigned of 8 bytes"
    );
    u64::from_be_bytes(payload[at..at + 8].try_into().unwrap())
}

/// `payload` with its version replaced by `version` and the CRC made again.
pub fn with_version(payload: &[u8], version: u64) -> Vec<u8> {
    payload_version(payload);
    let mut forged = payload.to_vec();
    let at = version_offset(payload);
    forged[at..at + 8].copy_from_slice(&version.to_be_bytes());
    let body = forged.len() - 8;
    let crc = crc64(&forged[..body]);
    forged[body..].copy_from_slice(&crc.to_le_bytes());
    forged
}

/// The newest version among `campaign`'s rows (and its markers).
fn newest_version(database: &Postgres, campaign: &str) -> u64 {
    let row = database
        .client()
        .query_one(
            &format!(
                "SELECT greatest((SELECT max(version) FROM {TABLE} WHERE campaign = $1), \
                 (SELECT max(version) FROM {TABLE}_removed WHERE campaign = $1))"
            ),
            &[&campaign],
        )
        .unwrap();
    row.get::<_, Option<i64>>(0).unwrap_or(0) as u64
}

fn insert_rows(database: &Postgres, campaign: &str, members: &[&str], version: u64) {
    for member in members {
        database
            .client()
            .execute(
                &format!("INSERT INTO {TABLE} (campaign, member, version) VALUES ($1, $2, $3)"),
                &[&campaign, member, &(version as i64)],
            )
            .unwrap();
    }
}

fn restore(
    con: &mut redis::Connection,
    key: &str,
    payload: &[u8],
    replace: bool,
) -> Result<Value, String> {
    let mut args: Vec<&[u8]> = vec![b"RESTORE", key.as_bytes(), b"0", payload];
    if replace {
        args.push(b"REPLACE");
    }
    call(con, &args)
}

/// SPEC section 4 "Versions stay plausible": a client's RESTORE of a value
/// more than a day ahead of the node's clock, or at 2^63 and above, is
/// refused and changes nothing; one an hour ahead (this node's clock
/// stepped back an hour against the writer's) is taken and later changes
/// still win in the database; a row far ahead raises its own campaign only.
#[test]
fn versions_stay_plausible() {
    let database = Postgres::start();
    let primary = RedisServer::start_with(flushing_to(&database));
    let replica = start_replica_of(&primary, RedisOptions::default());
    let mut con = primary.connection();
    add(&mut con, "c", &["a".to_owned(), "b".to_owned()]);
    flush(&mut con);
    let payload = dump(&mut con, "c");
    assert_eq!(payload_version(&payload), newest_version(&database, "c"));

    for forged in [version_at(now_ms() + 2 * DAY_MS), 1 << 63, u64::MAX] {
        let forged = with_version(&payload, forged);
        let refused = restore(&mut con, "forged", &forged, false).unwrap_err();
        assert!(refused.contains("Bad data format"), "{refused}");
        restore(&mut con, "c", &forged, true).unwrap_err();
    }
    assert!(primary.log().contains("ahead of this node's clock"));
    assert_eq!(int(&mut con, &["EXISTS", "forged"]), 0);
    assert_cache_holds(&mut con, "c", ["a", "b"]);
    add(&mut con, "fresh", &["x".to_owned()]);
    flush(&mut con);
    assert!(newest_version(&database, "fresh") < version_at(now_ms() + 60_000));

    // An hour ahead: taken; the changes made here go above it.
    let hour_ahead = version_at(now_ms() + HOUR_MS);
    insert_rows(&database, "stepped", &["a", "b"], hour_ahead);
    restore(
        &mut con,
        "stepped",
        &with_version(&payload, hour_ahead),
        false,
    )
    .unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.REM", "stepped", "a"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "stepped", "z"]), 1);
    flush(&mut con);
    assert_eq!(rows_of(&database, "stepped"), set(&["b", "z"]));
    assert!(newest_version(&database, "stepped") > hour_ahead);

    // A row written ten years ahead raises its campaign, not the node.
    let decade_ahead = version_at(now_ms() + 3650 * DAY_MS);
    insert_rows(&database, "poison", &["m"], decade_ahead);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "poison", "m"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "poison", "n"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.REM", "poison", "m"]), 1);
    add(&mut con, "fresh2", &["y".to_owned()]);
    flush(&mut con);
    assert_eq!(rows_of(&database, "poison"), set(&["n"]));
    assert!(newest_version(&database, "poison") > decade_ahead);
    // (The node's clock took the hour of `stepped`, not the decade.)
    assert!(newest_version(&database, "fresh2") < version_at(now_ms() + HOUR_MS + 60_000));

    // Rows and caches, primary and replica, hold what was acknowledged.
    wait_for_replica(&mut con);
    let mut replica_con = replica.connection();
    let expected = [
        ("c", set(&["a", "b"])),
        ("fresh", set(&["x"])),
        ("stepped", set(&["b", "z"])),
        ("poison", set(&["n"])),
        ("fresh2", set(&["y"])),
    ];
    for (campaign, members) in &expected {
        assert_eq!(&rows_of(&database, campaign), members, "{campaign}");
        assert_cache_holds(&mut con, campaign, members);
        assert_cache_holds(&mut replica_con, campaign, members);
    }
    assert_eq!(rows(&database).len(), 7);
}

/// Every keyspace event (`__keyspace@0__:key` → event) a connection
/// subscribed with `listen` has received, read until a second passes
/// without one.
fn events_received(pubsub: &mut redis::PubSub) -> Vec<String> {
    let mut events = Vec::new();
    while let Ok(message) = pubsub.get_message() {
        let key = message
            .get_channel_name()
            .trim_start_matches("__keyspace@0__:")
            .to_string();
        let event: String = message.get_payload().unwrap();
        events.push(format!("{key} {event}"));
    }
    events
}

fn listen(con: &mut redis::Connection) -> redis::PubSub<'_> {
    con.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut pubsub = con.as_pubsub();
    pubsub.psubscribe("__keyspace@0__:*").unwrap();
    pubsub
}

fn digest_value(con: &mut redis::Connection, key: &str) -> Value {
    call(con, &[b"DEBUG", b"DIGEST-VALUE", key.as_bytes()]).unwrap()
}

fn digest(con: &mut redis::Connection) -> Value {
    call(con, &[b"DEBUG", b"DIGEST"]).unwrap()
}

/// SPEC section 6: `DEBUG DIGEST-VALUE` and `DEBUG DIGEST` follow a
/// campaign's content and version, so a replica that diverged shows; a
/// rebuild shows as one `campaign.rebuild` on the replica as on the primary.
#[test]
fn digests_and_rebuild_events_match_on_replicas() {
    let database = Postgres::start();
    let primary =
        RedisServer::start_with(flushing_to(&database).config("notify-keyspace-events Kgd"));
    let replica = start_replica_of(
        &primary,
        RedisOptions::default()
            .config("replica-read-only no")
            .config("notify-keyspace-events Kgd"),
    );
    let mut con = primary.connection();
    let mut replica_con = replica.connection();
    add(&mut con, "c1", &members("m", 0..3));
    add(&mut con, "c2", &members("m", 0..3));
    add(&mut con, "c3", &members("n", 0..3));
    wait_for_replica(&mut con);
    let c1 = digest_value(&mut con, "c1");
    assert_ne!(c1, digest_value(&mut con, "c3"), "other members");
    assert_ne!(c1, digest_value(&mut con, "c2"), "other versions");
    assert_eq!(c1, digest_value(&mut replica_con, "c1"));
    assert_eq!(digest(&mut con), digest(&mut replica_con));

    // Rebuilds: a small change (sent as a diff) and a large one.
    let mut primary_listener = primary.connection();
    let mut primary_events = listen(&mut primary_listener);
    let mut replica_listener = replica.connection();
    let mut replica_events = listen(&mut replica_listener);
    flush(&mut con);
    write_around(&database, "c1", &members("x", 0..2));
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "c1"]), 5);
    write_around(&database, "c3", &members("y", 0..20_000));
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "c3"]), 20_003);
    wait_for_replica(&mut con);
    let expected = ["c1 campaign.rebuild", "c3 campaign.rebuild"];
    assert_eq!(events_received(&mut primary_events), expected);
    assert_eq!(events_received(&mut replica_events), expected);
    assert_eq!(digest(&mut con), digest(&mut replica_con));

    // A replica that diverged (a client's RESTORE there) shows.
    let payload = dump(&mut con, "c2");
    restore(&mut replica_con, "c1", &payload, true).unwrap();
    assert_ne!(digest(&mut con), digest(&mut replica_con));
    assert_ne!(
        digest_value(&mut con, "c1"),
        digest_value(&mut replica_con, "c1")
    );
    restore(&mut replica_con, "c1", &dump(&mut con, "c1"), true).unwrap();
    assert_eq!(digest(&mut con), digest(&mut replica_con));

    // Rows and caches hold what was acknowledged and loaded.
    flush(&mut con);
    let mut c1 = members("m", 0..3);
    c1.extend(members("x", 0..2));
    let mut c3 = members("n", 0..3);
    c3.extend(members("y", 0..20_000));
    for (campaign, members) in [("c1", c1), ("c2", members("m", 0..3)), ("c3", c3)] {
        let members: std::collections::BTreeSet<String> = members.into_iter().collect();
        assert_eq!(rows_of(&database, campaign), members, "{campaign}");
        assert_cache_holds(&mut con, campaign, &members);
        assert_cache_holds(&mut replica_con, campaign, &members);
    }
}

fn select(con: &mut redis::Connection, db: &str) {
    call(con, &[b"SELECT", db.as_bytes()]).unwrap();
}

/// SPEC section 2: logical databases never share rows. Campaigns live in
/// database 0: commands elsewhere, COPY ... DB n and RESTORE there are
/// refused; a campaign MOVEd or SWAPDB'd away leaves its name as after
/// DEL (reload on next use), and what lands elsewhere answers nothing.
#[test]
fn campaigns_live_in_database_zero_only() {
    if crate::harness::redis_server::moves_switch_the_client_db() {
        eprintln!(
            "skipped on Valkey 8: MOVE of a campaign key switches the client's database there"
        );
        return;
    }
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    assert_eq!(
        int(&mut con, &["CAMPAIGN.ADD", "x", "a0", "b0", "shared"]),
        3
    );
    flush(&mut con);
    let payload = dump(&mut con, "x");

    let mut other = server.connection();
    select(&mut other, "3");
    for command in [
        &["CAMPAIGN.ADD", "x", "a3", "b3", "shared"][..],
        &["CAMPAIGN.ADD", "x", "a3"],
        &["CAMPAIGN.REM", "x", "shared"],
        &["CAMPAIGN.REM", "x", "a0", "b0"],
        &["CAMPAIGN.HAS", "x", "shared"],
        &["CAMPAIGN.MHAS", "x", "shared", "a0"],
        &["CAMPAIGN.CARD", "x"],
        &["CAMPAIGN.REBUILD", "x"],
        &["CAMPAIGN.VERIFY", "x"],
    ] {
        let text = error(&mut other, command);
        assert!(
            text.contains("campaigns live in database 0 only"),
            "{command:?}: {text}"
        );
    }
    let refused = restore(&mut other, "x", &payload, false).unwrap_err();
    assert!(refused.contains("Bad data format"), "{refused}");
    let refused = call(&mut con, &[b"COPY", b"x", b"x", b"DB", b"3"]).unwrap_err();
    assert!(refused.contains("failed to copy"), "{refused}");
    assert_eq!(int(&mut other, &["EXISTS", "x"]), 0);

    // MOVE and SWAPDB cannot be refused: the name left behind reloads.
    assert_eq!(int(&mut con, &["MOVE", "x", "3"]), 1);
    assert_eq!(int(&mut con, &["EXISTS", "x"]), 0);
    assert!(error(&mut other, &["CAMPAIGN.HAS", "x", "a0"]).contains("database 0 only"));
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "x", "a0"]), 1);
    assert_eq!(int(&mut other, &["DEL", "x"]), 1);
    call(&mut con, &[b"SWAPDB", b"0", b"3"]).unwrap();
    assert_eq!(int(&mut other, &["EXISTS", "x"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "x", "c0"]), 1);
    flush(&mut con);

    let expected = set(&["a0", "b0", "shared", "c0"]);
    assert_eq!(rows_of(&database, "x"), expected);
    assert_eq!(rows(&database).len(), 4);
    assert_cache_holds(&mut con, "x", &expected);
}

/// SPEC section 2: a campaign's name is its identity. RENAME, COPY and
/// MOVE back into database 0 journal the members
/// there, so after FLUSH the rows under the new name hold what the key
/// holds, reconcile finds no drift, and replicas journal the same; the
/// name left behind reloads its rows, as after DEL.
#[test]
fn renamed_copied_and_moved_campaigns_keep_their_members_in_the_database() {
    if crate::harness::redis_server::moves_switch_the_client_db() {
        eprintln!(
            "skipped on Valkey 8: MOVE of a campaign key switches the client's database there"
        );
        return;
    }
    let database = Postgres::start();
    let primary =
        RedisServer::start_with(flushing_to(&database).module_args(&["verify-interval-s", "1"]));
    let replica = start_replica_of(&primary, RedisOptions::default());
    let mut con = primary.connection();
    add(&mut con, "old", &members("m", 0..3));
    let big = members("b", 0..1_000);
    add(&mut con, "big", &big);
    flush(&mut con);

    call(&mut con, &[b"RENAME", b"old", b"new"]).unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "new", "d"]), 1);
    call(&mut con, &[b"COPY", b"big", b"copied"]).unwrap();
    assert_eq!(int(&mut con, &["MOVE", "big", "3"]), 1);
    let mut other = primary.connection();
    select(&mut other, "3");
    call(&mut other, &[b"RENAME", b"big", b"moved"]).unwrap();
    assert_eq!(int(&mut other, &["MOVE", "moved", "0"]), 1);
    flush(&mut con);

    let mut new = members("m", 0..3);
    new.push("d".to_owned());
    let expected = [
        ("new", new),
        ("copied", big.clone()),
        ("moved", big.clone()),
    ];
    for (campaign, members) in &expected {
        let members: std::collections::BTreeSet<String> = members.iter().cloned().collect();
        assert_eq!(rows_of(&database, campaign), members, "{campaign}");
    }
    // Reconcile rounds over every campaign find nothing to rebuild.
    let runs = |con: &mut redis::Connection| -> i64 { status(con)["verify-runs"].parse().unwrap() };
    let start = runs(&mut con);
    assert!(wait_until(Duration::from_secs(20), || runs(&mut con) >= start + 12));
    // The names left behind reload their rows, as after DEL.
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "old", "m0"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "big", "b0"]), 1);
    flush(&mut con);
    wait_for_replica(&mut con);
    let mut replica_con = replica.connection();
    assert_eq!(pending(&mut replica_con), 0);
    for (campaign, members) in &expected {
        assert_cache_holds(&mut con, campaign, members);
        assert_cache_holds(&mut replica_con, campaign, members);
    }
    assert_cache_holds(&mut con, "old", members("m", 0..3));
    assert_cache_holds(&mut con, "big", &big);
    assert_eq!(
        rows_of(&database, "old"),
        members("m", 0..3).into_iter().collect()
    );
    assert_eq!(rows_of(&database, "big"), big.iter().cloned().collect());
    assert_eq!(rows(&database).len(), 3 + 4 + 3 * 1_000);
}
