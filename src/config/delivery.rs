//! When a webhook is answered (on Kafka's acknowledgement, or once spooled) and the on-disk
//! spool of `spool` mode.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::forms::{milliseconds, seconds};
use super::{Problems, require_positive};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    pub mode: DeliveryMode,
    #[serde(with = "milliseconds")]
    pub ack_timeout_ms: Duration,
    /// `Retry-After` of 503 answers.
    #[serde(with = "seconds")]
    pub retry_after_seconds: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::Kafka,
            ack_timeout_ms: Duration::from_millis(5_000),
            retry_after_seconds: Duration::from_secs(5),
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
    pub max_events: NonZeroU64,
    /// Bytes of spooled records held at most (the file itself is somewhat larger).
    pub max_bytes: NonZeroU64,
    /// What to do with a spool that cannot be read at start-up. It is always moved aside,
    /// never deleted.
    pub on_corrupt: OnCorrupt,
    /// Events the forwarder has handed to Kafka and not yet seen acknowledged, at most.
    pub forward_window: NonZeroUsize,
    /// Longest pause between attempts when Kafka refuses a spooled record.
    #[serde(with = "milliseconds")]
    pub retry_backoff_max_ms: Duration,
    /// Attempts at an event Kafka refuses for good (too large, not authorised, no such topic)
    /// before it is moved to the spool's quarantine; until then later events of its key wait.
    pub quarantine_after_attempts: NonZeroU32,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("spool/telecmi-bridge.redb"),
            max_events: NonZeroU64::new(1_000_000).expect("not zero"),
            max_bytes: NonZeroU64::new(1 << 30).expect("not zero"),
            on_corrupt: OnCorrupt::Refuse,
            forward_window: NonZeroUsize::new(10_000).expect("not zero"),
            retry_backoff_max_ms: Duration::from_millis(30_000),
            quarantine_after_attempts: NonZeroU32::new(5).expect("not zero"),
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
            &[("spool.retry_backoff_max_ms", self.retry_backoff_max_ms)],
        );
        if mode == DeliveryMode::Spool && self.path.as_os_str().is_empty() {
            problems.add(
                "spool.path",
                "must be set in spool delivery mode".to_owned(),
            );
        }
    }
}
