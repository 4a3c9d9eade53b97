//! The server helper: `CAMPAIGN_REDIS_SERVER` and `CAMPAIGN_REDIS_CLI` choose
//! the binaries (scripts/test.sh --server valkey points them at Valkey).

use std::process::Command;

use crate::harness::redis_server::{cli_binary, int, server_binary};
use crate::harness::RedisServer;

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(output.status.success(), "{program} {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn the_server_is_the_chosen_binary_and_the_cli_reaches_it() {
    let server = RedisServer::start();
    let mut con = server.connection();

    // "Redis server v=7.0.15 ..." / "Valkey server v=9.1.2 ...": INFO shows
    // that version as redis_version on Redis and as valkey_version on Valkey.
    let banner = run(&server_binary(), &["--version"]);
    let version = banner
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .unwrap_or_else(|| panic!("no version in {banner:?}"));
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    assert!(
        info.lines()
            .any(|line| line.ends_with(&format!("_version:{version}"))),
        "{banner:?} is not the server answering:\n{info}"
    );

    let port = server.port.to_string();
    let added = run(
        &cli_binary(),
        &["-p", &port, "CAMPAIGN.ADD", "cli-probe", "user:1"],
    );
    assert_eq!(added, "1");
    assert_eq!(int(&mut con, &["CAMPAIGN.CARD", "cli-probe"]), 1);
}
