//! The PostgreSQL side, as async statements on a connection of the pool
//! (`pool`): the table set-up, one transaction per batch applied so that
//! the newest version of every (campaign, member) wins in any arrival
//! order (SPEC section 4), parking refused changes, and the reads of loads,
//! VERIFY and prefill.
//!
//! Every statement is PgBouncer-safe in transaction mode: parameters go
//! through unnamed statements (`query_typed`), settings through
//! `SET LOCAL`, temporary tables live for one transaction (`ON COMMIT
//! DROP`), and COPY runs inside an explicit transaction.
//!
//! Adds go in by COPY (straight into the table, or through a temporary
//! table and an upsert when some rows exist); removals by deletions that
//! read the batch as arrays (`unnest`), and markers copied into
//! `<table>_removed` (an upsert when some exist), on a second connection
//! at the same time when the pool has one (`removals`, `apply_split`).
//! Concurrent batches of two
//! nodes (a slot that moved with changes pending) are ordered by the
//! table's primary key: an add inserts the row, and a removal that deleted
//! nothing for some member inserts a placeholder for each row it does not
//! see (`ON CONFLICT DO NOTHING` waits for a concurrent insert of the same
//! row to commit or abort) and deletes again, so one of the two always
//! sees the other's committed work: the add's check against newer
//! markers, or the removal's version comparison.

use std::fmt::Write as _;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::copy_format::{build_members, copy_text};
use super::{LoadedMembers, PartsOut, RejectedChange, SinkError};
use crate::core::checksum::SQL_CHECKSUM;
use crate::core::{Change, Collapsed};
use crate::redis_glue::conninfo::ConnInfo;

/// Largest COPY message sent (see `copy_rows`).
const COPY_PIECE_BYTES: usize = 64 * 1024;
/// COPY output handed to the thread that builds a loaded set, in chunks
/// of about this many bytes, at most this many waiting.
const LOAD_CHUNK_BYTES: usize = 256 * 1024;
const LOAD_CHUNKS_QUEUED: usize = 16;

/// The advisory lock the table set-up holds (any fixed number: "campaign"
/// in ASCII).
const SETUP_LOCK: i64 = 0x63_616d_7061_6967;

/// The module's three tables, quoted.
#[derive(Clone)]
pub struct Tables {
    /// `campaign_members` (or its configured name).
    pub table: String,
    /// `<table>_removed`.
    pub removed: String,
    /// `<table>_rejected`.
    pub rejected: String,
    removed_index: String,
}

pub(super) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

impl Tables {
    /// `table_name` must already be a validated identifier.
    pub fn of(table_name: &str) -> Self {
        Tables {
            table: quoted_table(table_name),
            removed: quoted_table(&format!("{table_name}_removed")),
            rejected: quoted_table(&format!("{table_name}_rejected")),
            removed_index: quoted_table(&format!("{table_name}_removed_version")),
        }
    }

    /// Checks the database and creates or upgrades the tables (once per
    /// node and database: see `pool`). Errors here are never `Rejected`,
    /// which would have the flusher isolate rows that did nothing wrong.
    pub async fn set_up(&self, client: &Client) -> Result<(), SinkError> {
        let setup = |error: tokio_postgres::Error| SinkError::Connect(error_chain(&error));
        // Members are UTF-8 text: in another encoding one member could make
        // every later batch fail, so such a database is refused up front.
        let encoding = client
            .simple_query("SHOW server_encoding")
            .await
            .map_err(setup)?
            .into_iter()
            .find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap_or_default();
        if encoding != "UTF8" {
            return Err(SinkError::Connect(format!(
                "the database's encoding is {encoding}, not UTF8: campaign members are \
                 UTF-8 text; use a database created with ENCODING 'UTF8' (journal kept)"
            )));
        }
        let Tables {
            table,
            removed,
            rejected,
            removed_index,
        } = self;
        // Unqualified: an index lives in its table's schema.
        let index_name = removed_index.rsplit('.').next().unwrap_or(removed_index);
        // Nodes setting up at once wait for each other (two concurrent
        // CREATE TABLE IF NOT EXISTS can both try to create the table).
        client
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock({SETUP_LOCK});
                 CREATE TABLE IF NOT EXISTS {table} (
                     campaign  text        NOT NULL,
                     member    text        NOT NULL,
                     added_at  timestamptz NOT NULL DEFAULT now(),
                     version   bigint,
                     PRIMARY KEY (campaign, member)
                 );
                 CREATE TABLE IF NOT EXISTS {removed} (
                     campaign   text        NOT NULL,
                     member     text        NOT NULL,
                     version    bigint      NOT NULL,
                     removed_at timestamptz NOT NULL DEFAULT now(),
                     PRIMARY KEY (campaign, member)
                 );
                 CREATE TABLE IF NOT EXISTS {rejected} (
                     campaign text        NOT NULL,
                     member   text        NOT NULL,
                     op       text        NOT NULL,
                     version  bigint      NOT NULL,
                     error    text        NOT NULL,
                     at       timestamptz NOT NULL DEFAULT now(),
                     PRIMARY KEY (campaign, member, version)
                 );"
            ))
            .await
            .map_err(setup)?;
        // A table made by an older version gains its version column in
        // place (no rewrite). Both statements take a lock that would queue
        // behind a long COPY of another node: run only when missing.
        let exists = async |sql: &str, name: &str| -> Result<bool, SinkError> {
            let params: [Param<'_>; 1] = [(&name, Type::TEXT)];
            let rows = client.query_typed(sql, &params).await.map_err(setup)?;
            Ok(rows.first().is_some_and(|row| row.get(0)))
        };
        let has_version = "SELECT EXISTS (SELECT 1 FROM pg_attribute
                           WHERE attrelid = to_regclass($1) AND attname = 'version'
                             AND NOT attisdropped)";
        if !exists(has_version, table).await? {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS version bigint"
                ))
                .await
                .map_err(setup)?;
        }
        // Adds look for newer markers by version range (see `apply`), and
        // the retention purge deletes by version.
        if !exists("SELECT to_regclass($1) IS NOT NULL", removed_index).await? {
            client
                .batch_execute(&format!(
                    "CREATE INDEX IF NOT EXISTS {index_name} ON {removed} (version)"
                ))
                .await
                .map_err(setup)?;
        }
        client.batch_execute("COMMIT").await.map_err(setup)?;
        Ok(())
    }

    /// The newest version among a campaign's rows and markers (`$1`).
    fn newest_version_sql(&self) -> String {
        format!(
            "SELECT greatest((SELECT max(version) FROM {} WHERE campaign = $1),
                             (SELECT max(version) FROM {} WHERE campaign = $1), 0)",
            self.table, self.removed
        )
    }
}

/// A version as PostgreSQL's `bigint` (versions stay below 2^63).
pub(super) fn sql_version(version: u64) -> i64 {
    version.min(i64::MAX as u64) as i64
}

/// Changes as COPY rows (campaign, member, version).
pub(super) fn change_rows(changes: &[Change<'_>]) -> String {
    copy_text(changes.iter().map(|change| {
        let version = sql_version(change.version);
        (change.campaign, change.member.as_str(), version)
    }))
}

/// Applies one collapsed batch. With a `second` connection, the markers
/// of its removals go in on it at the same time as the rest (see
/// `apply_split`); otherwise everything is one transaction.
pub async fn apply(
    client: &mut Client,
    second: Option<&mut Client>,
    tables: &Tables,
    batch: &Collapsed<'_>,
) -> Result<(), tokio_postgres::Error> {
    match second {
        Some(second) if splits(batch) => apply_split(client, second, tables, batch).await,
        _ => apply_together(client, tables, batch).await,
    }
}

/// Whether `batch` can use a second connection (`apply_split`): it has
/// removals, and no prunes (which write markers themselves).
pub fn splits(batch: &Collapsed<'_>) -> bool {
    !batch.removes.is_empty() && batch.prunes.is_empty()
}

async fn apply_together(
    client: &mut Client,
    tables: &Tables,
    batch: &Collapsed<'_>,
) -> Result<(), tokio_postgres::Error> {
    let mut transaction = client.transaction().await?;
    if !batch.adds.is_empty() {
        apply_adds(&mut transaction, tables, batch).await?;
    }
    if !batch.removes.is_empty() {
        super::removals::apply_removes(&mut transaction, tables, batch).await?;
    }
    if !batch.prunes.is_empty() {
        super::prune::apply_prunes(&mut transaction, tables, &batch.prunes).await?;
    }
    transaction.commit().await
}

/// A removal deletes a row and inserts a marker, twice an add's work; the
/// two halves touch different tables, so they run at once on two
/// connections (two PostgreSQL processes) in two transactions. Neither
/// commits before both have done their work; the markers commit first, so
/// whenever a row is gone its marker is there, and a late add of another
/// node that commits after the deletion meets the marker (see the module
/// comment). Should the rows' commit fail after the markers', the batch
/// stays pending and is applied again: a marker ahead of its deletion
/// only undoes adds older than the removal, which is where the retry ends
/// anyway. Batches with prunes (which write markers themselves) stay in
/// one transaction.
async fn apply_split(
    client: &mut Client,
    second: &mut Client,
    tables: &Tables,
    batch: &Collapsed<'_>,
) -> Result<(), tokio_postgres::Error> {
    let mut transaction = client.transaction().await?;
    let mut markers = second.transaction().await?;
    let rows = async {
        if !batch.adds.is_empty() {
            apply_adds(&mut transaction, tables, batch).await?;
        }
        super::removals::delete_rows(&mut transaction, &tables.table, &batch.removes).await
    };
    let marked = super::removals::write_markers(&mut markers, &tables.removed, &batch.removes);
    let (rows, marked) = futures_util::future::join(rows, marked).await;
    rows?;
    marked?;
    markers.commit().await?;
    transaction.commit().await
}

async fn apply_adds(
    transaction: &mut Transaction<'_>,
    tables: &Tables,
    batch: &Collapsed<'_>,
) -> Result<(), tokio_postgres::Error> {
    let Tables { table, removed, .. } = tables;
    let oldest = batch.adds.iter().map(|change| change.version).min();
    let rows = change_rows(&batch.adds);
    // Fast path: added members are nearly always new rows, so COPY
    // straight into the table. A unique violation (a re-flush after a
    // crash, a member added again, rows written around the module) rolls
    // back to the savepoint and upserts instead, keeping the newer version.
    let attempt = transaction.savepoint("direct_copy").await?;
    match copy_rows(&attempt, table, &rows).await {
        Ok(()) => attempt.commit().await?,
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            attempt.rollback().await?;
            transaction
                .batch_execute(
                    "CREATE TEMP TABLE IF NOT EXISTS campaign_flush_adds (
                         campaign text NOT NULL, member text NOT NULL, version bigint NOT NULL
                     ) ON COMMIT DROP",
                )
                .await?;
            copy_rows(transaction, "campaign_flush_adds", &rows).await?;
            transaction
                .batch_execute(&format!(
                    "INSERT INTO {table} AS t (campaign, member, version)
                     SELECT campaign, member, version FROM campaign_flush_adds
                     ON CONFLICT (campaign, member) DO UPDATE
                     SET version = EXCLUDED.version
                     WHERE t.version IS NULL OR t.version < EXCLUDED.version"
                ))
                .await?;
        }
        Err(error) => return Err(error),
    }
    // An add older than a removal marker is undone. Only markers newer
    // than the batch's oldest add can do that (the version index finds
    // them), and only rows of this batch can be older than a marker:
    // every committed batch left none.
    let oldest = sql_version(oldest.unwrap_or(0));
    let params: [Param<'_>; 1] = [(&oldest, Type::INT8)];
    transaction
        .query_typed(
            &format!(
                "DELETE FROM {table} AS t USING {removed} AS r
                 WHERE r.version > $1
                   AND t.campaign = r.campaign AND t.member = r.member
                   AND t.version < r.version"
            ),
            &params,
        )
        .await?;
    Ok(())
}

/// Sends `rows` (COPY text) into `table`, a piece at a time: the
/// connection's buffers grow to the largest message and keep that size, so
/// one message of a whole 1M-row batch would stay allocated for good.
pub(super) async fn copy_rows(
    transaction: &Transaction<'_>,
    table: &str,
    rows: &str,
) -> Result<(), tokio_postgres::Error> {
    let sink = transaction
        .copy_in::<_, Bytes>(&format!(
            "COPY {table} (campaign, member, version) FROM STDIN"
        ))
        .await?;
    futures_util::pin_mut!(sink);
    for piece in rows.as_bytes().chunks(COPY_PIECE_BYTES) {
        // A send error surfaces again, with the server's reason, in `finish`.
        if sink.send(Bytes::copy_from_slice(piece)).await.is_err() {
            break;
        }
    }
    sink.finish().await.map(|_| ())
}

/// Keeps changes the database refused in `<table>_rejected`.
pub async fn park_rejected(
    client: &Client,
    tables: &Tables,
    rejected: &[RejectedChange],
) -> Result<(), tokio_postgres::Error> {
    let campaigns: Vec<&str> = rejected.iter().map(|c| c.campaign.as_str()).collect();
    let members: Vec<&str> = rejected.iter().map(|c| c.member.as_str()).collect();
    let ops: Vec<&str> = rejected.iter().map(|c| c.op.word()).collect();
    let versions: Vec<i64> = rejected.iter().map(|c| sql_version(c.version)).collect();
    let errors: Vec<&str> = rejected.iter().map(|c| c.error.as_str()).collect();
    // A batch parked again after a crash finds its rows there already. A
    // parked removal never happened, so a marker of its very version goes:
    // its markers may have committed on their own connection before the
    // rows' commit refused it (`apply_split`), and would otherwise undo a
    // late, older add of that member.
    let Tables {
        rejected: parked,
        removed,
        ..
    } = tables;
    let sql = format!(
        "WITH p AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[],
                                         $5::text[]) AS p (campaign, member, op, version, error)),
              unmarked AS (DELETE FROM {removed} AS r USING p
                           WHERE p.op = 'REM' AND r.campaign = p.campaign
                             AND r.member = p.member AND r.version = p.version)
         INSERT INTO {parked} (campaign, member, op, version, error)
         SELECT * FROM p
         ON CONFLICT DO NOTHING"
    );
    let params: [Param<'_>; 5] = [
        (&campaigns, Type::TEXT_ARRAY),
        (&members, Type::TEXT_ARRAY),
        (&ops, Type::TEXT_ARRAY),
        (&versions, Type::INT8_ARRAY),
        (&errors, Type::TEXT_ARRAY),
    ];
    client.query_typed(&sql, &params).await.map(|_| ())
}

/// Drops removal markers of versions below `older_than`; returns how many.
pub async fn purge_removed(
    client: &Client,
    tables: &Tables,
    older_than: u64,
) -> Result<u64, tokio_postgres::Error> {
    let sql = format!(
        "WITH gone AS (DELETE FROM {} WHERE version < $1 RETURNING 1) SELECT count(*) FROM gone",
        tables.removed
    );
    let older_than = sql_version(older_than);
    let params: [Param<'_>; 1] = [(&older_than, Type::INT8)];
    let rows = client.query_typed(&sql, &params).await?;
    Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0)) as u64)
}

/// `(row count, checksum)` of `campaign`, computed by PostgreSQL.
pub async fn digest(
    client: &Client,
    tables: &Tables,
    campaign: &str,
) -> Result<(i64, i64), tokio_postgres::Error> {
    let sql = format!(
        "SELECT {SQL_CHECKSUM} FROM {} WHERE campaign = $1",
        tables.table
    );
    let params: [Param<'_>; 1] = [(&campaign, Type::TEXT)];
    let rows = client.query_typed(&sql, &params).await?;
    let row = &rows[0];
    Ok((row.get(0), row.get(1)))
}

/// Every campaign the table holds.
pub async fn campaigns(
    client: &Client,
    tables: &Tables,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let sql = format!("SELECT DISTINCT campaign FROM {}", tables.table);
    let rows = client.query_typed(&sql, &[]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

pub async fn newest_version(
    client: &Client,
    tables: &Tables,
    campaign: &str,
) -> Result<u64, tokio_postgres::Error> {
    let params: [Param<'_>; 1] = [(&campaign, Type::TEXT)];
    let rows = client
        .query_typed(&tables.newest_version_sql(), &params)
        .await?;
    Ok(rows[0].get::<_, i64>(0).max(0) as u64)
}

/// Streams the members of `campaign` out of the table with COPY (the
/// fastest way out of PostgreSQL) while a second thread builds the set and
/// its checksum (and the shadow parts, when asked); then, in the same
/// snapshot, the newest version among its rows and markers. Rows that
/// could not be members (written around the module) are skipped and
/// counted.
pub async fn load_members(
    client: &mut Client,
    tables: &Tables,
    campaign: &str,
    parts: PartsOut,
) -> Result<LoadedMembers, LoadError> {
    // COPY takes no parameters: the name goes in as a literal. It holds
    // no NUL (validated) and standard strings are on, where doubling the
    // quote is the only escape.
    let literal = format!("E'{}'", campaign.replace('\\', "\\\\").replace('\'', "\\'"));
    let sql = format!(
        "COPY (SELECT member FROM {} WHERE campaign = {literal}) TO STDOUT",
        tables.table
    );
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let (chunks, received) = crossbeam_channel::bounded::<Vec<u8>>(LOAD_CHUNKS_QUEUED);
    // This thread receives the rows, a second one builds the set: each
    // alone is slower than PostgreSQL sends them.
    let builder = std::thread::Builder::new()
        .name("campaign-build".into())
        .spawn(move || {
            crate::redis_glue::thread_priority::lower_this_thread();
            build_members(received, parts)
        })
        .map_err(|error| LoadError::Other(format!("cannot start a thread: {error}")))?;
    let streamed = async {
        let rows = transaction.copy_out(&sql).await?;
        futures_util::pin_mut!(rows);
        let mut chunk = Vec::with_capacity(LOAD_CHUNK_BYTES + 1024);
        // Each message is whole rows, each ending in a newline.
        while let Some(message) = rows.next().await {
            chunk.extend_from_slice(&message?);
            if chunk.len() >= LOAD_CHUNK_BYTES {
                let full =
                    std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK_BYTES + 1024));
                // The builder only stops early by panicking.
                let _ = chunks.send(full);
            }
        }
        if !chunk.is_empty() {
            let _ = chunks.send(chunk);
        }
        Ok::<(), tokio_postgres::Error>(())
    }
    .await;
    drop(chunks);
    let built = builder.join();
    streamed?;
    let mut loaded = built.map_err(|_| {
        LoadError::Other("building the loaded set panicked (see the Redis log)".into())
    })?;
    let params: [Param<'_>; 1] = [(&campaign, Type::TEXT)];
    let newest = transaction
        .query_typed(&tables.newest_version_sql(), &params)
        .await?;
    loaded.newest_version = newest[0].get::<_, i64>(0).max(0) as u64;
    transaction.commit().await?;
    Ok(loaded)
}

/// A load's failure: the database's, or the module's own.
pub enum LoadError {
    Database(tokio_postgres::Error),
    Other(String),
}

impl From<tokio_postgres::Error> for LoadError {
    fn from(error: tokio_postgres::Error) -> Self {
        LoadError::Database(error)
    }
}

/// A failed statement. `Rejected` when the database refused the data
/// (SQLSTATE classes 22 data exception, 23 integrity constraint, 44 check
/// option; 42501 insufficient privilege; P0001 raised by a trigger): the
/// flusher then splits the batch, and parks a change only when it fails
/// alone while others of its batch commit (a refusal every part meets is
/// a fault of the table, not of the rows). Everything else is a
/// `Statement` error: the batch stays pending and is retried.
pub fn statement_error(error: &tokio_postgres::Error) -> SinkError {
    let Some(db) = error.as_db_error() else {
        return SinkError::Statement(error_chain(error));
    };
    let code = db.code().code();
    let mut text = format!("{} (SQLSTATE {code}", db.message());
    if let Some(table) = db.table() {
        let _ = write!(text, ", table {table}");
    }
    text.push(')');
    if let Some(detail) = db.detail() {
        let _ = write!(text, ": {detail}");
    }
    let refused = code.starts_with("22")
        || code.starts_with("23")
        || code.starts_with("44")
        || code == "42501"
        || code == "P0001";
    if refused {
        SinkError::Rejected(text)
    } else {
        SinkError::Statement(text)
    }
}

/// The error and its sources: rust-postgres's own message is often just
/// "error connecting to server" with the reason one level down.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// `name` or `schema.name` (validated plain identifiers) quoted for SQL,
/// folded to lower case first as PostgreSQL folds unquoted names, so
/// `Members` keeps naming the table `members` and `user` is no keyword.
pub fn quoted_table(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{}\"", part.to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(".")
}

/// Removes the password of `url` from `text` (error messages, log lines).
pub fn redact_password(text: &str, url: &str) -> String {
    let password = ConnInfo::parse(url).ok().and_then(|info| info.password);
    match password {
        Some(password) if !password.is_empty() => text.replace(&password, "***"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::{quoted_table, redact_password};

    #[test]
    fn table_names_are_quoted_as_folded() {
        assert_eq!(quoted_table("user"), "\"user\"");
        assert_eq!(quoted_table("App.Members"), "\"app\".\"members\"");
    }

    #[test]
    fn password_is_replaced() {
        let url = "postgresql://app:hunter2@db/x";
        assert_eq!(
            redact_password("failed for hunter2 at db", url),
            "failed for *** at db"
        );
        assert_eq!(
            redact_password("nothing to hide", "host=db"),
            "nothing to hide"
        );
    }
}
