//! `telecmi-bridge spool …`: an operator's tools for a stopped instance's spool file (a dead
//! node's volume, say). `stats`, `list` and `export` only read: the file is opened read-only,
//! so it is never created, written or locked against its owner. `drain` forwards it to Kafka.
//!
//! A file its bridge did not close (killed, or its node lost) needs redb's repair before it can
//! be read, and a read-only open refuses to repair. Such a file is read from a repaired copy
//! in the temporary directory, so the original stays byte-for-byte as it was.

mod drain;
mod output;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use redb::{Database, DatabaseError, ReadOnlyDatabase, StorageError};
use serde::Serialize;
use time::OffsetDateTime;

use super::store::{CACHE_BYTES, events_from, quarantine_of};
use super::{QuarantinedEvent, SpooledEvent};
use crate::config::Settings;
use output::{envelope, exported, rfc3339};

/// Events read per read transaction.
const READ_BATCH: usize = 512;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SpoolCommand {
    /// Events, bytes, oldest and newest event, records per topic, and the quarantine's size.
    Stats {
        #[command(flatten)]
        file: SpoolFile,
        #[arg(long, value_enum, default_value_t = StatsOutput::Text)]
        output: StatsOutput,
    },
    /// One line per event: sequence, accepted time, bytes, then topic and key of each record.
    List {
        #[command(flatten)]
        file: SpoolFile,
        /// The quarantined events instead, with their attempts and Kafka's error.
        #[arg(long)]
        quarantine: bool,
    },
    /// One JSON line per event, its records as they would be sent.
    Export {
        #[command(flatten)]
        file: SpoolFile,
        /// The quarantined events instead, with their attempts and Kafka's error.
        #[arg(long)]
        quarantine: bool,
        /// `jsonl`: every record of the event; `envelopes`: its envelope alone, the line
        /// `telecmi-bridge replay` publishes again.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Forward the spool to Kafka in order, removing each event once Kafka acknowledged it.
    /// Quarantined events stay in the file.
    Drain {
        #[command(flatten)]
        file: SpoolFile,
        /// Brokers, HOST:PORT[,...] (default: kafka.bootstrap_servers).
        #[arg(long)]
        bootstrap: Option<String>,
        /// Give up after this long, leaving what is not yet acknowledged in the file.
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct SpoolFile {
    /// The spool file (default: spool.path).
    #[arg(long)]
    spool: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsOutput {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Envelopes,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("there is no spool file at {0}")]
    Missing(PathBuf),
    #[error(
        "the spool at {0} is open in another process (a running bridge?); these tools are for a \
         stopped instance's spool: stop it, or copy the file while it is stopped"
    )]
    InUse(PathBuf),
    #[error("the spool at {path} cannot be read ({reason}); it was left unchanged")]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error(transparent)]
    Drain(#[from] drain::DrainError),
}

/// Runs one `spool` subcommand and reports on stdout/stderr.
pub fn run(settings: &Settings, command: SpoolCommand) -> ExitCode {
    let path = |file: &SpoolFile| file.spool.clone().unwrap_or(settings.spool.path.clone());
    // Not locked for the whole command: the drain's forwarder logs to stdout from other threads.
    let mut out = std::io::stdout();
    let outcome = match &command {
        SpoolCommand::Stats { file, output } => Snapshot::open(&path(file))
            .and_then(|snapshot| snapshot.stats())
            .and_then(|stats| stats.write(*output, &mut out)),
        SpoolCommand::List { file, quarantine } => {
            Snapshot::open(&path(file)).and_then(|snapshot| snapshot.list(*quarantine, &mut out))
        }
        SpoolCommand::Export {
            file,
            quarantine,
            format,
        } => Snapshot::open(&path(file))
            .and_then(|snapshot| snapshot.export(*quarantine, *format, &mut out)),
        SpoolCommand::Drain {
            file,
            bootstrap,
            timeout_seconds,
        } => {
            // The forwarder says why it pauses (Kafka unreachable, credentials refused) only in
            // its log.
            crate::telemetry::init(&settings.logging);
            drain::drain(
                settings,
                &path(file),
                bootstrap.as_deref(),
                std::time::Duration::from_secs(*timeout_seconds),
            )
            .and_then(|summary| Ok(writeln!(out, "{summary}")?))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`spool export | head`): what it wanted was written.
        Err(ToolError::Output(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("telecmi-bridge: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A spool file open for reading only.
pub struct Snapshot {
    path: PathBuf,
    db: Readable,
}

enum Readable {
    AsIs(ReadOnlyDatabase),
    /// Opened read-write, to repair it: a copy, never the operator's file.
    RepairedCopy {
        db: Database,
        copy: PathBuf,
    },
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Readable::RepairedCopy { copy, .. } = &self.db {
            let _ = std::fs::remove_file(copy);
        }
    }
}

/// One event as read, with its quarantine record if it came from there.
struct Entry {
    sequence: u64,
    bytes: usize,
    event: SpooledEvent,
    quarantine: Option<QuarantinedEvent>,
}

/// What `spool stats` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub path: PathBuf,
    pub events: u64,
    /// Bytes of encoded events, as counted against `spool.max_bytes`.
    pub bytes: u64,
    pub oldest: Option<Position>,
    pub newest: Option<Position>,
    /// Records per topic (an event has one record per topic it is routed to).
    pub topics: BTreeMap<String, u64>,
    pub quarantined: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    pub sequence: u64,
    pub accepted_at: String,
}

impl Snapshot {
    pub fn open(path: &Path) -> Result<Self, ToolError> {
        if !path.is_file() {
            return Err(ToolError::Missing(path.to_owned()));
        }
        let unreadable = |reason: String| ToolError::Unreadable {
            path: path.to_owned(),
            reason,
        };
        let db = match Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(path)
        {
            Ok(db) => Readable::AsIs(db),
            Err(DatabaseError::RepairAborted) => repaired_copy(path).map_err(unreadable)?,
            Err(DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch) => {
                return Err(ToolError::InUse(path.to_owned()));
            }
            Err(DatabaseError::Storage(StorageError::Io(error)))
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(ToolError::Missing(path.to_owned()));
            }
            Err(error) => return Err(unreadable(error.to_string())),
        };
        Ok(Self {
            path: path.to_owned(),
            db,
        })
    }

    fn unreadable(&self, reason: impl ToString) -> ToolError {
        ToolError::Unreadable {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    fn events(&self, from: u64) -> Result<Vec<(u64, Vec<u8>)>, redb::Error> {
        match &self.db {
            Readable::AsIs(db) => events_from(db, from, READ_BATCH),
            Readable::RepairedCopy { db, .. } => events_from(db, from, READ_BATCH),
        }
    }

    fn quarantined(&self) -> Result<Vec<(u64, QuarantinedEvent)>, ToolError> {
        match &self.db {
            Readable::AsIs(db) => quarantine_of(db),
            Readable::RepairedCopy { db, .. } => quarantine_of(db),
        }
        .map_err(|error| self.unreadable(error))
    }

    /// Calls `visit` for every event, or every quarantined one, in sequence order.
    fn each(
        &self,
        quarantine: bool,
        mut visit: impl FnMut(Entry) -> Result<(), ToolError>,
    ) -> Result<(), ToolError> {
        let decode = |sequence: u64, bytes: &[u8]| {
            SpooledEvent::decode(bytes)
                .map_err(|error| self.unreadable(format!("event {sequence}: {error}")))
        };
        if quarantine {
            for (sequence, quarantined) in self.quarantined()? {
                visit(Entry {
                    sequence,
                    bytes: quarantined.event.len(),
                    event: decode(sequence, &quarantined.event)?,
                    quarantine: Some(quarantined),
                })?;
            }
            return Ok(());
        }
        let mut from = 0;
        loop {
            let batch = self.events(from).map_err(|error| self.unreadable(error))?;
            let complete = batch.len() < READ_BATCH;
            for (sequence, bytes) in batch {
                from = sequence + 1;
                visit(Entry {
                    sequence,
                    bytes: bytes.len(),
                    event: decode(sequence, &bytes)?,
                    quarantine: None,
                })?;
            }
            if complete {
                return Ok(());
            }
        }
    }

    pub fn stats(&self) -> Result<Stats, ToolError> {
        let mut stats = Stats {
            path: self.path.clone(),
            quarantined: self.quarantined()?.len() as u64,
            ..Stats::default()
        };
        self.each(false, |entry| {
            let position = Position {
                sequence: entry.sequence,
                accepted_at: rfc3339(entry.event.accepted_at_ms),
            };
            stats.events += 1;
            stats.bytes += entry.bytes as u64;
            stats.oldest.get_or_insert_with(|| position.clone());
            stats.newest = Some(position);
            for record in entry.event.records {
                *stats.topics.entry(record.topic).or_default() += 1;
            }
            Ok(())
        })?;
        Ok(stats)
    }

    pub fn list(&self, quarantine: bool, out: &mut impl Write) -> Result<(), ToolError> {
        self.each(quarantine, |entry| {
            write!(
                out,
                "{}\t{}\t{} bytes",
                entry.sequence,
                rfc3339(entry.event.accepted_at_ms),
                entry.bytes
            )?;
            for record in &entry.event.records {
                write!(out, "\t{} {}", record.topic, record.key)?;
            }
            if let Some(quarantined) = &entry.quarantine {
                write!(
                    out,
                    "\tquarantined {} after {} attempts: {}",
                    rfc3339(quarantined.quarantined_at_ms),
                    quarantined.attempts,
                    quarantined.error
                )?;
            }
            Ok(writeln!(out)?)
        })
    }

    pub fn export(
        &self,
        quarantine: bool,
        format: ExportFormat,
        out: &mut impl Write,
    ) -> Result<(), ToolError> {
        self.each(quarantine, |entry| {
            let line = match format {
                ExportFormat::Jsonl => exported(&entry),
                ExportFormat::Envelopes => envelope(&entry).ok_or_else(|| {
                    self.unreadable(format!("event {} has no JSON envelope", entry.sequence))
                })?,
            };
            Ok(writeln!(out, "{line}")?)
        })
    }
}

/// A copy of `path` in the temporary directory, repaired by opening it for writing.
fn repaired_copy(path: &Path) -> Result<Readable, String> {
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let copy = std::env::temp_dir().join(format!(
        "telecmi-bridge-spool-{}-{nanos}.redb",
        std::process::id()
    ));
    std::fs::copy(path, &copy).map_err(|error| {
        format!("it was not closed cleanly and needs repair, but a copy to repair failed: {error}")
    })?;
    match Database::builder().set_cache_size(CACHE_BYTES).open(&copy) {
        Ok(db) => Ok(Readable::RepairedCopy { db, copy }),
        Err(error) => {
            let _ = std::fs::remove_file(&copy);
            Err(format!(
                "it was not closed cleanly and its repair failed: {error}"
            ))
        }
    }
}

#[cfg(test)]
mod tests;
