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

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rdkafka::producer::future_producer::DeliveryFuture;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::event::SpooledEvent;
use super::refusals::{Due, Refusals, keys_of};
use super::status::Shared;
use super::store::{Quarantine, Store};
use super::tail::Tail;
use super::writer::Command;
use crate::config::{SpoolSettings, TopicName};
use crate::pipeline::envelope::unix_millis;
use crate::publish::PublishError;
use crate::publish::kafka::{
    KafkaClient, OutgoingRecord, confirmed, count_error, refused_for_good,
};

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
        let backoff_max = Duration::from_millis(settings.retry_backoff_max_ms);
        Self {
            store,
            tail,
            commands,
            committed,
            shared,
            kafka,
            window: settings.forward_window,
            backoff_max,
            refusals: Refusals::new(settings.quarantine_after_attempts, backoff_max),
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

    /// Sends one event read from the spool, unless it must wait behind a refused event of its
    /// key. Errs only when forwarding as a whole must pause.
    fn forward(
        &mut self,
        sequence: u64,
        bytes: &[u8],
        in_flight: &mut FuturesUnordered<Forwarding>,
    ) -> Result<(), PublishError> {
        match SpooledEvent::decode(bytes) {
            Ok(event) => match self.refusals.admit(sequence, event) {
                Some(event) => self.send(sequence, &event, in_flight),
                None => Ok(()),
            },
            Err(error) => {
                let error = PublishError::Rejected(format!(
                    "spooled event {sequence} is undecodable: {error}"
                ));
                self.refuse(sequence, Vec::new(), &error);
                Ok(())
            }
        }
    }

    /// Sends the events that waited behind `sequence`, now that it left the spool.
    fn release(
        &mut self,
        sequence: u64,
        in_flight: &mut FuturesUnordered<Forwarding>,
    ) -> Result<(), PublishError> {
        for (held, event) in self.refusals.settled(sequence) {
            self.send(held, &event, in_flight)?;
        }
        Ok(())
    }

    fn refuse(&mut self, sequence: u64, keys: Vec<String>, error: &PublishError) {
        let first = self
            .refusals
            .refuse(sequence, keys, error.to_string(), Instant::now());
        if first {
            tracing::warn!(
                sequence,
                %error,
                "Kafka refused a spooled event for good; later events of its keys wait while \
                 it is tried again, then it goes to the quarantine"
            );
        }
    }

    /// Retries the refused events whose time has come, and moves to the quarantine those that
    /// used up their attempts.
    async fn attend_to_refused(
        &mut self,
        in_flight: &mut FuturesUnordered<Forwarding>,
    ) -> Result<(), PublishError> {
        for (sequence, due) in self.refusals.due(Instant::now()) {
            match due {
                Due::Retry => match self
                    .read(sequence, 1)
                    .await
                    .map_err(PublishError::SpoolUnavailable)?
                    .pop()
                {
                    Some((read, bytes)) if read == sequence => match SpooledEvent::decode(&bytes) {
                        Ok(event) => self.send(sequence, &event, in_flight)?,
                        Err(error) => {
                            let error = PublishError::Rejected(format!(
                                "spooled event {sequence} is undecodable: {error}"
                            ));
                            self.refuse(sequence, Vec::new(), &error);
                        }
                    },
                    _ => self.release(sequence, in_flight)?,
                },
                Due::Quarantine { attempts, error } => {
                    self.quarantine(sequence, attempts, error).await?;
                    self.release(sequence, in_flight)?;
                }
            }
        }
        Ok(())
    }

    async fn quarantine(
        &mut self,
        sequence: u64,
        attempts: u32,
        error: String,
    ) -> Result<(), PublishError> {
        let (committed, done) = oneshot::channel();
        let quarantine = Quarantine {
            sequence,
            quarantined_at_ms: unix_millis(OffsetDateTime::now_utc()),
            attempts,
            error: error.clone(),
        };
        let outcome = match self.commands.send(Command::Quarantine {
            quarantine,
            committed,
        }) {
            Ok(()) => done
                .await
                .unwrap_or_else(|_| Err("the spool writer stopped".to_owned())),
            Err(_) => Err("the spool writer stopped".to_owned()),
        };
        match outcome {
            Ok(()) => {
                metrics::counter!("telecmi_bridge_spool_quarantined_total").increment(1);
                tracing::error!(
                    sequence,
                    attempts,
                    error,
                    "a spooled event Kafka refused for good was moved to the quarantine; it \
                     stays in the spool file for an operator and is not forwarded, and later \
                     events of its keys go on"
                );
                Ok(())
            }
            Err(reason) => {
                self.refusals.put_off(sequence, Instant::now());
                Err(PublishError::SpoolUnavailable(format!(
                    "cannot quarantine spooled event {sequence}: {reason}"
                )))
            }
        }
    }

    /// Up to `wanted` events from sequence `from` on: from the in-memory tail while it holds
    /// every committed event, from the file otherwise, until a read of the file comes short.
    async fn next_events(
        &self,
        from: u64,
        wanted: usize,
        from_store: &mut bool,
    ) -> Result<Vec<(u64, Vec<u8>)>, String> {
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

    async fn read(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, String> {
        let store = self.store.clone();
        let limit = limit.min(READ_BATCH);
        tokio::task::spawn_blocking(move || store.read_from(from, limit))
            .await
            .map_err(|error| error.to_string())?
            .map_err(|error| error.to_string())
    }

    /// Hands every record of one event to the producer; its future resolves when Kafka has
    /// acknowledged all of them. A record refused for good already here is recorded as such.
    fn send(
        &mut self,
        sequence: u64,
        event: &SpooledEvent,
        in_flight: &mut FuturesUnordered<Forwarding>,
    ) -> Result<(), PublishError> {
        let keys = keys_of(event);
        match self.enqueue(event) {
            Ok(deliveries) => {
                in_flight.push(Box::pin(async move {
                    for (topic, delivery) in deliveries {
                        if let Err(error) = confirmed(&topic, delivery).await {
                            return (sequence, keys, Err(error));
                        }
                    }
                    (sequence, keys, Ok(()))
                }));
                Ok(())
            }
            Err(error) if refused_for_good(&error) => {
                count_error(&error);
                self.refuse(sequence, keys, &error);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn enqueue(
        &self,
        event: &SpooledEvent,
    ) -> Result<Vec<(TopicName, DeliveryFuture)>, PublishError> {
        let mut deliveries = Vec::with_capacity(event.records.len());
        for record in &event.records {
            let topic = TopicName::try_from(record.topic.clone())
                .map_err(|error| PublishError::Rejected(error.to_string()))?;
            let delivery = self.kafka.send(OutgoingRecord {
                topic: &topic,
                key: &record.key,
                payload: &record.payload,
                headers: record
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
                timestamp_ms: event.accepted_at_ms,
            })?;
            deliveries.push((topic, delivery));
        }
        Ok(deliveries)
    }

    /// Asks the writer to remove acknowledged events; with `wait`, returns once that (and every
    /// removal asked for before) is committed, or why it was not, so that a rewind never reads
    /// them again.
    async fn remove(&self, sequences: Vec<u64>, wait: bool) -> Result<(), String> {
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
            .map_err(|_| "the spool writer stopped".to_owned())?;
        match done {
            Some(done) => done
                .await
                .unwrap_or_else(|_| Err("the spool writer stopped".to_owned())),
            None => Ok(()),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
    }
}
