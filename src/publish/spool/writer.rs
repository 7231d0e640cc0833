//! The writer thread: the only one that writes to the spool file, committing whatever
//! requests are waiting in one transaction (group commit).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{Notify, mpsc, oneshot};

use super::lock;
use super::status::Shared;
use super::store::{Quarantine, Store};
use super::tail::Tail;
use crate::publish::{PublishError, SpoolFailure};

/// Requests committed together at most; bounds one transaction's size and latency.
pub(super) const MAX_GROUP: usize = 4_096;

pub(super) enum Command {
    Append {
        event: Vec<u8>,
        reply: oneshot::Sender<Result<u64, PublishError>>,
    },
    /// A removal that fails stays pending and is committed with a later transaction; whoever
    /// waits is told of the failure, so that it does not read the events as gone.
    Remove {
        sequences: Vec<u64>,
        committed: Option<CommitWaiter>,
    },
    /// Moves one event to the quarantine; not retried by the writer when its commit fails.
    Quarantine {
        quarantine: Quarantine,
        committed: CommitWaiter,
    },
    /// Commit what came before, then stop; later appends are answered "shutting down".
    Close,
}

/// Told whether the transaction carrying a request was committed, and why not.
pub(super) type CommitWaiter = oneshot::Sender<Result<(), SpoolFailure>>;

pub(super) struct Writer {
    pub(super) store: Arc<Store>,
    pub(super) tail: Arc<Tail>,
    pub(super) shared: Arc<Shared>,
    pub(super) committed: Arc<Notify>,
    pub(super) next_sequence: u64,
    pub(super) max_events: u64,
    pub(super) max_bytes: u64,
    pub(super) removals: Vec<u64>,
}

struct PendingAppend {
    sequence: u64,
    event: Vec<u8>,
    reply: oneshot::Sender<Result<u64, PublishError>>,
}

impl Writer {
    pub(super) fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let mut appends = Vec::new();
            let mut quarantines = Vec::new();
            let mut notify_when_committed = Vec::new();
            let mut next = Some(first);
            let mut closing = false;
            while let Some(command) = next {
                match command {
                    Command::Close => closing = true,
                    Command::Append { event, reply } => self.admit(event, reply, &mut appends),
                    Command::Remove {
                        sequences,
                        committed,
                    } => {
                        self.removals.extend(sequences);
                        notify_when_committed.extend(committed);
                    }
                    Command::Quarantine {
                        quarantine,
                        committed,
                    } => {
                        quarantines.push(quarantine);
                        notify_when_committed.push(committed);
                    }
                }
                next = if appends.len() < MAX_GROUP && !closing {
                    commands.try_recv().ok()
                } else {
                    None
                };
            }
            let outcome = self.commit(appends, &quarantines);
            for waiter in notify_when_committed {
                let _ = waiter.send(outcome.clone());
            }
            if closing {
                return;
            }
        }
    }

    /// Takes the event into this group if the spool has room for it; refuses it otherwise.
    fn admit(
        &mut self,
        event: Vec<u8>,
        reply: oneshot::Sender<Result<u64, PublishError>>,
        appends: &mut Vec<PendingAppend>,
    ) {
        let pending_bytes: u64 = appends.iter().map(|append| append.event.len() as u64).sum();
        let events = self.shared.events.load(Ordering::Relaxed) + appends.len() as u64;
        let bytes = self.shared.bytes.load(Ordering::Relaxed) + pending_bytes;
        if events >= self.max_events || bytes + event.len() as u64 > self.max_bytes {
            metrics::counter!("telecmi_bridge_spool_refused_total", "reason" => "full")
                .increment(1);
            let _ = reply.send(Err(PublishError::SpoolFull));
            return;
        }
        appends.push(PendingAppend {
            sequence: self.next_sequence,
            event,
            reply,
        });
        self.next_sequence += 1;
    }

    fn commit(
        &mut self,
        appends: Vec<PendingAppend>,
        quarantines: &[Quarantine],
    ) -> Result<(), SpoolFailure> {
        if appends.is_empty() && self.removals.is_empty() && quarantines.is_empty() {
            return Ok(());
        }
        let rows: Vec<(u64, &[u8])> = appends
            .iter()
            .map(|append| (append.sequence, append.event.as_slice()))
            .collect();
        let started = std::time::Instant::now();
        match self.store.commit(&rows, &self.removals, quarantines) {
            Ok(removed) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                metrics::histogram!("telecmi_bridge_spool_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("telecmi_bridge_spool_commit_group_size")
                    .record(appends.len() as f64);
                let added_bytes: u64 = rows.iter().map(|(_, event)| event.len() as u64).sum();
                self.shared
                    .events
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.shared
                    .events
                    .fetch_sub(removed.events, Ordering::Relaxed);
                self.shared.bytes.fetch_add(added_bytes, Ordering::Relaxed);
                self.shared
                    .bytes
                    .fetch_sub(removed.bytes, Ordering::Relaxed);
                self.shared
                    .quarantined
                    .fetch_add(removed.quarantined, Ordering::Relaxed);
                self.removals.clear();
                if lock(&self.shared.write_error).take().is_some() {
                    tracing::info!("the spool is writable again");
                }
                let had_appends = !appends.is_empty();
                // Handed over before the answer, so that a forwarder draining after the last
                // answer finds every event it must forward.
                for append in appends {
                    self.tail.push(append.sequence, append.event);
                    let _ = append.reply.send(Ok(append.sequence));
                }
                if had_appends {
                    self.committed.notify_one();
                }
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "spool commit failed; events in it were refused");
                metrics::counter!("telecmi_bridge_spool_refused_total", "reason" => "write_error")
                    .increment(appends.len() as u64);
                *lock(&self.shared.write_error) = Some(error.to_string());
                let failure = SpoolFailure::Storage(Arc::new(error));
                for append in appends {
                    let _ = append
                        .reply
                        .send(Err(PublishError::SpoolUnavailable(failure.clone())));
                }
                Err(failure)
            }
        }
    }
}
