//! Kafka: one client per process (the producer, its probe, flush and recovery), the `kafka`
//! mode publisher on top of it, what a delivery report means, the topic checks, and
//! librdkafka's logs.

mod client;
mod client_config;
mod context;
mod delivery;
mod publisher;
mod topics;

pub use client::{KafkaClient, OutgoingRecord};
pub use client_config::{kafka_client_config, kafka_connection_config};
pub use context::{BridgeContext, Refusal};
pub(crate) use delivery::{confirmed, count_error, refused_for_good};
pub use publisher::KafkaPublisher;
pub use topics::{TopicError, ensure_topics};
