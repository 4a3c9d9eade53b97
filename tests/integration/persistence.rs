//! Campaigns live through RDB, AOF rewrite and restarts, and behave as keys:
//! COPY, RENAME, DUMP/RESTORE, MOVE, EXPIRE, DEL.

use std::fs;
use std::time::Duration;

use redis::Connection;

use crate::harness::campaign::{add, assert_cache_holds, info_field, wait_for_aof_rewrite};
use crate::harness::redis_server::{call, error, int};
use crate::harness::{wait_until, RedisOptions, RedisServer};

/// Members that exercise more than one AOF chunk and non-ASCII text.
fn sample_members(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match i % 3 {
            0 => i.to_string(),
            1 => format!("user-{i}-zoë"),
            _ => format!("{i:032x}"),
        })
        .collect()
}

#[test]
fn debug_reload_keeps_every_member() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let big = sample_members(5_000);
    let small = sample_members(3);
    add(&mut con, "big", &big);
    add(&mut con, "small", &small);

    call(&mut con, &[b"DEBUG", b"RELOAD"]).unwrap();

    assert_cache_holds(&mut con, "big", &big);
    assert_cache_holds(&mut con, "small", &small);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "big", "absent"]), 0);
}

/// With `aof-use-rdb-preamble no` the rewrite goes through `aof_rewrite`;
/// with the preamble (the default) through `rdb_save`. Both must restore.
#[test]
fn aof_rewrite_then_restart_restores_campaigns() {
    for preamble in ["no", "yes"] {
        let mut server = RedisServer::start_with(
            RedisOptions::default()
                .config("appendonly yes")
                // The kill below must not lose the last writes.
                .config("appendfsync always")
                .config(&format!("aof-use-rdb-preamble {preamble}")),
        );
        let mut con = server.connection();
        let members = sample_members(1_500);
        add(&mut con, "rewritten", &members);
        int(&mut con, &["CAMPAIGN.ADD", "tiny", "only"]);

        call(&mut con, &[b"BGREWRITEAOF"]).unwrap();
        wait_for_aof_rewrite(&mut con);

        let base_file = fs::read_dir(server.dir().join("appendonlydir"))
            .unwrap()
            .filter_map(Result::ok)
            .find(|entry| entry.file_name().to_string_lossy().contains(".base."))
            .expect("a base AOF file");
        let base = fs::read(base_file.path()).unwrap();
        let has_commands = base.windows(13).any(|w| w == b"CAMPAIGN.SYNC");
        assert_eq!(has_commands, preamble == "no", "preamble {preamble}");

        // Written after the rewrite: lands in the incremental AOF.
        int(&mut con, &["CAMPAIGN.ADD", "tiny", "later"]);
        server.kill();
        server.restart();
        let mut con = server.connection();
        assert_cache_holds(&mut con, "rewritten", &members);
        assert_cache_holds(&mut con, "tiny", ["only", "later"]);
    }
}

#[test]
fn copy_rename_move_and_expire_work_like_any_key() {
    let server = RedisServer::start();
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "source", "a", "b"]);

    assert_eq!(int(&mut con, &["COPY", "source", "copied"]), 1);
    int(&mut con, &["CAMPAIGN.ADD", "copied", "c"]);
    assert_eq!(
        int(&mut con, &["CAMPAIGN.CARD", "source"]),
        2,
        "a copy is independent"
    );
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "copied"]), 3);

    call(&mut con, &[b"RENAME", b"copied", b"renamed"]).unwrap();
    assert_eq!(int(&mut con, &["EXISTS", "copied"]), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "renamed", "c"]), 1);

    // Campaigns live in database 0: moved away, the key is kept there but
    // campaign commands are refused; moved back, it answers again.
    assert_eq!(int(&mut con, &["MOVE", "renamed", "1"]), 1);
    call(&mut con, &[b"SELECT", b"1"]).unwrap();
    let refused = error(&mut con, &["CAMPAIGN.CARD", "renamed"]);
    assert!(refused.contains("database 0 only"), "{refused}");
    assert_eq!(int(&mut con, &["MOVE", "renamed", "0"]), 1);
    call(&mut con, &[b"SELECT", b"0"]).unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "renamed"]), 3);

    assert_eq!(int(&mut con, &["PEXPIRE", "source", "50"]), 1);
    assert!(wait_until(Duration::from_secs(5), || int(
        &mut con,
        &["EXISTS", "source"]
    ) == 0));
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "source"]), 0);
}

#[test]
fn dump_and_restore_round_trip() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let members = sample_members(700);
    add(&mut con, "original", &members);

    let payload: Vec<u8> = redis::cmd("DUMP").arg("original").query(&mut con).unwrap();
    call(&mut con, &[b"RESTORE", b"restored", b"0", &payload]).unwrap();
    assert_cache_holds(&mut con, "restored", &members);

    // Into another server too, as MIGRATE does.
    let other = RedisServer::start();
    let mut other_con = other.connection();
    call(&mut other_con, &[b"RESTORE", b"original", b"0", &payload]).unwrap();
    assert_cache_holds(&mut other_con, "original", &members);

    let mut corrupt = payload.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    let text = call(&mut con, &[b"RESTORE", b"broken", b"0", &corrupt]).unwrap_err();
    assert!(text.contains("checksum"), "{text}");
    assert_eq!(
        int(&mut con, &["DBSIZE"]),
        2,
        "nothing was created by the refused RESTORE"
    );
}

#[test]
fn memory_usage_grows_with_members() {
    let server = RedisServer::start();
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "small", "a"]);
    add(&mut con, "large", &sample_members(10_000));
    let small = int(&mut con, &["MEMORY", "USAGE", "small"]);
    let large = int(&mut con, &["MEMORY", "USAGE", "large"]);
    assert!(
        small > 0 && large > small * 100,
        "small {small}, large {large}"
    );
}

/// A large set is freed off the main thread; its memory comes back. (Its
/// journal entries stay: no database is configured here.)
#[test]
fn deleting_a_large_campaign_returns_its_memory() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let used_memory =
        |con: &mut Connection| -> i64 { info_field(con, "memory", "used_memory").parse().unwrap() };
    add(&mut con, "huge", &sample_members(200_000));
    let set_size = int(&mut con, &["MEMORY", "USAGE", "huge"]);
    assert!(set_size > 2_000_000, "200k members take memory: {set_size}");
    let loaded = used_memory(&mut con);

    assert_eq!(int(&mut con, &["DEL", "huge"]), 1);
    assert_eq!(int(&mut con, &["EXISTS", "huge"]), 0);
    let returned = wait_until(Duration::from_secs(10), || {
        used_memory(&mut con) < loaded - set_size * 8 / 10
    });
    assert!(
        returned,
        "memory still held: {} of {loaded}",
        used_memory(&mut con)
    );
    let status = crate::harness::redis_server::call(&mut con, &[b"CAMPAIGN.STATUS"]).unwrap();
    assert!(
        format!("{status:?}").contains("background-frees"),
        "{status:?}"
    );

    add(&mut con, "again", &sample_members(50_000));
    call(&mut con, &[b"FLUSHALL"]).unwrap();
    assert_eq!(int(&mut con, &["DBSIZE"]), 0);
}
