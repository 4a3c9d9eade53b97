//! One reusable database connection for the current settings: the flusher
//! and each load worker own a `Database`. It connects on first use, again
//! when `campaign.database-url` or `campaign.table` change, and after any
//! failure (the next call starts from a fresh connection). Errors come back
//! with the password removed.

use super::postgres::PostgresSink;
use super::{LoadedMembers, Sink, SinkError, Source};
use crate::core::Collapsed;
use crate::redis_glue::config;

#[derive(Default)]
pub struct Database {
    current: Option<Connected>,
}

struct Connected {
    url: String,
    table: String,
    sink: PostgresSink,
}

impl Database {
    /// Runs `work` on a connection for the current settings.
    fn with_connection<T>(
        &mut self,
        work: impl FnOnce(&mut PostgresSink) -> Result<T, SinkError>,
    ) -> Result<T, SinkError> {
        let url = config::DATABASE_URL.get();
        if url.is_empty() {
            self.current = None;
            return Err(SinkError::Unconfigured);
        }
        let table = config::TABLE.get();
        let reusable = self.current.as_ref().is_some_and(|connected| {
            connected.url == url && connected.table == table && !connected.sink.is_closed()
        });
        if !reusable {
            self.current = None;
            let sink = PostgresSink::connect(&url, &table).map_err(|error| error.redacted(&url))?;
            self.current = Some(Connected { url, table, sink });
        }
        let connected = self.current.as_mut().expect("connected above");
        let result = work(&mut connected.sink);
        if let Err(error) = result {
            let url = std::mem::take(&mut connected.url);
            self.current = None;
            return Err(error.redacted(&url));
        }
        result
    }
}

impl Sink for Database {
    fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError> {
        self.with_connection(|sink| sink.apply(batch))
    }
}

impl Source for Database {
    fn load_members(&mut self, campaign: &str) -> Result<LoadedMembers, SinkError> {
        self.with_connection(|sink| sink.load_members(campaign))
    }

    fn digest(&mut self, campaign: &str) -> Result<(i64, i64), SinkError> {
        self.with_connection(|sink| sink.digest(campaign))
    }

    fn campaigns(&mut self) -> Result<Vec<String>, SinkError> {
        self.with_connection(|sink| sink.campaigns())
    }
}
