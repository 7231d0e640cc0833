//! The Kafka publisher: an idempotent `acks=all` producer whose delivery reports answer the
//! HTTP requests waiting on them.

mod client_config;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::{Delivery, DeliveryFuture};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{PublishError, PublishFuture, Publisher, Receipt};
use crate::config::TopicName;
use crate::pipeline::OutboundRecord;
use crate::telemetry::repeats::{Repeats, Verdict, shape};

pub use client_config::kafka_client_config;

/// Routes librdkafka's logs and client-level errors into tracing and metrics, and remembers
/// a refusal (credentials or TLS): librdkafka reports it only here, while the request that met
/// it merely times out. Warnings and errors go through [`Repeats`]: with the brokers down,
/// librdkafka repeats itself many times a second.
#[derive(Default)]
pub struct BridgeContext {
    refusal: LastRefusal,
    logs: Mutex<Repeats>,
}

impl BridgeContext {
    /// librdkafka's own count of repeats does not make another message.
    fn admit(&self, kind: &str, facility: &str, message: &str) -> Verdict {
        let message = shape(message).replace(", # identical error(s) suppressed", "");
        self.logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(&format!("{kind}/{facility}/{message}"), Instant::now())
    }
}

/// Why the brokers would not talk to this client: configuration, which retrying cannot fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// SASL authentication failed.
    Credentials(String),
    /// The TLS handshake failed: an untrusted broker certificate, a client certificate the
    /// broker refused, or TLS spoken to a plaintext listener and the reverse.
    Tls(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Credentials(reason) => {
                write!(
                    formatter,
                    "Kafka refused the bridge's credentials: {reason}"
                )
            }
            Self::Tls(reason) => write!(formatter, "TLS with Kafka failed: {reason}"),
        }
    }
}

/// The last refusal a client reported, shared with its owner.
#[derive(Debug, Clone, Default)]
struct LastRefusal(Arc<Mutex<Option<Refusal>>>);

impl LastRefusal {
    fn get(&self) -> Option<Refusal> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, refusal: Refusal) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(refusal);
    }
}

impl ClientContext for BridgeContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                if let Verdict::Log { held_back } = self.admit("error", facility, message) {
                    tracing::error!(target: "librdkafka", facility, message, held_back);
                }
            }
            RDKafkaLogLevel::Warning => {
                if let Verdict::Log { held_back } = self.admit("warn", facility, message) {
                    tracing::warn!(target: "librdkafka", facility, message, held_back);
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, message)
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, message),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        metrics::counter!("telecmi_bridge_kafka_errors_total", "kind" => "client").increment(1);
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
                self.refusal.set(Refusal::Credentials(reason.to_owned()));
            }
            Some(RDKafkaErrorCode::SSL) => self.refusal.set(Refusal::Tls(reason.to_owned())),
            _ => {}
        }
        let kind = format!("client-error/{error}");
        if let Verdict::Log { held_back } = self.admit(&kind, "", reason) {
            tracing::warn!(target: "librdkafka", %error, reason, held_back, "Kafka client error");
        }
    }
}

#[derive(Clone)]
pub struct KafkaPublisher {
    producer: FutureProducer<BridgeContext>,
    refusal: LastRefusal,
    ack_timeout: Duration,
}

impl KafkaPublisher {
    pub fn new(config: &ClientConfig, ack_timeout: Duration) -> Result<Self, KafkaError> {
        let context = BridgeContext::default();
        let refusal = context.refusal.clone();
        let producer = config.create_with_context(context)?;
        Ok(Self {
            producer,
            refusal,
            ack_timeout,
        })
    }

    /// Asks a broker for cluster metadata: the readiness check of `kafka` delivery mode.
    /// Blocking; call it off the async runtime.
    pub fn probe(&self, timeout: Duration) -> Result<(), String> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(None, timeout)
            .map_err(|error| match self.refusal.get() {
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
        self.producer.flush(timeout)
    }

    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Why the brokers last refused this client, if they did.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal.get()
    }

    pub(crate) fn producer(&self) -> &FutureProducer<BridgeContext> {
        &self.producer
    }
}

impl Publisher for KafkaPublisher {
    fn publish(&self, records: Vec<OutboundRecord>) -> PublishFuture {
        let started = Instant::now();
        let mut pending = Vec::with_capacity(records.len());
        for record in &records {
            let headers = kafka_headers(
                record
                    .headers
                    .iter()
                    .map(|(key, value)| (*key, value.as_str())),
            );
            let future_record = FutureRecord::to(record.topic.as_str())
                .key(record.key.as_bytes())
                .payload(record.payload.as_ref())
                .headers(headers)
                .timestamp(record.timestamp_ms);
            match self.producer.send_result(future_record) {
                Ok(delivery) => pending.push((record.topic.clone(), delivery)),
                Err((error, _)) => {
                    let error = classify(&error, &record.topic);
                    count_error(&error);
                    return Box::pin(std::future::ready(Err(error)));
                }
            }
        }
        // Slightly past librdkafka's own message timeout, so its verdict normally arrives first.
        let deadline = self.ack_timeout + Duration::from_millis(250);
        Box::pin(async move {
            let outcome = tokio::time::timeout(deadline, async {
                let mut first = None;
                for (topic, delivery) in pending {
                    let delivery = confirmed(&topic, delivery).await?;
                    metrics::counter!(
                        "telecmi_bridge_events_published_total",
                        "topic" => topic.to_string()
                    )
                    .increment(1);
                    first.get_or_insert(Receipt::Kafka {
                        topic,
                        partition: delivery.partition,
                        offset: delivery.offset,
                    });
                }
                first.ok_or_else(|| PublishError::Rejected("no records to publish".to_owned()))
            })
            .await
            .unwrap_or(Err(PublishError::Timeout));
            metrics::histogram!("telecmi_bridge_publish_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            if let Err(error) = &outcome {
                count_error(error);
            }
            outcome
        })
    }
}

/// Waits for one record's delivery report and accepts only a success that can be trusted.
pub(crate) async fn confirmed(
    topic: &TopicName,
    delivery: DeliveryFuture,
) -> Result<Delivery, PublishError> {
    match delivery.await {
        Ok(Ok(delivery)) if is_confirmed(&delivery) => Ok(delivery),
        Ok(Ok(_)) => Err(PublishError::Unconfirmed(topic.clone())),
        Ok(Err((error, _))) => Err(classify(&error, topic)),
        Err(_canceled) => Err(PublishError::ShuttingDown),
    }
}

/// Whether a success report can be trusted. With `acks=all` a written record always has an
/// offset. librdkafka's idempotent producer also reports success, without an offset, for a
/// batch it assumes written because a later batch of the partition succeeded ("implicit ack"),
/// even when the broker refused that batch as not persisted: seen on a partition's first writes
/// while its leadership was settling, it acknowledged records that never reached the log.
fn is_confirmed(delivery: &Delivery) -> bool {
    delivery.offset >= 0
}

/// Record headers as librdkafka takes them.
pub(crate) fn kafka_headers<'a>(
    headers: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> OwnedHeaders {
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

pub(crate) fn count_error(error: &PublishError) {
    metrics::counter!("telecmi_bridge_kafka_errors_total", "kind" => error.kind()).increment(1);
}

pub(crate) fn classify(error: &KafkaError, topic: &TopicName) -> PublishError {
    let Some(code) = error.rdkafka_error_code() else {
        return PublishError::Unavailable(error.to_string());
    };
    match code {
        RDKafkaErrorCode::MessageTimedOut | RDKafkaErrorCode::RequestTimedOut => {
            PublishError::Timeout
        }
        RDKafkaErrorCode::QueueFull => PublishError::QueueFull,
        RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition => {
            PublishError::TopicMissing(topic.clone())
        }
        RDKafkaErrorCode::MessageSizeTooLarge
        | RDKafkaErrorCode::InvalidMessage
        | RDKafkaErrorCode::InvalidMessageSize
        | RDKafkaErrorCode::InvalidRecord
        | RDKafkaErrorCode::MessageBatchTooLarge
        | RDKafkaErrorCode::PolicyViolation
        | RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::InvalidTopic => PublishError::Rejected(error.to_string()),
        _ => PublishError::Unavailable(error.to_string()),
    }
}

/// Whether Kafka refused a record for good: sending it again as it is cannot succeed until
/// something outside the bridge changes (the topic's limits, its ACLs, its existence).
pub(crate) fn refused_for_good(error: &PublishError) -> bool {
    matches!(
        error,
        PublishError::Rejected(_) | PublishError::TopicMissing(_)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("could not reach Kafka to check topics: {0}")]
    Unreachable(String),
    #[error("topics missing on the cluster: {0} (create them, or set kafka.create_topics = true)")]
    Missing(String),
    #[error("could not create topic {topic}: {reason}")]
    CreateFailed { topic: String, reason: String },
    #[error(
        "Kafka refused the bridge's credentials ({0}); check kafka.security (mechanism, user \
         name, password)"
    )]
    Authentication(String),
    #[error(
        "TLS with Kafka failed ({0}); check kafka.security (protocol, ssl_ca_location, client          certificate)"
    )]
    Tls(String),
}

impl From<Refusal> for TopicError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Credentials(reason) => Self::Authentication(reason),
            Refusal::Tls(reason) => Self::Tls(reason),
        }
    }
}

/// An error reaching the cluster: fatal if the brokers refused us (retrying cannot fix
/// configuration), otherwise "unreachable", which the readiness probe retries.
fn reaching_error(context: &BridgeContext, error: &KafkaError) -> TopicError {
    match context.refusal.get() {
        Some(refusal) => refusal.into(),
        None => TopicError::Unreachable(error.to_string()),
    }
}

/// Creates missing topics (`kafka.create_topics = true`) or checks that they all exist.
pub async fn ensure_topics(
    config: &ClientConfig,
    topics: &[TopicName],
    create: bool,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<(), TopicError> {
    let admin: AdminClient<BridgeContext> = config
        .create_with_context(BridgeContext::default())
        .map_err(|error| TopicError::Unreachable(error.to_string()))?;
    if create {
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| {
                NewTopic::new(
                    topic.as_str(),
                    partitions,
                    TopicReplication::Fixed(replication),
                )
            })
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|error| reaching_error(admin.inner().context(), &error))?;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(topic, partitions, replication, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(TopicError::CreateFailed {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
        return Ok(());
    }
    let metadata = tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(None, timeout)
            .map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .filter(|topic| topic.error().is_none())
                    .map(|topic| topic.name().to_owned())
                    .collect::<Vec<_>>()
            })
            .map_err(|error| reaching_error(admin.inner().context(), &error))
    })
    .await
    .map_err(|error| TopicError::Unreachable(error.to_string()))??;
    let missing: Vec<&str> = topics
        .iter()
        .map(TopicName::as_str)
        .filter(|topic| !metadata.iter().any(|existing| existing == topic))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(TopicError::Missing(missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

    #[test]
    fn librdkafkas_own_count_of_repeats_does_not_make_another_message() {
        let context = BridgeContext::default();
        let refused = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: \
                       Connection refused (after 0ms in state CONNECT)";
        assert_eq!(
            context.admit("error", "FAIL", refused),
            Verdict::Log { held_back: 0 }
        );
        let counted = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: \
                       Connection refused (after 3ms in state CONNECT, 12 identical error(s) \
                       suppressed)";
        assert_eq!(context.admit("error", "FAIL", counted), Verdict::HoldBack);
        assert_eq!(
            context.admit("warn", "FAIL", counted),
            Verdict::Log { held_back: 0 },
            "another level is another message"
        );
    }

    #[test]
    fn a_delivery_without_an_offset_is_not_confirmed() {
        let delivery = |offset| Delivery {
            partition: 0,
            offset,
            timestamp: Timestamp::NotAvailable,
        };
        assert!(is_confirmed(&delivery(0)));
        assert!(is_confirmed(&delivery(41)));
        // RD_KAFKA_OFFSET_INVALID, what librdkafka reports for an implicitly acknowledged batch.
        assert!(!is_confirmed(&delivery(-1001)));
        assert!(!is_confirmed(&delivery(-1)));
    }
}
