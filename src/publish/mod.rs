//! Publishing: the I/O edge of the pipeline. The HTTP layer sees only [`Publisher`]; Kafka,
//! and its embedded stand-in, sit behind it.

pub mod embedded;
pub mod kafka;

use std::future::Future;
use std::pin::Pin;

use crate::config::TopicName;
use crate::pipeline::OutboundRecord;

pub use kafka::KafkaPublisher;

/// Where the event's first record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub topic: TopicName,
    pub partition: i32,
    pub offset: i64,
}

/// Why a record is not known to be in Kafka. The class decides the HTTP answer: the sender
/// may retry what is transient, and must not be told 2xx for any of it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("Kafka did not acknowledge the record in time")]
    Timeout,
    #[error("the producer queue is full")]
    QueueFull,
    #[error("topic {0} does not exist")]
    TopicMissing(TopicName),
    #[error("Kafka is unavailable: {0}")]
    Unavailable(String),
    #[error("Kafka refused the record: {0}")]
    Rejected(String),
    #[error("the bridge is shutting down")]
    ShuttingDown,
}

impl PublishError {
    /// Stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::QueueFull => "queue_full",
            Self::TopicMissing(_) => "topic_missing",
            Self::Unavailable(_) => "unavailable",
            Self::Rejected(_) => "rejected",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

pub type PublishFuture = Pin<Box<dyn Future<Output = Result<Delivered, PublishError>> + Send>>;

/// Hands records to durable storage and resolves once they are safe there.
pub trait Publisher: Send + Sync + 'static {
    /// Enqueues the records of one event, in order, before returning, so that the order in
    /// which requests call this is the order per (topic, key); the future resolves when all
    /// are acknowledged, with where the first one landed.
    fn publish(&self, records: Vec<OutboundRecord>) -> PublishFuture;
}
