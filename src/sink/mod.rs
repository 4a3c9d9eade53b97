//! Where committed journal batches go. The flusher only knows this trait;
//! `postgres` is the real implementation, tests use an in-memory one.

pub mod postgres;

use thiserror::Error;

use crate::core::Collapsed;

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Statement(String),
}

pub trait Sink {
    /// Applies one collapsed batch in a single transaction: all of it is
    /// committed when this returns `Ok`, none of it otherwise.
    fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError>;
}
