//! Helpers for talking to the module and its table in tests.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::time::Duration;

use redis::{Connection, Value};

use super::redis_server::{call, int};
use super::{wait_until, Postgres, RedisOptions, RedisServer};

/// The module's default table.
pub const TABLE: &str = "campaign_members";

/// Options for a server that flushes to `database` quickly.
pub fn flushing_to(database: &Postgres) -> RedisOptions {
    RedisOptions::default().module_args(&[
        "database-url",
        database.url(),
        "flush-interval-ms",
        "20",
    ])
}

/// Points a running server at `database` with CONFIG SET.
pub fn use_database(con: &mut Connection, database: &Postgres) {
    let url = database.url().as_bytes();
    call(con, &[b"CONFIG", b"SET", b"campaign.database-url", url]).unwrap();
}

/// `prefix0`, `prefix1`, ... for `range`.
pub fn members(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// CAMPAIGN.ADD in calls of 1,000 members; returns how many were new.
pub fn add(con: &mut Connection, campaign: &str, members: &[String]) -> i64 {
    members
        .chunks(1_000)
        .map(|chunk| {
            redis::cmd("CAMPAIGN.ADD")
                .arg(campaign)
                .arg(chunk)
                .query::<i64>(con)
                .unwrap()
        })
        .sum()
}

/// CAMPAIGN.FLUSH with a generous timeout; the entries it waited for.
pub fn flush(con: &mut Connection) -> i64 {
    int(con, &["CAMPAIGN.FLUSH", "60000"])
}

/// CAMPAIGN.STATUS as text pairs.
pub fn status(con: &mut Connection) -> HashMap<String, String> {
    let value = call(con, &[b"CAMPAIGN.STATUS"]).expect("STATUS");
    let Value::Array(items) = value else {
        panic!("STATUS answered {value:?}")
    };
    items
        .chunks(2)
        .map(|pair| (text(&pair[0]), text(&pair[1])))
        .collect()
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        Value::Int(number) => number.to_string(),
        other => panic!("unexpected {other:?}"),
    }
}

pub fn pending(con: &mut Connection) -> i64 {
    status(con)["pending"].parse().unwrap()
}

/// Waits until the server reports `count` blocked clients: a request that
/// blocks (FLUSH, a held write) has then arrived, in the order they were sent.
pub fn wait_blocked_clients(con: &mut Connection, count: usize) {
    let reached = wait_until(Duration::from_secs(20), || {
        info_field(con, "clients", "blocked_clients") == count.to_string()
    });
    assert!(
        reached,
        "blocked_clients: {}",
        info_field(con, "clients", "blocked_clients")
    );
}

/// One field of an INFO section.
pub fn info_field(con: &mut Connection, section: &str, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
        .trim()
        .to_string()
}

/// The campaign holds exactly `expected`: CARD and MHAS agree.
pub fn assert_cache_holds<S: AsRef<str>>(
    con: &mut Connection,
    campaign: &str,
    expected: impl IntoIterator<Item = S>,
) {
    let distinct: BTreeSet<String> = expected
        .into_iter()
        .map(|m| m.as_ref().to_owned())
        .collect();
    assert_eq!(
        int(con, &["CAMPAIGN.CARD", campaign]),
        distinct.len() as i64,
        "{campaign}"
    );
    let members: Vec<&String> = distinct.iter().collect();
    for chunk in members.chunks(1_000) {
        let answers: Vec<i64> = redis::cmd("CAMPAIGN.MHAS")
            .arg(campaign)
            .arg(chunk)
            .query(con)
            .unwrap();
        assert!(
            answers.iter().all(|&a| a == 1),
            "{campaign}: cache lost members"
        );
    }
}

/// Every (campaign, member) row of the table.
pub fn rows(database: &Postgres) -> BTreeSet<(String, String)> {
    database
        .client()
        .query(&format!("SELECT campaign, member FROM {TABLE}"), &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

pub fn rows_of(database: &Postgres, campaign: &str) -> BTreeSet<String> {
    rows(database)
        .into_iter()
        .filter(|(c, _)| c == campaign)
        .map(|(_, m)| m)
        .collect()
}

/// Inserts rows straight into the table, around the module.
pub fn write_around(database: &Postgres, campaign: &str, members: &[String]) {
    let mut client = database.client();
    let mut copy = client
        .copy_in(&format!("COPY {TABLE} (campaign, member) FROM STDIN"))
        .unwrap();
    for member in members {
        writeln!(copy, "{campaign}\t{member}").unwrap();
    }
    copy.finish().unwrap();
}

/// Starts a replica of `primary` and waits until its link is up.
pub fn start_replica_of(primary: &RedisServer, options: RedisOptions) -> RedisServer {
    let replica =
        RedisServer::start_with(options.config(&format!("replicaof 127.0.0.1 {}", primary.port)));
    let mut con = replica.connection();
    let linked = wait_until(Duration::from_secs(20), || {
        info_field(&mut con, "replication", "master_link_status") == "up"
    });
    assert!(linked, "replica did not sync:\n{}", replica.log());
    replica
}

/// Waits until one replica has applied everything `primary` sent.
pub fn wait_for_replica(primary: &mut Connection) {
    wait_for_replicas(primary, 1);
}

/// Waits until `replicas` replicas have applied everything `primary` sent.
/// WAIT counts only the calling connection's own writes, and what the
/// module sends from its threads (a rebuild's swap) is nobody's: a PUBLISH
/// here first (replicated, and no key) orders it behind.
pub fn wait_for_replicas(primary: &mut Connection, replicas: i64) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg("replication-fence")
        .arg("1")
        .query(primary)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(replicas)
        .arg(20_000)
        .query(primary)
        .unwrap();
    assert_eq!(acked, replicas, "the replicas did not acknowledge");
}

/// Waits until a BGREWRITEAOF has finished, and checks it succeeded.
pub fn wait_for_aof_rewrite(con: &mut Connection) {
    let done = wait_until(Duration::from_secs(30), || {
        info_field(con, "persistence", "aof_rewrite_in_progress") == "0"
            && info_field(con, "persistence", "aof_rewrite_scheduled") == "0"
    });
    assert!(done, "AOF rewrite did not finish");
    assert_eq!(
        info_field(con, "persistence", "aof_last_bgrewrite_status"),
        "ok"
    );
}

/// A libpq URL of a server that accepts connections and never answers
/// (hung, or SIGSTOPped): `extra` parameters appended.
pub fn hung_database_url(extra: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    format!("host=127.0.0.1 port={port} user=x dbname=x {extra}")
        .trim_end()
        .to_string()
}

/// Waits until the module has reached the database (and made its tables).
pub fn wait_connected(con: &mut Connection) {
    let connected = wait_until(Duration::from_secs(20), || {
        status(con)["database"] == "connected"
    });
    assert!(connected, "{:?}", status(con));
}
