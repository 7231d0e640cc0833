//! The spool's storage: one redb table of encoded events keyed by an increasing sequence
//! number. redb gives crash-safe transactions (copy-on-write B-trees, checksummed commits), so
//! an event either is in the file after a commit returns, or was never acknowledged.
//!
//! A second table keeps the events Kafka refused for good (the quarantine): moved there from
//! the first in one transaction, never forwarded again and never deleted by the bridge.

use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageError,
    TableDefinition,
};

use super::{QuarantinedEvent, SpooledEvent};
use crate::config::OnCorrupt;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const QUARANTINE: TableDefinition<u64, &[u8]> = TableDefinition::new("quarantine");

/// redb's page cache. With its default, 1 GiB, the bridge's RSS grew with the traffic it had
/// spooled (236-326 MB after 30 s at 6,000-8,000 events/s; 46 MB with this). Events are written
/// once, read once soon after by the forwarder, then removed: a small cache holds that end.
pub(super) const CACHE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the spool at {path} cannot be read ({reason}); it was moved to {kept_at}, untouched. \
         Inspect it, or set spool.on_corrupt = \"start_empty\" to start with an empty spool"
    )]
    Corrupt {
        path: PathBuf,
        reason: String,
        kept_at: PathBuf,
    },
    #[error("the spool at {path} is open in another process")]
    InUse { path: PathBuf },
    #[error("the spool at {path} cannot be opened: {reason}")]
    Unavailable { path: PathBuf, reason: String },
}

/// What a spool held when it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contents {
    pub events: u64,
    pub bytes: u64,
    pub next_sequence: u64,
    pub quarantined: u64,
}

/// An event to move from the spool to the quarantine, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    pub sequence: u64,
    pub quarantined_at_ms: i64,
    pub attempts: u32,
    pub error: String,
}

/// What a commit removed from the spool, and how many of those it quarantined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub events: u64,
    pub bytes: u64,
    pub quarantined: u64,
}

pub struct Store {
    db: Database,
    /// Commits still to fail, for tests of what a failed commit does to those waiting on it.
    #[cfg(test)]
    pub(super) failing_commits: std::sync::atomic::AtomicU32,
}

enum OpenFailure {
    Unreadable(String),
    Other(SpoolError),
}

impl Store {
    /// Opens (or creates) the spool and reads every event in it, so that a spool that cannot
    /// be forwarded in full is found now, not after the bridge has answered 2xx on top of it.
    pub fn open(path: &Path, on_corrupt: OnCorrupt) -> Result<(Self, Contents), SpoolError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|error| SpoolError::Unavailable {
                path: path.to_owned(),
                reason: format!("cannot create {}: {error}", parent.display()),
            })?;
        }
        let reason = match Self::try_open(path) {
            Ok(opened) => return Ok(opened),
            Err(OpenFailure::Other(error)) => return Err(error),
            Err(OpenFailure::Unreadable(reason)) => reason,
        };
        let kept_at = keep_aside(path).map_err(|error| SpoolError::Unavailable {
            path: path.to_owned(),
            reason: format!("unreadable ({reason}) and could not be moved aside: {error}"),
        })?;
        match on_corrupt {
            OnCorrupt::Refuse => Err(SpoolError::Corrupt {
                path: path.to_owned(),
                reason,
                kept_at,
            }),
            OnCorrupt::StartEmpty => {
                tracing::error!(
                    path = %path.display(),
                    kept_at = %kept_at.display(),
                    reason,
                    "the spool could not be read; it was moved aside and an empty one started \
                     (spool.on_corrupt = start_empty)"
                );
                Self::try_open(path).map_err(|failure| match failure {
                    OpenFailure::Other(error) => error,
                    OpenFailure::Unreadable(reason) => SpoolError::Unavailable {
                        path: path.to_owned(),
                        reason,
                    },
                })
            }
        }
    }

    fn try_open(path: &Path) -> Result<(Self, Contents), OpenFailure> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|error| classify_open_error(path, error))?;
        let store = Self {
            db,
            #[cfg(test)]
            failing_commits: std::sync::atomic::AtomicU32::new(0),
        };
        let contents = store
            .scan()
            .map_err(|error| OpenFailure::Unreadable(error.to_string()))?;
        Ok((store, contents))
    }

    fn scan(&self) -> Result<Contents, ScanError> {
        let read = self.db.begin_read()?;
        let mut contents = Contents::default();
        match read.open_table(QUARANTINE) {
            Ok(table) => contents.quarantined = table.len()?,
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(error) => return Err(error.into()),
        }
        let table = match read.open_table(EVENTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(contents),
            Err(error) => return Err(error.into()),
        };
        for entry in table.iter()? {
            let (sequence, value) = entry?;
            let sequence = sequence.value();
            SpooledEvent::decode(value.value())
                .map_err(|error| ScanError::Undecodable { sequence, error })?;
            contents.events += 1;
            contents.bytes += value.value().len() as u64;
            contents.next_sequence = sequence + 1;
        }
        Ok(contents)
    }

    /// Writes new events, removes forwarded ones and moves refused ones to the quarantine in
    /// one transaction, synced to disk before it returns.
    pub fn commit(
        &self,
        appends: &[(u64, &[u8])],
        removals: &[u64],
        quarantines: &[Quarantine],
    ) -> Result<Removed, redb::Error> {
        #[cfg(test)]
        if self
            .failing_commits
            .fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |left| left.checked_sub(1),
            )
            .is_ok()
        {
            return Err(redb::Error::Io(std::io::Error::other("injected failure")));
        }
        let write = self.db.begin_write()?;
        let mut removed = Removed::default();
        {
            let mut table = write.open_table(EVENTS)?;
            let mut quarantine = write.open_table(QUARANTINE)?;
            for (sequence, event) in appends {
                table.insert(sequence, event)?;
            }
            for sequence in removals {
                if let Some(event) = table.remove(sequence)? {
                    removed.events += 1;
                    removed.bytes += event.value().len() as u64;
                }
            }
            for moved in quarantines {
                let Some(event) = table.remove(moved.sequence)? else {
                    continue;
                };
                removed.events += 1;
                removed.bytes += event.value().len() as u64;
                let encoded = QuarantinedEvent {
                    quarantined_at_ms: moved.quarantined_at_ms,
                    attempts: moved.attempts,
                    error: moved.error.clone(),
                    event: event.value().to_vec(),
                }
                .encode()
                .map_err(|error| redb::Error::Corrupted(error.to_string()))?;
                quarantine.insert(moved.sequence, encoded.as_slice())?;
                removed.quarantined += 1;
            }
        }
        write.commit()?;
        Ok(removed)
    }

    /// Every quarantined event, in sequence order.
    pub fn quarantined(&self) -> Result<Vec<(u64, QuarantinedEvent)>, redb::Error> {
        quarantine_of(&self.db)
    }

    /// Up to `limit` events from `from` on, in sequence order.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
        events_from(&self.db, from, limit)
    }

    /// The oldest event still spooled.
    pub fn oldest(&self) -> Result<Option<(u64, Vec<u8>)>, redb::Error> {
        Ok(self.read_from(0, 1)?.pop())
    }
}

/// Every quarantined event of a spool open for writing or only for reading, in sequence order.
pub(super) fn quarantine_of(
    db: &impl ReadableDatabase,
) -> Result<Vec<(u64, QuarantinedEvent)>, redb::Error> {
    let read = db.begin_read()?;
    let table = match read.open_table(QUARANTINE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    table
        .iter()?
        .map(|entry| {
            let (sequence, value) = entry?;
            let entry = QuarantinedEvent::decode(value.value())
                .map_err(|error| redb::Error::Corrupted(error.to_string()))?;
            Ok((sequence.value(), entry))
        })
        .collect()
}

/// Up to `limit` events from `from` on, in sequence order, of a spool open either way.
pub(super) fn events_from(
    db: &impl ReadableDatabase,
    from: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
    let read = db.begin_read()?;
    let table = match read.open_table(EVENTS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    table
        .range(from..)?
        .take(limit)
        .map(|entry| {
            let (sequence, value) = entry?;
            Ok((sequence.value(), value.value().to_vec()))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error(transparent)]
    Storage(#[from] redb::Error),
    #[error("event {sequence} cannot be decoded: {error}")]
    Undecodable {
        sequence: u64,
        error: postcard::Error,
    },
}

impl From<redb::TransactionError> for ScanError {
    fn from(error: redb::TransactionError) -> Self {
        Self::Storage(error.into())
    }
}

impl From<redb::TableError> for ScanError {
    fn from(error: redb::TableError) -> Self {
        Self::Storage(error.into())
    }
}

impl From<StorageError> for ScanError {
    fn from(error: StorageError) -> Self {
        Self::Storage(error.into())
    }
}

fn classify_open_error(path: &Path, error: DatabaseError) -> OpenFailure {
    match error {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            OpenFailure::Other(SpoolError::InUse {
                path: path.to_owned(),
            })
        }
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() != std::io::ErrorKind::InvalidData =>
        {
            OpenFailure::Other(SpoolError::Unavailable {
                path: path.to_owned(),
                reason: io.to_string(),
            })
        }
        unreadable => OpenFailure::Unreadable(unreadable.to_string()),
    }
}

/// Renames an unreadable spool to `<name>.corrupt-<unix nanoseconds>` beside it, never over
/// an earlier one.
fn keep_aside(path: &Path) -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let kept_at = (0..)
        .map(|attempt| {
            let suffix = if attempt == 0 {
                String::new()
            } else {
                format!("-{attempt}")
            };
            path.with_file_name(format!("{file_name}.corrupt-{nanos}{suffix}"))
        })
        .find(|candidate| !candidate.exists())
        .unwrap_or_else(|| path.with_extension("corrupt"));
    std::fs::rename(path, &kept_at)?;
    Ok(kept_at)
}
