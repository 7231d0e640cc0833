//! The spool's counters and the snapshot of them that readiness and metrics read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use time::OffsetDateTime;

use super::event::SpooledEvent;
use super::lock;
use super::store::Store;
use crate::pipeline::envelope::unix_millis;

/// Counters the writer keeps and everyone else reads.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) events: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) quarantined: AtomicU64,
    /// Written by the forwarder: events Kafka refused for good and not yet settled.
    pub(super) kafka_refused: AtomicU64,
    pub(super) write_error: Mutex<Option<String>>,
}

/// A snapshot for readiness and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpoolStatus {
    pub events: u64,
    pub bytes: u64,
    pub max_events: u64,
    pub max_bytes: u64,
    pub oldest_age_seconds: f64,
    /// Transactions committed since start; far fewer than events under concurrent load.
    pub commits: u64,
    /// Events Kafka refused for good and that are tried again; later events of their keys
    /// wait for them.
    pub kafka_refused: u64,
    /// Events Kafka refused for good, kept in the spool file's quarantine for an operator;
    /// outside `events`, `bytes` and their limits.
    pub quarantined: u64,
    pub write_error: Option<String>,
}

impl SpoolStatus {
    /// Why the spool cannot take another event right now, if it cannot.
    pub fn refusal(&self) -> Option<String> {
        if let Some(error) = &self.write_error {
            return Some(format!("spool unwritable: {error}"));
        }
        if self.events >= self.max_events || self.bytes >= self.max_bytes {
            return Some(format!(
                "spool full: {} events, {} bytes (limits {}, {})",
                self.events, self.bytes, self.max_events, self.max_bytes
            ));
        }
        None
    }
}

/// Reads the spool's state for readiness and metrics.
#[derive(Clone)]
pub struct SpoolMonitor {
    pub(super) store: Arc<Store>,
    pub(super) shared: Arc<Shared>,
    pub(super) max_events: u64,
    pub(super) max_bytes: u64,
}

impl SpoolMonitor {
    /// Reads the oldest event's age from the file; call it off the async runtime.
    pub fn status(&self) -> SpoolStatus {
        let oldest_age_seconds = match self.store.oldest() {
            Ok(Some((_, bytes))) => SpooledEvent::decode(&bytes).map_or(0.0, |event| {
                let now = unix_millis(OffsetDateTime::now_utc());
                (now.saturating_sub(event.accepted_at_ms)).max(0) as f64 / 1_000.0
            }),
            Ok(None) | Err(_) => 0.0,
        };
        SpoolStatus {
            events: self.shared.events.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
            max_events: self.max_events,
            max_bytes: self.max_bytes,
            oldest_age_seconds,
            commits: self.shared.commits.load(Ordering::Relaxed),
            kafka_refused: self.shared.kafka_refused.load(Ordering::Relaxed),
            quarantined: self.shared.quarantined.load(Ordering::Relaxed),
            write_error: lock(&self.shared.write_error).clone(),
        }
    }
}
