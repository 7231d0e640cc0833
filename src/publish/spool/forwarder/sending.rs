//! The Kafka side of forwarding: an event's records handed to the producer, or held back
//! behind a refused event of their key.

use futures_util::stream::FuturesUnordered;
use rdkafka::producer::future_producer::DeliveryFuture;

use super::super::event::SpooledEvent;
use super::super::refusals::keys_of;
use super::{Forwarder, Forwarding};
use crate::domain::TopicName;
use crate::publish::kafka::{OutgoingRecord, confirmed, count_error, refused_for_good};
use crate::publish::{PublishError, Rejection};

impl Forwarder {
    /// Sends one event read from the spool, unless it must wait behind a refused event of its
    /// key. Errs only when forwarding as a whole must pause.
    pub(super) fn forward(
        &mut self,
        sequence: u64,
        bytes: &[u8],
        in_flight: &mut FuturesUnordered<Forwarding>,
    ) -> Result<(), PublishError> {
        match SpooledEvent::decode(bytes) {
            Ok(event) => match self.refusals.admit(sequence, event) {
                Some(event) => self.send(sequence, &event, in_flight),
                None => Ok(()),
            },
            Err(error) => {
                let error = PublishError::Rejected(Rejection::Undecodable {
                    sequence,
                    source: error,
                });
                self.refuse(sequence, Vec::new(), &error);
                Ok(())
            }
        }
    }

    /// Sends the events that waited behind `sequence`, now that it left the spool.
    pub(super) fn release(
        &mut self,
        sequence: u64,
        in_flight: &mut FuturesUnordered<Forwarding>,
    ) -> Result<(), PublishError> {
        for (held, event) in self.refusals.settled(sequence) {
            self.send(held, &event, in_flight)?;
        }
        Ok(())
    }

    /// Hands every record of one event to the producer; its future resolves when Kafka has
    /// acknowledged all of them. A record refused for good already here is recorded as such.
    pub(super) fn send(
        &mut self,
        sequence: u64,
        event: &SpooledEvent,
        in_flight: &mut FuturesUnordered<Forwarding>,
    ) -> Result<(), PublishError> {
        let keys = keys_of(event);
        match self.enqueue(event) {
            Ok(deliveries) => {
                in_flight.push(Box::pin(async move {
                    for (topic, delivery) in deliveries {
                        if let Err(error) = confirmed(&topic, delivery).await {
                            return (sequence, keys, Err(error));
                        }
                    }
                    (sequence, keys, Ok(()))
                }));
                Ok(())
            }
            Err(error) if refused_for_good(&error) => {
                count_error(&error);
                self.refuse(sequence, keys, &error);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    pub(super) fn enqueue(
        &self,
        event: &SpooledEvent,
    ) -> Result<Vec<(TopicName, DeliveryFuture)>, PublishError> {
        let mut deliveries = Vec::with_capacity(event.records.len());
        for record in &event.records {
            let topic = TopicName::try_from(record.topic.clone())
                .map_err(|error| PublishError::Rejected(Rejection::InvalidTopic(error)))?;
            let delivery = self.kafka.send(OutgoingRecord {
                topic: &topic,
                key: &record.key,
                payload: &record.payload,
                headers: record
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
                timestamp_ms: event.accepted_at_ms,
            })?;
            deliveries.push((topic, delivery));
        }
        Ok(deliveries)
    }
}
