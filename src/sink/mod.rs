//! Where committed journal batches go. The flusher applies every batch
//! through this trait; `postgres` is the implementation, and the tests
//! below drive the batching protocol against an in-memory one.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{collapse, Journal, Op};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// A table in memory that fails on request, as a database might.
    #[derive(Default)]
    struct MemorySink {
        rows: BTreeSet<(String, String)>,
    }

    impl Sink for MemorySink {
        fn apply(&mut self, batch: &Collapsed<'_>) -> Result<(), SinkError> {
            for (campaign, member) in &batch.removes {
                self.rows
                    .remove(&(campaign.to_string(), member.to_string()));
            }
            for (campaign, member) in &batch.adds {
                self.rows.insert((campaign.to_string(), member.to_string()));
            }
            Ok(())
        }
    }

    proptest! {
        /// Flushing in batches of any size, with some batches applied but
        /// their trim lost (so they are applied again, as after a crash),
        /// ends with exactly the rows of applying every change in order.
        #[test]
        fn batched_at_least_once_flush_matches_the_model(
            ops in prop::collection::vec((any::<bool>(), "[ab]", "[0-3]"), 1..80),
            batch_size in 1usize..20,
            lost_trims in prop::collection::vec(any::<bool>(), 0..20),
        ) {
            let mut journal = Journal::new();
            let mut model = BTreeSet::new();
            for (add, campaign, member) in &ops {
                let op = if *add { Op::Add } else { Op::Remove };
                journal.append(op, campaign, [member.as_str()], 0);
                let row = (campaign.clone(), member.clone());
                if *add { model.insert(row); } else { model.remove(&row); }
            }
            let mut sink = MemorySink::default();
            let mut lost = lost_trims.into_iter();
            loop {
                let Some((through, entries)) = journal.front(batch_size) else {
                    break;
                };
                sink.apply(&collapse(entries)).unwrap();
                if !lost.next().unwrap_or(false) {
                    journal.trim_through(through);
                }
            }
            prop_assert_eq!(sink.rows, model);
        }
    }
}
