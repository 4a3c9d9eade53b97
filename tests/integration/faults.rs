//! The database fails and the journal holds: a table-wide refusal is a
//! fault (nothing parked), PostgreSQL restarts and hangs, prefill retries,
//! the connection bound, and parked changes sent again. Each test compares
//! PostgreSQL's rows and the cache's answers with what was acknowledged.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::campaign::{
    flush, flushing_to, hung_database_url, pending, rows_of, status, wait_connected, write_around,
};
use crate::harness::redis_server::{call, int};
use crate::harness::{wait_until, Postgres, RedisServer};

/// A role like an application's: not a superuser, so privileges apply.
fn application_url(database: &Postgres) -> String {
    let mut admin = database.client();
    admin
        .batch_execute(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'campaign_app') THEN
                     CREATE ROLE campaign_app LOGIN;
                 END IF;
             END $$;
             GRANT ALL ON SCHEMA public TO campaign_app;",
        )
        .unwrap();
    database.url().replace("user=postgres", "user=campaign_app")
}

/// Adds 20 new members every 50 ms to campaign `w` until stopped; returns
/// the members whose ADD was acknowledged.
fn start_writer(server: &RedisServer, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<String>> {
    let mut con = server.connection();
    thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut next = 0;
        while !stop.load(Ordering::Relaxed) {
            let members: Vec<String> = (next..next + 20).map(|i| format!("m{i}")).collect();
            next += 20;
            let added: Result<i64, _> = redis::cmd("CAMPAIGN.ADD")
                .arg("w")
                .arg(&members)
                .query(&mut con);
            if added.is_ok() {
                acknowledged.extend(members);
            }
            thread::sleep(Duration::from_millis(50));
        }
        acknowledged
    })
}

/// Every member of `members` answers 1 in campaign `w`.
fn assert_all_present(con: &mut redis::Connection, members: &[String]) {
    for chunk in members.chunks(500) {
        let answers: Vec<i64> = redis::cmd("CAMPAIGN.MHAS")
            .arg("w")
            .arg(chunk)
            .query(con)
            .unwrap();
        assert!(answers.iter().all(|&answer| answer == 1), "{answers:?}");
    }
}

fn parked_count(database: &Postgres) -> i64 {
    database
        .client()
        .query_one("SELECT count(*) FROM campaign_members_rejected", &[])
        .unwrap()
        .get(0)
}

/// For `fault` seconds the table refuses every row (`break_sql`), then
/// the cause is fixed (`fix_sql`): nothing is parked, the error showed,
/// and every acknowledged change is committed and answered.
fn table_wide_refusal(break_sql: &str, fix_sql: &str, code: &str, reconcile: bool) {
    let database = Postgres::start();
    let url = application_url(&database);
    let mut options = flushing_to(&database);
    if reconcile {
        options = options.module_args(&["verify-interval-s", "1"]);
    }
    let server = RedisServer::start_with(options);
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "w", "first"]);
    flush(&mut con);
    // The tables exist (made by the superuser); the module goes on as an
    // application's role.
    call(
        &mut con,
        &[b"CONFIG", b"SET", b"campaign.database-url", url.as_bytes()],
    )
    .unwrap();
    database
        .client()
        .batch_execute(
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO campaign_app;
             CREATE OR REPLACE FUNCTION refuse_rows() RETURNS trigger AS $$
             BEGIN RAISE EXCEPTION 'maintenance: writes are paused'; END $$ LANGUAGE plpgsql;",
        )
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&server, stop.clone());
    thread::sleep(Duration::from_millis(300));
    database.client().batch_execute(break_sql).unwrap();
    let shown = wait_until(Duration::from_secs(10), || {
        let figures = status(&mut con);
        figures["last-error"].contains(code) && figures["flush-errors"] != "0"
    });
    assert!(shown, "{:?}", status(&mut con));
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        parked_count(&database),
        0,
        "nothing parked during the fault"
    );
    assert!(pending(&mut con) > 0);
    database.client().batch_execute(fix_sql).unwrap();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = writer.join().unwrap();
    acknowledged.push("first".into());

    flush(&mut con);
    assert_eq!(parked_count(&database), 0);
    let expected: BTreeSet<String> = acknowledged.iter().cloned().collect();
    assert_eq!(rows_of(&database, "w"), expected);
    if reconcile {
        // A reconcile round after the fix finds nothing to repair.
        thread::sleep(Duration::from_millis(2_500));
    }
    assert_all_present(&mut con, &acknowledged);
    assert_eq!(
        int(&mut con, &["CAMPAIGN.CARD", "w"]),
        expected.len() as i64
    );
    let figures = status(&mut con);
    assert_eq!(figures["rejected"], "0", "{figures:?}");
    assert_eq!(figures["last-error"], "", "{figures:?}");
}

#[test]
fn a_revoked_privilege_parks_nothing_and_commits_everything_after_the_fix() {
    table_wide_refusal(
        "REVOKE INSERT ON campaign_members FROM campaign_app",
        "GRANT INSERT ON campaign_members TO campaign_app",
        "42501",
        false,
    );
}

#[test]
fn a_revoked_privilege_with_reconcile_on_loses_nothing() {
    table_wide_refusal(
        "REVOKE INSERT ON campaign_members FROM campaign_app",
        "GRANT INSERT ON campaign_members TO campaign_app",
        "42501",
        true,
    );
}

#[test]
fn a_trigger_refusing_every_row_parks_nothing() {
    table_wide_refusal(
        "CREATE TRIGGER maintenance BEFORE INSERT ON campaign_members
         FOR EACH ROW EXECUTE FUNCTION refuse_rows()",
        "DROP TRIGGER maintenance ON campaign_members",
        "P0001",
        true,
    );
}

/// PostgreSQL restarts while the pool holds connections: the next loads
/// find them dead, reconnect and answer from the database, never 0.
#[test]
fn after_a_postgres_restart_loads_answer_from_the_database() {
    let mut database = Postgres::start_owned();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    wait_connected(&mut con);
    for index in 0..40 {
        let members = vec![format!("member-{index}")];
        write_around(&database, &format!("c{index}"), &members);
    }
    // Loads side by side leave several connections in the pool.
    let loaders: Vec<_> = (0..8)
        .map(|index| {
            let mut con = server.connection();
            thread::spawn(move || {
                let campaign = format!("c{index}");
                let member = format!("member-{index}");
                int(&mut con, &["CAMPAIGN.HAS", &campaign, &member])
            })
        })
        .collect();
    for loader in loaders {
        assert_eq!(loader.join().unwrap(), 1);
    }
    assert!(status(&mut con)["connections"].parse::<i64>().unwrap() >= 1);
    database.stop();
    database.start_again();
    for index in 8..28 {
        let campaign = format!("c{index}");
        let member = format!("member-{index}");
        assert_eq!(
            int(&mut con, &["CAMPAIGN.HAS", &campaign, &member]),
            1,
            "HAS of {campaign} after the restart; {:?}",
            status(&mut con)
        );
    }
    assert_eq!(status(&mut con)["database"], "connected");
}

/// Prefill started while PostgreSQL is down is retried until it loads.
#[test]
fn prefill_is_retried_until_the_database_answers() {
    let mut database = Postgres::start_owned();
    {
        // A first node makes the tables.
        let first = RedisServer::start_with(flushing_to(&database));
        wait_connected(&mut first.connection());
    }
    let members: Vec<String> = (0..10).map(|i| format!("user-{i}")).collect();
    write_around(&database, "prefilled", &members);
    database.stop();
    let server = RedisServer::start_with(flushing_to(&database).module_args(&[
        "prefill",
        "yes",
        "read-through",
        "no",
    ]));
    let mut con = server.connection();
    let failed = wait_until(Duration::from_secs(10), || {
        status(&mut con)["last-error"].contains("prefill")
    });
    assert!(failed, "{:?}", status(&mut con));
    assert_eq!(status(&mut con)["database"], "disconnected");
    database.start_again();
    let loaded = wait_until(Duration::from_secs(30), || {
        int(&mut con, &["EXISTS", "prefilled"]) == 1
    });
    assert!(loaded, "{:?}", status(&mut con));
    for member in &members {
        assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "prefilled", member]), 1);
    }
    assert_eq!(status(&mut con)["database"], "connected");
}

/// Statements of the module's that PostgreSQL holds up (here behind a lock
/// the test takes) are cancelled on the server at the deadline: no query
/// or lock of the module's outlives it, and all drains after.
#[test]
fn a_round_trip_past_the_deadline_is_cancelled_on_the_server() {
    let database = Postgres::start();
    let server =
        RedisServer::start_with(flushing_to(&database).module_args(&["db-timeout-ms", "1000"]));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "a"]);
    flush(&mut con);
    let mut blocker = database.client();
    let mut transaction = blocker.transaction().unwrap();
    transaction
        .batch_execute("LOCK TABLE campaign_members IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    int(&mut con, &["CAMPAIGN.ADD", "c", "b"]);
    let shown = wait_until(Duration::from_secs(10), || {
        status(&mut con)["last-error"].contains("db-timeout-ms")
    });
    assert!(shown, "{:?}", status(&mut con));
    // Past the deadline and the cancel: nothing of the module's waits.
    let mut observer = database.client();
    let left_waiting = || -> i64 {
        observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'redis-campaign' AND state <> 'idle'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let mut left_waiting = left_waiting;
    let gone = wait_until(Duration::from_secs(5), || left_waiting() == 0);
    assert!(gone, "a statement of the module's outlived its deadline");
    transaction.rollback().unwrap();
    flush(&mut con);
    assert_eq!(
        rows_of(&database, "c"),
        ["a", "b"].iter().map(|m| m.to_string()).collect()
    );
    let locks: i64 = database
        .client()
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE a.application_name = 'redis-campaign' AND a.state <> 'idle'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(locks, 0);
}

/// A server that accepts and never answers (not even the start-up): the
/// deadline covers connecting, and STATUS says so within it.
#[test]
fn a_hung_server_shows_within_the_deadline() {
    let database = Postgres::start();
    let server =
        RedisServer::start_with(flushing_to(&database).module_args(&["db-timeout-ms", "3000"]));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "first"]);
    flush(&mut con);
    let hung = hung_database_url("connect_timeout=2");
    call(
        &mut con,
        &[b"CONFIG", b"SET", b"campaign.database-url", hung.as_bytes()],
    )
    .unwrap();
    let started = Instant::now();
    assert_eq!(int(&mut con, &["CAMPAIGN.ADD", "c", "a"]), 1);
    let shown = wait_until(Duration::from_secs(10), || {
        status(&mut con)["database"] == "disconnected"
    });
    assert!(shown, "{:?}", status(&mut con));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(pending(&mut con), 1);
    call(
        &mut con,
        &[
            b"CONFIG",
            b"SET",
            b"campaign.database-url",
            database.url().as_bytes(),
        ],
    )
    .unwrap();
    flush(&mut con);
    assert_eq!(
        rows_of(&database, "c"),
        ["first".to_string(), "a".to_string()].into()
    );
}

/// 50 REBUILDs at once never take more than campaign.max-connections.
#[test]
fn the_connection_bound_holds_under_50_rebuilds() {
    let database = Postgres::start();
    let server =
        RedisServer::start_with(flushing_to(&database).module_args(&["max-connections", "3"]));
    let mut con = server.connection();
    wait_connected(&mut con);
    for index in 0..50 {
        let members: Vec<String> = (0..2_000).map(|i| format!("u{i}")).collect();
        write_around(&database, &format!("r{index}"), &members);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let mut observer = database.client();
        thread::spawn(move || {
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                let open: i64 = observer
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE application_name = 'redis-campaign'",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                most = most.max(open);
                thread::sleep(Duration::from_millis(5));
            }
            most
        })
    };
    let rebuilds: Vec<_> = (0..50)
        .map(|index| {
            let mut con = server.connection();
            thread::spawn(move || int(&mut con, &["CAMPAIGN.REBUILD", &format!("r{index}")]))
        })
        .collect();
    for rebuild in rebuilds {
        assert_eq!(rebuild.join().unwrap(), 2_000);
    }
    stop.store(true, Ordering::Relaxed);
    let most = watcher.join().unwrap();
    assert!((1..=3).contains(&most), "{most} connections at once");
    assert!(status(&mut con)["connections"].parse::<i64>().unwrap() <= 3);
}

/// A change refused alone (a CHECK) is parked; once the cause is fixed,
/// CAMPAIGN.REJECTED RETRY journals it again and it is committed; a
/// parked change whose member changed since is not.
#[test]
fn parked_changes_are_sent_again_by_rejected_retry() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    int(&mut con, &["CAMPAIGN.ADD", "c", "first"]);
    flush(&mut con);
    database
        .client()
        .batch_execute(
            "ALTER TABLE campaign_members ADD CONSTRAINT no_bad CHECK (member NOT LIKE 'bad%')",
        )
        .unwrap();
    int(
        &mut con,
        &["CAMPAIGN.ADD", "c", "good1", "bad1", "good2", "bad2"],
    );
    flush(&mut con);
    assert_eq!(parked_count(&database), 2);
    // bad2 is removed by a client since: its parked ADD is older.
    int(&mut con, &["CAMPAIGN.REM", "c", "bad2"]);
    flush(&mut con);
    database
        .client()
        .batch_execute("ALTER TABLE campaign_members DROP CONSTRAINT no_bad")
        .unwrap();
    assert_eq!(int(&mut con, &["CAMPAIGN.REJECTED", "RETRY", "c"]), 1);
    flush(&mut con);
    assert_eq!(parked_count(&database), 0);
    let expected: BTreeSet<String> = ["first", "good1", "good2", "bad1"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert_eq!(rows_of(&database, "c"), expected);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "c", "bad1"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "c", "bad2"]), 0);
    let verified: Vec<(String, i64)> = redis::cmd("CAMPAIGN.VERIFY")
        .arg("c")
        .query(&mut con)
        .unwrap();
    assert!(verified.contains(&("consistent".into(), 1)), "{verified:?}");
    assert_eq!(
        int(&mut con, &["CAMPAIGN.REJECTED", "RETRY"]),
        0,
        "nothing left to retry"
    );
}

fn marker_count(database: &Postgres) -> i64 {
    database
        .client()
        .query_one("SELECT count(*) FROM campaign_members_removed", &[])
        .unwrap()
        .get(0)
}

/// Removals whose one half is refused table-wide (`break_sql`): the rows'
/// deletion and the markers go in on two connections at once, and neither
/// half may commit without the other. Nothing is deleted, no marker is
/// left, nothing is parked; after `fix_sql` every removal commits whole.
fn removals_refused_by_one_half(break_sql: &str, fix_sql: &str, code: &str) {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    let wide: Vec<String> = (0..2_000).map(|i| format!("w{i}")).collect();
    let few: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    for (campaign, members) in [("w", &wide), ("x", &few)] {
        redis::cmd("CAMPAIGN.ADD")
            .arg(campaign)
            .arg(members)
            .query::<i64>(&mut con)
            .unwrap();
    }
    flush(&mut con);
    database.client().batch_execute(break_sql).unwrap();

    // A campaign's own deletion (1,000 of 2,000) and a few elsewhere.
    for (campaign, members) in [("w", &wide[..1_000]), ("x", &few[..5])] {
        let removed: i64 = redis::cmd("CAMPAIGN.REM")
            .arg(campaign)
            .arg(members)
            .query(&mut con)
            .unwrap();
        assert_eq!(removed, members.len() as i64);
    }
    let shown = wait_until(Duration::from_secs(10), || {
        let figures = status(&mut con);
        figures["last-error"].contains(code) && figures["flush-errors"] != "0"
    });
    assert!(shown, "{:?}", status(&mut con));
    assert_eq!(pending(&mut con), 1_005);
    assert_eq!(marker_count(&database), 0, "no marker without its deletion");
    assert_eq!(
        rows_of(&database, "w").len(),
        2_000,
        "no deletion without its marker"
    );
    assert_eq!(rows_of(&database, "x").len(), 20);
    assert_eq!(parked_count(&database), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "w", "w0"]), 0);

    database.client().batch_execute(fix_sql).unwrap();
    flush(&mut con);
    assert_eq!(pending(&mut con), 0);
    assert_eq!(
        rows_of(&database, "w"),
        wide[1_000..].iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        rows_of(&database, "x"),
        few[5..].iter().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(marker_count(&database), 1_005);
    assert_eq!(parked_count(&database), 0);
    let figures = status(&mut con);
    assert_eq!(figures["last-error"], "", "{figures:?}");
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "w"]), 1_000);
}

#[test]
fn removals_refused_at_the_rows_leave_no_marker() {
    removals_refused_by_one_half(
        "CREATE OR REPLACE FUNCTION refuse_rows() RETURNS trigger AS $$
         BEGIN RAISE EXCEPTION 'maintenance: deletes are paused'; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER maintenance BEFORE DELETE ON campaign_members
         FOR EACH ROW EXECUTE FUNCTION refuse_rows()",
        "DROP TRIGGER maintenance ON campaign_members",
        "P0001",
    );
}

#[test]
fn removals_refused_at_the_markers_delete_no_row() {
    removals_refused_by_one_half(
        "CREATE OR REPLACE FUNCTION refuse_rows() RETURNS trigger AS $$
         BEGIN RAISE EXCEPTION 'maintenance: markers are paused'; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER maintenance BEFORE INSERT ON campaign_members_removed
         FOR EACH ROW EXECUTE FUNCTION refuse_rows()",
        "DROP TRIGGER maintenance ON campaign_members_removed",
        "P0001",
    );
}

/// A removal refused only when its transaction commits (a deferred
/// constraint trigger) is parked alone, and leaves no marker even though
/// the batch's markers committed on their own connection first: a marker
/// of a removal that never happened would undo a late, older add.
#[test]
fn a_removal_refused_at_commit_is_parked_without_its_marker() {
    let database = Postgres::start();
    let server = RedisServer::start_with(flushing_to(&database));
    let mut con = server.connection();
    let mut members: Vec<String> = (0..999).map(|i| format!("ok{i}")).collect();
    members.push("kept".into());
    redis::cmd("CAMPAIGN.ADD")
        .arg("c")
        .arg(&members)
        .query::<i64>(&mut con)
        .unwrap();
    flush(&mut con);
    database
        .client()
        .batch_execute(
            "CREATE FUNCTION keep_kept() RETURNS trigger AS $$
             BEGIN
                 IF OLD.member = 'kept' THEN RAISE EXCEPTION 'kept stays'; END IF;
                 RETURN OLD;
             END $$ LANGUAGE plpgsql;
             CREATE CONSTRAINT TRIGGER keep_kept AFTER DELETE ON campaign_members
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keep_kept()",
        )
        .unwrap();

    let removed: i64 = redis::cmd("CAMPAIGN.REM")
        .arg("c")
        .arg(&members)
        .query(&mut con)
        .unwrap();
    assert_eq!(removed, 1_000);
    flush(&mut con);
    assert_eq!(pending(&mut con), 0);
    assert_eq!(
        rows_of(&database, "c"),
        ["kept".to_string()].into_iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(parked_count(&database), 1);
    let kept_markers: i64 = database
        .client()
        .query_one(
            "SELECT count(*) FROM campaign_members_removed WHERE member = 'kept'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept_markers, 0, "no marker for the parked removal");
    assert_eq!(marker_count(&database), 999);
}
