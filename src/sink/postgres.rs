//! The PostgreSQL sink: one transaction per batch, applied so that the
//! newest version of every (campaign, member) wins in any arrival order
//! (SPEC section 4). Adds go in by COPY (straight into the table, or
//! through a temporary table and an upsert when some rows exist); removals
//! by array parameters, leaving markers in `<table>_removed`.
//!
//! Concurrent batches of two nodes (a slot that moved with changes
//! pending) are ordered by the table's primary key: an add inserts the
//! row, and a removal first inserts a placeholder for a row it does not
//! see (`ON CONFLICT DO NOTHING` waits for a concurrent insert of the same
//! row to commit or abort), so one of the two always sees the other's
//! committed work: the add's check against newer markers, or the
//! removal's version comparison.

use std::fmt::Write as _;
use std::io::Write as _;
use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, Config, NoTls};

use super::{LoadedMembers, PartsOut, RejectedChange, Sink, SinkError, Source};
use crate::core::checksum::{member_hash, SQL_CHECKSUM};
use crate::core::member_set::MemberSetBuilder;
use crate::core::shadow::PartsWriter;
use crate::core::{validate_text, Change, Collapsed};
use futures_util::StreamExt;

/// Without a connect timeout a dead host hangs the flusher for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest COPY message sent (see `copy_rows`).
const COPY_PIECE_BYTES: usize = 64 * 1024;
/// COPY output handed to the thread that builds a loaded set, in chunks
/// of about this many bytes, at most this many waiting.
const LOAD_CHUNK_BYTES: usize = 256 * 1024;
const LOAD_CHUNKS_QUEUED: usize = 16;
/// A statement that runs longer than this is treated as a failure and retried.
const STATEMENT_TIMEOUT_MS: u32 = 120_000;

pub struct PostgresSink {
    client: Client,
    /// `campaign_members` (or its configured name), quoted.
    table: String,
    /// `<table>_removed`, quoted.
    removed: String,
    /// `<table>_rejected`, quoted.
    rejected: String,
    /// Where loads read COPY output (opened by the first load).
    copy: Option<CopyConnection>,
    url: String,
}

/// A second connection, through tokio-postgres on a runtime of its own, so
/// a load reads a whole COPY in one async loop: the blocking client enters
/// its runtime once per row, which took longer than `psql`'s whole `\copy`
/// of the same rows (0.43 s against 0.28 s for a million).
struct CopyConnection {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    /// Asks for the newest version while the COPY streams.
    beside: tokio_postgres::Client,
}

/// The connection settings of `url`, with a connect timeout (without one
/// a dead host hangs the caller for minutes) and keepalives.
fn session_config(url: &str, application: &str) -> Result<tokio_postgres::Config, SinkError> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|error| SinkError::Connect(error_chain(&error)))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .application_name(application);
    Ok(config)
}

impl CopyConnection {
    fn open(url: &str) -> Result<Self, SinkError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| SinkError::Connect(format!("cannot start a runtime: {error}")))?;
        let config = session_config(url, "redis-campaign-load")?;
        let connect = || -> Result<tokio_postgres::Client, SinkError> {
            let (client, connection) = runtime
                .block_on(config.connect(tokio_postgres::NoTls))
                .map_err(|error| SinkError::Connect(error_chain(&error)))?;
            // Runs whenever the runtime is blocked on (every use of a client).
            runtime.spawn(connection);
            runtime
                .block_on(
                    client
                        .batch_execute(&format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}")),
                )
                .map_err(setup_error)?;
            Ok(client)
        };
        let client = connect()?;
        let beside = connect()?;
        Ok(CopyConnection {
            runtime,
            client,
            beside,
        })
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed() || self.beside.is_closed()
    }
}

impl PostgresSink {
    /// Connects, creates the table if it is missing, and prepares the
    /// session. `table` must already be a validated identifier.
    pub fn connect(url: &str, table_name: &str) -> Result<Self, SinkError> {
        let table = quoted_table(table_name);
        let removed = quoted_table(&format!("{table_name}_removed"));
        let rejected = quoted_table(&format!("{table_name}_rejected"));
        let removed_index = quoted_table(&format!("{table_name}_removed_version"));
        // Unqualified: an index lives in its table's schema.
        let removed_index_name = removed_index.rsplit('.').next().unwrap_or(&removed_index);
        let mut client = Config::from(session_config(url, "redis-campaign")?)
            .connect(NoTls)
            .map_err(|error| SinkError::Connect(error_chain(&error)))?;
        // Members are UTF-8 text: in another encoding one member could make
        // every later batch fail, so such a database is refused up front.
        let encoding: String = client
            .query_one("SHOW server_encoding", &[])
            .map_err(setup_error)?
            .get(0);
        if encoding != "UTF8" {
            return Err(SinkError::Connect(format!(
                "the database's encoding is {encoding}, not UTF8: campaign members are \
                 UTF-8 text; use a database created with ENCODING 'UTF8' (journal kept)"
            )));
        }
        client
            .batch_execute(&format!(
                "SET statement_timeout = {STATEMENT_TIMEOUT_MS};
                 SET standard_conforming_strings = on;
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
                 );
                 CREATE TEMP TABLE IF NOT EXISTS campaign_flush_adds (
                     campaign text   NOT NULL,
                     member   text   NOT NULL,
                     version  bigint NOT NULL
                 ) ON COMMIT DELETE ROWS;"
            ))
            .map_err(setup_error)?;
        // A table made by an older version gains its version column in
        // place (no rewrite). Both statements take a lock that would queue
        // behind a long COPY of another node: run only when missing.
        let exists = |client: &mut Client, sql: &str, name: &str| -> Result<bool, SinkError> {
            let row = client.query_one(sql, &[&name]).map_err(setup_error)?;
            Ok(row.get(0))
        };
        let has_version = "SELECT EXISTS (SELECT 1 FROM pg_attribute
                           WHERE attrelid = to_regclass($1) AND attname = 'version'
                             AND NOT attisdropped)";
        if !exists(&mut client, has_version, &table)? {
            client
                .batch_execute(&format!(
                    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS version bigint"
                ))
                .map_err(setup_error)?;
        }
        // Adds look for newer markers by version range (see `apply`), and
        // the retention purge deletes by version.
        let has_index = "SELECT to_regclass($1) IS NOT NULL";
        if !exists(&mut client, has_index, &removed_index)? {
            client
                .batch_execute(&format!(
                    "CREATE INDEX IF NOT EXISTS {removed_index_name} ON {removed} (version)"
                ))
                .map_err(setup_error)?;
        }
        Ok(PostgresSink {
            client,
            table,
            removed,
            rejected,
            copy: None,
            url: url.to_owned(),
        })
    }

    /// The newest version among a campaign's rows and markers (`$1`).
    fn newest_version_sql(&self) -> String {
        format!(
            "SELECT greatest((SELECT max(version) FROM {} WHERE campaign = $1),
                             (SELECT max(version) FROM {} WHERE campaign = $1), 0)",
            self.table, self.removed
        )
    }

    fn copy_connection(&mut self) -> Result<&mut CopyConnection, SinkError> {
        if self.copy.as_ref().is_none_or(CopyConnection::is_closed) {
            self.copy = Some(CopyConnection::open(&self.url)?);
        }
        Ok(self.copy.as_mut().expect("opened above"))
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

impl Source for PostgresSink {
    /// Streams the members of `campaign` out of the table with COPY (the
    /// fastest way out of PostgreSQL) and builds the set and its checksum
    /// (and the shadow parts, when asked) in the same pass. Rows that could
    /// not be members (an empty string written around the module) are
    /// skipped and counted.
    fn load_members(
        &mut self,
        campaign: &str,
        parts: PartsOut,
    ) -> Result<LoadedMembers, SinkError> {
        // COPY takes no parameters: the name goes in as a literal. It holds
        // no NUL (validated) and the session uses standard strings, where
        // doubling the quote is the only escape.
        let literal = format!("'{}'", campaign.replace('\'', "''"));
        let sql = format!(
            "COPY (SELECT member FROM {} WHERE campaign = {literal}) TO STDOUT",
            self.table
        );
        let newest_sql = self.newest_version_sql();
        let copy = self.copy_connection()?;
        // This thread receives the rows, a second one builds the set: each
        // alone is slower than PostgreSQL sends them.
        let (chunks, received) = crossbeam_channel::bounded::<Vec<u8>>(LOAD_CHUNKS_QUEUED);
        let (streamed, built) = std::thread::scope(|scope| {
            let builder = scope.spawn(move || build_members(received, parts));
            let streamed = copy.runtime.block_on(async {
                let rows = copy.client.copy_out(&sql).await?;
                // The COPY has its snapshot now: the newest version, asked
                // on the other connection meanwhile, covers every row.
                let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&campaign];
                let newest = copy.beside.query_one(&newest_sql, &parameters);
                let forward = async {
                    futures_util::pin_mut!(rows);
                    let mut chunk = Vec::with_capacity(LOAD_CHUNK_BYTES + 1024);
                    // Each message is whole rows, each ending in a newline.
                    while let Some(message) = rows.next().await {
                        chunk.extend_from_slice(&message?);
                        if chunk.len() >= LOAD_CHUNK_BYTES {
                            let full = std::mem::replace(
                                &mut chunk,
                                Vec::with_capacity(LOAD_CHUNK_BYTES + 1024),
                            );
                            // The builder only stops early by panicking.
                            let _ = chunks.send(full);
                        }
                    }
                    if !chunk.is_empty() {
                        let _ = chunks.send(chunk);
                    }
                    Ok::<(), tokio_postgres::Error>(())
                };
                let (forwarded, newest) = futures_util::future::join(forward, newest).await;
                forwarded?;
                Ok::<i64, tokio_postgres::Error>(newest?.get(0))
            });
            drop(chunks);
            (streamed, builder.join())
        });
        let mut loaded = match built {
            Ok(loaded) => loaded,
            Err(_) => {
                return Err(SinkError::Statement(
                    "building the loaded set panicked (see the Redis log)".into(),
                ))
            }
        };
        match streamed {
            Ok(newest) => loaded.newest_version = newest.max(0) as u64,
            Err(error) => {
                self.copy = None;
                return Err(statement_error(error));
            }
        }
        Ok(loaded)
    }

    /// `(row count, checksum)` of `campaign`, computed by PostgreSQL.
    fn digest(&mut self, campaign: &str) -> Result<(i64, i64), SinkError> {
        let sql = format!(
            "SELECT {SQL_CHECKSUM} FROM {} WHERE campaign = $1",
            self.table
        );
        let row = self
            .client
            .query_one(&sql, &[&campaign])
            .map_err(statement_error)?;
        Ok((row.get(0), row.get(1)))
    }

    /// Every campaign the table holds.
    fn campaigns(&mut self) -> Result<Vec<String>, SinkError> {
        let sql = format!("SELECT DISTINCT campaign FROM {}", self.table);
        let rows = self.client.query(&sql, &[]).map_err(statement_error)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn newest_version(&mut self, campaign: &str) -> Result<u64, SinkError> {
        let sql = self.newest_version_sql();
        let row = self
            .client
            .query_one(&sql, &[&campaign])
            .map_err(statement_error)?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }
}

/// A version as PostgreSQL's `bigint` (versions stay below 2^63).
fn sql_version(version: u64) -> i64 {
    version.min(i64::MAX as u64) as i64
}

impl Sink for PostgresSink {
    fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError> {
        let PostgresSink {
            client,
            table,
            removed,
            ..
        } = self;
        let mut transaction = client.transaction().map_err(statement_error)?;
        if let Some(oldest) = batch.adds.iter().map(|change| change.version).min() {
            let rows = copy_text(&batch.adds);
            // Fast path: added members are nearly always new rows, so COPY
            // straight into the table. A unique violation (a re-flush after
            // a crash, a member added again, rows written around the
            // module) rolls back to the savepoint and upserts instead,
            // keeping the newer version.
            let mut attempt = transaction
                .savepoint("direct_copy")
                .map_err(statement_error)?;
            match copy_rows(&mut attempt, table, &rows) {
                Ok(()) => attempt.commit().map_err(statement_error)?,
                Err(error) if is_unique_violation(&error) => {
                    attempt.rollback().map_err(statement_error)?;
                    copy_rows(&mut transaction, "campaign_flush_adds", &rows)
                        .map_err(statement_error)?;
                    transaction
                        .batch_execute(&format!(
                            "INSERT INTO {table} AS t (campaign, member, version)
                             SELECT campaign, member, version FROM campaign_flush_adds
                             ON CONFLICT (campaign, member) DO UPDATE
                             SET version = EXCLUDED.version
                             WHERE t.version IS NULL OR t.version < EXCLUDED.version"
                        ))
                        .map_err(statement_error)?;
                }
                Err(error) => return Err(statement_error(error)),
            }
            // An add older than a removal marker is undone. Only markers
            // newer than the batch's oldest add can do that (the version
            // index finds them), and only rows of this batch can be older
            // than a marker: every committed batch left none.
            transaction
                .execute(
                    &format!(
                        "DELETE FROM {table} AS t USING {removed} AS r
                         WHERE r.version > $1
                           AND t.campaign = r.campaign AND t.member = r.member
                           AND t.version < r.version"
                    ),
                    &[&sql_version(oldest)],
                )
                .map_err(statement_error)?;
        }
        if !batch.removes.is_empty() {
            let mut campaigns = Vec::with_capacity(batch.removes.len());
            let mut members = Vec::with_capacity(batch.removes.len());
            let mut versions = Vec::with_capacity(batch.removes.len());
            for change in &batch.removes {
                campaigns.push(change.campaign);
                members.push(change.member.as_str());
                versions.push(sql_version(change.version));
            }
            let removals =
                "unnest($1::text[], $2::text[], $3::int8[]) AS d(campaign, member, version)";
            // The placeholder (see the module comment), then the deletion
            // of every row not newer than the removal, then the marker.
            for sql in [
                format!(
                    "INSERT INTO {table} (campaign, member, version)
                     SELECT campaign, member, version FROM {removals}
                     ON CONFLICT (campaign, member) DO NOTHING"
                ),
                format!(
                    "DELETE FROM {table} AS t USING {removals}
                     WHERE t.campaign = d.campaign AND t.member = d.member
                       AND (t.version IS NULL OR t.version <= d.version)"
                ),
                format!(
                    "INSERT INTO {removed} AS r (campaign, member, version)
                     SELECT campaign, member, version FROM {removals}
                     ON CONFLICT (campaign, member) DO UPDATE
                     SET version = EXCLUDED.version, removed_at = now()
                     WHERE r.version < EXCLUDED.version"
                ),
            ] {
                transaction
                    .execute(&sql, &[&campaigns, &members, &versions])
                    .map_err(statement_error)?;
            }
        }
        transaction.commit().map_err(statement_error)
    }

    fn park_rejected(&mut self, rejected: &[RejectedChange]) -> Result<(), SinkError> {
        let campaigns: Vec<&str> = rejected.iter().map(|c| c.campaign.as_str()).collect();
        let members: Vec<&str> = rejected.iter().map(|c| c.member.as_str()).collect();
        let ops: Vec<&str> = rejected.iter().map(|c| c.op.word()).collect();
        let versions: Vec<i64> = rejected.iter().map(|c| sql_version(c.version)).collect();
        let errors: Vec<&str> = rejected.iter().map(|c| c.error.as_str()).collect();
        // A batch parked again after a crash finds its rows there already.
        let sql = format!(
            "INSERT INTO {} (campaign, member, op, version, error)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[])
             ON CONFLICT DO NOTHING",
            self.rejected
        );
        self.client
            .execute(&sql, &[&campaigns, &members, &ops, &versions, &errors])
            .map(|_| ())
            .map_err(statement_error)
    }

    fn purge_removed(&mut self, older_than: u64) -> Result<u64, SinkError> {
        let sql = format!("DELETE FROM {} WHERE version < $1", self.removed);
        self.client
            .execute(&sql, &[&sql_version(older_than)])
            .map_err(statement_error)
    }
}

fn copy_rows(
    transaction: &mut postgres::Transaction<'_>,
    table: &str,
    rows: &str,
) -> Result<(), postgres::Error> {
    let mut writer = transaction.copy_in(&format!(
        "COPY {table} (campaign, member, version) FROM STDIN"
    ))?;
    // Sent a piece at a time: the connection's buffers grow to the largest
    // message and keep that size, so one message of a whole 1M-row batch
    // would stay allocated (counted in used_memory) for good.
    for piece in rows.as_bytes().chunks(COPY_PIECE_BYTES) {
        // A write error surfaces again, with the server's reason, in `finish`.
        if writer.write_all(piece).is_err() {
            break;
        }
    }
    writer.finish().map(|_| ())
}

fn is_unique_violation(error: &postgres::Error) -> bool {
    error.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// Builds the set, its checksum (a lookup3 hash, cheap next to the insert)
/// and the parts, when asked, from chunks of COPY output.
fn build_members(
    chunks: crossbeam_channel::Receiver<Vec<u8>>,
    parts_out: PartsOut,
) -> LoadedMembers {
    let mut loaded = LoadedMembers::default();
    let mut members = MemberSetBuilder::default();
    let mut parts = parts_out.writer();
    for chunk in chunks {
        for_each_field(&chunk, |field| match validate_text(field, None) {
            Ok(member) => {
                members.insert(member);
                loaded.checksum ^= member_hash(member);
                if let Some(part) = parts.as_mut().and_then(|parts| parts.push(member)) {
                    parts_out.deliver(part, &mut loaded.parts);
                }
            }
            Err(_) => loaded.skipped += 1,
        });
    }
    if let Some(part) = parts.and_then(PartsWriter::finish) {
        parts_out.deliver(part, &mut loaded.parts);
    }
    loaded.members = members.finish();
    loaded
}

/// Calls `visit` with each (unescaped) single-column row of a COPY chunk.
fn for_each_field(chunk: &[u8], mut visit: impl FnMut(&[u8])) {
    let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    let mut scratch = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        visit(unescape_copy_field(line, &mut scratch));
    }
}

/// One field of COPY's text output, with its backslash escapes undone.
fn unescape_copy_field<'a>(field: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if !field.contains(&b'\\') {
        return field;
    }
    scratch.clear();
    let mut bytes = field.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            scratch.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'n') => scratch.push(b'\n'),
            Some(b'r') => scratch.push(b'\r'),
            Some(b't') => scratch.push(b'\t'),
            Some(b'b') => scratch.push(0x08),
            Some(b'f') => scratch.push(0x0c),
            Some(b'v') => scratch.push(0x0b),
            Some(other) => scratch.push(other),
            None => scratch.push(b'\\'),
        }
    }
    scratch
}

/// Rows (campaign, member, version) in COPY's text format. Members hold
/// no NUL (validated on entry); backslash, tab, newline and carriage
/// return are escaped.
fn copy_text(changes: &[Change<'_>]) -> String {
    let mut out = String::with_capacity(changes.len() * 48);
    for change in changes {
        push_copy_field(&mut out, change.campaign);
        out.push('\t');
        push_copy_field(&mut out, change.member.as_str());
        out.push('\t');
        let _ = write!(out, "{}", sql_version(change.version));
        out.push('\n');
    }
    out
}

fn push_copy_field(out: &mut String, field: &str) {
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
}

/// A statement of the session's set-up failed (two nodes creating the
/// tables at once, a missing privilege): never `Rejected`, which would have
/// the flusher isolate and park rows that did nothing wrong.
fn setup_error(error: postgres::Error) -> SinkError {
    SinkError::Connect(error_chain(&error))
}

/// A failed statement: `Rejected` when the database refused the data
/// itself (SQLSTATE classes 22 data exception, 23 integrity constraint,
/// 44 check option; 42501 insufficient privilege; P0001 an exception
/// raised by a trigger), so that the flusher isolates the rows at fault.
fn statement_error(error: postgres::Error) -> SinkError {
    let text = error_chain(&error);
    let refused = error.code().is_some_and(|code| {
        let code = code.code();
        code.starts_with("22")
            || code.starts_with("23")
            || code.starts_with("44")
            || code == "42501"
            || code == "P0001"
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_unescape() {
        let mut scratch = Vec::new();
        assert_eq!(unescape_copy_field(b"plain", &mut scratch), b"plain");
        assert_eq!(
            unescape_copy_field(b"a\\tb\\nc\\\\d\\re", &mut scratch),
            b"a\tb\nc\\d\re"
        );
        // What copy_text writes, read back, is the original.
        let original = "x\\y\tz\n";
        let written = copy_text(&[change("c", original, 7)]);
        let field = written.trim_end_matches('\n').split('\t').nth(1).unwrap();
        assert_eq!(
            unescape_copy_field(field.as_bytes(), &mut scratch),
            original.as_bytes()
        );
    }

    #[test]
    fn copy_text_escapes_the_special_characters() {
        let rows = [
            change("c\\1", "tab\there", 1),
            change("c", "line\nbreak\rx", 20),
        ];
        assert_eq!(
            copy_text(&rows),
            "c\\\\1\ttab\\there\t1\nc\tline\\nbreak\\rx\t20\n"
        );
    }

    fn change<'a>(campaign: &'a str, member: &'a str, version: u64) -> Change<'a> {
        Change {
            campaign,
            member: crate::core::member_set::MemberRef::text(member),
            version,
        }
    }
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
    let password = Config::from_str(url).ok().and_then(|config| {
        config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    });
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
