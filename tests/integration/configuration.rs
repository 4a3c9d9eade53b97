//! Every SPEC setting is a module configuration: redis.conf, arguments after
//! the module path, MODULE LOAD / LOADEX, CONFIG GET / SET, with validation.

use std::collections::HashMap;

use redis::Connection;

use crate::harness::campaign::{flush, flushing_to, status};
use crate::harness::redis_server::{call, error, int, module_path};
use crate::harness::{Postgres, RedisOptions, RedisServer};

const DEFAULTS: [(&str, &str); 14] = [
    ("campaign.database-url", ""),
    ("campaign.table", "campaign_members"),
    ("campaign.flush-interval-ms", "100"),
    ("campaign.flush-batch-size", "10000"),
    ("campaign.max-pending", "10000000"),
    ("campaign.read-through", "yes"),
    ("campaign.negative-ttl-ms", "5000"),
    ("campaign.prefill", "no"),
    ("campaign.verify-interval-s", "0"),
    ("campaign.write-block-timeout-ms", "30000"),
    ("campaign.max-member-bytes", "256"),
    ("campaign.db-timeout-ms", "10000"),
    ("campaign.removed-retention-s", "604800"),
    ("campaign.max-connections", "6"),
];

fn settings(con: &mut Connection) -> HashMap<String, String> {
    redis::cmd("CONFIG")
        .arg("GET")
        .arg("campaign.*")
        .query(con)
        .unwrap()
}

fn get(con: &mut Connection, name: &str) -> String {
    settings(con)
        .remove(&format!("campaign.{name}"))
        .unwrap_or_else(|| panic!("no campaign.{name}"))
}

fn set(con: &mut Connection, name: &str, value: &str) -> Result<(), String> {
    let name = format!("campaign.{name}");
    call(con, &[b"CONFIG", b"SET", name.as_bytes(), value.as_bytes()]).map(|_| ())
}

#[test]
fn every_setting_has_its_default() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let expected: HashMap<String, String> = DEFAULTS
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    assert_eq!(settings(&mut con), expected);
}

#[test]
fn config_set_accepts_valid_values_and_refuses_the_rest() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let valid = [
        (
            "database-url",
            "host=127.0.0.1 port=5999 user=app dbname=campaigns",
        ),
        ("database-url", "postgresql://app@localhost:5432/campaigns"),
        ("table", "marketing.members"),
        ("flush-interval-ms", "250"),
        ("flush-batch-size", "500"),
        ("max-pending", "1000"),
        ("read-through", "no"),
        ("negative-ttl-ms", "0"),
        ("prefill", "yes"),
        ("verify-interval-s", "60"),
        ("write-block-timeout-ms", "1000"),
        ("max-member-bytes", "64"),
        ("db-timeout-ms", "2500"),
        ("max-connections", "2"),
    ];
    for (name, value) in valid {
        set(&mut con, name, value).unwrap_or_else(|e| panic!("{name} {value}: {e}"));
        assert_eq!(get(&mut con, name), value);
    }

    let invalid = [
        (
            "table",
            "members; DROP TABLE users",
            "must be an identifier",
        ),
        ("table", "a.b.c", "must be an identifier"),
        (
            "database-url",
            "host=x bogus=1",
            "not a valid libpq connection string",
        ),
        ("flush-interval-ms", "0", "between"),
        ("flush-batch-size", "-5", "between"),
        ("max-member-bytes", "100000", "between"),
        ("max-member-bytes", "ten", ""),
        ("read-through", "maybe", ""),
        ("db-timeout-ms", "10", "between"),
    ];
    for (name, value, hint) in invalid {
        let before = get(&mut con, name);
        let text = set(&mut con, name, value).expect_err(value);
        assert!(text.contains(hint), "{name} {value}: {text}");
        assert_eq!(
            get(&mut con, name),
            before,
            "{name} changed by a refused value"
        );
    }
}

#[test]
fn database_password_stays_out_of_errors_and_the_log() {
    let server = RedisServer::start();
    let mut con = server.connection();
    let text = set(
        &mut con,
        "database-url",
        "postgresql://app:Sup3rS3cret@db:notaport/x",
    )
    .expect_err("invalid port");
    assert!(!text.contains("Sup3rS3cret"), "{text}");
    set(
        &mut con,
        "database-url",
        "postgresql://app:Sup3rS3cret@db:5432/x",
    )
    .unwrap();
    assert!(!server.log().contains("Sup3rS3cret"), "{}", server.log());
}

#[test]
fn module_arguments_and_redis_conf_lines_set_values() {
    let server = RedisServer::start_with(
        RedisOptions::default()
            .module_args(&[
                "max-member-bytes",
                "12",
                "table",
                "app.members",
                "read-through",
                "no",
            ])
            .config("campaign.flush-batch-size 777"),
    );
    let mut con = server.connection();
    assert_eq!(get(&mut con, "max-member-bytes"), "12");
    assert_eq!(get(&mut con, "table"), "app.members");
    assert_eq!(get(&mut con, "read-through"), "no");
    assert_eq!(get(&mut con, "flush-batch-size"), "777");
}

#[test]
fn loads_with_dash_dash_loadmodule() {
    let server = RedisServer::start_with(
        RedisOptions::default()
            .module_on_command_line()
            .module_args(&["max-member-bytes", "33"]),
    );
    let mut con = server.connection();
    assert_eq!(get(&mut con, "max-member-bytes"), "33");
    assert_eq!(
        crate::harness::redis_server::int(&mut con, &["CAMPAIGN.ADD", "c", "m"]),
        1
    );
}

#[test]
fn loads_with_module_load_and_loadex() {
    let path = module_path().display().to_string();

    let server = RedisServer::start_with(RedisOptions::default().without_module());
    let mut con = server.connection();
    call(
        &mut con,
        &[
            b"MODULE",
            b"LOAD",
            path.as_bytes(),
            b"max-member-bytes",
            b"21",
        ],
    )
    .unwrap();
    assert_eq!(get(&mut con, "max-member-bytes"), "21");

    let server = RedisServer::start_with(RedisOptions::default().without_module());
    let mut con = server.connection();
    call(
        &mut con,
        &[
            b"MODULE",
            b"LOADEX",
            path.as_bytes(),
            b"CONFIG",
            b"campaign.max-member-bytes",
            b"22",
            b"CONFIG",
            b"campaign.table",
            b"loadex_members",
        ],
    )
    .unwrap();
    assert_eq!(get(&mut con, "max-member-bytes"), "22");
    assert_eq!(get(&mut con, "table"), "loadex_members");
    let modules = call(&mut con, &[b"MODULE", b"LIST"]).unwrap();
    assert!(format!("{modules:?}").contains("campaign"), "{modules:?}");
}

#[test]
fn bad_settings_at_load_refuse_to_load() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["max-members-bytes", "10"],
            "unknown module argument 'max-members-bytes'",
        ),
        (&["prefill", "maybe"], "prefill must be yes or no"),
        (&["table", "no way"], "campaign.table must be an identifier"),
        (&["max-member-bytes", "0"], "max-member-bytes"),
    ];
    for (args, expected_log) in cases {
        let log = match RedisServer::try_start(RedisOptions::default().module_args(args)) {
            Ok(_) => panic!("{args:?} loaded"),
            Err(log) => log,
        };
        assert!(log.contains(expected_log), "{args:?}:\n{log}");
    }

    let server = RedisServer::start_with(RedisOptions::default().without_module());
    let mut con = server.connection();
    let path = module_path().display().to_string();
    let text = call(
        &mut con,
        &[b"MODULE", b"LOAD", path.as_bytes(), b"prefill", b"maybe"],
    )
    .unwrap_err();
    assert!(text.starts_with("ERR"), "{text}");
    assert!(error(&mut con, &["CAMPAIGN.CARD", "x"]).contains("unknown command"));
}

/// Table names are quoted in SQL (reserved words work) and schemas whose
/// tables do not persist are refused.
#[test]
fn table_names_are_quoted_and_temporary_schemas_refused() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    for bad in ["pg_temp.x", "PG_TEMP_3.x", "pg_catalog.members"] {
        let refused = call(
            &mut con,
            &[b"CONFIG", b"SET", b"campaign.table", bad.as_bytes()],
        );
        assert!(refused.is_err(), "{bad}");
    }
    for (table, campaign) in [("user", "in-user"), ("select", "in-select")] {
        call(
            &mut con,
            &[b"CONFIG", b"SET", b"campaign.table", table.as_bytes()],
        )
        .unwrap();
        int(&mut con, &["CAMPAIGN.ADD", campaign, "m"]);
        flush(&mut con);
        assert_eq!(status(&mut con)["flush-errors"], "0", "{table}");
        let rows = database
            .client()
            .query(&format!("SELECT member FROM \"{table}\""), &[])
            .unwrap();
        assert_eq!(rows.len(), 1, "{table}");
    }
}
