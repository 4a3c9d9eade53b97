//! The PostgreSQL helper that the write-behind tests stand on.

use crate::harness::Postgres;

#[test]
fn owned_cluster_serves_queries_and_survives_a_restart() {
    let mut database = Postgres::start_owned();
    let mut client = database.client();
    client
        .batch_execute(
            "CREATE TABLE probe (id int PRIMARY KEY); INSERT INTO probe VALUES (1), (2);",
        )
        .unwrap();
    drop(client);

    database.stop();
    assert!(
        postgres::Client::connect(database.url(), postgres::NoTls).is_err(),
        "a stopped server must refuse connections"
    );
    database.start_again();

    let count: i64 = database
        .client()
        .query_one("SELECT count(*) FROM probe", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 2);
}

#[test]
fn each_test_gets_an_empty_database() {
    let database = Postgres::start();
    let tables: i64 = database
        .client()
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}
