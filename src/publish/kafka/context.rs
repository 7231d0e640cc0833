//! What librdkafka tells a client outside any request: its logs, into tracing through a
//! repeat limiter, and client-level errors, among them a refusal (credentials or TLS) that the
//! request meeting it only sees as a timeout. Separate from the client because every client of
//! the bridge (producer, admin) carries it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::telemetry::repeats::{Repeats, Verdict, shape};

/// Routes librdkafka's logs and client-level errors into tracing and metrics, and remembers
/// a refusal (credentials or TLS): librdkafka reports it only here, while the request that met
/// it merely times out. Warnings and errors go through [`Repeats`]: with the brokers down,
/// librdkafka repeats itself many times a second.
#[derive(Default)]
pub struct BridgeContext {
    pub(super) refusal: LastRefusal,
    logs: Mutex<Repeats>,
}

impl BridgeContext {
    /// A context that records refusals where `refusal` (shared with its client) can read them.
    pub(super) fn sharing(refusal: LastRefusal) -> Self {
        Self {
            refusal,
            logs: Mutex::default(),
        }
    }

    /// librdkafka's own count of repeats does not make another message.
    fn admit(&self, kind: &str, facility: &str, message: &str) -> Verdict {
        let message = shape(message).replace(", # identical error(s) suppressed", "");
        self.logs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(&format!("{kind}/{facility}/{message}"), Instant::now())
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
pub(super) struct LastRefusal(Arc<Mutex<Option<Refusal>>>);

impl LastRefusal {
    pub(super) fn get(&self) -> Option<Refusal> {
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
                if let Verdict::Log { held_back } = self.admit("error", facility, message) {
                    tracing::error!(target: "librdkafka", facility, message, held_back);
                }
            }
            RDKafkaLogLevel::Warning => {
                if let Verdict::Log { held_back } = self.admit("warn", facility, message) {
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
        if let Verdict::Log { held_back } = self.admit(&kind, "", reason) {
            tracing::warn!(target: "librdkafka", %error, reason, held_back, "Kafka client error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafkas_own_count_of_repeats_does_not_make_another_message() {
        let context = BridgeContext::default();
        let refused = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: \
                       Connection refused (after 0ms in state CONNECT)";
        assert_eq!(
            context.admit("error", "FAIL", refused),
            Verdict::Log { held_back: 0 }
        );
        let counted = "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: \
                       Connection refused (after 3ms in state CONNECT, 12 identical error(s) \
                       suppressed)";
        assert_eq!(context.admit("error", "FAIL", counted), Verdict::HoldBack);
        assert_eq!(
            context.admit("warn", "FAIL", counted),
            Verdict::Log { held_back: 0 },
            "another level is another message"
        );
    }
}
