//! PostgreSQL as operators run it: TLS under every sslmode against a
//! server that refuses plaintext, certificate checks that fail clearly with
//! the journal kept, client certificates, a password file, PgBouncer in
//! transaction and session mode, and a standby promoted while writers run.
//! Each test ends comparing PostgreSQL's rows and the cache with what was
//! acknowledged.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use redis::Connection;

use crate::harness::campaign::{add, assert_cache_holds, flush, members, pending, status, TABLE};
use crate::harness::pgbouncer::PgBouncer;
use crate::harness::redis_server::{call, int};
use crate::harness::tls::Certificates;
use crate::harness::{wait_until, Postgres, RedisOptions, RedisServer};

/// pg_hba.conf of a server that takes TCP connections over TLS only.
const HBA_TLS_ONLY: &str = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";

fn server() -> RedisServer {
    RedisServer::start_with(RedisOptions::default().module_args(&[
        "flush-interval-ms",
        "20",
        "db-timeout-ms",
        "3000",
    ]))
}

fn set_url(con: &mut Connection, url: &str) {
    call(
        con,
        &[b"CONFIG", b"SET", b"campaign.database-url", url.as_bytes()],
    )
    .unwrap();
}

/// The rows of `campaign`, read through the server's socket.
fn rows(client: &mut postgres::Client, campaign: &str) -> BTreeSet<String> {
    client
        .query(
            &format!("SELECT member FROM {TABLE} WHERE campaign = $1"),
            &[&campaign],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Waits until STATUS's last-error contains `needle`; returns it.
fn wait_last_error(con: &mut Connection, needle: &str) -> String {
    let mut last = String::new();
    let seen = wait_until(Duration::from_secs(20), || {
        last = status(con)["last-error"].clone();
        last.contains(needle)
    });
    assert!(seen, "last-error never said '{needle}': {last}");
    last
}

/// How many of the module's connections are open, and whether all of them
/// are encrypted (pg_stat_ssl).
fn module_connections(client: &mut postgres::Client) -> (i64, bool) {
    let row = client
        .query_one(
            "SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_stat_ssl s
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'redis-campaign'",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Points the module at `url` and writes the campaign's first members
/// through it (a campaign new to Redis is looked up in the database before
/// its first write is acknowledged); returns them.
fn seed(con: &mut Connection, url: &str, campaign: &str) -> Vec<String> {
    set_url(con, url);
    let added = add_some(con, campaign, "seed-", 10);
    flush(con);
    added
}

/// Adds `count` members named `prefix<i>`; returns them.
fn add_some(con: &mut Connection, campaign: &str, prefix: &str, count: usize) -> Vec<String> {
    let added = members(prefix, 0..count);
    assert_eq!(add(con, campaign, &added), count as i64);
    added
}

#[test]
fn every_sslmode_against_a_server_that_refuses_plaintext() {
    let certs = Certificates::new();
    let mut database = Postgres::start_owned();
    certs.serve(&mut database, HBA_TLS_ONLY);
    let base = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres",
        database.port()
    );
    let root = certs.path_str("ca.crt");
    let server = server();
    let mut con = server.connection();
    let mut acknowledged = seed(&mut con, &format!("{base} sslmode=require"), "t");

    // disable: the server refuses, the journal keeps the changes.
    set_url(&mut con, &format!("{base} sslmode=disable"));
    acknowledged.extend(add_some(&mut con, "t", "disable-", 10));
    wait_last_error(&mut con, "no encryption");
    assert_eq!(pending(&mut con), 10);

    let mut admin = database.socket_client();
    for mode in [
        "prefer".to_owned(),
        "require".to_owned(),
        "allow".to_owned(),
        format!("verify-ca sslrootcert={root}"),
        format!("verify-full sslrootcert={root}"),
        // The URL form, as managed services hand it out.
        format!(
            "postgresql://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}\
             &channel_binding=prefer",
            database.port(),
            root.replace('/', "%2F")
        ),
    ] {
        let url = if mode.starts_with("postgresql://") {
            mode.clone()
        } else {
            format!("{base} sslmode={mode}")
        };
        set_url(&mut con, &url);
        let prefix = format!("{}-", mode.split(' ').next().unwrap());
        acknowledged.extend(add_some(&mut con, "t", &prefix, 100));
        flush(&mut con);
        assert_eq!(pending(&mut con), 0, "{mode}");
        assert_eq!(status(&mut con)["database"], "connected", "{mode}");
        let (open, encrypted) = module_connections(&mut admin);
        assert!(
            open > 0 && encrypted,
            "{mode}: {open} connections, encrypted {encrypted}"
        );
    }
    let expected: BTreeSet<String> = acknowledged.iter().cloned().collect();
    assert_eq!(rows(&mut admin, "t"), expected);
    assert_cache_holds(&mut con, "t", &acknowledged);
}

#[test]
fn certificate_failures_are_clear_and_keep_the_journal() {
    let certs = Certificates::new();
    let mut database = Postgres::start_owned();
    certs.serve(&mut database, HBA_TLS_ONLY);
    let port = database.port();
    let server = server();
    let mut con = server.connection();
    let full = |host: &str, root: &str| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres \
             sslmode=verify-full sslrootcert={}",
            certs.path_str(root)
        )
    };
    let verify_ca = full("db.wrong.example", "ca.crt").replace("verify-full", "verify-ca");
    let mut added = seed(&mut con, &verify_ca, "v");
    set_url(&mut con, &full("db.wrong.example", "ca.crt"));
    added.extend(add_some(&mut con, "v", "m", 50));
    let error = wait_last_error(&mut con, "hostname mismatch");
    assert!(error.contains("not for this host name"), "{error}");
    assert_eq!(status(&mut con)["database"], "disconnected");

    set_url(&mut con, &full("localhost", "other-ca.crt"));
    let error = wait_last_error(&mut con, "not signed by a CA of sslrootcert");
    assert!(error.contains("sslmode=verify-full"), "{error}");

    set_url(
        &mut con,
        &format!("host=localhost port={port} user=postgres sslmode=verify-full sslrootcert=/nonexistent/root.crt"),
    );
    wait_last_error(
        &mut con,
        "root certificate file \"/nonexistent/root.crt\" does not exist",
    );
    // The system's roots do not include the test CA.
    set_url(
        &mut con,
        &format!("host=localhost hostaddr=127.0.0.1 port={port} user=postgres sslmode=verify-full sslrootcert=system"),
    );
    wait_last_error(&mut con, "not signed by a CA of sslrootcert");
    assert_eq!(pending(&mut con), 50, "the journal is kept");

    // verify-ca checks the chain, not the name.
    set_url(&mut con, &verify_ca);
    flush(&mut con);
    let mut admin = database.socket_client();
    assert_eq!(rows(&mut admin, "v"), added.iter().cloned().collect());
    assert_cache_holds(&mut con, "v", &added);
}

#[test]
fn client_certificate_with_clientcert_verify_full() {
    let certs = Certificates::new();
    let mut database = Postgres::start_owned();
    certs.serve(
        &mut database,
        "local all all trust\nhostssl all all 127.0.0.1/32 trust clientcert=verify-full\n",
    );
    let base = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
         sslmode=verify-full sslrootcert={}",
        database.port(),
        certs.path_str("ca.crt")
    );
    let with_cert = |key: &std::path::Path| {
        format!(
            "{base} sslcert={} sslkey={}",
            certs.path_str("client.crt"),
            key.display()
        )
    };
    let server = server();
    let mut con = server.connection();
    let mut added = seed(&mut con, &with_cert(&certs.path("client.key")), "c");
    set_url(&mut con, &base);
    added.extend(add_some(&mut con, "c", "m", 30));
    wait_last_error(&mut con, "connection requires a valid client certificate");
    assert_eq!(pending(&mut con), 30);

    // A key others can read is refused, as libpq refuses it.
    let loose_key = certs.path("loose.key");
    fs::copy(certs.path("client.key"), &loose_key).unwrap();
    fs::set_permissions(&loose_key, fs::Permissions::from_mode(0o644)).unwrap();
    set_url(&mut con, &with_cert(&loose_key));
    wait_last_error(&mut con, "group or world access");

    set_url(&mut con, &with_cert(&certs.path("client.key")));
    flush(&mut con);
    let mut admin = database.socket_client();
    let dn: String = admin
        .query_one(
            "SELECT s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'redis-campaign' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dn, "/CN=postgres");
    assert_eq!(rows(&mut admin, "c"), added.iter().cloned().collect());
    assert_cache_holds(&mut con, "c", &added);
}

#[test]
fn passfile_keeps_the_password_out_of_the_url() {
    let mut database = Postgres::start_owned();
    database
        .socket_client()
        .batch_execute(
            "CREATE ROLE campaign_app LOGIN PASSWORD 'pw:with\\colon';
             GRANT ALL ON SCHEMA public TO campaign_app;",
        )
        .unwrap();
    database.reconfigure(
        "password_encryption = 'scram-sha-256'",
        Some("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    let entry = format!(
        "# the module's entry\n127.0.0.1:{}:postgres:campaign_app:pw\\:with\\\\colon\n",
        database.port()
    );
    let url_of = |name: &str, mode: u32| {
        let passfile = dir.path().join(name);
        fs::write(&passfile, &entry).unwrap();
        fs::set_permissions(&passfile, fs::Permissions::from_mode(mode)).unwrap();
        let url = format!(
            "postgresql://campaign_app@127.0.0.1:{}/postgres?passfile={}",
            database.port(),
            passfile.display()
        );
        (passfile, url)
    };
    let server = server();
    let mut con = server.connection();
    let mut added = seed(&mut con, &url_of("pgpass", 0o600).1, "p");
    let (passfile, url) = url_of("pgpass-loose", 0o644);
    set_url(&mut con, &url);
    added.extend(add_some(&mut con, "p", "m", 40));
    wait_last_error(&mut con, "permissions should be u=rw (0600) or less");
    assert_eq!(pending(&mut con), 40);

    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).unwrap();
    flush(&mut con);
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("campaign.database-url")
        .query(&mut con)
        .unwrap();
    assert!(!shown.concat().contains("colon"), "{shown:?}");
    let mut admin = database.socket_client();
    let user: String = admin
        .query_one(
            "SELECT usename::text FROM pg_stat_activity WHERE application_name = 'redis-campaign' LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(user, "campaign_app");
    assert_eq!(rows(&mut admin, "p"), added.iter().cloned().collect());
    assert_cache_holds(&mut con, "p", &added);
}

#[test]
fn channel_binding_over_tls_with_a_password_file() {
    let certs = Certificates::new();
    let mut database = Postgres::start_owned();
    database
        .socket_client()
        .batch_execute(
            "CREATE ROLE campaign_app LOGIN PASSWORD 'bound-secret';
             GRANT ALL ON SCHEMA public TO campaign_app;",
        )
        .unwrap();
    certs.serve(
        &mut database,
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    fs::write(&passfile, "localhost:*:*:campaign_app:bound-secret\n").unwrap();
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).unwrap();
    let url = |mode: &str| {
        format!(
            "postgresql://campaign_app@localhost:{}/postgres?hostaddr=127.0.0.1&sslmode={mode}\
             &sslrootcert={}&passfile={}&channel_binding=require",
            database.port(),
            certs.path_str("ca.crt"),
            passfile.display()
        )
    };
    let server = server();
    let mut con = server.connection();
    let mut added = seed(&mut con, &url("verify-full"), "b");
    // Channel binding needs TLS: over plaintext the module stops before
    // sending any proof of the password.
    set_url(&mut con, &url("disable"));
    added.extend(add_some(&mut con, "b", "m", 20));
    wait_last_error(&mut con, "channel binding");
    assert_eq!(pending(&mut con), 20);
    set_url(&mut con, &url("verify-full"));
    flush(&mut con);
    let mut admin = database.socket_client();
    let (open, encrypted) = module_connections(&mut admin);
    assert!(open > 0 && encrypted);
    assert_eq!(rows(&mut admin, "b"), added.iter().cloned().collect());
    assert_cache_holds(&mut con, "b", &added);
}

/// ADD, REM, FLUSH, REBUILD, VERIFY and read-through through PgBouncer.
fn through_pgbouncer(pool_mode: &str) {
    let database = Postgres::start_owned();
    let bouncer = PgBouncer::start(&database, pool_mode);
    let server = RedisServer::start_with(RedisOptions::default().module_args(&[
        "database-url",
        &bouncer.url(),
        "flush-interval-ms",
        "20",
    ]));
    let mut con = server.connection();
    // Several campaigns flushed and loaded at once share 2 server
    // connections in transaction mode.
    let mut expected = BTreeSet::new();
    for round in 0..5 {
        for campaign in ["a", "b", "c"] {
            let added = members(&format!("{campaign}{round}-"), 0..2_000);
            add(&mut con, campaign, &added);
            let removed = &added[..100];
            let mut rem = redis::cmd("CAMPAIGN.REM");
            rem.arg(campaign).arg(removed);
            let _: i64 = rem.query(&mut con).unwrap();
            expected.extend(
                added[100..]
                    .iter()
                    .map(|m| (campaign.to_owned(), m.clone())),
            );
        }
    }
    flush(&mut con);
    let mut admin = database.socket_client();
    let all: BTreeSet<(String, String)> = admin
        .query(&format!("SELECT campaign, member FROM {TABLE}"), &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(all, expected, "{}", bouncer.log());
    admin
        .batch_execute(&format!(
            "INSERT INTO {TABLE} (campaign, member) VALUES ('a', 'around')"
        ))
        .unwrap();
    let verified = call(&mut con, &[b"CAMPAIGN.VERIFY", b"a"]).unwrap();
    assert!(
        format!("{verified:?}").contains("consistent"),
        "{verified:?}"
    );
    assert_eq!(int(&mut con, &["CAMPAIGN.REBUILD", "a"]), 9_501);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "a", "around"]), 1);
    // Read-through: a campaign not in Redis loads from the table.
    int(&mut con, &["DEL", "b"]);
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "b"]), 0);
    assert_eq!(int(&mut con, &["CAMPAIGN.HAS", "b", "b4-1999"]), 1);
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "b"]), 9_500);
    for campaign in ["a", "c"] {
        let mut members: Vec<String> = expected
            .iter()
            .filter(|(c, _)| c == campaign)
            .map(|(_, m)| m.clone())
            .collect();
        if campaign == "a" {
            members.push("around".into());
        }
        assert_cache_holds(&mut con, campaign, &members);
    }
    assert!(
        !bouncer.log().contains("prepared statement"),
        "{}",
        bouncer.log()
    );
    assert_eq!(status(&mut con)["last-error"], "", "{}", bouncer.log());
}

#[test]
fn pgbouncer_transaction_mode() {
    through_pgbouncer("transaction");
}

#[test]
fn pgbouncer_session_mode() {
    through_pgbouncer("session");
}

#[test]
fn follows_a_promoted_standby_with_nothing_lost() {
    let mut primary = Postgres::start_owned();
    let standby = primary.start_standby();
    // Synchronous replication: a COMMIT the module saw (and trimmed its
    // journal for) is on the standby too. Asynchronous replication loses
    // the last commits on failover, whatever the client.
    primary.reconfigure("synchronous_standby_names = '*'", None);
    let url = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres \
         target_session_attrs=read-write connect_timeout=2",
        primary.port(),
        standby.port()
    );
    let server = RedisServer::start_with(RedisOptions::default().module_args(&[
        "database-url",
        &url,
        "flush-interval-ms",
        "20",
        "db-timeout-ms",
        "3000",
    ]));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut con = server.connection();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<String> = (next..next + 20).map(|i| format!("m{i}")).collect();
                next += 20;
                let added: Result<i64, _> = redis::cmd("CAMPAIGN.ADD")
                    .arg("f")
                    .arg(&batch)
                    .query(&mut con);
                if added.is_ok() {
                    acknowledged.extend(batch);
                }
                thread::sleep(Duration::from_millis(20));
            }
            acknowledged
        })
    };
    let mut con = server.connection();
    assert!(wait_until(Duration::from_secs(20), || {
        status(&mut con)["database"] == "connected"
    }));
    thread::sleep(Duration::from_millis(500));
    primary.crash();
    thread::sleep(Duration::from_millis(300));
    standby.promote();
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let acknowledged = writer.join().unwrap();
    assert!(acknowledged.len() > 100);
    flush(&mut con);
    assert_eq!(pending(&mut con), 0);
    let mut admin = standby.socket_client();
    let expected: BTreeSet<String> = acknowledged.iter().cloned().collect();
    assert_eq!(rows(&mut admin, "f"), expected);
    assert_cache_holds(&mut con, "f", &acknowledged);
}

/// Figures, not a check: FLUSH of 200,000 new members (20 batches of
/// 10,000) with TLS and without, on one server; and through PgBouncer.
/// `cargo test --release --test integration measure_tls -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_tls_flush_cost() {
    let certs = Certificates::new();
    let mut database = Postgres::start_owned();
    certs.serve(
        &mut database,
        "local all all trust\nhost all all 127.0.0.1/32 trust\n",
    );
    let base = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres dbname=postgres",
        database.port()
    );
    let bouncer = PgBouncer::start(&database, "transaction");
    let server = server();
    let mut con = server.connection();
    let root = certs.path_str("ca.crt");
    for round in 0..3 {
        for (name, url) in [
            ("disable", format!("{base} sslmode=disable")),
            ("require", format!("{base} sslmode=require")),
            (
                "verify-full",
                format!("{base} sslmode=verify-full sslrootcert={root}"),
            ),
            ("pgbouncer-tx", bouncer.url()),
        ] {
            let campaign = format!("{name}-{round}");
            seed(&mut con, &url, &campaign);
            let added = members("m", 0..200_000);
            add(&mut con, &campaign, &added);
            let start = std::time::Instant::now();
            flush(&mut con);
            println!(
                "round {round} {name}: FLUSH of 200000 adds {:?}",
                start.elapsed()
            );
        }
    }
}
