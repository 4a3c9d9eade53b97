//! A rebuilt set reaches replicas and the AOF in parts, collected in a
//! shadow and swapped in by one small command: whatever happens between
//! the parts (DEL, RENAME, FLUSHALL, a key of another type, a failover, a
//! full sync, an AOF rewrite), replicas, the AOF and the primary end equal.

use std::collections::BTreeSet;
use std::thread::JoinHandle;
use std::time::Duration;

use redis::Connection;

use crate::harness::campaign::{
    add, assert_cache_holds, flush, flushing_to, info_field, members, rows_of, start_replica_of,
    status, wait_for_aof_rewrite, wait_for_replicas, write_around,
};
use crate::harness::redis_server::{call, int};
use crate::harness::{wait_until, Postgres, RedisOptions, RedisServer};
use crate::rebuild::{wait_rebuilding, TableLock};

const CAMPAIGN: &str = "big";

/// A primary with an AOF, one replica, a campaign cached with `old`
/// members and the database holding `new` ones instead.
struct Setup {
    database: Postgres,
    primary: RedisServer,
    replica: RedisServer,
    old: BTreeSet<String>,
    new: BTreeSet<String>,
}

fn primary_options(database: &Postgres) -> RedisOptions {
    flushing_to(database)
        .config("appendonly yes")
        .config("appendfsync always")
}

fn setup(extra_config: &[&str]) -> Setup {
    let database = Postgres::start();
    let mut options = primary_options(&database);
    for line in extra_config {
        options = options.config(line);
    }
    let primary = RedisServer::start_with(options);
    let replica = start_replica_of(&primary, flushing_to(&database));
    let mut con = primary.connection();
    let old = members("old-", 0..300);
    add(&mut con, CAMPAIGN, &old);
    flush(&mut con);
    // Numbers, UUIDs and strings, all new to the cache: sent whole.
    let mut new: Vec<String> = (0..6_000)
        .map(|i| (50_000_000 + i * 13).to_string())
        .collect();
    new.extend((0..6_000).map(|i| format!("{i:08x}-1234-4abc-8def-{:012x}", i * 7)));
    new.extend(members("new-", 0..8_000));
    write_around(&database, CAMPAIGN, &new);
    let all: BTreeSet<String> = rows_of(&database, CAMPAIGN);
    Setup {
        database,
        primary,
        replica,
        old: old.into_iter().collect(),
        new: all,
    }
}

fn debug(con: &mut Connection, args: &[&str]) {
    let mut command = vec![b"CAMPAIGN.DEBUG".as_slice()];
    command.extend(args.iter().map(|arg| arg.as_bytes()));
    call(con, &command).unwrap();
}

/// Starts a REBUILD that sends its set in 4 KB parts and pauses after
/// three; returns once the primary is paused and the replica has
/// collected those parts.
fn rebuild_paused(setup: &Setup) -> JoinHandle<Result<i64, String>> {
    rebuild_paused_with(setup, false)
}

/// `rebuild_paused`, of a missing key when `missing`.
fn rebuild_paused_with(setup: &Setup, missing: bool) -> JoinHandle<Result<i64, String>> {
    let mut con = setup.primary.connection();
    if missing {
        assert_eq!(int(&mut con, &["DEL", CAMPAIGN]), 1);
    }
    debug(&mut con, &["SHADOW-PARTS", "4096", "3"]);
    let mut rebuild_con = setup.primary.connection();
    let rebuild = std::thread::spawn(move || {
        call(
            &mut rebuild_con,
            &[b"CAMPAIGN.REBUILD", CAMPAIGN.as_bytes()],
        )
        .map(|value| redis::from_redis_value::<i64>(value).expect("REBUILD answers a count"))
    });
    let paused = wait_until(Duration::from_secs(20), || {
        int(&mut con, &["CAMPAIGN.DEBUG", "SHADOW-PAUSED"]) == 1
    });
    assert!(paused, "the rebuild did not pause");
    wait_replicated(&mut con, 1);
    assert_eq!(status(&mut setup.replica.connection())["shadows"], "1");
    assert_eq!(status(&mut con)["shadows"], "1");
    rebuild
}

fn resume(con: &mut Connection) {
    debug(con, &["SHADOW-RESUME"]);
}

fn wait_replicated(con: &mut Connection, replicas: i64) {
    wait_for_replicas(con, replicas);
}

fn wait_no_shadows(con: &mut Connection) {
    let gone = wait_until(Duration::from_secs(20), || status(con)["shadows"] == "0");
    assert!(gone, "shadows left: {:?}", status(con));
}

/// Every node holds exactly `expected` at `key` (None: no key) and no
/// shadow.
fn assert_all_hold(nodes: &[&RedisServer], key: &str, expected: Option<&BTreeSet<String>>) {
    for node in nodes {
        let mut con = node.connection();
        wait_no_shadows(&mut con);
        match expected {
            Some(expected) => assert_cache_holds(&mut con, key, expected),
            None => assert_eq!(int(&mut con, &["EXISTS", key]), 0, "{key}"),
        }
    }
}

/// Restarts the primary from its AOF and the replica from its own data
/// (it resyncs), and checks `key` again on both.
fn restart_both(setup: &mut Setup, key: &str, expected: Option<&BTreeSet<String>>) {
    setup.primary.restart();
    setup.replica.restart();
    let mut replica_con = setup.replica.connection();
    let linked = wait_until(Duration::from_secs(20), || {
        info_field(&mut replica_con, "replication", "master_link_status") == "up"
    });
    assert!(linked, "{}", setup.replica.log());
    wait_replicated(&mut setup.primary.connection(), 1);
    assert_all_hold(&[&setup.primary, &setup.replica], key, expected);
}

fn aof_holds(server: &RedisServer, word: &[u8]) -> bool {
    std::fs::read_dir(server.dir().join("appendonlydir"))
        .unwrap()
        .map(|file| std::fs::read(file.unwrap().path()).unwrap())
        .any(|bytes| bytes.windows(word.len()).any(|window| window == word))
}

#[test]
fn a_rebuilt_set_reaches_the_replica_and_the_aof_in_parts() {
    let mut setup = setup(&[]);
    let mut con = setup.primary.connection();
    debug(&mut con, &["SHADOW-PARTS", "4096", "0"]);
    let count = int(&mut con, &["CAMPAIGN.REBUILD", CAMPAIGN]);
    assert_eq!(count, setup.new.len() as i64);
    wait_replicated(&mut con, 1);
    assert!(aof_holds(&setup.primary, b"SHADOW") && aof_holds(&setup.primary, b"SWAP"));
    assert!(!aof_holds(&setup.primary, b"REPLACE"));
    let new = setup.new.clone();
    assert_all_hold(&[&setup.primary, &setup.replica], CAMPAIGN, Some(&new));
    restart_both(&mut setup, CAMPAIGN, Some(&new));
}

#[test]
fn a_del_between_parts_leaves_replica_and_aof_equal() {
    let mut setup = setup(&[]);
    let mut con = setup.primary.connection();
    let rebuild = rebuild_paused(&setup);
    assert_eq!(int(&mut con, &["DEL", CAMPAIGN]), 1);
    resume(&mut con);
    assert_eq!(rebuild.join().unwrap(), Ok(setup.new.len() as i64));
    wait_replicated(&mut con, 1);
    let new = setup.new.clone();
    assert_all_hold(&[&setup.primary, &setup.replica], CAMPAIGN, Some(&new));
    restart_both(&mut setup, CAMPAIGN, Some(&new));
}

#[test]
fn a_rename_between_parts_leaves_replica_and_aof_equal() {
    let mut setup = setup(&[]);
    let mut con = setup.primary.connection();
    let rebuild = rebuild_paused(&setup);
    call(&mut con, &[b"RENAME", CAMPAIGN.as_bytes(), b"moved"]).unwrap();
    resume(&mut con);
    assert_eq!(rebuild.join().unwrap(), Ok(setup.new.len() as i64));
    wait_replicated(&mut con, 1);
    let (old, new) = (setup.old.clone(), setup.new.clone());
    let nodes = [&setup.primary, &setup.replica];
    assert_all_hold(&nodes, CAMPAIGN, Some(&new));
    assert_all_hold(&nodes, "moved", Some(&old));
    restart_both(&mut setup, CAMPAIGN, Some(&new));
    assert_all_hold(&[&setup.primary, &setup.replica], "moved", Some(&old));
}

/// A value renamed onto the name between parts is the campaign now: the
/// rebuild's set, read from the database before that value's changes were
/// journaled, does not replace it (the REBUILD says so), and after FLUSH
/// the rows under the name are the arrived members, with caches, replica
/// and AOF equal.
#[test]
fn a_rename_onto_the_name_between_parts_keeps_the_arrived_value() {
    let mut setup = setup(&[]);
    let mut con = setup.primary.connection();
    let arrived: BTreeSet<String> = members("arrived-", 0..50).into_iter().collect();
    add(
        &mut con,
        "other",
        &arrived.iter().cloned().collect::<Vec<_>>(),
    );
    flush(&mut con);
    let rebuild = rebuild_paused(&setup);
    call(&mut con, &[b"RENAME", b"other", CAMPAIGN.as_bytes()]).unwrap();
    resume(&mut con);
    let refused = rebuild
        .join()
        .unwrap()
        .expect_err("the REBUILD was overtaken");
    assert!(refused.contains("arrived under its name"), "{refused}");
    wait_replicated(&mut con, 1);
    let nodes = [&setup.primary, &setup.replica];
    assert_all_hold(&nodes, CAMPAIGN, Some(&arrived));
    assert_all_hold(&nodes, "other", None);
    flush(&mut con);
    assert_eq!(rows_of(&setup.database, CAMPAIGN), arrived);
    restart_both(&mut setup, CAMPAIGN, Some(&arrived));
}

#[test]
fn a_flushall_between_parts_leaves_replica_and_aof_equal() {
    let mut setup = setup(&[]);
    let mut con = setup.primary.connection();
    int(&mut con, &["CAMPAIGN.ADD", "bystander", "b"]);
    let rebuild = rebuild_paused(&setup);
    call(&mut con, &[b"FLUSHALL"]).unwrap();
    resume(&mut con);
    assert_eq!(rebuild.join().unwrap(), Ok(setup.new.len() as i64));
    wait_replicated(&mut con, 1);
    let new = setup.new.clone();
    assert_all_hold(&[&setup.primary, &setup.replica], CAMPAIGN, Some(&new));
    assert_all_hold(&[&setup.primary, &setup.replica], "bystander", None);
    restart_both(&mut setup, CAMPAIGN, Some(&new));
}

#[test]
fn a_key_of_another_type_between_parts_drops_the_shadow_everywhere() {
    let mut setup = setup(&[]);
    let mut con = setup.primary.connection();
    let rebuild = rebuild_paused(&setup);
    call(&mut con, &[b"SET", CAMPAIGN.as_bytes(), b"a string"]).unwrap();
    resume(&mut con);
    let refused = rebuild.join().unwrap().unwrap_err();
    assert!(refused.starts_with("WRONGTYPE"), "{refused}");
    wait_replicated(&mut con, 1);
    for node in [&setup.primary, &setup.replica] {
        let mut con = node.connection();
        wait_no_shadows(&mut con);
        let value: String = redis::cmd("GET").arg(CAMPAIGN).query(&mut con).unwrap();
        assert_eq!(value, "a string");
    }
    setup.primary.restart();
    wait_no_shadows(&mut setup.primary.connection());
}

/// The replica takes over between parts and the old primary follows it:
/// the REBUILD fails, the shadow is dropped, and both keep what the key
/// held before (the old set, or no key when `missing`).
fn failover_between_parts(missing: bool) {
    let setup = setup(&[]);
    let mut con = setup.primary.connection();
    let rebuild = rebuild_paused_with(&setup, missing);
    let mut replica_con = setup.replica.connection();
    call(&mut replica_con, &[b"REPLICAOF", b"NO", b"ONE"]).unwrap();
    let port = setup.replica.port.to_string();
    call(&mut con, &[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]).unwrap();
    resume(&mut con);
    // Redis itself unblocks the caller when the role changes.
    let refused = rebuild.join().unwrap().unwrap_err();
    assert!(
        refused.starts_with("READONLY") || refused.starts_with("UNBLOCKED"),
        "{refused}"
    );
    let linked = wait_until(Duration::from_secs(20), || {
        info_field(&mut con, "replication", "master_link_status") == "up"
    });
    assert!(linked, "{}", setup.primary.log());
    wait_replicated(&mut replica_con, 1);
    let expected = (!missing).then(|| setup.old.clone());
    assert_all_hold(
        &[&setup.replica, &setup.primary],
        CAMPAIGN,
        expected.as_ref(),
    );
}

#[test]
fn a_failover_between_parts_drops_the_shadow_and_keeps_the_old_set() {
    failover_between_parts(false);
}

/// A replica that full-syncs and an AOF rewritten while parts are under
/// way get the parts sent so far from the snapshot (the RDB aux data, or
/// commands in a rewrite without the RDB preamble).
fn full_sync_and_aof_rewrite_between_parts(extra_config: &[&str]) {
    let mut setup = setup(extra_config);
    let mut con = setup.primary.connection();
    let rebuild = rebuild_paused(&setup);
    let late = start_replica_of(&setup.primary, flushing_to(&setup.database));
    wait_replicated(&mut con, 2);
    assert_eq!(status(&mut late.connection())["shadows"], "1");
    call(&mut con, &[b"BGREWRITEAOF"]).unwrap();
    wait_for_aof_rewrite(&mut con);
    resume(&mut con);
    assert_eq!(rebuild.join().unwrap(), Ok(setup.new.len() as i64));
    wait_replicated(&mut con, 2);
    let new = setup.new.clone();
    assert_all_hold(
        &[&setup.primary, &setup.replica, &late],
        CAMPAIGN,
        Some(&new),
    );
    drop(late);
    restart_both(&mut setup, CAMPAIGN, Some(&new));
}

#[test]
fn a_full_sync_and_an_aof_rewrite_between_parts_carry_the_parts() {
    full_sync_and_aof_rewrite_between_parts(&[]);
}

#[test]
fn an_aof_rewrite_without_preamble_between_parts_carries_the_parts() {
    full_sync_and_aof_rewrite_between_parts(&["aof-use-rdb-preamble no"]);
}

/// The AOF ends in the middle of a shadow (the primary died while sending
/// it): after the restart the leftover is dropped, the old set stays.
#[test]
fn a_primary_killed_between_parts_restarts_with_the_old_set() {
    let mut setup = setup(&[]);
    let rebuild = rebuild_paused(&setup);
    setup.primary.kill();
    assert!(rebuild.join().unwrap().is_err());
    setup.primary.restart();
    let mut con = setup.primary.connection();
    wait_no_shadows(&mut con);
    let old = setup.old.clone();
    assert_cache_holds(&mut con, CAMPAIGN, &old);
    // The replica, reconnected, drops its copy too.
    let mut replica_con = setup.replica.connection();
    let linked = wait_until(Duration::from_secs(20), || {
        info_field(&mut replica_con, "replication", "master_link_status") == "up"
    });
    assert!(linked);
    wait_replicated(&mut con, 1);
    assert_all_hold(&[&setup.primary, &setup.replica], CAMPAIGN, Some(&old));
}

/// `DEBUG RELOAD` (save and load the dataset) and `SWAPDB` between parts.
#[test]
fn a_debug_reload_and_a_swapdb_between_parts_leave_replica_and_aof_equal() {
    if crate::harness::redis_server::moves_switch_the_client_db() {
        eprintln!(
            "skipped on Valkey 8: MOVE of a campaign key switches the client's database there"
        );
        return;
    }
    let mut setup = setup(&[]);
    let mut con = setup.primary.connection();
    int(&mut con, &["CAMPAIGN.ADD", "bystander", "b"]);
    let rebuild = rebuild_paused(&setup);
    call(&mut con, &[b"DEBUG", b"RELOAD"]).unwrap();
    // The load goes on sending: the reload kept its shadow.
    assert_eq!(status(&mut con)["shadows"], "1");
    call(&mut con, &[b"SWAPDB", b"0", b"1"]).unwrap();
    resume(&mut con);
    assert_eq!(rebuild.join().unwrap(), Ok(setup.new.len() as i64));
    wait_replicated(&mut con, 1);
    let (old, new) = (setup.old.clone(), setup.new.clone());
    let bystander: BTreeSet<String> = ["b".to_owned()].into_iter().collect();
    // Database 1 is not served (campaign commands are refused there): what
    // SWAPDB put there is compared by digest, and read back by MOVE.
    let mut digests = Vec::new();
    for node in [&setup.primary, &setup.replica] {
        let mut con = node.connection();
        wait_no_shadows(&mut con);
        // The swap wrote db 0, which now holds what db 1 held (nothing).
        assert_cache_holds(&mut con, CAMPAIGN, &new);
        assert_eq!(int(&mut con, &["EXISTS", "bystander"]), 0);
        call(&mut con, &[b"SELECT", b"1"]).unwrap();
        digests.push(db_digest(&mut con));
    }
    assert_eq!(digests[0], digests[1], "replica's database 1");
    setup.primary.restart();
    let mut con = setup.primary.connection();
    assert_cache_holds(&mut con, CAMPAIGN, &new);
    call(&mut con, &[b"SELECT", b"1"]).unwrap();
    assert_eq!(
        db_digest(&mut con),
        digests[0],
        "database 1 after a restart"
    );
    for key in [CAMPAIGN, "bystander"] {
        assert_eq!(int(&mut con, &["MOVE", key, "2"]), 1);
    }
    call(&mut con, &[b"SELECT", b"0"]).unwrap();
    call(&mut con, &[b"SWAPDB", b"0", b"2"]).unwrap();
    assert_cache_holds(&mut con, CAMPAIGN, &old);
    assert_cache_holds(&mut con, "bystander", &bystander);
}

/// `DEBUG DIGEST-VALUE` of the two keys in the selected database.
fn db_digest(con: &mut redis::Connection) -> Vec<redis::Value> {
    [CAMPAIGN, "bystander"]
        .iter()
        .map(|key| call(con, &[b"DEBUG", b"DIGEST-VALUE", key.as_bytes()]).unwrap())
        .collect()
}

/// A missing key's rebuild: a full sync, an AOF rewrite and a failover
/// between its parts.
#[test]
fn a_missing_keys_parts_survive_a_full_sync_and_a_rewrite() {
    let mut setup = setup(&[]);
    let mut con = setup.primary.connection();
    let rebuild = rebuild_paused_with(&setup, true);
    let late = start_replica_of(&setup.primary, flushing_to(&setup.database));
    wait_replicated(&mut con, 2);
    call(&mut con, &[b"BGREWRITEAOF"]).unwrap();
    wait_for_aof_rewrite(&mut con);
    resume(&mut con);
    assert_eq!(rebuild.join().unwrap(), Ok(setup.new.len() as i64));
    wait_replicated(&mut con, 2);
    let new = setup.new.clone();
    assert_all_hold(
        &[&setup.primary, &setup.replica, &late],
        CAMPAIGN,
        Some(&new),
    );
    drop(late);
    restart_both(&mut setup, CAMPAIGN, Some(&new));
}

#[test]
fn a_failover_between_a_missing_keys_parts_leaves_it_missing() {
    failover_between_parts(true);
}

/// A load prepared a diff, then its key was deleted: the whole set goes
/// in parts, not in one command under the lock.
#[test]
fn a_del_during_a_small_change_sends_the_whole_set_in_parts() {
    let database = Postgres::start();
    let primary = RedisServer::start_with(primary_options(&database));
    let replica = start_replica_of(&primary, flushing_to(&database));
    let mut con = primary.connection();
    add(&mut con, CAMPAIGN, &members("m-", 0..5_000));
    flush(&mut con);
    write_around(&database, CAMPAIGN, &members("new-", 0..5));
    let lock = TableLock::take(&database);
    let mut rebuild_con = primary.connection();
    let rebuild = std::thread::spawn(move || {
        redis::cmd("CAMPAIGN.REBUILD")
            .arg(CAMPAIGN)
            .query::<i64>(&mut rebuild_con)
    });
    wait_rebuilding(&mut con, "1");
    assert_eq!(int(&mut con, &["DEL", CAMPAIGN]), 1);
    drop(lock);
    assert_eq!(rebuild.join().unwrap().unwrap(), 5_005);
    wait_replicated(&mut con, 1);
    assert!(aof_holds(&primary, b"SHADOW") && !aof_holds(&primary, b"REPLACE"));
    let expected = rows_of(&database, CAMPAIGN);
    assert_all_hold(&[&primary, &replica], CAMPAIGN, Some(&expected));
}

/// Nobody listened when the load started; a replica attached during it
/// (and got the old set by full sync): it gets the new one.
#[test]
fn a_replica_attached_during_a_load_gets_the_new_set() {
    let database = Postgres::start();
    let primary = RedisServer::start_with(flushing_to(&database));
    let mut con = primary.connection();
    add(&mut con, CAMPAIGN, &members("m-", 0..1_000));
    flush(&mut con);
    write_around(&database, CAMPAIGN, &members("new-", 0..20_000));
    let lock = TableLock::take(&database);
    let mut rebuild_con = primary.connection();
    let rebuild = std::thread::spawn(move || {
        redis::cmd("CAMPAIGN.REBUILD")
            .arg(CAMPAIGN)
            .query::<i64>(&mut rebuild_con)
    });
    wait_rebuilding(&mut con, "1");
    let replica = start_replica_of(&primary, flushing_to(&database));
    drop(lock);
    assert_eq!(rebuild.join().unwrap().unwrap(), 21_000);
    wait_replicated(&mut con, 1);
    let expected = rows_of(&database, CAMPAIGN);
    assert_all_hold(&[&primary, &replica], CAMPAIGN, Some(&expected));
}
