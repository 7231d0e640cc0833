//! Moves spooled events to Kafka in spool order and removes each once Kafka acknowledged all
//! of its records.
//!
//! Order per key holds because one idempotent producer sends in spool order and, in spool
//! mode, never expires a record (`message.timeout.ms = 0`): librdkafka retries until the
//! broker takes it. A record Kafka refuses for good stops forwarding: everything in flight is
//! settled, and after a back-off forwarding starts again from the oldest event left. Nothing is
//! ever dropped; an event acknowledged by Kafka but not yet removed when the process dies is
//! sent again after restart, under the same event id.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureRecord, Producer};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::store::Store;
use super::{Command, SpooledEvent, Tail};
use crate::config::{SpoolSettings, TopicName};
use crate::publish::kafka::{classify, confirmed, count_error, kafka_headers};
use crate::publish::{KafkaPublisher, PublishError};

/// Events read from the spool per read transaction.
const READ_BATCH: usize = 512;
/// Acknowledged events removed per commit while forwarding is busy.
const REMOVE_BATCH: usize = 64;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

type Forwarding = Pin<Box<dyn Future<Output = (u64, Result<(), PublishError>)> + Send>>;

pub struct Forwarder {
    store: Arc<Store>,
    tail: Arc<Tail>,
    commands: mpsc::UnboundedSender<Command>,
    committed: Arc<Notify>,
    producer: KafkaPublisher,
    client_config: ClientConfig,
    window: usize,
    backoff_max: Duration,
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
        client_config: ClientConfig,
        settings: &SpoolSettings,
    ) -> Result<Self, KafkaError> {
        Ok(Self {
            store,
            tail,
            commands,
            committed,
            producer: KafkaPublisher::new(&client_config, Duration::ZERO)?,
            client_config,
            window: settings.forward_window,
            backoff_max: Duration::from_millis(settings.retry_backoff_max_ms),
        })
    }

    /// Forwards until told to stop. Returns whether the spool was found empty.
    pub async fn run(mut self, control: ForwarderControl) -> bool {
        let mut cursor = 0_u64;
        // The file first: it may hold events from before a restart.
        let mut from_store = true;
        let mut in_flight: FuturesUnordered<Forwarding> = FuturesUnordered::new();
        let mut acknowledged = Vec::new();
        let mut failure: Option<PublishError> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            // Taken before reading: only a read that began once the drain was asked for (every
            // request answered, so every event committed) may end it. One that began earlier
            // can miss an event answered just before the drain.
            let draining = control.drain.is_cancelled();
            let mut caught_up = false;
            while failure.is_none() && in_flight.len() < self.window {
                let wanted = (self.window - in_flight.len()).min(READ_BATCH);
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
                    match self.send(sequence, &bytes) {
                        Ok(forwarding) => in_flight.push(forwarding),
                        Err(error) => {
                            count_error(&error);
                            failure = Some(error);
                            break;
                        }
                    }
                }
                if caught_up {
                    break;
                }
            }

            if in_flight.is_empty() {
                self.remove(std::mem::take(&mut acknowledged), true).await;
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
                    self.replace_producer_if_fatal();
                    cursor = 0;
                    from_store = true;
                    continue;
                }
                if caught_up {
                    if draining {
                        return true;
                    }
                    tokio::select! {
                        () = control.stop.cancelled() => return false,
                        () = control.drain.cancelled() => {}
                        () = self.committed.notified() => {}
                    }
                }
                continue;
            }

            let room = failure.is_none() && in_flight.len() < self.window;
            tokio::select! {
                () = control.stop.cancelled() => {
                    self.remove(acknowledged, true).await;
                    return false;
                }
                () = self.committed.notified(), if room => {}
                Some((sequence, outcome)) = in_flight.next() => match outcome {
                    Ok(()) => {
                        backoff = FIRST_BACKOFF;
                        metrics::counter!("telecmi_bridge_spool_forwarded_total").increment(1);
                        acknowledged.push(sequence);
                    }
                    Err(error) => {
                        count_error(&error);
                        failure.get_or_insert(error);
                    }
                },
            }
            if acknowledged.len() >= REMOVE_BATCH {
                self.remove(std::mem::take(&mut acknowledged), false).await;
            }
        }
    }

    /// An idempotent producer that hit a fatal error (e.g. the broker lost acknowledged data)
    /// refuses everything from then on; forwarding continues with a new one.
    fn replace_producer_if_fatal(&mut self) {
        let Some((code, reason)) = self.producer.producer().client().fatal_error() else {
            return;
        };
        tracing::error!(%code, reason, "the producer failed fatally; creating a new one");
        match KafkaPublisher::new(&self.client_config, Duration::ZERO) {
            Ok(producer) => self.producer = producer,
            Err(error) => tracing::error!(%error, "could not create a new producer"),
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

    /// Hands every record of one event to the producer; the future resolves when Kafka has
    /// acknowledged all of them.
    fn send(&self, sequence: u64, bytes: &[u8]) -> Result<Forwarding, PublishError> {
        let event = SpooledEvent::decode(bytes).map_err(|error| {
            PublishError::Rejected(format!("spooled event {sequence} is undecodable: {error}"))
        })?;
        let mut deliveries = Vec::with_capacity(event.records.len());
        for record in &event.records {
            let topic = TopicName::try_from(record.topic.clone())
                .map_err(|error| PublishError::Rejected(error.to_string()))?;
            let headers = kafka_headers(
                record
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            );
            let future_record = FutureRecord::to(&record.topic)
                .key(record.key.as_bytes())
                .payload(&record.payload)
                .headers(headers);
            match self.producer.producer().send_result(future_record) {
                Ok(delivery) => deliveries.push((topic, delivery)),
                Err((error, _)) => return Err(classify(&error, &topic)),
            }
        }
        Ok(Box::pin(async move {
            for (topic, delivery) in deliveries {
                if let Err(error) = confirmed(&topic, delivery).await {
                    return (sequence, Err(error));
                }
            }
            (sequence, Ok(()))
        }))
    }

    /// Asks the writer to remove acknowledged events; with `wait`, returns once that is
    /// committed, so that a rewind never reads them again.
    async fn remove(&self, sequences: Vec<u64>, wait: bool) {
        if sequences.is_empty() {
            return;
        }
        let (committed, done) = if wait {
            let (sender, receiver) = oneshot::channel();
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        if self
            .commands
            .send(Command::Remove {
                sequences,
                committed,
            })
            .is_err()
        {
            return;
        }
        if let Some(done) = done {
            let _ = done.await;
        }
    }
}
