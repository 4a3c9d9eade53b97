//! Bad input gets a clear error and changes nothing; a panic never reaches
//! Redis.

use crate::harness::redis_server::{call, error, int};
use crate::harness::{RedisOptions, RedisServer};

#[test]
fn wrong_arity_is_refused() {
    let server = RedisServer::start();
    let mut con = server.connection();
    for args in [
        &["CAMPAIGN.ADD", "c"][..],
        &["CAMPAIGN.ADD"],
        &["CAMPAIGN.REM", "c"],
        &["CAMPAIGN.HAS", "c"],
        &["CAMPAIGN.HAS", "c", "a", "b"],
        &["CAMPAIGN.MHAS", "c"],
        &["CAMPAIGN.CARD"],
        &["CAMPAIGN.CARD", "c", "d"],
    ] {
        let text = error(&mut con, args);
        assert!(
            text.starts_with("ERR wrong number of arguments"),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn other_key_types_get_wrongtype() {
    let server = RedisServer::start();
    let mut con = server.connection();
    int(&mut con, &["SADD", "native", "a"]);
    for args in [
        &["CAMPAIGN.ADD", "native", "a"][..],
        &["CAMPAIGN.REM", "native", "a"],
        &["CAMPAIGN.HAS", "native", "a"],
        &["CAMPAIGN.MHAS", "native", "a"],
        &["CAMPAIGN.CARD", "native"],
    ] {
        let text = error(&mut con, args);
        assert!(text.starts_with("WRONGTYPE "), "{args:?}: {text}");
    }
    assert_eq!(
        int(&mut con, &["SCARD", "native"]),
        1,
        "the set is untouched"
    );
}

#[test]
fn one_bad_member_refuses_the_whole_call() {
    let server =
        RedisServer::start_with(RedisOptions::default().module_args(&["max-member-bytes", "8"]));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "keep"]);

    let bad_members: [(&[u8], &str); 4] = [
        (b"", "is empty"),
        (b"nul\0byte", "contains a NUL byte"),
        (b"\xff\xfe", "is not valid UTF-8"),
        (b"123456789", "is 9 bytes long, more than the limit of 8"),
    ];
    for (bad, reason) in bad_members {
        for command in [&b"CAMPAIGN.ADD"[..], b"CAMPAIGN.REM", b"CAMPAIGN.MHAS"] {
            let text = call(&mut con, &[command, b"c", b"fresh", b"keep", bad]).unwrap_err();
            assert_eq!(
                text,
                format!("ERR invalid member at argument 4: the member {reason}"),
                "{}",
                String::from_utf8_lossy(command)
            );
        }
        let text = call(&mut con, &[b"CAMPAIGN.HAS", b"c", bad]).unwrap_err();
        assert!(
            text.starts_with("ERR invalid member at argument 2"),
            "{text}"
        );
        // A brand-new campaign is not created either.
        call(&mut con, &[b"CAMPAIGN.ADD", b"new-campaign", b"ok", bad]).unwrap_err();
    }
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "c"]), 1);
    assert_eq!(
        int(&mut con, &["CAMPAIGN.HAS", "c", "keep"]),
        1,
        "REM removed nothing"
    );
    assert_eq!(
        int(&mut con, &["CAMPAIGN.HAS", "c", "fresh"]),
        0,
        "ADD added nothing"
    );
    assert_eq!(int(&mut con, &["EXISTS", "new-campaign"]), 0);
    // Exactly at the limit is fine.
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "c", "12345678"]), 1);
}

#[test]
fn campaign_names_must_be_storable_text() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let text = call(&mut con, &[b"CAMPAIGN.ADD", b"bad\xffname", b"m"]).unwrap_err();
    assert_eq!(
        text,
        "ERR invalid campaign name: the name is not valid UTF-8"
    );
    let long_name = "n".repeat(513);
    let text = error(&mut con, &["CAMPAIGN.ADD", &long_name, "m"]);
    assert!(
        text.starts_with("ERR invalid campaign name: the name is 513 bytes long"),
        "{text}"
    );
    assert_eq!(int(&mut con, &["DBSIZE"]), 0);
}

#[test]
fn a_panic_becomes_an_error_reply_and_a_log_line() {
    let server = RedisServer::start();
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "a"]);

    let text = error(&mut con, &["CAMPAIGN.DEBUG", "PANIC"]);
    assert_eq!(
        text,
        "ERR internal error in CAMPAIGN.DEBUG: CAMPAIGN.DEBUG PANIC was called (see the Redis log)"
    );
    // The server is alive and its data intact.
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "c", "a"]), 1);
    assert!(
        server.log().contains("campaign: panic") && server.log().contains("PANIC was called"),
        "log:\n{}",
        server.log()
    );
}

#[test]
fn debug_command_needs_enable_debug_command() {
    let server = RedisServer::start_with(RedisOptions::default().config("enable-debug-command no"));
    let mut con = server.connection();
    // Not registered at all: not even a script or an ACL slip reaches it.
    let text = error(&mut con, &["CAMPAIGN.DEBUG", "PANIC"]);
    assert!(text.starts_with("ERR unknown command"), "{text}");
    let script = "return redis.call('CAMPAIGN.DEBUG', 'PANIC')";
    let text = error(&mut con, &["EVAL", script, "0"]);
    assert!(
        text.contains("nknown") || text.contains("not exist"),
        "{text}"
    );
    let text = error(
        &mut RedisServer::start().connection(),
        &["CAMPAIGN.DEBUG", "NOPE"],
    );
    assert!(
        text.starts_with("ERR unknown CAMPAIGN.DEBUG subcommand"),
        "{text}"
    );
}
