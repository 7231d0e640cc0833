//! How the spool commands print: `stats` as text or JSON, events as JSON lines.

use std::io::Write;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Entry, Stats, StatsOutput, ToolError};

impl Stats {
    pub(super) fn write(&self, output: StatsOutput, out: &mut impl Write) -> Result<(), ToolError> {
        if output == StatsOutput::Json {
            let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
            return Ok(writeln!(out, "{json}")?);
        }
        writeln!(out, "spool:       {}", self.path.display())?;
        writeln!(out, "events:      {} ({} bytes)", self.events, self.bytes)?;
        for (name, position) in [("oldest:", &self.oldest), ("newest:", &self.newest)] {
            if let Some(position) = position {
                writeln!(
                    out,
                    "{name:<12} sequence {}, accepted {}",
                    position.sequence, position.accepted_at
                )?;
            }
        }
        writeln!(out, "quarantined: {}", self.quarantined)?;
        writeln!(out, "records by topic:")?;
        for (topic, records) in &self.topics {
            writeln!(out, "  {topic}: {records}")?;
        }
        Ok(())
    }
}

pub(super) fn rfc3339(unix_millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_millis) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{unix_millis} ms since 1970"))
}

/// A payload as JSON when it is JSON, as text otherwise.
fn payload_value(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
}

pub(super) fn exported(entry: &Entry) -> Value {
    let records: Vec<Value> = entry
        .event
        .records
        .iter()
        .map(|record| {
            let headers: serde_json::Map<String, Value> = record
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect();
            json!({
                "topic": record.topic,
                "key": record.key,
                "headers": headers,
                "payload": payload_value(&record.payload),
            })
        })
        .collect();
    let mut line = json!({
        "sequence": entry.sequence,
        "accepted_at": rfc3339(entry.event.accepted_at_ms),
        "records": records,
    });
    if let Some(quarantined) = &entry.quarantine {
        line["quarantine"] = json!({
            "quarantined_at": rfc3339(quarantined.quarantined_at_ms),
            "attempts": quarantined.attempts,
            "error": quarantined.error,
        });
    }
    line
}

/// The event's envelope (every record of an event carries the same one), on one line.
pub(super) fn envelope(entry: &Entry) -> Option<Value> {
    let record = entry.event.records.first()?;
    serde_json::from_slice(&record.payload).ok()
}
