//! Campaigns reach replicas: by full sync (RDB) and by streamed writes.

use std::time::Duration;

use redis::Connection;

use crate::harness::redis_server::{error, int};
use crate::harness::{wait_until, RedisOptions, RedisServer};

fn start_replica_of(primary: &RedisServer, options: RedisOptions) -> RedisServer {
    let replica =
        RedisServer::start_with(options.config(&format!("replicaof 127.0.0.1 {}", primary.port)));
    let mut con = replica.connection();
    let linked = wait_until(Duration::from_secs(20), || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut con)
            .unwrap();
        info.contains("master_link_status:up")
    });
    assert!(linked, "replica did not sync:\n{}", replica.log());
    replica
}

/// Waits until the replica has applied everything the primary sent.
fn wait_for_replica(primary: &mut Connection, replica: &RedisServer) {
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5_000).query(primary).unwrap();
    assert_eq!(acked, 1, "replica did not acknowledge:\n{}", replica.log());
}

#[test]
fn replica_gets_campaigns_by_full_sync_and_stream() {
    let primary = RedisServer::start();
    let mut con = primary.connection();
    let members: Vec<String> = (0..2_000).map(|i| format!("m{i}")).collect();
    let _: i64 = redis::cmd("CAMPAIGN.ADD")
        .arg("synced")
        .arg(&members)
        .query(&mut con)
        .unwrap();

    let replica = start_replica_of(&primary, RedisOptions::default());
    let mut replica_con = replica.connection();
    assert_eq!(int(&mut replica_con, &["CAMPAIGN.CARD", "synced"]), 2_000);

    int(&mut con, &["CAMPAIGN.ADD", "streamed", "a", "b"]);
    int(&mut con, &["CAMPAIGN.REM", "synced", "m0", "m1"]);
    int(&mut con, &["CAMPAIGN.ADD", "emptied", "x"]);
    int(&mut con, &["CAMPAIGN.REM", "emptied", "x"]);
    wait_for_replica(&mut con, &replica);

    assert_eq!(int(&mut replica_con, &["CAMPAIGN.CARD", "streamed"]), 2);
    assert_eq!(int(&mut replica_con, &["CAMPAIGN.CARD", "synced"]), 1_998);
    assert_eq!(int(&mut replica_con, &["CAMPAIGN.HAS", "synced", "m0"]), 0);
    assert_eq!(int(&mut replica_con, &["EXISTS", "emptied"]), 0);

    let text = error(&mut replica_con, &["CAMPAIGN.ADD", "streamed", "c"]);
    assert!(text.starts_with("READONLY"), "{text}");
}

/// A replica with a smaller `max-member-bytes` must still apply what the
/// primary accepted: replicated commands skip the length limit.
#[test]
fn replica_applies_members_longer_than_its_own_limit() {
    let primary =
        RedisServer::start_with(RedisOptions::default().module_args(&["max-member-bytes", "64"]));
    let replica = start_replica_of(
        &primary,
        RedisOptions::default().module_args(&["max-member-bytes", "4"]),
    );
    let mut con = primary.connection();
    let long_member = "a-member-of-forty-bytes-xxxxxxxxxxxxxxxx";
    int(&mut con, &["CAMPAIGN.ADD", "limits", long_member]);
    wait_for_replica(&mut con, &replica);

    let mut replica_con = replica.connection();
    assert_eq!(int(&mut replica_con, &["CAMPAIGN.CARD", "limits"]), 1);
    assert!(
        !replica.log().contains("invalid member"),
        "replica refused a replicated write:\n{}",
        replica.log()
    );
}
