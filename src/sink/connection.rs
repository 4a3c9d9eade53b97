//! `Database`: the `Sink` and `Source` of the real PostgreSQL, each call one
//! use of the node's connection pool (`pool`), recorded for STATUS under
//! the purpose the handle was made for.

use tokio_postgres::Client;

use super::health::Use;
use super::pool::{Priority, POOL};
use super::postgres::{self, LoadError, Tables};
use super::{LoadedMembers, PartsOut, RejectedChange, Sink, SinkError, Source};
use crate::core::Collapsed;

pub struct Database {
    purpose: Use,
    priority: Priority,
}

impl Database {
    pub fn new(purpose: Use) -> Self {
        Database {
            purpose,
            priority: Priority::Ordinary,
        }
    }

    /// The same uses with `priority` in the pool (a login-path load).
    pub fn with_priority(self, priority: Priority) -> Self {
        Database { priority, ..self }
    }
}

impl Sink for Database {
    fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError> {
        if !postgres::splits(batch) {
            return POOL.run_as(
                self.purpose,
                self.priority,
                async |client: &mut Client, tables: &Tables| {
                    postgres::apply(client, None, tables, batch).await
                },
            );
        }
        // Removals' markers go in on a second connection when one is free.
        POOL.run_paired(
            self.purpose,
            self.priority,
            async |client: &mut Client, second: Option<&mut Client>, tables: &Tables| {
                postgres::apply(client, second, tables, batch).await
            },
        )
    }

    fn purge_removed(&mut self, older_than: u64) -> Result<u64, SinkError> {
        POOL.run(Use::Purge, async |client: &mut Client, tables: &Tables| {
            postgres::purge_removed(client, tables, older_than).await
        })
    }

    fn check(&mut self) -> Result<(), SinkError> {
        POOL.run_as(
            self.purpose,
            self.priority,
            async |client: &mut Client, _: &Tables| {
                client.simple_query("SELECT 1").await.map(|_| ())
            },
        )
    }

    fn park_rejected(&mut self, rejected: &[RejectedChange]) -> Result<(), SinkError> {
        POOL.run_as(
            self.purpose,
            self.priority,
            async |client: &mut Client, tables: &Tables| {
                postgres::park_rejected(client, tables, rejected).await
            },
        )
    }
}

impl Source for Database {
    fn load_members(
        &mut self,
        campaign: &str,
        parts: PartsOut,
    ) -> Result<LoadedMembers, SinkError> {
        // The module's own failures (a thread that could not start, a
        // panic in the builder) are kept apart from the database's.
        let mut own_failure = None;
        let result = POOL.run_as(
            self.purpose,
            self.priority,
            async |client: &mut Client, tables: &Tables| match postgres::load_members(
                client, tables, campaign, parts,
            )
            .await
            {
                Ok(loaded) => Ok(Some(loaded)),
                Err(LoadError::Database(error)) => Err(error),
                Err(LoadError::Other(text)) => {
                    own_failure = Some(text);
                    Ok(None)
                }
            },
        )?;
        result.ok_or_else(|| SinkError::Statement(own_failure.unwrap_or_default()))
    }

    fn digest(&mut self, campaign: &str) -> Result<(i64, i64), SinkError> {
        POOL.run_as(
            self.purpose,
            self.priority,
            async |client: &mut Client, tables: &Tables| {
                postgres::digest(client, tables, campaign).await
            },
        )
    }

    fn campaigns(&mut self) -> Result<Vec<String>, SinkError> {
        POOL.run_as(
            self.purpose,
            self.priority,
            async |client: &mut Client, tables: &Tables| postgres::campaigns(client, tables).await,
        )
    }

    fn newest_version(&mut self, campaign: &str) -> Result<u64, SinkError> {
        POOL.run_as(
            self.purpose,
            self.priority,
            async |client: &mut Client, tables: &Tables| {
                postgres::newest_version(client, tables, campaign).await
            },
        )
    }
}
