//! RDB files written by earlier encodings of the campaign type still load.

use std::fs;

use crate::harness::redis_server::int;
use crate::harness::{RedisOptions, RedisServer};

/// Written by encoding version 1 (a count, then each member as a string),
/// with 29 journal entries pending and no database configured.
const V1_RDB: &[u8] = include_bytes!("../fixtures/campaigns-encoding-v1.rdb");

#[test]
fn an_rdb_of_encoding_version_1_still_loads() {
    let mut server = RedisServer::start_with(RedisOptions::default().config("dbfilename v1.rdb"));
    server.kill();
    fs::write(server.dir().join("v1.rdb"), V1_RDB).unwrap();
    server.restart();
    let mut con = server.connection();

    let expected: [(&str, &[&str]); 3] = [
        (
            "numeric",
            &[
                "7",
                "007",
                "0",
                "18446744073709551615",
                "18446744073709551616",
                "-1",
                "42",
            ],
        ),
        (
            "uuids",
            &[
                "123e4567-e89b-12d3-a456-426614174000",
                "123E4567-E89B-12D3-A456-426614174000",
                "00000000-0000-0000-0000-000000000000",
            ],
        ),
        ("strings", &["zoë", "user:1", "with space", "🚀"]),
    ];
    for (campaign, members) in expected {
        assert_eq!(
            int(&mut con, &["CAMPAIGN.CARD", campaign]),
            members.len() as i64,
            "{campaign}"
        );
        for member in members {
            assert_eq!(
                int(&mut con, &["CAMPAIGN.HAS", campaign, member]),
                1,
                "{campaign} {member}"
            );
        }
    }
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "mixed"]), 15);
    assert_eq!(
        int(
            &mut con,
            &[
                "CAMPAIGN.HAS",
                "mixed",
                "00000003-0000-4000-8000-000000000003"
            ]
        ),
        1
    );
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "numeric", "8"]), 0);
    let status = crate::harness::campaign::status(&mut con);
    assert_eq!(status["pending"], "29", "the journal came with the file");
}

/// Members of every kind: prefixed ids under more prefixes than one
/// campaign's table holds (16), their non-canonical look-alikes, plain ids,
/// UUIDs and strings.
fn prefixed_mix() -> Vec<String> {
    let mut members: Vec<String> = (0..3_000).map(|i| format!("user:{}", i * 7_919)).collect();
    members.extend((0..500).map(|i| format!("cust-{i}")));
    members.extend((0..20).flat_map(|p| (0..5).map(move |i| format!("p{p}/{}", i * 1_000_003))));
    members.extend(
        [
            "user:042",
            "user:0",
            "user:",
            "user42",
            "User:42",
            "acct_18446744073709551615",
            "acct_18446744073709551616",
            "-1",
            "42",
            "007",
            "123e4567-e89b-12d3-a456-426614174000",
            "123E4567-E89B-12D3-A456-426614174000",
            "zoë:7",
            "with space:7",
        ]
        .map(str::to_owned),
    );
    members
}

/// Look-alikes of members of `prefixed_mix` that are not in it.
const ABSENT: [&str; 7] = [
    "user:0042",
    "user:7",
    "user:07919",
    "cust-500",
    "User:0",
    "p0/1",
    "acct_0",
];

fn assert_prefixed_mix(con: &mut redis::Connection, campaign: &str, members: &[String]) {
    crate::harness::campaign::assert_cache_holds(con, campaign, members);
    for absent in ABSENT {
        assert_eq!(
            int(con, &["CAMPAIGN.HAS", campaign, absent]),
            0,
            "{campaign} {absent}"
        );
    }
}

#[test]
fn prefixed_ids_survive_reload_dump_replication_and_aof_rewrite() {
    use crate::harness::campaign::{add, start_replica_of, wait_for_aof_rewrite, wait_for_replica};
    use crate::harness::redis_server::call;

    let mut primary = RedisServer::start_with(
        RedisOptions::default()
            .config("appendonly yes")
            .config("appendfsync always")
            .config("aof-use-rdb-preamble no"),
    );
    let mut con = primary.connection();
    let mut members = prefixed_mix();
    add(&mut con, "mixed", &members);
    assert_prefixed_mix(&mut con, "mixed", &members);

    call(&mut con, &[b"DEBUG", b"RELOAD"]).unwrap();
    assert_prefixed_mix(&mut con, "mixed", &members);

    let payload: Vec<u8> = redis::cmd("DUMP").arg("mixed").query(&mut con).unwrap();
    let other = RedisServer::start();
    let mut other_con = other.connection();
    call(&mut other_con, &[b"RESTORE", b"mixed", b"0", &payload]).unwrap();
    assert_prefixed_mix(&mut other_con, "mixed", &members);

    let replica = start_replica_of(&primary, RedisOptions::default());
    let mut replica_con = replica.connection();
    int(&mut con, &["CAMPAIGN.ADD", "mixed", "user:1", "user:01"]);
    int(&mut con, &["CAMPAIGN.REM", "mixed", "user:0", "cust-3"]);
    members.retain(|m| m != "user:0" && m != "cust-3");
    members.extend(["user:1".to_owned(), "user:01".to_owned()]);
    wait_for_replica(&mut con);
    assert_prefixed_mix(&mut replica_con, "mixed", &members);

    call(&mut con, &[b"BGREWRITEAOF"]).unwrap();
    wait_for_aof_rewrite(&mut con);
    let base_file = fs::read_dir(primary.dir().join("appendonlydir"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().contains(".base."))
        .expect("a base AOF file");
    let base = fs::read(base_file.path()).unwrap();
    for exact in [
        &b"$9\r\nuser:7919\r\n"[..],
        b"$8\r\nuser:042\r\n",
        b"$7\r\nuser:01\r\n",
    ] {
        assert!(
            base.windows(exact.len()).any(|w| w == exact),
            "{:?} in the rewritten AOF",
            String::from_utf8_lossy(exact)
        );
    }
    int(&mut con, &["CAMPAIGN.ADD", "mixed", "user:2"]);
    members.push("user:2".to_owned());
    primary.kill();
    primary.restart();
    let mut con = primary.connection();
    assert_prefixed_mix(&mut con, "mixed", &members);
}

/// Written by encoding version 3 (afba095): `user:<id>` members were
/// strings then; they load (into the prefixed container) and answer alike.
const V3_RDB: &[u8] = include_bytes!("../fixtures/campaigns-encoding-v3.rdb");

#[test]
fn an_rdb_of_encoding_version_3_still_loads() {
    let mut server = RedisServer::start_with(RedisOptions::default().config("dbfilename v3.rdb"));
    server.kill();
    fs::write(server.dir().join("v3.rdb"), V3_RDB).unwrap();
    server.restart();
    let mut con = server.connection();
    assert_prefixed_mix(&mut con, "mixed", &prefixed_mix());
    // 5,000 `user:<id>` strings took over 20 bytes each; now a few.
    let users: Vec<String> = (0..5_000).map(|i| format!("user:{}", i * 4_999)).collect();
    crate::harness::campaign::assert_cache_holds(&mut con, "users", &users);
    let usage = int(&mut con, &["MEMORY", "USAGE", "users"]);
    assert!(usage < 10 * 5_000, "{usage} bytes for 5,000 user:<id>");
}
