//! The one Kafka client of a process: an idempotent `acks=all` producer built once from the
//! settings' client config, with what every user of it needs (send, probe, flush, the count in
//! flight, the last refusal) and the recovery from a fatal error. The `kafka`-mode publisher
//! and the spool forwarder both produce through it, and the readiness probe asks it, so a
//! process runs one producer whatever the delivery mode.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::context::{BridgeContext, LastRefusal, Refusal};
use super::delivery::classify;
use crate::domain::TopicName;
use crate::publish::PublishError;

/// A cheap handle: clones share the producer, and a producer replaced after a fatal error is
/// replaced for all of them.
#[derive(Clone)]
pub struct KafkaClient {
    shared: Arc<Shared>,
}

struct Shared {
    config: ClientConfig,
    producer: RwLock<FutureProducer<BridgeContext>>,
    refusal: LastRefusal,
}

/// One record as librdkafka takes it.
pub struct OutgoingRecord<'a, Headers> {
    pub topic: &'a TopicName,
    pub key: &'a str,
    pub payload: &'a [u8],
    pub headers: Headers,
    pub timestamp_ms: i64,
}

impl KafkaClient {
    pub fn new(config: ClientConfig) -> Result<Self, KafkaError> {
        let refusal = LastRefusal::default();
        let producer = create_producer(&config, &refusal)?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                producer: RwLock::new(producer),
                refusal,
            }),
        })
    }

    /// The librdkafka properties the client was built with, for the admin requests (topic
    /// checks) made next to it.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// Hands a record to the producer; the future resolves with its delivery report.
    pub fn send<'a>(
        &self,
        record: OutgoingRecord<'a, impl ExactSizeIterator<Item = (&'a str, &'a str)>>,
    ) -> Result<DeliveryFuture, PublishError> {
        let future_record = FutureRecord::to(record.topic.as_str())
            .key(record.key.as_bytes())
            .payload(record.payload)
            .headers(kafka_headers(record.headers))
            .timestamp(record.timestamp_ms);
        self.producer()
            .send_result(future_record)
            .map_err(|(error, _)| classify(&error, record.topic))
    }

    /// Asks a broker for cluster metadata: the readiness check. Blocking; call it off the
    /// async runtime.
    pub fn probe(&self, timeout: Duration) -> Result<(), String> {
        let metadata = self
            .producer()
            .client()
            .fetch_metadata(None, timeout)
            .map_err(|error| match self.refusal() {
                Some(refusal) => refusal.to_string(),
                None => format!("Kafka metadata unavailable: {error}"),
            })?;
        if metadata.brokers().is_empty() {
            return Err("Kafka metadata lists no brokers".to_owned());
        }
        Ok(())
    }

    /// Waits until every enqueued record is acknowledged or the deadline passes. Blocking.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer().flush(timeout)
    }

    pub fn in_flight(&self) -> i32 {
        self.producer().in_flight_count()
    }

    /// Why the brokers last refused this client, if they did.
    pub fn refusal(&self) -> Option<Refusal> {
        self.shared.refusal.get()
    }

    /// An idempotent producer that hit a fatal error (e.g. the broker lost acknowledged data)
    /// refuses everything from then on; this puts a new one in its place.
    pub fn replace_producer_if_fatal(&self) {
        let Some((code, reason)) = self.producer().client().fatal_error() else {
            return;
        };
        tracing::error!(%code, reason, "the producer failed fatally; creating a new one");
        match create_producer(&self.shared.config, &self.shared.refusal) {
            Ok(producer) => {
                *self
                    .shared
                    .producer
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = producer;
            }
            Err(error) => tracing::error!(%error, "could not create a new producer"),
        }
    }

    /// The current producer; a clone shares librdkafka's handle, so no lock is held while it
    /// blocks.
    fn producer(&self) -> FutureProducer<BridgeContext> {
        self.shared
            .producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn create_producer(
    config: &ClientConfig,
    refusal: &LastRefusal,
) -> Result<FutureProducer<BridgeContext>, KafkaError> {
    config.create_with_context(BridgeContext::sharing(refusal.clone()))
}

/// Record headers as librdkafka takes them.
fn kafka_headers<'a>(headers: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> OwnedHeaders {
    let capacity = headers.len();
    headers.fold(
        OwnedHeaders::new_with_capacity(capacity),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        },
    )
}
