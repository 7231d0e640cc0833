//! The Kafka publisher: an idempotent `acks=all` producer whose delivery reports answer the
//! HTTP requests waiting on them.

use std::collections::HashMap;
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

/// Routes librdkafka's logs and client-level errors into tracing and metrics, and remembers
/// a refusal (credentials or TLS): librdkafka reports it only here, while the request that met
/// it merely times out. Warnings and errors go through a [`LogLimiter`]: with the brokers down,
/// librdkafka repeats itself many times a second.
#[derive(Default)]
pub struct BridgeContext {
    refusal: LastRefusal,
    logs: Mutex<LogLimiter>,
}

/// How long a repeated message stays quiet after it was logged.
const LOG_REPEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Distinct messages remembered at most; librdkafka's vocabulary is far smaller.
const LOG_KINDS_REMEMBERED: usize = 512;

/// Logs a message the first time, then at most once per [`LOG_REPEAT_INTERVAL`] with the count
/// of repeats held back since. Messages are the same when they differ only in digits (counts,
/// durations, ports, however many digits). Pure: the caller passes the clock.
#[derive(Debug, Default)]
struct LogLimiter {
    windows: HashMap<String, RepeatWindow>,
}

#[derive(Debug)]
struct RepeatWindow {
    logged_at: Instant,
    held_back: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogVerdict {
    /// Log it, saying how many like it were held back since it was last logged.
    Log {
        held_back: u64,
    },
    HoldBack,
}

impl LogLimiter {
    fn admit(&mut self, kind: &str, facility: &str, message: &str, now: Instant) -> LogVerdict {
        let key = format!("{kind}/{facility}/{}", without_digits(message));
        if let Some(window) = self.windows.get_mut(&key) {
            if now.duration_since(window.logged_at) < LOG_REPEAT_INTERVAL {
                window.held_back += 1;
                return LogVerdict::HoldBack;
            }
            let held_back = std::mem::take(&mut window.held_back);
            window.logged_at = now;
            return LogVerdict::Log { held_back };
        }
        if self.windows.len() >= LOG_KINDS_REMEMBERED {
            self.windows
                .retain(|_, window| now.duration_since(window.logged_at) < LOG_REPEAT_INTERVAL);
        }
        if self.windows.len() < LOG_KINDS_REMEMBERED {
            self.windows.insert(
                key,
                RepeatWindow {
                    logged_at: now,
                    held_back: 0,
                },
            );
        }
        LogVerdict::Log { held_back: 0 }
    }
}

/// The message with every run of digits replaced by one `#`, and without librdkafka's own
/// count of repeats.
fn without_digits(message: &str) -> String {
    let mut shape = String::with_capacity(message.len());
    for c in message.chars() {
        if !c.is_ascii_digit() {
            shape.push(c);
        } else if !shape.ends_with('#') {
            shape.push('#');
        }
    }
    shape.replace(", # identical error(s) suppressed", "")
}

impl BridgeContext {
    fn admit(&self, kind: &str, facility: &str, message: &str) -> LogVerdict {
        self.logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(kind, facility, message, Instant::now())
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
                if let LogVerdict::Log { held_back } = self.admit("error", facility, message) {
                    tracing::error!(target: "librdkafka", facility, message, held_back);
                }
            }
            RDKafkaLogLevel::Warning => {
                if let LogVerdict::Log { held_back } = self.admit("warn", facility, message) {
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
        if let LogVerdict::Log { held_back } = self.admit(&kind, "", reason) {
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
    fn a_repeated_message_is_logged_once_then_once_per_interval_with_a_count() {
        let mut limiter = LogLimiter::default();
        let start = Instant::now();
        let refused = |n: u32| {
            format!(
                "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection \
                 refused (after {n}ms in state CONNECT, {n} identical error(s) suppressed)"
            )
        };
        let at = |millis: u64| start + Duration::from_millis(millis);
        assert_eq!(
            limiter.admit("error", "FAIL", &refused(0), at(0)),
            LogVerdict::Log { held_back: 0 }
        );
        let first = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: \
                     Connection refused (after 0ms in state CONNECT)";
        assert_eq!(
            limiter.admit("error", "FAIL", first, at(1)),
            LogVerdict::HoldBack,
            "librdkafka's own count of repeats does not make another message"
        );
        // librdkafka's rate with the broker down: about 27 lines a second, for 30 seconds.
        let held: Vec<LogVerdict> = (1..=809)
            .map(|n| limiter.admit("error", "FAIL", &refused(n), at(u64::from(n) * 37)))
            .collect();
        assert!(held.iter().all(|verdict| *verdict == LogVerdict::HoldBack));
        assert_eq!(
            limiter.admit("warn", "FAIL", &refused(3), at(1_000)),
            LogVerdict::Log { held_back: 0 },
            "another level is another message"
        );
        assert_eq!(
            limiter.admit("error", "REQTMOUT", "Timed out 1 in-flight", at(1_000)),
            LogVerdict::Log { held_back: 0 },
            "another message is logged at once"
        );
        assert_eq!(
            limiter.admit("error", "FAIL", &refused(5), at(30_000)),
            LogVerdict::Log { held_back: 810 },
            "one line per interval, with the count held back"
        );
        assert_eq!(
            limiter.admit("error", "FAIL", &refused(6), at(30_001)),
            LogVerdict::HoldBack
        );
    }

    #[test]
    fn the_limiter_remembers_a_bounded_number_of_messages() {
        let mut limiter = LogLimiter::default();
        let start = Instant::now();
        for n in 0..LOG_KINDS_REMEMBERED * 2 {
            let facility = format!("F{}", "x".repeat(n));
            limiter.admit("error", &facility, "message", start);
        }
        assert!(limiter.windows.len() <= LOG_KINDS_REMEMBERED);
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
