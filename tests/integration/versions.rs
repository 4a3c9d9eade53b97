//! Versions and conditional apply (SPEC section 4): a change that reaches
//! the database late never undoes a newer one, whichever node made it.
//! The campaign moves between two servers with DUMP/RESTORE, as MIGRATE
//! moves it between cluster nodes; the cluster itself is tested in
//! `cluster`.

use std::collections::BTreeSet;
use std::time::Duration;

use redis::{Connection, Value};

use crate::harness::campaign::*;
use crate::harness::redis_server::{call, int};
use crate::harness::{free_port, wait_until, Postgres, RedisOptions, RedisServer};

/// Points a server at a database nobody answers: its journal stays pending.
fn cut_off(con: &mut Connection) {
    let url = format!("postgresql://postgres@127.0.0.1:{}/none", free_port());
    call(
        con,
        &[b"CONFIG", b"SET", b"campaign.database-url", url.as_bytes()],
    )
    .unwrap();
}

/// Moves campaign `name` from `from` to `to` as MIGRATE does (DUMP, RESTORE
/// REPLACE, DEL on the old owner).
fn move_campaign(from: &mut Connection, to: &mut Connection, name: &str) {
    let payload = match call(from, &[b"DUMP", name.as_bytes()]).unwrap() {
        Value::BulkString(bytes) => bytes,
        other => panic!("DUMP gave {other:?}"),
    };
    call(
        to,
        &[b"RESTORE", name.as_bytes(), b"0", &payload, b"REPLACE"],
    )
    .unwrap();
    call(from, &[b"DEL", name.as_bytes()]).unwrap();
}

/// (member, version) rows of `campaign`.
fn versions(database: &Postgres, table: &str, campaign: &str) -> Vec<(String, Option<i64>)> {
    database
        .client()
        .query(
            &format!("SELECT member, version FROM {table} WHERE campaign = $1 ORDER BY member"),
            &[&campaign],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn set(members: &[&str]) -> BTreeSet<String> {
    members.iter().map(|m| m.to_string()).collect()
}

/// Two servers on one database; `c` = {a, b} committed, then the first
/// server loses its database.
fn two_owners(database: &Postgres) -> (RedisServer, RedisServer) {
    let old_owner = RedisServer::start_with(flushing_to(database));
    let new_owner = RedisServer::start_with(flushing_to(database));
    let mut con = old_owner.connection();
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "c", "a", "b"]), 2);
    flush(&mut con);
    cut_off(&mut con);
    (old_owner, new_owner)
}

#[test]
fn a_late_add_from_the_old_owner_never_undoes_a_newer_removal() {
    let database = Postgres::start();
    let (old_owner, new_owner) = two_owners(&database);
    let (mut old, mut new) = (old_owner.connection(), new_owner.connection());
    assert_eq!(int(&mut old, &["CAMPAIGN.ADD", "c", "m"]), 1);
    assert_eq!(pending(&mut old), 1);
    move_campaign(&mut old, &mut new, "c");

    assert_eq!(int(&mut new, &["CAMPAIGN.REM", "c", "m"]), 1);
    flush(&mut new);
    assert_eq!(rows_of(&database, "c"), set(&["a", "b"]));

    // The old owner commits its add last: the newer removal stands.
    use_database(&mut old, &database);
    flush(&mut old);
    assert_eq!(pending(&mut old), 0);
    assert_eq!(rows_of(&database, "c"), set(&["a", "b"]));
    let markers: i64 = database
        .client()
        .query_one(
            "SELECT count(*) FROM campaign_members_removed WHERE campaign = 'c' AND member = 'm'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(markers, 1);
    assert_eq!(int(&mut new, &["CAMPAIGN.HAS", "c", "m"]), 0);
}

#[test]
fn a_late_removal_from_the_old_owner_never_undoes_a_newer_add() {
    let database = Postgres::start();
    let (old_owner, new_owner) = two_owners(&database);
    let (mut old, mut new) = (old_owner.connection(), new_owner.connection());
    assert_eq!(int(&mut old, &["CAMPAIGN.REM", "c", "a"]), 1);
    move_campaign(&mut old, &mut new, "c");

    assert_eq!(int(&mut new, &["CAMPAIGN.ADD", "c", "a"]), 1);
    flush(&mut new);
    use_database(&mut old, &database);
    flush(&mut old);
    assert_eq!(pending(&mut old), 0);
    assert_eq!(rows_of(&database, "c"), set(&["a", "b"]));
    assert_eq!(int(&mut new, &["CAMPAIGN.HAS", "c", "a"]), 1);
}

#[test]
fn versions_grow_per_change_and_continue_after_a_restart() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database).config("appendonly yes"));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "1", "2", "3"]);
    flush(&mut con);
    let first = versions(&database, TABLE, "c");
    let numbers: Vec<i64> = first.iter().map(|(_, v)| v.unwrap()).collect();
    assert_eq!(numbers[1], numbers[0] + 1, "{first:?}");
    assert_eq!(numbers[2], numbers[0] + 2, "{first:?}");

    let mut server = server;
    server.restart();
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.REM", "c", "3"]);
    int(&mut con, &["CAMPAIGN.ADD", "c", "1"]);
    int(&mut con, &["CAMPAIGN.ADD", "c", "4"]);
    flush(&mut con);
    let after = versions(&database, TABLE, "c");
    assert_eq!(after.len(), 3, "{after:?}");
    let newest = after.iter().map(|(_, v)| v.unwrap()).max().unwrap();
    assert!(newest > numbers[2], "{after:?} after {first:?}");
    let marker: i64 = database
        .client()
        .query_one(
            "SELECT version FROM campaign_members_removed WHERE member = '3'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(marker > numbers[2]);
}

/// A promoted replica flushes the entries it holds with the versions the
/// primary gave them, and so does the primary after replaying its AOF:
/// each flushes to its own database and the tables end equal, versions
/// included. Bursts of one-member writes (sent to the replica and the AOF
/// as the client's command, the versions derived there) and spread-out
/// writes (sent with their versions) both.
#[test]
fn a_replica_and_the_aof_journal_the_primarys_versions() {
    let primary_database = Postgres::start();
    let replica_database = Postgres::start();
    let mut primary = RedisServer::start_with(
        flushing_to(&primary_database)
            .config("appendonly yes")
            .config("appendfsync always"),
    );
    let mut con = primary.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "x"]);
    int(&mut con, &["CAMPAIGN.ADD", "d", "x"]);
    flush(&mut con);
    cut_off(&mut con);
    let replica = start_replica_of(&primary, flushing_to(&replica_database));
    let mut replica_con = replica.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "1", "2", "u"]);
    std::thread::sleep(Duration::from_millis(5));
    int(&mut con, &["CAMPAIGN.REM", "c", "x", "2"]);
    std::thread::sleep(Duration::from_millis(5));
    int(&mut con, &["CAMPAIGN.ADD", "c", "2"]);
    // A pipelined burst: most of these land within one millisecond of the
    // one before.
    let mut burst = redis::pipe();
    for i in 0..3_000 {
        let campaign = if i % 2 == 0 { "c" } else { "d" };
        let command = if i % 7 == 3 {
            "CAMPAIGN.REM"
        } else {
            "CAMPAIGN.ADD"
        };
        burst
            .cmd(command)
            .arg(campaign)
            .arg(format!("m{}", i % 1_000));
    }
    let _: Vec<i64> = burst.query(&mut con).unwrap();
    // What was committed before the replica came stays out of the
    // comparison: x goes from both campaigns.
    int(&mut con, &["CAMPAIGN.REM", "d", "x"]);
    wait_for_replica(&mut con);

    // Both forms reached the AOF: commands as they came (versions derived)
    // and changes with their versions.
    let mut aof = Vec::new();
    for file in std::fs::read_dir(primary.dir().join("appendonlydir")).unwrap() {
        aof.extend(std::fs::read(file.unwrap().path()).unwrap());
    }
    let holds = |word: &[u8]| aof.windows(word.len()).any(|window| window == word);
    assert!(holds(b"CAMPAIGN.ADD") && holds(b"CHANGE"));

    call(&mut replica_con, &[b"REPLICAOF", b"NO", b"ONE"]).unwrap();
    flush(&mut replica_con);
    // The primary starts again from its AOF, with its startup settings
    // (its own database), and commits what it replayed.
    primary.restart();
    let mut con = primary.connection();
    flush(&mut con);
    for campaign in ["c", "d"] {
        for table in [TABLE, "campaign_members_removed"] {
            let primary_rows = versions(&primary_database, table, campaign);
            assert!(primary_rows.len() > 50, "{table}: {primary_rows:?}");
            let replica_rows = versions(&replica_database, table, campaign);
            let differing: Vec<_> = primary_rows
                .iter()
                .zip(&replica_rows)
                .filter(|(p, r)| p != r)
                .take(5)
                .collect();
            assert!(
                primary_rows.len() == replica_rows.len() && differing.is_empty(),
                "{table} {campaign}: {} rows after the AOF, {} on the replica; differing \
                 (AOF, replica): {differing:?}",
                primary_rows.len(),
                replica_rows.len()
            );
        }
    }
}

#[test]
fn a_table_of_an_older_version_is_upgraded_in_place_and_old_markers_are_purged() {
    let database = Postgres::start();
    let mut client = database.client();
    client
        .batch_execute(
            "CREATE TABLE campaign_members (
                 campaign text NOT NULL, member text NOT NULL,
                 added_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (campaign, member));
             INSERT INTO campaign_members (campaign, member) VALUES ('c', 'old');",
        )
        .unwrap();
    let server = RedisServer::start_with(
        RedisOptions::default().module_args(&["removed-retention-s", "3600"]),
    );
    let mut con = server.connection();
    use_database(&mut con, &database);
    int(&mut con, &["CAMPAIGN.ADD", "c", "new"]);
    int(&mut con, &["CAMPAIGN.REM", "c", "old"]);
    flush(&mut con);
    assert_eq!(rows_of(&database, "c"), set(&["new"]));
    let rows = versions(&database, TABLE, "c");
    assert!(rows[0].1.is_some(), "{rows:?}");

    // A marker from two hours ago goes at the next purge (one a minute,
    // the first right after the flusher connects: restart it).
    let two_hours_ago = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 7_200_000)
        << 21;
    client
        .execute(
            "INSERT INTO campaign_members_removed (campaign, member, version) VALUES ('c', 'ancient', $1)",
            &[&two_hours_ago],
        )
        .unwrap();
    let mut server = server;
    server.restart();
    let mut con = server.connection();
    use_database(&mut con, &database);
    let purged = wait_until(Duration::from_secs(20), || {
        let left: Vec<String> = client
            .query(
                "SELECT member FROM campaign_members_removed ORDER BY member",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        left == ["old"]
    });
    assert!(purged, "the two-hour-old marker was not purged");
}

/// The campaign moved with a change pending on its old owner, then was
/// deleted on the new owner: the next write there reloads it only once the
/// database has the change the deleted value held (the old owner committed
/// it), so the cache is whole and the write's effect is right.
#[test]
fn a_reload_after_a_delete_waits_for_the_old_owners_commit() {
    for (pending_op, write) in [
        ("CAMPAIGN.ADD", "CAMPAIGN.REM"),
        ("CAMPAIGN.REM", "CAMPAIGN.ADD"),
    ] {
        let database = Postgres::start();
        let (old_owner, new_owner) = two_owners(&database);
        let (mut old, mut new) = (old_owner.connection(), new_owner.connection());
        // ADD m (then REM m on the new owner), or REM a (then ADD a).
        let member = if pending_op == "CAMPAIGN.ADD" {
            "m"
        } else {
            "a"
        };
        assert_eq!(int(&mut old, &[pending_op, "c", member]), 1);
        move_campaign(&mut old, &mut new, "c");
        int(&mut new, &["DEL", "c"]);

        let mut writer = new_owner.connection();
        let write_thread = std::thread::spawn(move || int(&mut writer, &[write, "c", member]));
        wait_blocked_clients(&mut new, 1);
        use_database(&mut old, &database);
        flush(&mut old);
        assert_eq!(
            write_thread.join().unwrap(),
            1,
            "{write} {member} saw the old owner's change"
        );
        flush(&mut new);
        // Either way the newer write wins: m removed again, a added again.
        assert_eq!(
            rows_of(&database, "c"),
            set(&["a", "b"]),
            "{pending_op} then {write}"
        );
        assert_eq!(int(&mut new, &["CAMPAIGN.CARD", "c"]), 2);
    }
}

/// A load that finishes after its node became a replica changes nothing
/// there: no swap, no held write applied, the replica stays equal to its
/// primary.
#[test]
fn a_load_finishing_on_a_demoted_node_changes_nothing() {
    let database = Postgres::start();
    let (old_owner, new_owner) = two_owners(&database);
    let (mut old, mut new) = (old_owner.connection(), new_owner.connection());
    assert_eq!(int(&mut old, &["CAMPAIGN.ADD", "c", "m"]), 1);
    move_campaign(&mut old, &mut new, "c");
    int(&mut new, &["DEL", "c"]);
    // The write waits on a reload, which waits for the old owner's commit.
    let mut writer = new_owner.connection();
    let write_thread =
        std::thread::spawn(move || call(&mut writer, &[b"CAMPAIGN.ADD", b"c", b"x"]));
    wait_blocked_clients(&mut new, 1);

    let port = old_owner.port.to_string();
    call(&mut new, &[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]).unwrap();
    let synced = wait_until(Duration::from_secs(20), || {
        crate::harness::campaign::info_field(&mut new, "replication", "master_link_status") == "up"
    });
    assert!(synced);
    use_database(&mut old, &database);
    flush(&mut old);
    let reply = write_thread.join().unwrap();
    assert!(
        reply.is_err(),
        "the held write was applied on a replica: {reply:?}"
    );
    // Whatever the load did, the replica holds what its primary holds.
    wait_for_replica(&mut old);
    assert_eq!(int(&mut new, &["EXISTS", "c"]), 0);
    assert_eq!(pending(&mut new), pending(&mut old));
    assert_eq!(rows_of(&database, "c"), set(&["a", "b", "m"]));
    let loads_failed = wait_until(Duration::from_secs(20), || {
        status(&mut new)["loads-failed"] == "1"
    });
    assert!(loads_failed, "{:?}", status(&mut new));
}

/// A campaign with hundreds of removals in one batch gets a deletion of
/// its own (`sink::removals`): it keeps the same rules as the rest, so a
/// newer add of another node survives it, a row written around the module
/// (NULL version) goes, and each removal leaves its marker.
#[test]
fn a_bulk_removal_from_the_old_owner_never_undoes_newer_adds() {
    let database = Postgres::start();
    let (old_owner, new_owner) = two_owners(&database);
    let (mut old, mut new) = (old_owner.connection(), new_owner.connection());
    use_database(&mut old, &database);
    let members: Vec<String> = (0..1200).map(|i| format!("u{i:04}")).collect();
    let mut add = vec!["CAMPAIGN.ADD".to_string(), "c".to_string()];
    add.extend(members.iter().cloned());
    assert_eq!(
        int(
            &mut old,
            &add.iter().map(String::as_str).collect::<Vec<_>>()
        ),
        1200
    );
    flush(&mut old);
    database
        .client()
        .batch_execute("INSERT INTO campaign_members (campaign, member) VALUES ('c', 'around')")
        .unwrap();
    assert_eq!(int(&mut old, &["CAMPAIGN.REBUILD", "c"]), 1203);
    cut_off(&mut old);

    // The old owner removes 1000 members and the row written around it;
    // the new owner adds ten of them back, later.
    let mut rem = vec!["CAMPAIGN.REM".to_string(), "c".to_string()];
    rem.extend(members[..1000].iter().cloned());
    rem.push("around".to_string());
    let rem: Vec<&str> = rem.iter().map(String::as_str).collect();
    assert_eq!(int(&mut old, &rem), 1001);
    move_campaign(&mut old, &mut new, "c");
    let mut back = vec!["CAMPAIGN.ADD", "c"];
    back.extend(members[..10].iter().map(String::as_str));
    assert_eq!(int(&mut new, &back), 10);
    flush(&mut new);

    use_database(&mut old, &database);
    flush(&mut old);
    assert_eq!(pending(&mut old), 0);
    let mut expected: BTreeSet<String> = members[..10].iter().cloned().collect();
    expected.extend(members[1000..].iter().cloned());
    expected.extend(["a".to_string(), "b".to_string()]);
    assert_eq!(rows_of(&database, "c"), expected);
    let markers: i64 = database
        .client()
        .query_one(
            "SELECT count(*) FROM campaign_members_removed WHERE campaign = 'c'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(markers, 1001);
    for member in ["u0000", "u0009", "u1000", "u1199"] {
        assert_eq!(int(&mut new, &["CAMPAIGN.HAS", "c", member]), 1, "{member}");
    }
    for member in ["u0010", "u0999", "around"] {
        assert_eq!(int(&mut new, &["CAMPAIGN.HAS", "c", member]), 0, "{member}");
    }
}
