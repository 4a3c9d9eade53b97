//! The node's one set of PostgreSQL connections, shared by every use (the
//! flusher, the load workers, VERIFY, the reconciler, prefill, the markers
//! purge): at most `campaign.max-connections` open at once, idle ones
//! closed after `IDLE_CLOSE`, all driven by one small tokio runtime.
//!
//! Every use runs with a deadline (`campaign.db-timeout-ms`) that covers
//! the connect, start-up and authentication as well as the work. Past it
//! the statement is cancelled on the server (`cancel_token`), so no
//! transaction keeps its locks, and the connection is dropped. A use that
//! fails because its connection died (PostgreSQL restarted, a proxy closed
//! it) is retried once on a fresh connection before anything is answered.
//! The table set-up runs once per node and database, not on every connect.
//!
//! A batch of removals may take a second connection for its markers
//! (`run_paired`), only when one is free at once: it never waits for it.
//!
//! One connection is kept for the login path: with `max-connections` of 2
//! or more, every other use together (the flusher, REBUILD, VERIFY,
//! prefill, the reconciler) holds at most `max-connections - 1`, so a load
//! a HAS waits for never waits for a million-member REBUILD to give its
//! connection back (`Priority::Login`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres_openssl::MakeTlsConnector;
use tokio_postgres::Client;

use super::connect::{self, error_is_connection, session_config};
use super::health::{Use, HEALTH};
use super::postgres::{error_chain, Tables};
use super::SinkError;
use crate::redis_glue::config;

/// Idle connections older than this are closed.
const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// How long a cancel request may take before it is given up.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

pub static POOL: LazyLock<Pool> = LazyLock::new(Pool::new);

/// Who asks for a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Priority {
    /// A load a client waits for on the login path: may take any
    /// connection, the one kept free of other uses included.
    Login,
    /// Every other use: leaves one connection free when the limit is 2
    /// or more.
    #[default]
    Ordinary,
}

/// Where connections go: the URL and table they were made for.
#[derive(Clone, PartialEq, Eq)]
struct Target {
    url: String,
    table: String,
}

struct Idle {
    target: Target,
    client: Client,
    /// The TLS settings it was opened with, which its cancel request uses.
    tls: MakeTlsConnector,
    since: Instant,
}

#[derive(Default)]
struct Slots {
    idle: Vec<Idle>,
    /// Connections open or being opened (idle ones included).
    open: usize,
    /// The target whose tables are known to be set up.
    set_up: Option<Target>,
    /// Connections leased now to `Priority::Ordinary` uses.
    ordinary_leased: usize,
}

impl Slots {
    /// Whether a use of `priority` may take a connection now, under
    /// `limit` (`campaign.max-connections`).
    fn admits(&self, priority: Priority, limit: usize) -> bool {
        priority == Priority::Login || limit < 2 || self.ordinary_leased < limit - 1
    }

    fn lease(&mut self, priority: Priority) {
        if priority == Priority::Ordinary {
            self.ordinary_leased += 1;
        }
    }

    fn release(&mut self, priority: Priority) {
        if priority == Priority::Ordinary {
            self.ordinary_leased = self.ordinary_leased.saturating_sub(1);
        }
    }
}

pub struct Pool {
    runtime: Option<tokio::runtime::Runtime>,
    slots: Mutex<Slots>,
    freed: Condvar,
    /// Connections open now (for STATUS).
    pub open: AtomicUsize,
    /// Connections opened since start (for STATUS).
    pub opened: AtomicUsize,
}

/// A connection taken out of the pool for one use.
pub struct Lease {
    target: Target,
    client: Option<Client>,
    tls: MakeTlsConnector,
    /// Whether the connection was taken from the idle list (it may have
    /// died while it waited there).
    reused: bool,
    priority: Priority,
}

/// An idle connection for `target`, leased to a use of `priority`.
fn take_idle(slots: &mut Slots, target: &Target, priority: Priority) -> Option<Lease> {
    let index = slots.idle.iter().rposition(|idle| idle.target == *target)?;
    let idle = slots.idle.swap_remove(index);
    slots.lease(priority);
    Some(Lease {
        target: idle.target,
        client: Some(idle.client),
        tls: idle.tls,
        reused: true,
        priority,
    })
}

/// One try of a use: where, for whom, until when.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    target: &'a Target,
    priority: Priority,
    deadline: Instant,
    timeout: Duration,
    /// Whether the work can use a second connection.
    paired: bool,
}

impl Lease {
    pub fn tables(&self) -> Tables {
        Tables::of(&self.target.table)
    }
}

impl Pool {
    fn new() -> Self {
        // Two threads drive every connection's socket; callers wait on
        // their own thread (`block_on`), so the runtime never runs Redis
        // work and a slow use never starves another's socket.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("campaign-pg")
            .enable_all()
            .build()
            .ok();
        Pool {
            runtime,
            slots: Mutex::new(Slots::default()),
            freed: Condvar::new(),
            open: AtomicUsize::new(0),
            opened: AtomicUsize::new(0),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, SinkError> {
        self.runtime
            .as_ref()
            .ok_or_else(|| SinkError::Connect("cannot start the database runtime".into()))
    }

    /// Runs `work` on a connection for the current settings within
    /// `campaign.db-timeout-ms`; retried once on a fresh connection when
    /// the one it got had died. The outcome is recorded for STATUS.
    pub fn run<T>(
        &self,
        purpose: Use,
        work: impl AsyncFnMut(&mut Client, &Tables) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, SinkError> {
        self.run_as(purpose, Priority::Ordinary, work)
    }

    /// `run` for a use of `priority` (`Priority::Login` may take the
    /// connection kept free of other uses).
    pub fn run_as<T>(
        &self,
        purpose: Use,
        priority: Priority,
        mut work: impl AsyncFnMut(&mut Client, &Tables) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, SinkError> {
        self.run_with(
            purpose,
            priority,
            false,
            async |client: &mut Client, _: Option<&mut Client>, tables: &Tables| {
                work(client, tables).await
            },
        )
    }

    /// `run_as` for work that can use a second connection at once (the
    /// markers of a batch of removals): `work` gets one when the pool has
    /// one to give without waiting, `None` otherwise.
    pub fn run_paired<T>(
        &self,
        purpose: Use,
        priority: Priority,
        work: impl AsyncFnMut(
            &mut Client,
            Option<&mut Client>,
            &Tables,
        ) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, SinkError> {
        self.run_with(purpose, priority, true, work)
    }

    fn run_with<T>(
        &self,
        purpose: Use,
        priority: Priority,
        paired: bool,
        mut work: impl AsyncFnMut(
            &mut Client,
            Option<&mut Client>,
            &Tables,
        ) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, SinkError> {
        let url = config::DATABASE_URL.get();
        if url.is_empty() {
            return Err(SinkError::Unconfigured);
        }
        let target = Target {
            url,
            table: config::TABLE.get(),
        };
        let timeout = Duration::from_millis(config::DB_TIMEOUT_MS.get() as u64);
        let deadline = Instant::now() + timeout;
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let use_ = Attempt {
                target: &target,
                priority,
                deadline,
                timeout,
                paired,
            };
            match self.run_once(&use_, &mut work) {
                Err(Failure::DeadConnection(_)) if attempt == 1 => continue,
                other => break other,
            }
        };
        let result = result.map_err(|failure| failure.into_error().redacted(&target.url));
        HEALTH.record(purpose, &result);
        result
    }

    fn run_once<T>(
        &self,
        use_: &Attempt<'_>,
        work: &mut impl AsyncFnMut(
            &mut Client,
            Option<&mut Client>,
            &Tables,
        ) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, Failure> {
        let Attempt {
            target,
            priority,
            deadline,
            timeout,
            paired,
        } = *use_;
        let runtime = self.runtime().map_err(Failure::Other)?;
        let mut lease = self.checkout(target, priority, deadline, timeout)?;
        let mut second = if paired {
            self.try_checkout(target, priority, deadline, timeout)
        } else {
            None
        };
        let tables = lease.tables();
        let client = lease.client.as_mut().expect("a lease holds a client");
        let cancels: Vec<_> = std::iter::once((client.cancel_token(), lease.tls.clone()))
            .chain(second.as_ref().and_then(|second| {
                let client = second.client.as_ref()?;
                Some((client.cancel_token(), second.tls.clone()))
            }))
            .collect();
        let second_client = second.as_mut().and_then(|second| second.client.as_mut());
        let left = deadline.saturating_duration_since(Instant::now());
        // (The timer is made inside the runtime, which it needs.)
        let outcome = runtime.block_on(async {
            tokio::time::timeout(left, work(client, second_client, &tables)).await
        });
        match outcome {
            Ok(Ok(value)) => {
                self.give_back(lease);
                if let Some(second) = second {
                    self.give_back(second);
                }
                Ok(value)
            }
            Ok(Err(error)) => {
                // A connection that died while idle in the pool (PostgreSQL
                // restarted, a proxy closed it) gets the use retried.
                let connection_error = error.code().is_none() && error_is_connection(&error);
                let died = |lease: &Lease| {
                    lease.reused
                        && (lease.client.as_ref().is_none_or(Client::is_closed) || connection_error)
                };
                let dead = died(&lease) || second.as_ref().is_some_and(died);
                self.give_back(lease);
                if let Some(second) = second {
                    self.give_back(second);
                }
                if dead {
                    Err(Failure::DeadConnection(error))
                } else {
                    Err(Failure::Statement(error))
                }
            }
            Err(_) => {
                // Ends the statements on the server, so no transaction
                // keeps its locks past the deadline; the connections go.
                for (cancel, tls) in cancels {
                    runtime.spawn(async move {
                        let _ = tokio::time::timeout(CANCEL_WAIT, cancel.cancel_query(tls)).await;
                    });
                }
                self.discard(lease);
                if let Some(second) = second {
                    self.discard(second);
                }
                Err(Failure::Other(SinkError::Timeout(timeout)))
            }
        }
    }

    /// An idle connection for `target`, or a new one while fewer than
    /// `campaign.max-connections` are open; waits for one to be given back
    /// until `deadline`. An ordinary use also waits while it would take
    /// the connection kept for the login path.
    fn checkout(
        &self,
        target: &Target,
        priority: Priority,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Lease, Failure> {
        let mut slots = self.slots();
        loop {
            self.close_stale(&mut slots, target);
            let limit = config::MAX_CONNECTIONS.get().max(1) as usize;
            let admitted = slots.admits(priority, limit);
            if admitted {
                if let Some(lease) = take_idle(&mut slots, target, priority) {
                    return Ok(lease);
                }
            }
            if admitted && slots.open < limit {
                return self
                    .open_new(slots, target, priority, deadline, timeout)
                    .map_err(Failure::Other);
            }
            let now = Instant::now();
            if now >= deadline {
                let busy = if admitted || limit < 2 {
                    format!("all {limit} connections (campaign.max-connections)")
                } else {
                    format!(
                        "the {} connections of campaign.max-connections ({limit}) not kept for \
                         the login path",
                        limit - 1
                    )
                };
                return Err(Failure::Other(SinkError::Connect(format!(
                    "{busy} stayed busy for {} ms",
                    timeout.as_millis()
                ))));
            }
            slots = self
                .freed
                .wait_timeout(slots, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// A further connection for `target` if one can be had without
    /// waiting for another use to give one back.
    fn try_checkout(
        &self,
        target: &Target,
        priority: Priority,
        deadline: Instant,
        timeout: Duration,
    ) -> Option<Lease> {
        let mut slots = self.slots();
        self.close_stale(&mut slots, target);
        let limit = config::MAX_CONNECTIONS.get().max(1) as usize;
        if !slots.admits(priority, limit) {
            return None;
        }
        if let Some(lease) = take_idle(&mut slots, target, priority) {
            return Some(lease);
        }
        if slots.open >= limit {
            return None;
        }
        self.open_new(slots, target, priority, deadline, timeout)
            .ok()
    }

    /// Opens a connection counted against the limit (`slots` admitted it).
    fn open_new(
        &self,
        mut slots: MutexGuard<'_, Slots>,
        target: &Target,
        priority: Priority,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Lease, SinkError> {
        slots.open += 1;
        slots.lease(priority);
        let set_up = slots.set_up.as_ref() == Some(target);
        drop(slots);
        match self.connect(target, deadline, timeout, set_up) {
            Ok((client, tls)) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                Ok(Lease {
                    target: target.clone(),
                    client: Some(client),
                    tls,
                    reused: false,
                    priority,
                })
            }
            Err(error) => {
                self.forget_one(priority);
                Err(error)
            }
        }
    }

    /// Opens a connection (and sets the tables up, once per target).
    fn connect(
        &self,
        target: &Target,
        deadline: Instant,
        timeout: Duration,
        set_up: bool,
    ) -> Result<(Client, MakeTlsConnector), SinkError> {
        let runtime = self.runtime()?;
        let settings = session_config(&target.url)?;
        let tls = super::tls::connector(&settings.tls).map_err(SinkError::Connect)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let opened = runtime.block_on(async {
            tokio::time::timeout(left, async {
                let (client, connection) = connect::open(&settings, &tls)
                    .await
                    .map_err(SinkError::Connect)?;
                tokio::spawn(connection);
                if !set_up {
                    Tables::of(&target.table).set_up(&client).await?;
                }
                Ok::<Client, SinkError>(client)
            })
            .await
        });
        let client = match opened {
            Ok(result) => result?,
            Err(_) => {
                return Err(SinkError::Connect(format!(
                    "no connection within campaign.db-timeout-ms ({} ms)",
                    timeout.as_millis()
                )))
            }
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        if !set_up {
            self.slots().set_up = Some(target.clone());
        }
        Ok((client, tls))
    }

    fn give_back(&self, mut lease: Lease) {
        let Some(client) = lease.client.take() else {
            return;
        };
        if client.is_closed() {
            drop(client);
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.forget_one(lease.priority);
            return;
        }
        let mut slots = self.slots();
        slots.release(lease.priority);
        slots.idle.push(Idle {
            target: lease.target.clone(),
            client,
            tls: lease.tls.clone(),
            since: Instant::now(),
        });
        drop(slots);
        // Waiters differ in what they may take: wake them all.
        self.freed.notify_all();
    }

    fn discard(&self, mut lease: Lease) {
        if lease.client.take().is_some() {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.forget_one(lease.priority);
        }
    }

    /// A leased connection of `priority` is gone for good.
    fn forget_one(&self, priority: Priority) {
        let mut slots = self.slots();
        slots.open = slots.open.saturating_sub(1);
        slots.release(priority);
        drop(slots);
        self.freed.notify_all();
    }

    /// Closes idle connections that waited too long, are closed, or were
    /// made for other settings.
    fn close_stale(&self, slots: &mut Slots, target: &Target) {
        let before = slots.idle.len();
        slots.idle.retain(|idle| {
            idle.target == *target && !idle.client.is_closed() && idle.since.elapsed() < IDLE_CLOSE
        });
        let closed = before - slots.idle.len();
        slots.open -= closed;
        self.open.fetch_sub(closed, Ordering::Relaxed);
        if slots.set_up.as_ref().is_some_and(|set_up| set_up != target) {
            slots.set_up = None;
        }
    }

    /// Closes idle connections past `IDLE_CLOSE` (called now and then).
    pub fn sweep(&self) {
        let mut slots = self.slots();
        let before = slots.idle.len();
        slots
            .idle
            .retain(|idle| !idle.client.is_closed() && idle.since.elapsed() < IDLE_CLOSE);
        let closed = before - slots.idle.len();
        slots.open -= closed;
        self.open.fetch_sub(closed, Ordering::Relaxed);
    }
}

enum Failure {
    /// The reused connection had died before the work got an answer.
    DeadConnection(tokio_postgres::Error),
    Statement(tokio_postgres::Error),
    Other(SinkError),
}

impl Failure {
    fn into_error(self) -> SinkError {
        match self {
            Failure::DeadConnection(error) => SinkError::Connect(error_chain(&error)),
            Failure::Statement(error) => super::postgres::statement_error(&error),
            Failure::Other(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leased(ordinary: usize) -> Slots {
        Slots {
            ordinary_leased: ordinary,
            ..Slots::default()
        }
    }

    #[test]
    fn one_connection_is_kept_for_the_login_path() {
        // Six connections: other uses together hold five at most.
        assert!(leased(4).admits(Priority::Ordinary, 6));
        assert!(!leased(5).admits(Priority::Ordinary, 6));
        assert!(leased(5).admits(Priority::Login, 6));
        assert!(leased(6).admits(Priority::Login, 6));
        // Two: one for everything else, one for logins.
        assert!(leased(0).admits(Priority::Ordinary, 2));
        assert!(!leased(1).admits(Priority::Ordinary, 2));
        // One: nothing to keep, shared by every use.
        assert!(leased(0).admits(Priority::Ordinary, 1));
        assert!(leased(1).admits(Priority::Login, 1));
    }

    #[test]
    fn leases_are_counted_for_ordinary_uses_only() {
        let mut slots = Slots::default();
        slots.lease(Priority::Ordinary);
        slots.lease(Priority::Login);
        slots.lease(Priority::Ordinary);
        assert_eq!(slots.ordinary_leased, 2);
        slots.release(Priority::Login);
        slots.release(Priority::Ordinary);
        slots.release(Priority::Ordinary);
        slots.release(Priority::Ordinary);
        assert_eq!(slots.ordinary_leased, 0, "never below zero");
    }
}
