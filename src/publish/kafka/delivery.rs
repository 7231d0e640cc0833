//! What a record's fate in Kafka means to the bridge: a delivery report trusted or not, and a
//! librdkafka error classified into a [`PublishError`]. Shared by the `kafka`-mode publisher
//! and the spool forwarder, which decide differently on the same classes.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::{Delivery, DeliveryFuture};

use crate::domain::TopicName;
use crate::publish::{PublishError, Rejection};

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

pub(crate) fn count_error(error: &PublishError) {
    metrics::counter!("telecmi_bridge_kafka_errors_total", "kind" => error.kind()).increment(1);
}

pub(crate) fn classify(error: &KafkaError, topic: &TopicName) -> PublishError {
    let Some(code) = error.rdkafka_error_code() else {
        return PublishError::Unavailable(error.clone());
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
        | RDKafkaErrorCode::InvalidTopic => PublishError::Rejected(Rejection::Kafka(error.clone())),
        _ => PublishError::Unavailable(error.clone()),
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

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

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
