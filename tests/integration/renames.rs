//! Issue 21, "a campaign's name is its identity": a campaign value that
//! lands under a name (RENAME, COPY, MOVE, a RESTORE under another name)
//! journals one prune ("the campaign is now this set") and its members,
//! so after FLUSH the rows under that name are exactly the key's members,
//! whatever rows the name held before; replicas, RDB and AOF carry the
//! prune. Each test ends with rows and caches compared to what was
//! acknowledged.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::campaign::*;
use crate::harness::redis_server::{call, int};
use crate::harness::{wait_until, Postgres, RedisOptions, RedisServer};

fn set<S: AsRef<str>>(members: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    members.into_iter().map(|m| m.as_ref().to_owned()).collect()
}

/// Leaves rows under `campaign` (versioned, from the module, and one
/// written around it) while Redis holds no key of that name.
fn stale_rows(con: &mut redis::Connection, database: &Postgres, campaign: &str) {
    add(con, campaign, &members(&format!("{campaign}-stale"), 0..3));
    flush(con);
    assert_eq!(int(con, &["DEL", campaign]), 1);
    write_around(database, campaign, &[format!("{campaign}-around")]);
    assert_eq!(rows_of(database, campaign).len(), 4);
}

fn verify_runs(con: &mut redis::Connection) -> i64 {
    status(con)["verify-runs"].parse().unwrap()
}

/// RENAME, COPY (onto a missing key and onto an existing one with
/// REPLACE) and MOVE into database 0 onto names whose rows are left from
/// earlier campaigns: after FLUSH each name's rows are exactly its key's
/// members (the earlier rows pruned, markers left), the names left behind
/// keep theirs, the reconciler finds no drift, REBUILD loads the same
/// sets, and a replica journaled the same and holds the same.
#[test]
fn a_campaign_under_a_new_name_replaces_the_rows_that_name_held() {
    let database = Postgres::start();
    let primary =
        RedisServer::start_with(flushing_to(&database).module_args(&["verify-interval-s", "1"]));
    let replica = start_replica_of(&primary, RedisOptions::default());
    let mut con = primary.connection();
    let moves = !crate::harness::redis_server::moves_switch_the_client_db();

    for name in ["renamed", "copied", "replaced", "moved"] {
        stale_rows(&mut con, &database, name);
    }
    add(&mut con, "src", &members("a", 0..3));
    add(&mut con, "replaced", &members("k", 0..2));
    let big = members("b", 0..1_000);
    add(&mut con, "big", &big);
    flush(&mut con);

    call(&mut con, &[b"RENAME", b"src", b"renamed"]).unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "renamed", "d"]), 1);
    call(&mut con, &[b"COPY", b"big", b"copied"]).unwrap();
    call(&mut con, &[b"COPY", b"renamed", b"replaced", b"REPLACE"]).unwrap();
    if moves {
        assert_eq!(int(&mut con, &["MOVE", "big", "3"]), 1);
        let mut other = primary.connection();
        call(&mut other, &[b"SELECT", b"3"]).unwrap();
        call(&mut other, &[b"RENAME", b"big", b"moved"]).unwrap();
        assert_eq!(int(&mut other, &["MOVE", "moved", "0"]), 1);
    }
    flush(&mut con);

    let mut renamed = members("a", 0..3);
    renamed.push("d".into());
    let mut expected = vec![
        ("renamed", set(&renamed)),
        ("copied", set(&big)),
        ("replaced", set(&renamed)),
    ];
    if moves {
        expected.push(("moved", set(&big)));
    }
    for (campaign, members) in &expected {
        assert_eq!(&rows_of(&database, campaign), members, "{campaign}");
    }
    // The names left behind keep their rows, as after DEL.
    assert_eq!(rows_of(&database, "src"), set(members("a", 0..3)));
    assert_eq!(rows_of(&database, "big"), set(&big));
    // The pruned rows left removal markers at the prune's version.
    let markers: i64 = database
        .client()
        .query_one(
            &format!("SELECT count(*) FROM {TABLE}_removed WHERE campaign = 'renamed'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(markers, 4);

    // Reconcile rounds over every campaign find nothing to rebuild, and a
    // REBUILD loads what the key holds.
    let drift = status(&mut con)["drift-found"].clone();
    let start = verify_runs(&mut con);
    assert!(wait_until(Duration::from_secs(20), || verify_runs(
        &mut con
    ) >= start + 12));
    assert_eq!(status(&mut con)["drift-found"], drift);
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "renamed"]), 4);
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "replaced"]), 4);
    flush(&mut con);
    wait_for_replica(&mut con);
    let mut replica_con = replica.connection();
    assert!(wait_until(Duration::from_secs(10), || pending(
        &mut replica_con
    ) == 0));
    for (campaign, members) in &expected {
        assert_eq!(&rows_of(&database, campaign), members, "{campaign}");
        assert_cache_holds(&mut con, campaign, members);
        assert_cache_holds(&mut replica_con, campaign, members);
    }
    assert_eq!(
        rows(&database).len(),
        4 + 4 + 3 + 1_000 * (2 + usize::from(moves)) + if moves { 0 } else { 4 }
    );
}

/// The prune waits in the journal like any entry: with no database it
/// survives DEBUG RELOAD (RDB aux data), an AOF rewrite without the RDB
/// preamble (`CAMPAIGN.JOURNAL ENTRIES ... PRUNE`) and a kill -9, and
/// once the database is back the renamed name's rows are exactly its
/// members.
#[test]
fn a_pending_prune_survives_rdb_and_aof() {
    let database = Postgres::start();
    let mut server = RedisServer::start_with(
        flushing_to(&database)
            .config("appendonly yes")
            .config("appendfsync always")
            .config("aof-use-rdb-preamble no"),
    );
    let mut con = server.connection();
    stale_rows(&mut con, &database, "dst");
    call(
        &mut con,
        &[b"CONFIG", b"SET", b"campaign.database-url", b""],
    )
    .unwrap();
    add(&mut con, "src", &members("a", 0..3));
    call(&mut con, &[b"RENAME", b"src", b"dst"]).unwrap();
    // 3 adds, then the prune and 3 adds under the new name.
    assert_eq!(pending(&mut con), 7);
    call(&mut con, &[b"DEBUG", b"RELOAD"]).unwrap();
    assert_eq!(pending(&mut con), 7);
    call(&mut con, &[b"BGREWRITEAOF"]).unwrap();
    wait_for_aof_rewrite(&mut con);
    add(&mut con, "dst", &["late".to_owned()]);
    server.restart();
    let mut con = server.connection();
    flush(&mut con);
    let mut expected = members("a", 0..3);
    expected.push("late".into());
    assert_eq!(rows_of(&database, "dst"), set(&expected));
    assert_eq!(rows_of(&database, "src"), set(members("a", 0..3)));
    assert_cache_holds(&mut con, "dst", &expected);
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "dst"]), 4);
    assert_cache_holds(&mut con, "dst", &expected);
}

fn dump(con: &mut redis::Connection, key: &str) -> Vec<u8> {
    match call(con, &[b"DUMP", key.as_bytes()]).unwrap() {
        redis::Value::BulkString(bytes) => bytes,
        other => panic!("DUMP {key} gave {other:?}"),
    }
}

/// A client's RESTORE under another name than the value was saved under
/// (onto a name with older rows, and with REPLACE over a campaign) is
/// journaled like a RENAME there: after FLUSH the rows are exactly the
/// key's members and the reconciler keeps them. RESTORE under the same
/// name (MIGRATE to another node, a DEL and RESTORE here) journals
/// nothing and changes nothing in the database.
#[test]
fn restore_under_another_name_is_journaled_and_migrate_is_not() {
    let database = Postgres::start();
    let primary =
        RedisServer::start_with(flushing_to(&database).module_args(&["verify-interval-s", "1"]));
    let replica = start_replica_of(&primary, RedisOptions::default());
    let target = RedisServer::start_with(flushing_to(&database));
    let mut con = primary.connection();
    stale_rows(&mut con, &database, "restored");
    let orig = members("o", 0..1_000);
    add(&mut con, "orig", &orig);
    add(&mut con, "over", &members("k", 0..2));
    flush(&mut con);

    let payload = dump(&mut con, "orig");
    call(&mut con, &[b"RESTORE", b"restored", b"0", &payload]).unwrap();
    call(&mut con, &[b"RESTORE", b"over", b"0", &payload, b"REPLACE"]).unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "restored", "extra"]), 1);
    // The same name, here: nothing to journal.
    let before = pending(&mut con);
    call(&mut con, &[b"RESTORE", b"orig", b"0", &payload, b"REPLACE"]).unwrap();
    assert_eq!(pending(&mut con), before);
    flush(&mut con);

    let mut restored = orig.clone();
    restored.push("extra".into());
    let expected = [
        ("restored", set(&restored)),
        ("over", set(&orig)),
        ("orig", set(&orig)),
    ];
    for (campaign, members) in &expected {
        assert_eq!(&rows_of(&database, campaign), members, "{campaign}");
    }

    // MIGRATE to another node (same name): the target journals nothing.
    let mut target_con = target.connection();
    wait_connected(&mut target_con);
    let next_seq = status(&mut target_con)["journal-next-seq"].clone();
    let port = target.port.to_string();
    call(
        &mut con,
        &[
            b"MIGRATE",
            b"127.0.0.1",
            port.as_bytes(),
            b"orig",
            b"0",
            b"5000",
        ],
    )
    .unwrap();
    assert_cache_holds(&mut target_con, "orig", &orig);
    assert_eq!(status(&mut target_con)["journal-next-seq"], next_seq);
    assert_eq!(pending(&mut target_con), 0);
    flush(&mut target_con);

    let drift = status(&mut con)["drift-found"].clone();
    let start = verify_runs(&mut con);
    assert!(wait_until(Duration::from_secs(20), || verify_runs(
        &mut con
    ) >= start + 8));
    assert_eq!(status(&mut con)["drift-found"], drift);
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "restored"]), 1_001);
    flush(&mut con);
    wait_for_replica(&mut con);
    let mut replica_con = replica.connection();
    assert!(wait_until(Duration::from_secs(10), || pending(
        &mut replica_con
    ) == 0));
    for (campaign, members) in &expected[..2] {
        assert_eq!(&rows_of(&database, campaign), members, "{campaign}");
        assert_cache_holds(&mut con, campaign, members);
        assert_cache_holds(&mut replica_con, campaign, members);
    }
    assert_eq!(rows_of(&database, "orig"), set(&orig));
    assert_cache_holds(&mut target_con, "orig", &orig);
    assert_eq!(rows(&database).len(), 1_001 + 1_000 + 1_000);
}

/// SWAPDB 0 n: the campaigns that arrive in database 0 are journaled
/// under their names there (rows the name held before pruned), the ones
/// that leave behave as after DEL (their rows stay and reload on next
/// use); replicas journal the same.
#[test]
fn campaigns_swapped_into_database_zero_are_journaled_there() {
    if crate::harness::redis_server::moves_switch_the_client_db() {
        eprintln!("skipped on Valkey 8: MOVE of a campaign key switches the client's database");
        return;
    }
    let database = Postgres::start();
    let primary =
        RedisServer::start_with(flushing_to(&database).module_args(&["verify-interval-s", "1"]));
    let replica = start_replica_of(&primary, RedisOptions::default());
    let mut con = primary.connection();
    stale_rows(&mut con, &database, "swapped");
    let arriving = members("s", 0..10);
    add(&mut con, "tmp", &arriving);
    add(&mut con, "leaves", &members("l", 0..3));
    flush(&mut con);
    assert_eq!(int(&mut con, &["MOVE", "tmp", "3"]), 1);
    let mut other = primary.connection();
    call(&mut other, &[b"SELECT", b"3"]).unwrap();
    call(&mut other, &[b"RENAME", b"tmp", b"swapped"]).unwrap();
    drop(other);
    call(&mut con, &[b"SWAPDB", b"0", b"3"]).unwrap();
    assert_eq!(int(&mut con, &["EXISTS", "leaves"]), 0);
    flush(&mut con);

    assert_eq!(rows_of(&database, "swapped"), set(&arriving));
    assert_eq!(rows_of(&database, "tmp"), set(&arriving));
    assert_eq!(rows_of(&database, "leaves"), set(members("l", 0..3)));
    let drift = status(&mut con)["drift-found"].clone();
    let start = verify_runs(&mut con);
    assert!(wait_until(Duration::from_secs(20), || verify_runs(
        &mut con
    ) >= start + 6));
    assert_eq!(status(&mut con)["drift-found"], drift);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "leaves", "l0"]), 1);
    flush(&mut con);
    wait_for_replica(&mut con);
    let mut replica_con = replica.connection();
    assert!(wait_until(Duration::from_secs(10), || pending(
        &mut replica_con
    ) == 0));
    assert_cache_holds(&mut con, "swapped", &arriving);
    assert_cache_holds(&mut replica_con, "swapped", &arriving);
    assert_cache_holds(&mut con, "leaves", members("l", 0..3));
    assert_eq!(rows_of(&database, "swapped"), set(&arriving));
    assert_eq!(rows(&database).len(), 10 + 10 + 3);
}
