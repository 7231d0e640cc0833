//! The `Publisher` of `kafka` mode: records go straight to Kafka, and their delivery reports
//! answer the HTTP requests waiting on them.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

use super::client::{KafkaClient, OutgoingRecord};
use super::delivery::{confirmed, count_error};
use crate::pipeline::OutboundRecord;
use crate::publish::{PublishError, PublishFuture, Publisher, Receipt, Rejection};

#[derive(Clone)]
pub struct KafkaPublisher {
    client: KafkaClient,
    ack_timeout: Duration,
}

impl KafkaPublisher {
    /// A publisher with a client of its own, for the tools that publish outside the server.
    pub fn new(config: &ClientConfig, ack_timeout: Duration) -> Result<Self, KafkaError> {
        Ok(Self::on(KafkaClient::new(config.clone())?, ack_timeout))
    }

    /// A publisher producing through `client`, which others (the readiness probe) share.
    pub fn on(client: KafkaClient, ack_timeout: Duration) -> Self {
        Self {
            client,
            ack_timeout,
        }
    }
}

impl Publisher for KafkaPublisher {
    fn publish(&self, records: Vec<OutboundRecord>) -> PublishFuture {
        let started = Instant::now();
        let mut pending = Vec::with_capacity(records.len());
        for record in &records {
            let outgoing = OutgoingRecord {
                topic: &record.topic,
                key: &record.key,
                payload: record.payload.as_ref(),
                headers: record
                    .headers
                    .iter()
                    .map(|(key, value)| (*key, value.as_str())),
                timestamp_ms: record.timestamp_ms,
            };
            match self.client.send(outgoing) {
                Ok(delivery) => pending.push((record.topic.clone(), delivery)),
                Err(error) => {
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
                first.ok_or(PublishError::Rejected(Rejection::NoRecords))
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
