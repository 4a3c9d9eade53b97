//! CAMPAIGN.ADD / REM / HAS / MHAS / CARD as SPEC section 2 describes them.

use std::time::Duration;

use redis::Value;

use crate::harness::redis_server::{call, int};
use crate::harness::RedisServer;

fn mhas(con: &mut redis::Connection, args: &[&str]) -> Vec<i64> {
    let mut command = redis::cmd("CAMPAIGN.MHAS");
    command.arg(args);
    command.query(con).expect("MHAS")
}

#[test]
fn add_has_card_rem() {
    let server = RedisServer::start();
    let mut con = server.connection();

    assert_eq!(
        int(&mut con, &["CAMPAIGN.ADD", "spring", "u1", "u2", "u3"]),
        3
    );
    assert_eq!(
        int(&mut con, &["CAMPAIGN.ADD", "spring", "u3", "u4", "u4"]),
        1,
        "only u4 is new"
    );
    assert_eq!(
        int(&mut con, &["CAMPAIGN.ADD", "spring", "u1"]),
        0,
        "repeating is a no-op"
    );
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "spring"]), 4);

    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "spring", "u2"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "spring", "u9"]), 0);
    assert_eq!(
        mhas(&mut con, &["spring", "u9", "u1", "u4", "x"]),
        vec![0, 1, 1, 0]
    );

    assert_eq!(
        int(&mut con, &["CAMPAIGN.REM", "spring", "u1", "u9", "u1"]),
        1
    );
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "spring", "u1"]), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "spring"]), 3);

    let kind: String = redis::cmd("TYPE").arg("spring").query(&mut con).unwrap();
    assert_eq!(kind, "campaigns");
}

#[test]
fn missing_campaign_reads_as_empty_and_is_not_created() {
    let server = RedisServer::start();
    let mut con = server.connection();
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "nope", "u1"]), 0);
    assert_eq!(mhas(&mut con, &["nope", "a", "b"]), vec![0, 0]);
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "nope"]), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.REM", "nope", "u1"]), 0);
    assert_eq!(int(&mut con, &["EXISTS", "nope"]), 0);
}

#[test]
fn removing_the_last_member_deletes_the_key() {
    let server = RedisServer::start();
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "short", "a", "b"]);
    assert_eq!(int(&mut con, &["CAMPAIGN.REM", "short", "a", "b"]), 2);
    assert_eq!(int(&mut con, &["EXISTS", "short"]), 0);
    // And it can be created again.
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "short", "c"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "short"]), 1);
}

#[test]
fn members_are_exact_utf8_strings() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let members = [
        "zoë",
        "🚀 rocket",
        "Robert'); DROP TABLE campaign_members;--",
        "with \"quotes\" and\ttab",
        "007",
        "7",
        "UPPER",
        "upper",
    ];
    let mut args = vec!["CAMPAIGN.ADD", "mixed"];
    args.extend(members);
    assert_eq!(int(&mut con, &args), members.len() as i64);
    for member in members {
        assert_eq!(
            int(&mut con, &["CAMPAIGN.HAS", "mixed", member]),
            1,
            "{member}"
        );
    }
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "mixed", "Upper"]), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "mixed", "07"]), 0);
}

#[test]
fn writes_emit_keyspace_events() {
    let server = RedisServer::start();
    let mut con = server.connection();
    redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "KEA"])
        .query::<()>(&mut con)
        .unwrap();

    let mut listener = server.connection();
    listener
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut pubsub = listener.as_pubsub();
    pubsub.psubscribe("__keyevent@0__:*").unwrap();

    int(&mut con, &["CAMPAIGN.ADD", "evented", "a"]);
    int(&mut con, &["CAMPAIGN.ADD", "evented", "a"]); // no change: no event
    int(&mut con, &["CAMPAIGN.REM", "evented", "a"]);

    let mut events = Vec::new();
    for _ in 0..3 {
        let message = pubsub.get_message().expect("keyspace event");
        let key: String = message.get_payload().unwrap();
        assert_eq!(key, "evented");
        events.push(message.get_channel_name().to_string());
    }
    assert_eq!(
        events,
        [
            "__keyevent@0__:campaign.add",
            "__keyevent@0__:campaign.rem",
            "__keyevent@0__:del"
        ]
    );
}

fn flatten(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(flatten).collect(),
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(key, value)| flatten(key).into_iter().chain(flatten(value)))
            .collect(),
        Value::BulkString(bytes) => vec![String::from_utf8_lossy(bytes).into_owned()],
        Value::SimpleString(text) => vec![text.clone()],
        Value::Int(number) => vec![number.to_string()],
        Value::Okay => vec!["OK".into()],
        _ => vec![],
    }
}

#[test]
fn command_info_declares_flags_keys_and_docs() {
    let server = RedisServer::start();
    let mut con = server.connection();

    let info = call(
        &mut con,
        &[b"COMMAND", b"INFO", b"campaign.has", b"campaign.add"],
    )
    .unwrap();
    let Value::Array(entries) = info else {
        panic!("COMMAND INFO answered {info:?}")
    };
    let has = flatten(&entries[0]);
    assert_eq!(&has[..2], ["campaign.has", "3"]);
    assert!(has.contains(&"readonly".to_string()) && has.contains(&"fast".to_string()));
    let add = flatten(&entries[1]);
    assert_eq!(&add[..2], ["campaign.add", "-3"]);
    assert!(add.contains(&"write".to_string()) && add.contains(&"denyoom".to_string()));
    assert!(
        add.contains(&"insert".to_string()),
        "key spec flags: {add:?}"
    );

    for (command, args) in [
        ("campaign.add", vec!["key1", "m1", "m2"]),
        ("campaign.rem", vec!["key1", "m1"]),
        ("campaign.has", vec!["key1", "m1"]),
        ("campaign.mhas", vec!["key1", "m1", "m2"]),
        ("campaign.card", vec!["key1"]),
    ] {
        let keys: Vec<String> = redis::cmd("COMMAND")
            .arg("GETKEYS")
            .arg(command)
            .arg(&args)
            .query(&mut con)
            .unwrap();
        assert_eq!(keys, ["key1"], "{command}");
    }

    let docs = flatten(&call(&mut con, &[b"COMMAND", b"DOCS", b"campaign.mhas"]).unwrap());
    assert!(docs.contains(&"summary".to_string()), "{docs:?}");
    assert!(
        docs.contains(&"multiple".to_string()),
        "member repeats: {docs:?}"
    );
}
