//! The `Publisher` of `spool` mode.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::event::SpooledEvent;
use super::writer::Command;
use crate::pipeline::OutboundRecord;
use crate::pipeline::envelope::unix_millis;
use crate::publish::{PublishError, PublishFuture, Publisher, Receipt, Rejection, SpoolFailure};

/// The `Publisher` of `spool` mode: resolves once the event is synced to disk.
#[derive(Clone)]
pub struct SpoolPublisher {
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) timeout: Duration,
}

impl Publisher for SpoolPublisher {
    fn publish(&self, records: Vec<OutboundRecord>) -> PublishFuture {
        // The time the bridge received the event, which the forwarder gives each record as its
        // Kafka timestamp, however long the event waits here.
        let accepted_at_ms = records.first().map_or_else(
            || unix_millis(OffsetDateTime::now_utc()),
            |record| record.timestamp_ms,
        );
        let event = match SpooledEvent::from_records(&records, accepted_at_ms).encode() {
            Ok(event) => event,
            Err(error) => {
                let error = PublishError::Rejected(Rejection::Unencodable(error));
                return Box::pin(std::future::ready(Err(error)));
            }
        };
        // Sent now, not when the future is first polled, so call order is spool order.
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Append { event, reply })
            .is_err()
        {
            return Box::pin(std::future::ready(Err(PublishError::ShuttingDown)));
        }
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(Ok(sequence))) => Ok(Receipt::Spool { sequence }),
                Ok(Ok(Err(error))) => Err(error),
                Ok(Err(_writer_gone)) => Err(PublishError::ShuttingDown),
                Err(_elapsed) => Err(PublishError::SpoolUnavailable(SpoolFailure::NotConfirmed)),
            }
        })
    }
}
