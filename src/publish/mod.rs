//! Publishing: the I/O edge of the pipeline. The HTTP layer sees only [`Publisher`]; Kafka
//! (and its embedded stand-in) or the durable spool in front of it sit behind it.

pub mod dedup;
pub mod embedded;
pub mod kafka;
pub mod spool;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rdkafka::error::KafkaError;

use crate::domain::TopicName;
use crate::pipeline::OutboundRecord;

pub use kafka::KafkaPublisher;

/// Where an accepted event is safe: in Kafka (where its first record landed), or synced to the
/// local spool, from which the forwarder moves it to Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    Kafka {
        topic: TopicName,
        partition: i32,
        offset: i64,
    },
    Spool {
        sequence: u64,
    },
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
    Unavailable(KafkaError),
    #[error("Kafka refused the record: {0}")]
    Rejected(Rejection),
    #[error(
        "Kafka reported the record delivered without an offset; not trusted, as such a report \
         can stand for a batch the broker never wrote"
    )]
    Unconfirmed(TopicName),
    #[error("the bridge is shutting down")]
    ShuttingDown,
    #[error("the spool is full")]
    SpoolFull,
    #[error("the spool cannot be written: {0}")]
    SpoolUnavailable(SpoolFailure),
}

/// Why a record can never be published as it is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Kafka(KafkaError),
    #[error("no records to publish")]
    NoRecords,
    #[error("{0}")]
    InvalidTopic(String),
    #[error("cannot encode for the spool: {0}")]
    Unencodable(postcard::Error),
    #[error("spooled event {sequence} is undecodable: {source}")]
    Undecodable {
        sequence: u64,
        source: postcard::Error,
    },
    #[error("envelope serialisation: {0}")]
    Serialisation(Arc<serde_json::Error>),
}

/// Why the spool could not take, give back or settle an event. Sources that cannot be cloned
/// are shared, since one failed commit answers every request in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolFailure {
    #[error("{0}")]
    Storage(Arc<redb::Error>),
    #[error("{0}")]
    Task(Arc<tokio::task::JoinError>),
    #[error("the spool writer stopped")]
    WriterStopped,
    #[error("the spool did not confirm the write in time")]
    NotConfirmed,
    #[error("cannot quarantine spooled event {sequence}: {reason}")]
    Quarantine {
        sequence: u64,
        reason: Box<SpoolFailure>,
    },
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
            Self::Unconfirmed(_) => "unconfirmed",
            Self::ShuttingDown => "shutting_down",
            Self::SpoolFull => "spool_full",
            Self::SpoolUnavailable(_) => "spool_unavailable",
        }
    }
}

pub type PublishFuture = Pin<Box<dyn Future<Output = Result<Receipt, PublishError>> + Send>>;

/// Hands records to durable storage and resolves once they are safe there.
pub trait Publisher: Send + Sync + 'static {
    /// Enqueues the records of one event, in order, before returning, so that the order in
    /// which requests call this is the order per (topic, key); the future resolves once all
    /// of them are safe.
    fn publish(&self, records: Vec<OutboundRecord>) -> PublishFuture;
}
