//! `spool` delivery mode: every accepted event is synced to a local redb file before the 2xx,
//! and a forwarder moves spooled events to Kafka in order, removing each only once Kafka has
//! acknowledged all of its records.
//!
//! One writer thread owns every write: it takes whatever requests are waiting and commits
//! them in one transaction (group commit), so many concurrent requests share one `fsync`.

pub mod forwarder;
mod refusals;
mod store;
pub mod tools;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{PublishError, PublishFuture, Publisher, Receipt};
use crate::config::SpoolSettings;
use crate::pipeline::OutboundRecord;
use crate::pipeline::envelope::unix_millis;

pub use forwarder::{Forwarder, ForwarderControl};
pub use store::SpoolError;
use store::{Quarantine, Store};

/// The encoding's version, the first byte of every stored event.
const FORMAT_VERSION: u8 = 1;
/// The same for every quarantined event.
const QUARANTINE_FORMAT_VERSION: u8 = 1;
/// Requests committed together at most; bounds one transaction's size and latency.
const MAX_GROUP: usize = 4_096;
/// Committed events held in memory for the forwarder at most (a few MB of encoded events).
const TAIL_CAPACITY: usize = 1_024;

/// One accepted event as stored: its records exactly as routed when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledEvent {
    pub accepted_at_ms: i64,
    pub records: Vec<SpooledRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledRecord {
    pub topic: String,
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl SpooledEvent {
    fn from_records(records: &[OutboundRecord], accepted_at_ms: i64) -> Self {
        let records = records
            .iter()
            .map(|record| SpooledRecord {
                topic: record.topic.to_string(),
                key: record.key.clone(),
                headers: record
                    .headers
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), value.clone()))
                    .collect(),
                payload: record.payload.to_vec(),
            })
            .collect();
        Self {
            accepted_at_ms,
            records,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        encode_versioned(FORMAT_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        decode_versioned(FORMAT_VERSION, bytes)
    }
}

/// An event Kafka refused for good, as kept in the quarantine: the spooled event unchanged
/// (the encoding of [`SpooledEvent`]), with when, after how many attempts and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedEvent {
    pub quarantined_at_ms: i64,
    pub attempts: u32,
    pub error: String,
    pub event: Vec<u8>,
}

impl QuarantinedEvent {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        encode_versioned(QUARANTINE_FORMAT_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        decode_versioned(QUARANTINE_FORMAT_VERSION, bytes)
    }
}

/// `postcard` after a version byte, so that a later format is refused, not misread.
fn encode_versioned<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(value, vec![version])
}

fn decode_versioned<T: serde::de::DeserializeOwned>(
    version: u8,
    bytes: &[u8],
) -> Result<T, postcard::Error> {
    match bytes.split_first() {
        Some((&found, rest)) if found == version => postcard::from_bytes(rest),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

enum Command {
    Append {
        event: Vec<u8>,
        reply: oneshot::Sender<Result<u64, PublishError>>,
    },
    /// A removal that fails stays pending and is committed with a later transaction; whoever
    /// waits is told of the failure, so that it does not read the events as gone.
    Remove {
        sequences: Vec<u64>,
        committed: Option<CommitWaiter>,
    },
    /// Moves one event to the quarantine; not retried by the writer when its commit fails.
    Quarantine {
        quarantine: Quarantine,
        committed: CommitWaiter,
    },
    /// Commit what came before, then stop; later appends are answered "shutting down".
    Close,
}

/// Told whether the transaction carrying a request was committed, and why not.
type CommitWaiter = oneshot::Sender<Result<(), String>>;

/// Counters the writer keeps and everyone else reads.
#[derive(Debug, Default)]
struct Shared {
    events: AtomicU64,
    bytes: AtomicU64,
    commits: AtomicU64,
    quarantined: AtomicU64,
    /// Written by the forwarder: events Kafka refused for good and not yet settled.
    kafka_refused: AtomicU64,
    write_error: Mutex<Option<String>>,
}

/// Events handed from the writer to the forwarder in memory as they are committed, so that the
/// forwarder need not read back from the file what was written a moment ago. The file stays
/// the truth: when the forwarder lags (Kafka down, a backlog) and an event does not fit, the
/// tail is marked lost, and the forwarder reads the file until it has caught up again.
///
/// Every committed event is pushed, or marks the tail lost, after its commit; so a forwarder
/// that finds the tail not lost may skip from its cursor to the first event held here.
#[derive(Debug, Default)]
struct Tail {
    events: Mutex<VecDeque<(u64, Vec<u8>)>>,
    lost: AtomicBool,
}

impl Tail {
    fn push(&self, sequence: u64, event: Vec<u8>) {
        let mut events = lock(&self.events);
        if events.len() < TAIL_CAPACITY {
            events.push_back((sequence, event));
        } else {
            self.lost.store(true, Ordering::Release);
        }
    }

    /// Whether events were left out since the last call: the file must be read.
    fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::AcqRel)
    }

    /// Up to `limit` events in sequence order, from the first at or after `from`; older ones
    /// were read from the file already and are dropped.
    fn take(&self, from: u64, limit: usize) -> Vec<(u64, Vec<u8>)> {
        let mut events = lock(&self.events);
        Self::drop_before(&mut events, from);
        let taken = events.len().min(limit);
        events.drain(..taken).collect()
    }

    fn forget_before(&self, from: u64) {
        Self::drop_before(&mut lock(&self.events), from);
    }

    fn drop_before(events: &mut VecDeque<(u64, Vec<u8>)>, from: u64) {
        while events.front().is_some_and(|(sequence, _)| *sequence < from) {
            events.pop_front();
        }
    }
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

/// The open spool: its writer thread and a handle for reads.
pub struct Spool {
    store: Arc<Store>,
    tail: Arc<Tail>,
    commands: mpsc::UnboundedSender<Command>,
    committed: Arc<Notify>,
    shared: Arc<Shared>,
    settings: SpoolSettings,
    writer: JoinHandle<()>,
}

impl Spool {
    pub fn open(settings: &SpoolSettings) -> Result<Self, SpoolError> {
        let (store, contents) = Store::open(&settings.path, settings.on_corrupt)?;
        if contents.events > 0 {
            tracing::info!(
                path = %settings.path.display(),
                events = contents.events,
                bytes = contents.bytes,
                "spool holds events not yet acknowledged by Kafka; forwarding them first"
            );
        }
        if contents.quarantined > 0 {
            tracing::warn!(
                path = %settings.path.display(),
                quarantined = contents.quarantined,
                "spool quarantine holds events Kafka refused for good; they are not forwarded"
            );
        }
        let store = Arc::new(store);
        let shared = Arc::new(Shared {
            events: AtomicU64::new(contents.events),
            bytes: AtomicU64::new(contents.bytes),
            commits: AtomicU64::new(0),
            quarantined: AtomicU64::new(contents.quarantined),
            kafka_refused: AtomicU64::new(0),
            write_error: Mutex::new(None),
        });
        let committed = Arc::new(Notify::new());
        let tail = Arc::new(Tail::default());
        let (commands, receiver) = mpsc::unbounded_channel();
        let writer = Writer {
            store: store.clone(),
            tail: tail.clone(),
            shared: shared.clone(),
            committed: committed.clone(),
            next_sequence: contents.next_sequence,
            max_events: settings.max_events,
            max_bytes: settings.max_bytes,
            removals: Vec::new(),
        };
        let writer = std::thread::Builder::new()
            .name("spool-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|error| SpoolError::Unavailable {
                path: settings.path.clone(),
                reason: format!("cannot start the writer thread: {error}"),
            })?;
        Ok(Self {
            store,
            tail,
            commands,
            committed,
            shared,
            settings: settings.clone(),
            writer,
        })
    }

    pub fn path(&self) -> &PathBuf {
        &self.settings.path
    }

    pub fn publisher(&self, timeout: Duration) -> SpoolPublisher {
        SpoolPublisher {
            commands: self.commands.clone(),
            timeout,
        }
    }

    /// The forwarder, with a producer of its own built from `client_config`.
    pub fn forwarder(
        &self,
        client_config: rdkafka::ClientConfig,
    ) -> Result<Forwarder, rdkafka::error::KafkaError> {
        Forwarder::new(
            self.store.clone(),
            self.tail.clone(),
            self.commands.clone(),
            self.committed.clone(),
            self.shared.clone(),
            client_config,
            &self.settings,
        )
    }

    /// Every event in the quarantine, in sequence order, for an operator. Blocking.
    pub fn quarantined(&self) -> Result<Vec<(u64, QuarantinedEvent)>, String> {
        self.store.quarantined().map_err(|error| error.to_string())
    }

    pub fn monitor(&self) -> SpoolMonitor {
        SpoolMonitor {
            store: self.store.clone(),
            shared: self.shared.clone(),
            max_events: self.settings.max_events,
            max_bytes: self.settings.max_bytes,
        }
    }

    /// Waits for the writer to commit what it was given and close the file; returns the
    /// events left in it. Blocking.
    pub fn close(self) -> u64 {
        let _ = self.commands.send(Command::Close);
        if self.writer.join().is_err() {
            tracing::error!("the spool writer thread panicked");
        }
        self.shared.events.load(Ordering::Relaxed)
    }
}

/// Reads the spool's state for readiness and metrics.
#[derive(Clone)]
pub struct SpoolMonitor {
    store: Arc<Store>,
    shared: Arc<Shared>,
    max_events: u64,
    max_bytes: u64,
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `Publisher` of `spool` mode: resolves once the event is synced to disk.
#[derive(Clone)]
pub struct SpoolPublisher {
    commands: mpsc::UnboundedSender<Command>,
    timeout: Duration,
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
                let error = PublishError::Rejected(format!("cannot encode for the spool: {error}"));
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
                Err(_elapsed) => Err(PublishError::SpoolUnavailable(
                    "the spool did not confirm the write in time".to_owned(),
                )),
            }
        })
    }
}

struct Writer {
    store: Arc<Store>,
    tail: Arc<Tail>,
    shared: Arc<Shared>,
    committed: Arc<Notify>,
    next_sequence: u64,
    max_events: u64,
    max_bytes: u64,
    removals: Vec<u64>,
}

struct PendingAppend {
    sequence: u64,
    event: Vec<u8>,
    reply: oneshot::Sender<Result<u64, PublishError>>,
}

impl Writer {
    fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(first) = commands.blocking_recv() {
            let mut appends = Vec::new();
            let mut quarantines = Vec::new();
            let mut notify_when_committed = Vec::new();
            let mut next = Some(first);
            let mut closing = false;
            while let Some(command) = next {
                match command {
                    Command::Close => closing = true,
                    Command::Append { event, reply } => self.admit(event, reply, &mut appends),
                    Command::Remove {
                        sequences,
                        committed,
                    } => {
                        self.removals.extend(sequences);
                        notify_when_committed.extend(committed);
                    }
                    Command::Quarantine {
                        quarantine,
                        committed,
                    } => {
                        quarantines.push(quarantine);
                        notify_when_committed.push(committed);
                    }
                }
                next = if appends.len() < MAX_GROUP && !closing {
                    commands.try_recv().ok()
                } else {
                    None
                };
            }
            let outcome = self.commit(appends, &quarantines);
            for waiter in notify_when_committed {
                let _ = waiter.send(outcome.clone());
            }
            if closing {
                return;
            }
        }
    }

    /// Takes the event into this group if the spool has room for it; refuses it otherwise.
    fn admit(
        &mut self,
        event: Vec<u8>,
        reply: oneshot::Sender<Result<u64, PublishError>>,
        appends: &mut Vec<PendingAppend>,
    ) {
        let pending_bytes: u64 = appends.iter().map(|append| append.event.len() as u64).sum();
        let events = self.shared.events.load(Ordering::Relaxed) + appends.len() as u64;
        let bytes = self.shared.bytes.load(Ordering::Relaxed) + pending_bytes;
        if events >= self.max_events || bytes + event.len() as u64 > self.max_bytes {
            metrics::counter!("telecmi_bridge_spool_refused_total", "reason" => "full")
                .increment(1);
            let _ = reply.send(Err(PublishError::SpoolFull));
            return;
        }
        appends.push(PendingAppend {
            sequence: self.next_sequence,
            event,
            reply,
        });
        self.next_sequence += 1;
    }

    fn commit(
        &mut self,
        appends: Vec<PendingAppend>,
        quarantines: &[Quarantine],
    ) -> Result<(), String> {
        if appends.is_empty() && self.removals.is_empty() && quarantines.is_empty() {
            return Ok(());
        }
        let rows: Vec<(u64, &[u8])> = appends
            .iter()
            .map(|append| (append.sequence, append.event.as_slice()))
            .collect();
        let started = std::time::Instant::now();
        match self.store.commit(&rows, &self.removals, quarantines) {
            Ok(removed) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                metrics::histogram!("telecmi_bridge_spool_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("telecmi_bridge_spool_commit_group_size")
                    .record(appends.len() as f64);
                let added_bytes: u64 = rows.iter().map(|(_, event)| event.len() as u64).sum();
                self.shared
                    .events
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.shared
                    .events
                    .fetch_sub(removed.events, Ordering::Relaxed);
                self.shared.bytes.fetch_add(added_bytes, Ordering::Relaxed);
                self.shared
                    .bytes
                    .fetch_sub(removed.bytes, Ordering::Relaxed);
                self.shared
                    .quarantined
                    .fetch_add(removed.quarantined, Ordering::Relaxed);
                self.removals.clear();
                if lock(&self.shared.write_error).take().is_some() {
                    tracing::info!("the spool is writable again");
                }
                let had_appends = !appends.is_empty();
                // Handed over before the answer, so that a forwarder draining after the last
                // answer finds every event it must forward.
                for append in appends {
                    self.tail.push(append.sequence, append.event);
                    let _ = append.reply.send(Ok(append.sequence));
                }
                if had_appends {
                    self.committed.notify_one();
                }
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "spool commit failed; events in it were refused");
                metrics::counter!("telecmi_bridge_spool_refused_total", "reason" => "write_error")
                    .increment(appends.len() as u64);
                *lock(&self.shared.write_error) = Some(error.to_string());
                for append in appends {
                    let _ = append
                        .reply
                        .send(Err(PublishError::SpoolUnavailable(error.to_string())));
                }
                Err(error.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests;
