//! The spool side of forwarding: events read from the in-memory tail or the file, and
//! acknowledged events removed through the writer.

use std::sync::Arc;

use super::super::writer::Command;
use super::{Forwarder, READ_BATCH};
use crate::publish::SpoolFailure;
use tokio::sync::oneshot;

impl Forwarder {
    /// Up to `wanted` events from sequence `from` on: from the in-memory tail while it holds
    /// every committed event, from the file otherwise, until a read of the file comes short.
    pub(super) async fn next_events(
        &self,
        from: u64,
        wanted: usize,
        from_store: &mut bool,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolFailure> {
        if self.tail.take_lost() {
            *from_store = true;
        }
        if !*from_store {
            return Ok(self.tail.take(from, wanted));
        }
        let events = self.read(from, wanted).await?;
        let read_up_to = events.last().map_or(from, |(sequence, _)| sequence + 1);
        self.tail.forget_before(read_up_to);
        if events.len() < wanted {
            *from_store = false;
        }
        Ok(events)
    }

    pub(super) async fn read(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolFailure> {
        let store = self.store.clone();
        let limit = limit.min(READ_BATCH);
        tokio::task::spawn_blocking(move || store.read_from(from, limit))
            .await
            .map_err(|error| SpoolFailure::Task(Arc::new(error)))?
            .map_err(|error| SpoolFailure::Storage(Arc::new(error)))
    }

    /// Asks the writer to remove acknowledged events; with `wait`, returns once that (and every
    /// removal asked for before) is committed, or why it was not, so that a rewind never reads
    /// them again.
    pub(super) async fn remove(&self, sequences: Vec<u64>, wait: bool) -> Result<(), SpoolFailure> {
        let (committed, done) = if wait {
            let (sender, receiver) = oneshot::channel();
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        self.commands
            .send(Command::Remove {
                sequences,
                committed,
            })
            .map_err(|_| SpoolFailure::WriterStopped)?;
        match done {
            Some(done) => done
                .await
                .unwrap_or_else(|_| Err(SpoolFailure::WriterStopped)),
            None => Ok(()),
        }
    }
}
