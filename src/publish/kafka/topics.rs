//! The topics the bridge writes: created when `kafka.create_topics` is set, otherwise checked
//! to exist. An admin concern, apart from producing: start-up, the readiness probe and the
//! command-line tools run it before anything is sent.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::context::{BridgeContext, Refusal};
use crate::domain::TopicName;

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
