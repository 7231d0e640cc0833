//! Moves spooled events to Kafka in spool order and removes each once Kafka acknowledged all
//! of its records.
//!
//! Order per key holds because one idempotent producer sends in spool order and, in spool
//! mode, never expires a record (`message.timeout.ms = 0`): librdkafka retries until the
//! broker takes it. A record Kafka refuses for good (too large, not authorised, no such topic)
//! pauses only its keys: the event is tried again after a delay, later events sharing a key
//! with it wait in memory, and after `spool.quarantine_after_attempts` refusals it moves to the
//! quarantine and its keys go on (see [`super::refusals`]). Any other failure pauses
//! forwarding: everything in flight is settled, and after a back-off forwarding starts again
//! from the oldest event left. Nothing is ever dropped; an event acknowledged by Kafka but not
//! yet removed when the process dies is sent again after restart, under the same event id.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod refused;
mod sending;
mod spool_io;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::refusals::Refusals;
use super::status::Shared;
use super::store::Store;
use super::tail::Tail;
use super::writer::Command;
use crate::config::SpoolSettings;
use crate::publish::PublishError;
use crate::publish::kafka::{KafkaClient, count_error, refused_for_good};

/// Events read from the spool per read transaction.
const READ_BATCH: usize = 512;
/// Acknowledged events removed per commit while forwarding is busy.
const REMOVE_BATCH: usize = 64;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// One event on its way to Kafka: its sequence, its keys, and whether Kafka took all of it.
type Forwarding =
    Pin<Box<dyn Future<Output = (u64, Vec<String>, Result<(), PublishError>)> + Send>>;

pub struct Forwarder {
    store: Arc<Store>,
    tail: Arc<Tail>,
    commands: mpsc::UnboundedSender<Command>,
    committed: Arc<Notify>,
    shared: Arc<Shared>,
    kafka: KafkaClient,
    window: usize,
    backoff_max: Duration,
    refusals: Refusals,
}

/// How the forwarder is asked to stop.
#[derive(Clone, Default)]
pub struct ForwarderControl {
    /// Stop once the spool is empty (shutdown: drain what can be drained).
    pub drain: CancellationToken,
    /// Stop now (the shutdown deadline passed).
    pub stop: CancellationToken,
}

impl Forwarder {
    pub(super) fn new(
        store: Arc<Store>,
        tail: Arc<Tail>,
        commands: mpsc::UnboundedSender<Command>,
        committed: Arc<Notify>,
        shared: Arc<Shared>,
        kafka: KafkaClient,
        settings: &SpoolSettings,
    ) -> Self {
        let backoff_max = settings.retry_backoff_max_ms;
        Self {
            store,
            tail,
            commands,
            committed,
            shared,
            kafka,
            window: settings.forward_window.get(),
            backoff_max,
            refusals: Refusals::new(settings.quarantine_after_attempts.get(), backoff_max),
        }
    }

    /// Forwards until told to stop. Returns whether the spool was found empty.
    pub async fn run(mut self, control: ForwarderControl) -> bool {
        let mut cursor = 0_u64;
        // The file first: it may hold events from before a restart.
        let mut from_store = true;
        let mut in_flight: FuturesUnordered<Forwarding> = FuturesUnordered::new();
        let mut acknowledged = Vec::new();
        let mut failure: Option<PublishError> = None;
        // Set while removals the writer failed to commit are pending: reading the file again
        // before one is confirmed would send those events twice.
        let mut removal_unconfirmed = false;
        let mut backoff = FIRST_BACKOFF;
        loop {
            // Taken before reading: only a read that began once the drain was asked for (every
            // request answered, so every event committed) may end it. One that began earlier
            // can miss an event answered just before the drain.
            let draining = control.drain.is_cancelled();
            let mut caught_up = false;
            if failure.is_none()
                && !removal_unconfirmed
                && let Err(error) = self.attend_to_refused(&mut in_flight).await
            {
                failure = Some(error);
            }
            while failure.is_none() && !removal_unconfirmed && self.room(&in_flight) > 0 {
                let wanted = self.room(&in_flight).min(READ_BATCH);
                let events = match self.next_events(cursor, wanted, &mut from_store).await {
                    Ok(events) => events,
                    Err(error) => {
                        failure = Some(PublishError::SpoolUnavailable(error));
                        break;
                    }
                };
                caught_up = events.len() < wanted;
                for (sequence, bytes) in events {
                    cursor = sequence + 1;
                    if let Err(error) = self.forward(sequence, &bytes, &mut in_flight) {
                        count_error(&error);
                        failure = Some(error);
                        break;
                    }
                }
                if caught_up {
                    break;
                }
            }
            self.shared
                .kafka_refused
                .store(self.refusals.refused() as u64, Ordering::Relaxed);

            if in_flight.is_empty() {
                let sequences = std::mem::take(&mut acknowledged);
                if !sequences.is_empty() || removal_unconfirmed {
                    match self.remove(sequences, true).await {
                        Ok(()) => removal_unconfirmed = false,
                        Err(error) => {
                            removal_unconfirmed = true;
                            failure.get_or_insert(PublishError::SpoolUnavailable(error));
                        }
                    }
                }
                if let Some(error) = failure.take() {
                    tracing::warn!(
                        %error,
                        retry_in = ?backoff,
                        "forwarding from the spool paused; will retry from the oldest event"
                    );
                    tokio::select! {
                        () = control.stop.cancelled() => return false,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.backoff_max);
                    self.kafka.replace_producer_if_fatal();
                    if !removal_unconfirmed {
                        cursor = 0;
                        from_store = true;
                        self.refusals.rewind();
                    }
                    continue;
                }
                if caught_up || self.room(&in_flight) == 0 {
                    if draining && caught_up && self.refusals.is_empty() {
                        return true;
                    }
                    let next_due = self.refusals.next_due();
                    tokio::select! {
                        () = control.stop.cancelled() => return false,
                        () = control.drain.cancelled(), if !draining => {}
                        () = self.committed.notified() => {}
                        () = sleep_until(next_due), if next_due.is_some() => {}
                    }
                }
                continue;
            }

            let room = failure.is_none() && self.room(&in_flight) > 0;
            let next_due = self.refusals.next_due().filter(|_| failure.is_none());
            let settled = tokio::select! {
                () = control.stop.cancelled() => {
                    let _ = self.remove(acknowledged, true).await;
                    return false;
                }
                () = self.committed.notified(), if room => None,
                () = sleep_until(next_due), if next_due.is_some() => None,
                Some(settled) = in_flight.next() => Some(settled),
            };
            if let Some((sequence, keys, outcome)) = settled {
                match outcome {
                    Ok(()) => {
                        backoff = FIRST_BACKOFF;
                        metrics::counter!("telecmi_bridge_spool_forwarded_total").increment(1);
                        acknowledged.push(sequence);
                        if let Err(error) = self.release(sequence, &mut in_flight) {
                            count_error(&error);
                            failure.get_or_insert(error);
                        }
                    }
                    Err(error) => {
                        count_error(&error);
                        if refused_for_good(&error) {
                            self.refuse(sequence, keys, &error);
                        } else {
                            failure.get_or_insert(error);
                        }
                    }
                }
            }
            if acknowledged.len() >= REMOVE_BATCH {
                // Not waited for: a failed commit keeps them pending in the writer, and the
                // removal waited for before any rewind tells whether they are gone.
                let _ = self.remove(std::mem::take(&mut acknowledged), false).await;
            }
        }
    }

    /// Events that may still be read: the window less those in flight, refused or held.
    fn room(&self, in_flight: &FuturesUnordered<Forwarding>) -> usize {
        self.window
            .saturating_sub(in_flight.len() + self.refusals.len())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    }
}
