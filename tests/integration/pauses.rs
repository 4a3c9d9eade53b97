//! Administrative actions that pause clients (`CLIENT PAUSE`, `FAILOVER`,
//! `CLUSTER FAILOVER`) while the flusher commits: Redis 7.0 aborts if a
//! background thread propagates then. The server must live through each,
//! and PostgreSQL must end with every acknowledged member.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use redis::Connection;

use crate::harness::campaign::{
    add, flush, flushing_to, info_field, members, pending, rows_of, start_replica_of, status,
    wait_for_replica,
};
use crate::harness::cluster::cluster_pair;
use crate::harness::redis_server::{call, int};
use crate::harness::{wait_until, Postgres, RedisServer};

const MEMBERS: usize = 2_000;

/// Entries pending on a server whose database is down, the flusher
/// failing: the next commit happens once the database is back.
fn pending_while_the_database_is_down(
    con: &mut Connection,
    database: &mut Postgres,
    campaign: &str,
) -> BTreeSet<String> {
    // Loaded (and the table created) while the database is up: the writes
    // below need no load.
    let added = members("p", 0..MEMBERS);
    add(con, campaign, &added[..1]);
    flush(con);
    database.stop();
    assert_eq!(add(con, campaign, &added[1..]), MEMBERS as i64 - 1);
    let failing = wait_until(Duration::from_secs(20), || {
        status(con)["flush-errors"] != "0"
    });
    assert!(failing, "{:?}", status(con));
    added.into_iter().collect()
}

fn wait_role(con: &mut Connection, role: &str) {
    let reached = wait_until(Duration::from_secs(30), || {
        info_field(con, "replication", "role") == role
    });
    assert!(reached, "role: {}", info_field(con, "replication", "role"));
}

fn wait_pending_zero(con: &mut Connection) {
    let drained = wait_until(Duration::from_secs(30), || pending(con) == 0);
    assert!(drained, "{:?}", status(con));
}

/// `CLIENT PAUSE ... WRITE`: the database commits during the pause, the
/// trim (which is propagated) waits for its end.
#[test]
fn client_pause_write_defers_the_trim() {
    let mut database = Postgres::start_owned();
    let mut server = RedisServer::start_with(
        flushing_to(&database)
            .config("appendonly yes")
            .config("appendfsync always"),
    );
    let mut con = server.connection();
    let added = pending_while_the_database_is_down(&mut con, &mut database, "paused");

    call(&mut con, &[b"CLIENT", b"PAUSE", b"60000", b"WRITE"]).unwrap();
    database.start_again();
    let committed = wait_until(Duration::from_secs(30), || {
        rows_of(&database, "paused").len() == MEMBERS
    });
    assert!(committed, "the database commits during the pause");
    assert!(server.is_alive(), "{}", server.log());
    assert_eq!(
        pending(&mut con),
        MEMBERS as i64 - 1,
        "the trim waits for the pause to end"
    );

    call(&mut con, &[b"CLIENT", b"UNPAUSE"]).unwrap();
    wait_pending_zero(&mut con);
    assert_eq!(rows_of(&database, "paused"), added);
    // The trim reached the AOF: a crash and restart brings nothing back.
    server.kill();
    server.restart();
    let mut con = server.connection();
    assert_eq!(pending(&mut con), 0, "{:?}", status(&mut con));
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "paused"]), MEMBERS as i64);
}

/// `CLIENT PAUSE ... ALL`: the same while no client command runs at all.
#[test]
fn client_pause_all_defers_the_trim() {
    let mut database = Postgres::start_owned();
    let mut server = RedisServer::start_with(flushing_to(&database).config("appendonly yes"));
    let mut con = server.connection();
    let added = pending_while_the_database_is_down(&mut con, &mut database, "paused-all");

    let pause = Duration::from_secs(20);
    let paused_at = Instant::now();
    let pause_ms = pause.as_millis().to_string();
    call(
        &mut con,
        &[b"CLIENT", b"PAUSE", pause_ms.as_bytes(), b"ALL"],
    )
    .unwrap();
    database.start_again();
    let committed = wait_until(pause, || rows_of(&database, "paused-all").len() == MEMBERS);
    assert!(committed, "the database commits during the pause");
    assert!(
        paused_at.elapsed() < pause,
        "the commit came after the pause: the test proved nothing"
    );
    assert!(server.is_alive(), "{}", server.log());

    // Commands run again once the pause expires.
    wait_pending_zero(&mut con);
    assert!(server.is_alive());
    assert_eq!(rows_of(&database, "paused-all"), added);
}

/// `FAILOVER` to a replica while the old primary's flusher commits.
#[test]
fn failover_while_committing_keeps_both_servers_and_the_rows() {
    let mut database = Postgres::start_owned();
    let mut primary = RedisServer::start_with(flushing_to(&database));
    let mut replica = start_replica_of(&primary, flushing_to(&database));
    let mut con = primary.connection();
    let added = pending_while_the_database_is_down(&mut con, &mut database, "handover");
    wait_for_replica(&mut con);

    database.start_again();
    call(&mut con, &[b"FAILOVER", b"TIMEOUT", b"20000"]).unwrap();
    let mut replica_con = replica.connection();
    wait_role(&mut replica_con, "master");
    wait_role(&mut con, "slave");
    assert!(primary.is_alive(), "{}", primary.log());
    assert!(replica.is_alive(), "{}", replica.log());

    flush(&mut replica_con);
    assert_eq!(rows_of(&database, "handover"), added);
    wait_pending_zero(&mut replica_con);
    wait_pending_zero(&mut con);
    assert_eq!(status(&mut replica_con)["role"], "primary");
    assert_eq!(status(&mut con)["role"], "replica");
}

/// `CLUSTER FAILOVER` on the replica while the primary's flusher commits.
#[test]
fn cluster_failover_while_committing_keeps_both_servers_and_the_rows() {
    let mut database = Postgres::start_owned();
    let (mut primary, mut replica) = cluster_pair(flushing_to(&database));
    let mut con = primary.connection();
    let added = pending_while_the_database_is_down(&mut con, &mut database, "moved-on");
    wait_for_replica(&mut con);

    database.start_again();
    let mut replica_con = replica.connection();
    call(&mut replica_con, &[b"CLUSTER", b"FAILOVER"]).unwrap();
    wait_role(&mut replica_con, "master");
    wait_role(&mut con, "slave");
    assert!(primary.is_alive(), "{}", primary.log());
    assert!(replica.is_alive(), "{}", replica.log());

    flush(&mut replica_con);
    assert_eq!(rows_of(&database, "moved-on"), added);
    wait_pending_zero(&mut replica_con);
    wait_pending_zero(&mut con);
}
