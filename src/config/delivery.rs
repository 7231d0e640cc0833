//! When a webhook is answered (on Kafka's acknowledgement, or once spooled) and the on-disk
//! spool of `spool` mode.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Problems, require_positive};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    pub mode: DeliveryMode,
    pub ack_timeout_ms: u64,
    pub retry_after_seconds: u32,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::Kafka,
            ack_timeout_ms: 5_000,
            retry_after_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// Answer 2xx only once Kafka has acknowledged the record.
    Kafka,
    /// Answer 2xx once the event is synced to the local spool; a forwarder moves it to Kafka.
    Spool,
}

/// The on-disk spool of `spool` delivery mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSettings {
    /// The spool's database file; its directory is created if missing.
    pub path: PathBuf,
    /// Events held at most; beyond it requests are answered 503 with Retry-After.
    pub max_events: u64,
    /// Bytes of spooled records held at most (the file itself is somewhat larger).
    pub max_bytes: u64,
    /// What to do with a spool that cannot be read at start-up. It is always moved aside,
    /// never deleted.
    pub on_corrupt: OnCorrupt,
    /// Events the forwarder has handed to Kafka and not yet seen acknowledged, at most.
    pub forward_window: usize,
    /// Longest pause between attempts when Kafka refuses a spooled record.
    pub retry_backoff_max_ms: u64,
    /// Attempts at an event Kafka refuses for good (too large, not authorised, no such topic)
    /// before it is moved to the spool's quarantine; until then later events of its key wait.
    pub quarantine_after_attempts: u32,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("spool/telecmi-bridge.redb"),
            max_events: 1_000_000,
            max_bytes: 1 << 30,
            on_corrupt: OnCorrupt::Refuse,
            forward_window: 10_000,
            retry_backoff_max_ms: 30_000,
            quarantine_after_attempts: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCorrupt {
    /// Refuse to start, so that an operator looks at the file kept aside.
    Refuse,
    /// Keep the unreadable file aside and start with an empty spool.
    StartEmpty,
}

impl DeliverySettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        require_positive(
            problems,
            &[("delivery.ack_timeout_ms", self.ack_timeout_ms)],
        );
    }
}

impl SpoolSettings {
    pub(super) fn validate(&self, mode: DeliveryMode, problems: &mut Problems) {
        require_positive(
            problems,
            &[
                ("spool.max_events", self.max_events),
                ("spool.max_bytes", self.max_bytes),
                ("spool.forward_window", self.forward_window as u64),
                ("spool.retry_backoff_max_ms", self.retry_backoff_max_ms),
                (
                    "spool.quarantine_after_attempts",
                    u64::from(self.quarantine_after_attempts),
                ),
            ],
        );
        if mode == DeliveryMode::Spool && self.path.as_os_str().is_empty() {
            problems.add(
                "spool.path",
                "must be set in spool delivery mode".to_owned(),
            );
        }
    }
}
