//! One reusable database connection for the current settings: the flusher
//! and each load worker own a `Database`. It connects on first use, again
//! when `campaign.database-url` or `campaign.table` change, and after any
//! failure (the next call starts from a fresh connection). Errors come back
//! with the password removed.
//!
//! Every round trip has a deadline (`campaign.db-timeout-ms`): a database
//! that accepts the connection but never answers (hung, SIGSTOPped) must not
//! stall the caller for good, and the blocking client offers no timeout of
//! its own. So the connection lives on its own thread, which runs one piece
//! of work at a time; the caller waits for the answer up to the deadline,
//! and past it abandons that thread and its connection (the thread ends
//! when the stuck call finally returns) and reports the timeout.

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::postgres::PostgresSink;
use super::{LoadedMembers, PartsOut, RejectedChange, Sink, SinkError, Source};
use crate::core::member_set::MemberRef;
use crate::core::{Change, Collapsed};
use crate::redis_glue::{config, thread_priority};

/// A piece of work for the connection thread.
type Work = Box<dyn FnOnce(&mut Option<PostgresSink>) + Send>;

#[derive(Default)]
pub struct Database {
    current: Option<Connected>,
}

struct Connected {
    url: String,
    table: String,
    work: Sender<Work>,
}

/// Starts the thread that owns one connection (made by its first work).
fn spawn_connection_thread() -> Result<Sender<Work>, SinkError> {
    let (work, queue) = bounded::<Work>(1);
    std::thread::Builder::new()
        .name("campaign-db".into())
        .spawn(move || {
            // Parsing a load and formatting a batch yield to the main
            // thread; this thread never holds the Redis lock.
            thread_priority::lower_this_thread();
            let mut sink: Option<PostgresSink> = None;
            for job in queue {
                job(&mut sink);
            }
        })
        .map_err(|error| SinkError::Connect(format!("cannot start a thread: {error}")))?;
    Ok(work)
}

impl Database {
    /// Runs `work` on a connection for the current settings, within
    /// `campaign.db-timeout-ms`.
    fn with_connection<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut PostgresSink) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let url = config::DATABASE_URL.get();
        if url.is_empty() {
            self.current = None;
            return Err(SinkError::Unconfigured);
        }
        let table = config::TABLE.get();
        let reusable = self
            .current
            .as_ref()
            .is_some_and(|connected| connected.url == url && connected.table == table);
        if !reusable {
            self.current = Some(Connected {
                url: url.clone(),
                table: table.clone(),
                work: spawn_connection_thread()?,
            });
        }
        let connected = self.current.as_ref().expect("set above");
        let (answer, answered) = bounded(1);
        let job: Work = Box::new(move |sink: &mut Option<PostgresSink>| {
            if sink.as_ref().is_none_or(PostgresSink::is_closed) {
                match PostgresSink::connect(&url, &table) {
                    Ok(connected) => *sink = Some(connected),
                    Err(error) => {
                        let _ = answer.send(Err(error));
                        return;
                    }
                }
            }
            let result = work(sink.as_mut().expect("connected above"));
            if result.is_err() {
                // The next work starts from a fresh connection.
                *sink = None;
            }
            let _ = answer.send(result);
        });
        let result = match connected.work.send(job) {
            Ok(()) => wait(&answered),
            Err(_) => Err(SinkError::Connect("the connection thread is gone".into())),
        };
        if result.is_err() {
            // Abandoned: a stuck thread keeps its connection until its call
            // returns; the next call gets a new thread and connection.
            let connected = self.current.take().expect("set above");
            return result.map_err(|error| error.redacted(&connected.url));
        }
        result
    }
}

/// The answer of the connection thread, or a timeout past the deadline.
fn wait<T>(answered: &Receiver<Result<T, SinkError>>) -> Result<T, SinkError> {
    let deadline = Duration::from_millis(config::DB_TIMEOUT_MS.get() as u64);
    match answered.recv_timeout(deadline) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(SinkError::Timeout(deadline)),
        Err(RecvTimeoutError::Disconnected) => Err(SinkError::Statement(
            "the database work panicked (see the Redis log)".into(),
        )),
    }
}

/// A collapsed batch with owned text, to hand to the connection thread.
struct OwnedBatch {
    adds: Vec<(String, String, u64)>,
    removes: Vec<(String, String, u64)>,
}

impl OwnedBatch {
    fn of(batch: &Collapsed<'_>) -> Self {
        let own = |changes: &[Change<'_>]| {
            changes
                .iter()
                .map(|change| {
                    let member = change.member.as_str().to_owned();
                    (change.campaign.to_owned(), member, change.version)
                })
                .collect()
        };
        OwnedBatch {
            adds: own(&batch.adds),
            removes: own(&batch.removes),
        }
    }

    fn collapsed(&self) -> Collapsed<'_> {
        Collapsed {
            adds: borrowed(&self.adds),
            removes: borrowed(&self.removes),
        }
    }
}

fn borrowed(rows: &[(String, String, u64)]) -> Vec<Change<'_>> {
    rows.iter()
        .map(|(campaign, member, version)| Change {
            campaign,
            member: MemberRef::text(member),
            version: *version,
        })
        .collect()
}

impl Sink for Database {
    fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError> {
        let batch = OwnedBatch::of(batch);
        self.with_connection(move |sink| sink.apply(&batch.collapsed()))
    }

    fn purge_removed(&mut self, older_than: u64) -> Result<u64, SinkError> {
        self.with_connection(move |sink| sink.purge_removed(older_than))
    }

    fn park_rejected(&mut self, rejected: &[RejectedChange]) -> Result<(), SinkError> {
        let rejected = rejected.to_vec();
        self.with_connection(move |sink| sink.park_rejected(&rejected))
    }
}

impl Source for Database {
    fn load_members(
        &mut self,
        campaign: &str,
        parts: PartsOut,
    ) -> Result<LoadedMembers, SinkError> {
        let campaign = campaign.to_owned();
        self.with_connection(move |sink| sink.load_members(&campaign, parts))
    }

    fn digest(&mut self, campaign: &str) -> Result<(i64, i64), SinkError> {
        let campaign = campaign.to_owned();
        self.with_connection(move |sink| sink.digest(&campaign))
    }

    fn campaigns(&mut self) -> Result<Vec<String>, SinkError> {
        self.with_connection(|sink| sink.campaigns())
    }

    fn newest_version(&mut self, campaign: &str) -> Result<u64, SinkError> {
        let campaign = campaign.to_owned();
        self.with_connection(move |sink| sink.newest_version(&campaign))
    }
}
