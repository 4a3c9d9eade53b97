//! What STATUS says of the database: the outcome of the newest attempt of
//! any use (a failed load shows; a recovered flusher clears its error),
//! so `database` and `last-error` never lag behind what the module saw.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use super::SinkError;
use crate::core::clock::now_ms;

/// What a database round trip was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    Flush,
    Load,
    Verify,
    Reconcile,
    Prefill,
    Purge,
    Retry,
}

impl Use {
    pub fn word(self) -> &'static str {
        match self {
            Use::Flush => "flush",
            Use::Load => "load",
            Use::Verify => "verify",
            Use::Reconcile => "reconcile",
            Use::Prefill => "prefill",
            Use::Purge => "purge",
            Use::Retry => "rejected retry",
        }
    }
}

#[derive(Default)]
struct LastError {
    text: String,
    at_ms: u64,
    purpose: Option<Use>,
    /// The database could not be reached (not a statement's error).
    unreachable: bool,
}

#[derive(Default)]
pub struct Health {
    /// The newest attempt reached the database.
    pub connected: AtomicBool,
    /// Unix ms of the newest attempt that reached the database.
    pub last_ok_ms: AtomicU64,
    last_error: Mutex<LastError>,
}

pub static HEALTH: LazyLock<Health> = LazyLock::new(Health::default);

impl Health {
    fn last(&self) -> MutexGuard<'_, LastError> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the outcome of one use of the database.
    pub fn record<T>(&self, purpose: Use, result: &Result<T, SinkError>) {
        match result {
            Ok(_) => self.succeeded(purpose),
            Err(SinkError::Unconfigured) => self.connected.store(false, Ordering::Relaxed),
            Err(error) => self.failed(purpose, error),
        }
    }

    pub fn succeeded(&self, purpose: Use) {
        self.connected.store(true, Ordering::Relaxed);
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        let mut last = self.last();
        // A success clears its own use's error, and any "cannot reach".
        if last.unreachable || last.purpose == Some(purpose) {
            *last = LastError::default();
        }
    }

    pub fn failed(&self, purpose: Use, error: &SinkError) {
        let unreachable = matches!(error, SinkError::Connect(_) | SinkError::Timeout(_));
        if unreachable {
            self.connected.store(false, Ordering::Relaxed);
        } else {
            self.connected.store(true, Ordering::Relaxed);
        }
        *self.last() = LastError {
            text: format!("{}: {error}", purpose.word()),
            at_ms: now_ms(),
            purpose: Some(purpose),
            unreachable,
        };
    }

    /// A failure the caller describes itself (a whole flush, say).
    pub fn failed_with(&self, purpose: Use, text: String, unreachable: bool) {
        if unreachable {
            self.connected.store(false, Ordering::Relaxed);
        }
        *self.last() = LastError {
            text: format!("{}: {text}", purpose.word()),
            at_ms: now_ms(),
            purpose: Some(purpose),
            unreachable,
        };
    }

    pub fn last_error(&self) -> String {
        self.last().text.clone()
    }

    /// Milliseconds since the last error (-1: none).
    pub fn last_error_ms_ago(&self) -> i64 {
        let last = self.last();
        if last.text.is_empty() {
            return -1;
        }
        now_ms().saturating_sub(last.at_ms) as i64
    }

    /// Forgets everything (the database was unconfigured or changed).
    pub fn reset(&self) {
        self.connected.store(false, Ordering::Relaxed);
        *self.last() = LastError::default();
    }
}
