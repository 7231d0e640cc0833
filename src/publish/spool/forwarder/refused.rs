//! Events Kafka refused for good: retried after a delay while only their keys wait, and moved
//! to the quarantine once they used up their attempts (see [`super::super::refusals`] for the
//! bookkeeping). Apart from the forwarding loop, which only asks for what is due.

use std::time::Instant;

use futures_util::stream::FuturesUnordered;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::super::event::SpooledEvent;
use super::super::refusals::Due;
use super::super::store::Quarantine;
use super::super::writer::Command;
use super::{Forwarder, Forwarding};
use crate::pipeline::envelope::unix_millis;
use crate::publish::{PublishError, Rejection, SpoolFailure};

impl Forwarder {
    pub(super) fn refuse(&mut self, sequence: u64, keys: Vec<String>, error: &PublishError) {
        let first = self
            .refusals
            .refuse(sequence, keys, error.to_string(), Instant::now());
        if first {
            tracing::warn!(
                sequence,
                %error,
                "Kafka refused a spooled event for good; later events of its keys wait while \
                 it is tried again, then it goes to the quarantine"
            );
        }
    }

    /// Retries the refused events whose time has come, and moves to the quarantine those that
    /// used up their attempts.
    pub(super) async fn attend_to_refused(
        &mut self,
        in_flight: &mut FuturesUnordered<Forwarding>,
    ) -> Result<(), PublishError> {
        for (sequence, due) in self.refusals.due(Instant::now()) {
            match due {
                Due::Retry => match self
                    .read(sequence, 1)
                    .await
                    .map_err(PublishError::SpoolUnavailable)?
                    .pop()
                {
                    Some((read, bytes)) if read == sequence => match SpooledEvent::decode(&bytes) {
                        Ok(event) => self.send(sequence, &event, in_flight)?,
                        Err(error) => {
                            let error = PublishError::Rejected(Rejection::Undecodable {
                                sequence,
                                source: error,
                            });
                            self.refuse(sequence, Vec::new(), &error);
                        }
                    },
                    _ => self.release(sequence, in_flight)?,
                },
                Due::Quarantine { attempts, error } => {
                    self.quarantine(sequence, attempts, error).await?;
                    self.release(sequence, in_flight)?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn quarantine(
        &mut self,
        sequence: u64,
        attempts: u32,
        error: String,
    ) -> Result<(), PublishError> {
        let (committed, done) = oneshot::channel();
        let quarantine = Quarantine {
            sequence,
            quarantined_at_ms: unix_millis(OffsetDateTime::now_utc()),
            attempts,
            error: error.clone(),
        };
        let outcome = match self.commands.send(Command::Quarantine {
            quarantine,
            committed,
        }) {
            Ok(()) => done.await.unwrap_or(Err(SpoolFailure::WriterStopped)),
            Err(_) => Err(SpoolFailure::WriterStopped),
        };
        match outcome {
            Ok(()) => {
                metrics::counter!("telecmi_bridge_spool_quarantined_total").increment(1);
                tracing::error!(
                    sequence,
                    attempts,
                    error,
                    "a spooled event Kafka refused for good was moved to the quarantine; it \
                     stays in the spool file for an operator and is not forwarded, and later \
                     events of its keys go on"
                );
                Ok(())
            }
            Err(reason) => {
                self.refusals.put_off(sequence, Instant::now());
                Err(PublishError::SpoolUnavailable(SpoolFailure::Quarantine {
                    sequence,
                    reason: Box::new(reason),
                }))
            }
        }
    }
}
