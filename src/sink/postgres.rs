//! The PostgreSQL sink: adds go through COPY into a temporary table and one
//! `INSERT ... ON CONFLICT DO NOTHING`; removals through one `DELETE` joined
//! with array parameters. Both in one transaction per batch.

use std::fmt::Write as _;
use std::io::Write as _;
use std::str::FromStr;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls};

use super::{Sink, SinkError};
use crate::core::checksum::SQL_CHECKSUM;
use crate::core::{validate_text, Collapsed, MemberSet};

/// Without a connect timeout a dead host hangs the flusher for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A statement that runs longer than this is treated as a failure and retried.
const STATEMENT_TIMEOUT_MS: u32 = 120_000;

pub struct PostgresSink {
    client: Client,
    table: String,
}

impl PostgresSink {
    /// Connects, creates the table if it is missing, and prepares the
    /// session. `table` must already be a validated identifier.
    pub fn connect(url: &str, table: &str) -> Result<Self, SinkError> {
        let mut config =
            Config::from_str(url).map_err(|error| SinkError::Connect(error_chain(&error)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("redis-campaign");
        let mut client = config
            .connect(NoTls)
            .map_err(|error| SinkError::Connect(error_chain(&error)))?;
        client
            .batch_execute(&format!(
                "SET statement_timeout = {STATEMENT_TIMEOUT_MS};
                 CREATE TABLE IF NOT EXISTS {table} (
                     campaign  text        NOT NULL,
                     member    text        NOT NULL,
                     added_at  timestamptz NOT NULL DEFAULT now(),
                     PRIMARY KEY (campaign, member)
                 );
                 CREATE TEMP TABLE IF NOT EXISTS campaign_flush_adds (
                     campaign text NOT NULL,
                     member   text NOT NULL
                 ) ON COMMIT DELETE ROWS;"
            ))
            .map_err(statement_error)?;
        Ok(PostgresSink {
            client,
            table: table.to_owned(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Streams the members of `campaign` out of the table. Rows that could
    /// not be members (an empty string written around the module) are
    /// skipped and counted.
    pub fn load_members(&mut self, campaign: &str) -> Result<(MemberSet, usize), SinkError> {
        let sql = format!("SELECT member FROM {} WHERE campaign = $1", self.table);
        let params: [&(dyn ToSql + Sync); 1] = [&campaign];
        let mut rows = self
            .client
            .query_raw(&sql, params)
            .map_err(statement_error)?;
        let mut members = MemberSet::new();
        let mut skipped = 0;
        while let Some(row) = rows.next().map_err(statement_error)? {
            let member: &str = row.try_get(0).map_err(statement_error)?;
            match validate_text(member.as_bytes(), None) {
                Ok(member) => {
                    members.insert(member);
                }
                Err(_) => skipped += 1,
            }
        }
        Ok((members, skipped))
    }

    /// `(row count, checksum)` of `campaign`, computed by PostgreSQL.
    pub fn digest(&mut self, campaign: &str) -> Result<(i64, i64), SinkError> {
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
    pub fn campaigns(&mut self) -> Result<Vec<String>, SinkError> {
        let sql = format!("SELECT DISTINCT campaign FROM {}", self.table);
        let rows = self.client.query(&sql, &[]).map_err(statement_error)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

impl Sink for PostgresSink {
    fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError> {
        let table = &self.table;
        let mut transaction = self.client.transaction().map_err(statement_error)?;
        if !batch.adds.is_empty() {
            let rows = copy_text(&batch.adds);
            // Fast path: added members are nearly always new rows, so COPY
            // straight into the table. A unique violation (a re-flush after
            // a crash, rows written around the module) rolls back to the
            // savepoint and takes the idempotent path.
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
                            "INSERT INTO {table} (campaign, member)
                             SELECT campaign, member FROM campaign_flush_adds
                             ON CONFLICT DO NOTHING"
                        ))
                        .map_err(statement_error)?;
                }
                Err(error) => return Err(statement_error(error)),
            }
        }
        if !batch.removes.is_empty() {
            let (campaigns, members): (Vec<&str>, Vec<&str>) =
                batch.removes.iter().copied().unzip();
            transaction
                .execute(
                    &format!(
                        "DELETE FROM {table} AS t
                         USING unnest($1::text[], $2::text[]) AS d(campaign, member)
                         WHERE t.campaign = d.campaign AND t.member = d.member"
                    ),
                    &[&campaigns, &members],
                )
                .map_err(statement_error)?;
        }
        transaction.commit().map_err(statement_error)
    }
}

fn copy_rows(
    transaction: &mut postgres::Transaction<'_>,
    table: &str,
    rows: &str,
) -> Result<(), postgres::Error> {
    let mut writer = transaction.copy_in(&format!("COPY {table} (campaign, member) FROM STDIN"))?;
    // A write error surfaces again, with the server's reason, in `finish`.
    let _ = writer.write_all(rows.as_bytes());
    writer.finish().map(|_| ())
}

fn is_unique_violation(error: &postgres::Error) -> bool {
    error.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// Rows in COPY's text format. Members hold no NUL (validated on entry);
/// backslash, tab, newline and carriage return are escaped.
fn copy_text(rows: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(rows.len() * 32);
    for (campaign, member) in rows {
        push_copy_field(&mut out, campaign);
        out.push('\t');
        push_copy_field(&mut out, member);
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

fn statement_error(error: postgres::Error) -> SinkError {
    SinkError::Statement(error_chain(&error))
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
    fn copy_text_escapes_the_special_characters() {
        let rows = [("c\\1", "tab\there"), ("c", "line\nbreak\rx")];
        assert_eq!(
            copy_text(&rows),
            "c\\\\1\ttab\\there\nc\tline\\nbreak\\rx\n"
        );
    }
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
    use super::redact_password;

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
