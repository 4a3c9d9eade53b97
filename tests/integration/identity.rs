//! A campaign's name is its identity (SPEC sections 2, 4, 5 and 6): a
//! replica refuses clients' writes, versions stay plausible, the type has
//! a digest, one logical database is served, and RENAME/COPY/MOVE/RESTORE
//! leave PostgreSQL holding what the keys hold.

use std::time::Duration;

use redis::Value;

use crate::harness::campaign::*;
use crate::harness::redis_server::{call, error, int};
use crate::harness::{wait_until, Postgres, RedisServer};

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
