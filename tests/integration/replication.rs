//! Campaigns reach replicas: by full sync (RDB) and by streamed writes.

use crate::harness::campaign::{start_replica_of, wait_for_replica};
use crate::harness::redis_server::{error, int};
use crate::harness::{RedisOptions, RedisServer};

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
    wait_for_replica(&mut con);

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
    wait_for_replica(&mut con);

    let mut replica_con = replica.connection();
    assert_eq!(int(&mut replica_con, &["CAMPAIGN.CARD", "limits"]), 1);
    assert!(
        !replica.log().contains("invalid member"),
        "replica refused a replicated write:\n{}",
        replica.log()
    );
}
