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
