//! Applying removals (SPEC section 4): each deletes its member's row
//! unless the row is newer, and leaves a marker in `<table>_removed`
//! unless a newer one exists.
//!
//! Finding the rows is most of a removal's cost: each is a descent of the
//! primary key, a few dozen text comparisons. A campaign whose removals in
//! one batch are many and at least a quarter of its rows (a campaign
//! ended, a segment dropped) gets a deletion of its own, which PostgreSQL
//! may run as one read of the campaign's rows against a hash of the
//! removed members. Whether a campaign is that small is asked first, with
//! a read of at most four rows per removal: PostgreSQL's statistics can be
//! missing (a new table) or old (a campaign that grew since), and a
//! planner trusting them would read two million rows to delete six
//! hundred. The rest of the batch is one deletion with nested loops
//! forced: a hash join against the whole table would read every row of it
//! for every batch.

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use super::postgres::{change_rows, copy_rows, sql_version, statement_error, Param, Tables};
use super::SinkError;
use crate::core::{Change, Collapsed};

/// A campaign with at least this many removals in a batch may get its
/// own deletion. Below it the two more round trips cost more than the
/// descents they save.
const OWN_DELETION_AT: usize = 500;
/// ... when it holds at most this many rows per removal: reading a row of
/// the campaign costs a fraction of a descent (measured: about 0.5 µs
/// against 3.5 µs), so up to four rows per removal still pays.
const ROWS_PER_REMOVAL: usize = 4;
/// Longest wait of a marker for another transaction's (see `write_markers`);
/// above PostgreSQL's `deadlock_timeout` (1 s), so real deadlocks are
/// found by PostgreSQL first.
const MARKER_LOCK_WAIT_MS: u64 = 2_000;

/// The removals of a batch as three parallel arrays, the parameters of
/// `unnest($1, $2, $3)`: the statements read them in place, with no
/// temporary table to fill and analyze first.
struct RemovalArrays<'a> {
    campaigns: Vec<&'a str>,
    members: Vec<&'a str>,
    versions: Vec<i64>,
}

impl<'a> RemovalArrays<'a> {
    fn of<'c: 'a>(changes: impl IntoIterator<Item = &'a Change<'c>>) -> Self {
        let mut arrays = RemovalArrays {
            campaigns: Vec::new(),
            members: Vec::new(),
            versions: Vec::new(),
        };
        for change in changes {
            arrays.campaigns.push(change.campaign);
            arrays.members.push(change.member.as_str());
            arrays.versions.push(sql_version(change.version));
        }
        arrays
    }

    fn params(&self) -> [Param<'_>; 3] {
        [
            (&self.campaigns, Type::TEXT_ARRAY),
            (&self.members, Type::TEXT_ARRAY),
            (&self.versions, Type::INT8_ARRAY),
        ]
    }

    /// The members and versions of one campaign's removals, after the
    /// campaign as `$1`.
    fn campaign_params<'p>(&'p self, campaign: &'p &'a str) -> [Param<'p>; 3] {
        [
            (campaign, Type::TEXT),
            (&self.members, Type::TEXT_ARRAY),
            (&self.versions, Type::INT8_ARRAY),
        ]
    }
}

/// The removals as rows `d (campaign, member, version)`.
const REMOVALS: &str =
    "unnest($1::text[], $2::text[], $3::int8[]) AS d (campaign, member, version)";

/// The removals of a batch by campaign, in name order (so two nodes lock
/// rows in the same order).
fn by_campaign<'a, 'c>(
    removes: &'a [Change<'c>],
) -> std::collections::BTreeMap<&'c str, Vec<&'a Change<'c>>> {
    let mut groups: std::collections::BTreeMap<&str, Vec<&Change<'c>>> = Default::default();
    for change in removes {
        groups.entry(change.campaign).or_default().push(change);
    }
    groups
}

/// Whether `campaign` has at most `limit` rows, reading at most
/// `limit + 1` entries of the primary key.
async fn holds_at_most(
    transaction: &Transaction<'_>,
    table: &str,
    campaign: &str,
    limit: usize,
) -> Result<bool, tokio_postgres::Error> {
    let read = limit as i64 + 1;
    let params: [Param<'_>; 2] = [(&campaign, Type::TEXT), (&read, Type::INT8)];
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM {table} WHERE campaign = $1
                               ORDER BY member LIMIT $2) AS s"
    );
    let rows: i64 = transaction.query_typed(&sql, &params).await?[0].get(0);
    Ok(rows as usize <= limit)
}

pub(super) async fn apply_removes(
    transaction: &mut Transaction<'_>,
    tables: &Tables,
    batch: &Collapsed<'_>,
) -> Result<(), tokio_postgres::Error> {
    delete_rows(transaction, &tables.table, &batch.removes).await?;
    write_markers(transaction, &tables.removed, &batch.removes).await
}

/// Deletes the removed members' rows unless they are newer.
pub(super) async fn delete_rows(
    transaction: &mut Transaction<'_>,
    table: &str,
    removes: &[Change<'_>],
) -> Result<(), tokio_postgres::Error> {
    let (mut deleted, rest) = delete_small_campaigns(transaction, table, removes).await?;
    let delete = format!(
        "WITH gone AS (DELETE FROM {table} AS t USING {REMOVALS}
                       WHERE t.campaign = d.campaign AND t.member = d.member
                         AND (t.version IS NULL OR t.version <= d.version)
                       RETURNING 1)
         SELECT count(*) FROM gone"
    );
    if !rest.members.is_empty() {
        force_nested_loops(transaction).await?;
        deleted += transaction.query_typed(&delete, &rest.params()).await?[0].get::<_, i64>(0);
    }
    if deleted < removes.len() as i64 {
        // Some removal deleted nothing: its row may be one a concurrent
        // transaction inserts. The placeholder (see `postgres`) waits for
        // it; a second deletion of the whole batch then sees it.
        let arrays = RemovalArrays::of(removes);
        if rest.members.is_empty() {
            force_nested_loops(transaction).await?;
        }
        if place_placeholders(transaction, table, &arrays).await? {
            transaction.query_typed(&delete, &arrays.params()).await?;
        }
    }
    Ok(())
}

/// Each removal is a few index probes: a hash join against the whole table
/// (which the planner picks for a batch of thousands) reads every row of it
/// for every batch. Set only when needed: a batch of whole campaigns saves
/// the round trip.
async fn force_nested_loops(transaction: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    transaction
        .batch_execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
        .await
}

/// Gives each campaign with many removals that holds at most
/// `ROWS_PER_REMOVAL` rows per removal its own deletion; returns how many
/// rows they deleted and the removals left for the shared deletion.
async fn delete_small_campaigns<'a>(
    transaction: &Transaction<'_>,
    table: &str,
    removes: &'a [Change<'a>],
) -> Result<(i64, RemovalArrays<'a>), tokio_postgres::Error> {
    let groups = by_campaign(removes);
    if groups
        .values()
        .any(|changes| changes.len() >= OWN_DELETION_AT)
    {
        // The size check must read the primary key in order and stop at
        // its limit: with missing statistics PostgreSQL would rather read
        // and sort the whole campaign. (Later statements of the batch use
        // the primary key anyway.)
        transaction
            .batch_execute(
                "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;
                 SET LOCAL enable_sort = off",
            )
            .await?;
    }
    let campaign_delete = format!(
        "WITH gone AS (DELETE FROM {table} AS t
                       USING unnest($2::text[], $3::int8[]) AS d (member, version)
                       WHERE t.campaign = $1 AND t.member = d.member
                         AND (t.version IS NULL OR t.version <= d.version)
                       RETURNING 1)
         SELECT count(*) FROM gone"
    );
    let mut deleted = 0;
    let mut rest = Vec::new();
    for (campaign, changes) in groups {
        let limit = ROWS_PER_REMOVAL * changes.len();
        let own = changes.len() >= OWN_DELETION_AT
            && holds_at_most(transaction, table, campaign, limit).await?;
        if !own {
            rest.extend(changes);
            continue;
        }
        let arrays = RemovalArrays::of(changes);
        let params = arrays.campaign_params(&campaign);
        deleted += transaction.query_typed(&campaign_delete, &params).await?[0].get::<_, i64>(0);
    }
    Ok((deleted, RemovalArrays::of(rest)))
}

/// Leaves a marker for each removal unless a newer one exists.
pub(super) async fn write_markers(
    transaction: &mut Transaction<'_>,
    removed: &str,
    removes: &[Change<'_>],
) -> Result<(), tokio_postgres::Error> {
    // The markers may be written in a transaction of their own that
    // commits only once the rows' deletion is done (`postgres::apply_split`).
    // Two nodes doing that for the same members could wait for each other
    // through their clients, where PostgreSQL's deadlock detection cannot
    // see: a marker that waits this long for another transaction's gives
    // up instead, and its batch is retried.
    transaction
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = '{MARKER_LOCK_WAIT_MS}ms'"
        ))
        .await?;
    // The markers: nearly always new, so copied straight in; one that
    // exists (a member removed before, a batch applied again, another
    // node's) rolls back to an upsert that keeps the newer version.
    let rows = change_rows(removes);
    let direct = transaction.savepoint("direct_markers").await?;
    match copy_rows(&direct, removed, &rows).await {
        Ok(()) => direct.commit().await,
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            direct.rollback().await?;
            transaction
                .query_typed(
                    &format!(
                        "INSERT INTO {removed} AS r (campaign, member, version)
                         SELECT campaign, member, version FROM {REMOVALS}
                         ON CONFLICT (campaign, member) DO UPDATE
                         SET version = EXCLUDED.version, removed_at = now()
                         WHERE r.version < EXCLUDED.version"
                    ),
                    &RemovalArrays::of(removes).params(),
                )
                .await
                .map(|_| ())
        }
        Err(error) => Err(error),
    }
}

/// Inserts a placeholder row for each removal whose row this transaction
/// does not see (a concurrent insert of one makes it wait); false when the
/// table refuses them (a CHECK, a trigger, INSERT revoked), which refuses
/// a concurrent add of those members too: there is no race to guard then.
async fn place_placeholders(
    transaction: &mut Transaction<'_>,
    table: &str,
    arrays: &RemovalArrays<'_>,
) -> Result<bool, tokio_postgres::Error> {
    let placeholders = transaction.savepoint("placeholders").await?;
    let placed = placeholders
        .query_typed(
            &format!(
                "INSERT INTO {table} (campaign, member, version)
                 SELECT campaign, member, version FROM {REMOVALS}
                 WHERE NOT EXISTS (SELECT 1 FROM {table} AS t
                                   WHERE t.campaign = d.campaign AND t.member = d.member)
                 ON CONFLICT (campaign, member) DO NOTHING"
            ),
            &arrays.params(),
        )
        .await;
    match placed {
        Ok(_) => placeholders.commit().await.map(|()| true),
        Err(error) if matches!(statement_error(&error), SinkError::Rejected(_)) => {
            placeholders.rollback().await.map(|()| false)
        }
        Err(error) => Err(error),
    }
}
