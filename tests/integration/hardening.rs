//! Drills of the hardening issue: a cache that is never partial, inputs
//! that cannot wedge a load, keys the reconciler cannot repair.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::campaign::{
    flush, flushing_to, hung_database_url, pending, rows_of, status, use_database, write_around,
};
use crate::harness::redis_server::{call, error, int};
use crate::harness::{wait_until, Postgres, RedisServer};

fn set_of(members: &[&str]) -> BTreeSet<String> {
    members.iter().map(|m| m.to_string()).collect()
}

/// A campaign key that disappeared (DEL, expiry) is loaded again by the
/// next write before it applies: the removal reaches the database and the
/// cache is whole.
#[test]
fn a_write_to_a_vanished_campaign_loads_it_first() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    for (campaign, vanish) in [("deleted", "DEL"), ("expired", "PEXPIRE")] {
        int(&mut con, &["CAMPAIGN.ADD", campaign, "a", "b"]);
        flush(&mut con);
        if vanish == "DEL" {
            int(&mut con, &["DEL", campaign]);
        } else {
            int(&mut con, &["PEXPIRE", campaign, "1"]);
            assert!(wait_until(Duration::from_secs(10), || int(
                &mut con,
                &["EXISTS", campaign]
            ) == 0));
        }
        assert_eq!(
            int(&mut con, &["CAMPAIGN.ADD", campaign, "x"]),
            1,
            "{campaign}"
        );
        assert_eq!(
            int(&mut con, &["CAMPAIGN.REM", campaign, "b"]),
            1,
            "{campaign}"
        );
        assert_eq!(
            int(&mut con, &["CAMPAIGN.HAS", campaign, "a"]),
            1,
            "{campaign}"
        );
        assert_eq!(int(&mut con, &["CAMPAIGN.CARD", campaign]), 2, "{campaign}");
        flush(&mut con);
        assert_eq!(
            rows_of(&database, campaign),
            set_of(&["a", "x"]),
            "{campaign}"
        );
    }
}

/// A campaign the database does not know is created by the write.
#[test]
fn a_write_to_a_campaign_the_database_does_not_know_creates_it() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "brand-new", "x", "y"]), 2);
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "brand-new", "z"]), 1);
    flush(&mut con);
    assert_eq!(rows_of(&database, "brand-new"), set_of(&["x", "y", "z"]));
}

/// Inside MULTI a write to a missing campaign cannot wait for its load:
/// it is accepted into an incomplete campaign at once, journaled, and the
/// campaign is completed from the database in the background.
#[test]
fn a_write_to_a_missing_campaign_inside_multi_is_accepted_and_completed() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "held", "a"]);
    flush(&mut con);
    int(&mut con, &["DEL", "held"]);
    call(&mut con, &[b"MULTI"]).unwrap();
    call(&mut con, &[b"CAMPAIGN.ADD", b"held", b"x"]).unwrap();
    let replies = call(&mut con, &[b"EXEC"]).unwrap();
    assert_eq!(replies, redis::Value::Array(vec![redis::Value::Int(1)]));
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "held", "x"]), 1);
    flush(&mut con);
    assert_eq!(rows_of(&database, "held"), set_of(&["a", "x"]));
    let completed = wait_until(Duration::from_secs(20), || {
        status(&mut con)["incomplete"] == "0"
    });
    assert!(completed, "{:?}", status(&mut con));
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "held"]), 2);
}

/// With the database down, a write to a missing campaign is accepted into
/// an incomplete campaign (a REM too: it always reaches the database); one
/// to a loaded campaign goes on as ever.
#[test]
fn a_write_to_a_missing_campaign_is_accepted_while_the_database_is_down() {
    let mut database = Postgres::start_owned();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "present", "a"]);
    int(&mut con, &["CAMPAIGN.ADD", "absent", "a", "b"]);
    flush(&mut con);
    int(&mut con, &["DEL", "absent"]);
    database.stop();
    assert_eq!(int(&mut con, &["CAMPAIGN.REM", "absent", "a"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "absent", "a"]), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "present", "b"]), 1);
    database.start_again();
    flush(&mut con);
    assert_eq!(rows_of(&database, "absent"), set_of(&["b"]));
    assert_eq!(rows_of(&database, "present"), set_of(&["a", "b"]));
    let completed = wait_until(Duration::from_secs(20), || {
        status(&mut con)["incomplete"] == "0"
    });
    assert!(completed, "{:?}", status(&mut con));
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "absent", "b"]), 1);
}

/// HAS/MHAS of a name the database cannot hold answer at once, without a
/// load (it once left the caller blocked for good).
#[test]
fn reads_of_an_impossible_campaign_name_answer_at_once() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    for _ in 0..20 {
        let has = call(&mut con, &[b"CAMPAIGN.HAS", b"a\x00b", b"m"]).unwrap();
        assert_eq!(has, redis::Value::Int(0));
        let mhas = call(&mut con, &[b"CAMPAIGN.MHAS", b"a\x00b", b"m", b"n"]).unwrap();
        assert_eq!(mhas, redis::Value::Array(vec![redis::Value::Int(0); 2]));
    }
    let figures = status(&mut con);
    assert_eq!(figures["rebuilding"], "0");
    assert_eq!(figures["loads-done"], "0");
}

/// A panic on a load worker answers every waiter with an error and leaves
/// the figures as they were.
#[test]
fn a_panic_in_a_load_releases_its_waiters() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "victim", "a"]);
    flush(&mut con);
    call(&mut con, &[b"CAMPAIGN.DEBUG", b"PANIC-IN-NEXT-LOAD"]).unwrap();
    let text = error(&mut con, &["CAMPAIGN.REBUILD", "victim"]);
    assert!(
        text.starts_with("ERR loading campaign 'victim'") && text.contains("internal error"),
        "{text}"
    );
    let figures = status(&mut con);
    assert_eq!(
        (
            figures["rebuilding"].as_str(),
            figures["loads-failed"].as_str()
        ),
        ("0", "1")
    );
    // The next load works, and the campaign is intact.
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "victim"]), 1);
    assert!(server.log().contains("PANIC-IN-NEXT-LOAD"));
}

/// A key renamed to a name with a NUL byte is skipped by the periodic
/// verify, which still repairs every other drifted campaign.
#[test]
fn reconcile_skips_a_key_it_cannot_verify_and_repairs_the_rest() {
    let database = Postgres::start();
    let server =
        RedisServer::start_with(flushing_to(&database).module_args(&["verify-interval-s", "1"]));
    let mut con = server.connection();
    let campaigns: Vec<String> = (0..20).map(|c| format!("drift-{c}")).collect();
    for campaign in &campaigns {
        int(&mut con, &["CAMPAIGN.ADD", campaign, "a"]);
    }
    int(&mut con, &["CAMPAIGN.ADD", "victim", "v"]);
    flush(&mut con);
    call(&mut con, &[b"RENAME", b"victim", b"evil\x00name"]).unwrap();
    for campaign in &campaigns {
        write_around(&database, campaign, &["around".to_string()]);
    }
    let repaired = wait_until(Duration::from_secs(60), || {
        campaigns
            .iter()
            .all(|campaign| int(&mut con, &["CAMPAIGN.CARD", campaign]) == 2)
    });
    assert!(repaired, "{:?}", status(&mut con));
    assert!(server.log().contains("cannot hold"), "the skip is logged");
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "evil\0name"]), 1);
}

/// Runs `args` as `user` on a fresh connection; the error text, if any.
fn as_user(server: &RedisServer, user: &str, args: &[&str]) -> Result<(), String> {
    let mut con = server.connection();
    call(&mut con, &[b"AUTH", user.as_bytes(), b"pw"]).unwrap();
    let args: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
    call(&mut con, &args).map(|_| ())
}

/// ACL categories: where the server lets modules declare them (Redis 7.2+,
/// Valkey), `+@read` users read, `+@write` users write, and `-@dangerous`
/// keeps CAMPAIGN.DEBUG out. Redis 7.0 has no such API: there module
/// commands belong to no category, as the README says.
#[test]
fn acl_categories_where_the_server_supports_them() {
    let server = RedisServer::start();
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "a"]);
    for (user, rules) in [
        ("reader", "+@read"),
        ("writer", "+@write"),
        ("operator", "+@all -@admin -@dangerous"),
    ] {
        let mut words = vec!["ACL", "SETUSER", user, "on", ">pw", "~*"];
        words.extend(rules.split(' '));
        call(
            &mut con,
            &words.iter().map(|w| w.as_bytes()).collect::<Vec<_>>(),
        )
        .unwrap();
    }
    let info: redis::Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("campaign.has")
        .query(&mut con)
        .unwrap();
    let declared = format!("{info:?}").contains("@read");
    let has = ["CAMPAIGN.HAS", "c", "a"];
    let add = ["CAMPAIGN.ADD", "c", "b"];
    if declared {
        assert!(as_user(&server, "reader", &has).is_ok());
        let refused = as_user(&server, "reader", &add).unwrap_err();
        assert!(refused.starts_with("NOPERM"), "{refused}");
        assert!(as_user(&server, "writer", &add).is_ok());
        let refused = as_user(&server, "operator", &["CAMPAIGN.DEBUG", "PANIC"]).unwrap_err();
        assert!(refused.starts_with("NOPERM"), "{refused}");
        let categories: Vec<String> = redis::cmd("ACL").arg("CAT").query(&mut con).unwrap();
        if categories.iter().any(|category| category == "campaign") {
            call(
                &mut con,
                &[
                    b"ACL",
                    b"SETUSER",
                    b"app",
                    b"on",
                    b">pw",
                    b"~*",
                    b"+@campaign",
                ],
            )
            .unwrap();
            assert!(as_user(&server, "app", &has).is_ok());
        }
    } else {
        // Redis 7.0: only per-command rules reach module commands.
        let refused = as_user(&server, "reader", &has).unwrap_err();
        assert!(refused.starts_with("NOPERM"), "{refused}");
    }
    assert!(as_user(&server, "operator", &has).is_ok());
}

/// A database that accepts connections and never answers: every round trip
/// gives up after db-timeout-ms, the error shows, writes to loaded
/// campaigns go on, REBUILD fails instead of hanging, and all drains once a
/// live database is configured again.
#[test]
fn a_hung_database_is_abandoned_after_the_deadline() {
    let database = Postgres::start();
    let server =
        RedisServer::start_with(flushing_to(&database).module_args(&["db-timeout-ms", "1000"]));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "a"]);
    flush(&mut con);

    // Accepts, reads nothing, answers nothing, holds every connection.
    let hung = hung_database_url("connect_timeout=30");
    call(
        &mut con,
        &[b"CONFIG", b"SET", b"campaign.database-url", hung.as_bytes()],
    )
    .unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "c", "b"]), 1);
    let noticed = wait_until(Duration::from_secs(20), || {
        let figures = status(&mut con);
        figures["database"] == "disconnected"
            && figures["flush-errors"] != "0"
            && figures["last-error"].contains("db-timeout-ms")
    });
    assert!(noticed, "{:?}", status(&mut con));
    assert_eq!(pending(&mut con), 1);

    let started = std::time::Instant::now();
    let text = error(&mut con, &["CAMPAIGN.REBUILD", "c"]);
    assert!(text.starts_with("ERR loading campaign 'c'"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(30), "REBUILD hung");
    assert_eq!(status(&mut con)["rebuilding"], "0");
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "c", "a"]), 1);

    use_database(&mut con, &database);
    flush(&mut con);
    assert_eq!(rows_of(&database, "c"), set_of(&["a", "b"]));
    assert_eq!(status(&mut con)["database"], "connected");
}

/// RESTORE of a payload with no members is refused: an empty campaign
/// cannot exist (the payload is made by DUMPing one CAMPAIGN.DEBUG EMPTY
/// put in place, as no command can).
#[test]
fn restore_of_an_empty_campaign_is_refused() {
    let server = RedisServer::start();
    let mut con = server.connection();
    call(&mut con, &[b"CAMPAIGN.DEBUG", b"EMPTY", b"hollow"]).unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg("hollow").query(&mut con).unwrap();
    int(&mut con, &["DEL", "hollow"]);
    let refused = call(&mut con, &[b"RESTORE", b"hollow", b"0", &payload]);
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(int(&mut con, &["EXISTS", "hollow"]), 0);
    // A payload with members still restores.
    int(&mut con, &["CAMPAIGN.ADD", "full", "a"]);
    let payload: Vec<u8> = redis::cmd("DUMP").arg("full").query(&mut con).unwrap();
    call(&mut con, &[b"RESTORE", b"copy", b"0", &payload]).unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "copy"]), 1);
}

/// A database whose encoding is not UTF8 is refused at connect with a clear
/// error; the journal is kept and drains to a UTF8 database.
#[test]
fn a_database_not_in_utf8_is_refused_and_the_journal_kept() {
    let database = Postgres::start();
    let server = RedisServer::start();
    let name = format!("latin1_{}", server.port);
    database
        .client()
        .batch_execute(&format!(
            "CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        ))
        .unwrap();
    let latin1: String = database
        .url()
        .split(' ')
        .map(|word| match word.strip_prefix("dbname=") {
            Some(_) => format!("dbname={name}"),
            None => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    assert!(latin1.contains(&name), "{latin1}");
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "rocket", "🚀", "plain"]);
    call(
        &mut con,
        &[
            b"CONFIG",
            b"SET",
            b"campaign.database-url",
            latin1.as_bytes(),
        ],
    )
    .unwrap();
    let refused = wait_until(Duration::from_secs(20), || {
        status(&mut con)["last-error"].contains("not UTF8")
    });
    assert!(refused, "{:?}", status(&mut con));
    assert_eq!(pending(&mut con), 2);
    use_database(&mut con, &database);
    flush(&mut con);
    assert_eq!(rows_of(&database, "rocket"), set_of(&["🚀", "plain"]));
}

/// A row the database refuses (here a CHECK constraint) is isolated and
/// parked in `<table>_rejected`; the other 9,999 are committed and nothing
/// stays pending.
#[test]
fn a_row_the_database_refuses_is_parked_and_the_rest_flows_on() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "first"]);
    flush(&mut con);
    database
        .client()
        .batch_execute(
            "ALTER TABLE campaign_members ADD CONSTRAINT no_poison CHECK (member <> 'poison')",
        )
        .unwrap();
    let mut members: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    members[4_321] = "poison".into();
    for chunk in members.chunks(1_000) {
        let mut args = vec!["CAMPAIGN.ADD", "c"];
        args.extend(chunk.iter().map(String::as_str));
        int(&mut con, &args);
    }
    flush(&mut con);
    assert_eq!(pending(&mut con), 0);
    let stored = rows_of(&database, "c");
    assert_eq!(stored.len(), 10_000, "9,999 members and 'first'");
    assert!(!stored.contains("poison"));
    let parked: Vec<(String, String, String, String)> = database
        .client()
        .query(
            "SELECT campaign, member, op, error FROM campaign_members_rejected",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    assert_eq!(parked.len(), 1, "{parked:?}");
    let (campaign, member, op, reason) = &parked[0];
    assert_eq!(
        (campaign.as_str(), member.as_str(), op.as_str()),
        ("c", "poison", "ADD")
    );
    assert!(reason.contains("no_poison"), "{reason}");
    let figures = status(&mut con);
    assert_eq!(figures["rejected"], "1", "{figures:?}");
    assert_eq!(figures["flush-errors"], "0", "{figures:?}");
}
