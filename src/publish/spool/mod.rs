//! `spool` delivery mode: every accepted event is synced to a local redb file before the 2xx,
//! and a forwarder moves spooled events to Kafka in order, removing each only once Kafka has
//! acknowledged all of its records.
//!
//! One writer thread owns every write: it takes whatever requests are waiting and commits
//! them in one transaction (group commit), so many concurrent requests share one `fsync`.

mod event;
pub mod forwarder;
mod publisher;
mod refusals;
mod status;
mod store;
mod tail;
pub mod tools;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::config::SpoolSettings;
use crate::publish::kafka::KafkaClient;

pub use event::{QuarantinedEvent, SpooledEvent, SpooledRecord};
pub use forwarder::{Forwarder, ForwarderControl};
pub use publisher::SpoolPublisher;
use status::Shared;
pub use status::{SpoolMonitor, SpoolStatus};
pub use store::SpoolError;
use store::Store;
use tail::Tail;
use writer::{Command, Writer};

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
            max_events: settings.max_events.get(),
            max_bytes: settings.max_bytes.get(),
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

    /// The forwarder, producing through `kafka`.
    pub fn forwarder(&self, kafka: KafkaClient) -> Forwarder {
        Forwarder::new(
            self.store.clone(),
            self.tail.clone(),
            self.commands.clone(),
            self.committed.clone(),
            self.shared.clone(),
            kafka,
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
            max_events: self.settings.max_events.get(),
            max_bytes: self.settings.max_bytes.get(),
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
