//! `telecmi-bridge replay FILE`: webhook payloads from a JSON-lines file (an archive, an
//! export, a capture) through the webhook's own pipeline to Kafka, in file order.
//!
//! The file is read twice. The first pass turns every line into its records and stops before
//! anything is published if a line cannot become an event (unless bad lines are to be
//! skipped), so a bad file never half-replays. The second pass publishes, keeping a window of
//! events in flight and confirming them in file order; the idempotent producer keeps that order
//! per partition. Event ids are the webhook's deterministic ids, so a re-run shows up
//! downstream as duplicates by id, never as new events.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use time::OffsetDateTime;

use crate::config::{Bootstrap, DeliveryMode, Settings};
use crate::pipeline::{
    EnvelopeAttributes, OutboundRecord, Privacy, RawRequest, Router, decode, to_records,
};
use crate::publish::kafka::kafka_client_config;
use crate::publish::kafka::{TopicError, ensure_topics};
use crate::publish::{KafkaPublisher, PublishError, Publisher};

/// Events handed to the producer and not yet confirmed, at most.
const IN_FLIGHT: usize = 512;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub file: PathBuf,
    /// Publish the good lines and report the bad ones, instead of publishing nothing.
    pub skip_bad_lines: bool,
    /// Check every line and report, publish nothing.
    pub dry_run: bool,
    /// The first line to publish (1-based), to resume a replay that stopped.
    pub from_line: usize,
}

/// A line that cannot become an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Summary {
    /// Lines holding an event (blank lines and lines before `from_line` not counted).
    pub events: usize,
    pub published: usize,
    pub by_topic: BTreeMap<String, usize>,
    pub bad_lines: Vec<BadLine>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} line(s) cannot be replayed (nothing was published; --skip-bad-lines publishes the others)", .0.len())]
    BadLines(Vec<BadLine>),
    #[error(
        "replay needs real brokers: kafka.bootstrap_servers is `embedded` (set \
         TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS)"
    )]
    Embedded,
    #[error("could not create the Kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error(
        "line {line} was not confirmed by Kafka ({error}); lines before it are in Kafka, later ones \
         may be: re-run with --from-line {line} (re-sent events keep their ids)"
    )]
    Publish { line: usize, error: PublishError },
}

/// One line's records, or why it has none.
fn prepare(
    line: &str,
    privacy: Option<&Privacy>,
    attributes: &EnvelopeAttributes,
    router: &Router,
) -> Result<Vec<OutboundRecord>, String> {
    let body = payload_of(line)?;
    let request = RawRequest::json_body(body.as_bytes());
    let decoded = decode(&request).map_err(|reason| format!("{}: {reason}", reason.code()))?;
    let (_, records) = to_records(
        decoded,
        privacy,
        attributes,
        router,
        None,
        OffsetDateTime::now_utc(),
    )
    .map_err(|error| format!("envelope: {error}"))?;
    Ok(records)
}

/// A line is a webhook payload, or an envelope the bridge published (an export of a topic),
/// whose original payload is replayed.
fn payload_of(line: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else {
        return Ok(line.into());
    };
    if object.get("specversion").is_none() {
        return Ok(line.into());
    }
    let original = object.get("data").and_then(|data| data.get("original"));
    let payload = original.and_then(|original| original.get("payload"));
    // With `envelope.original = "exact"`, a JSON body that is not kept verbatim has its text alone.
    let json_text = original
        .filter(|original| original["encoding"] == "json")
        .and_then(|original| original.get("raw"))
        .and_then(Value::as_str);
    match (payload, json_text) {
        (Some(payload), _) => Ok(payload.to_string().into()),
        (None, Some(text)) => Ok(text.to_owned().into()),
        (None, None) => Err("an envelope without data.original.payload".to_owned()),
    }
}

fn lines(
    path: &Path,
) -> Result<impl Iterator<Item = (usize, std::io::Result<String>)>, ReplayError> {
    let file = File::open(path).map_err(|source| ReplayError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line)))
}

pub async fn replay(settings: &Settings, options: &ReplayOptions) -> Result<Summary, ReplayError> {
    let router = Router::new(&settings.routing);
    let privacy = Privacy::new(&settings.privacy);
    let attributes = EnvelopeAttributes::new(&settings.envelope);
    let read_error = |source| ReplayError::Read {
        path: options.file.clone(),
        source,
    };
    let wanted = |number: usize, line: &str| number >= options.from_line && !line.trim().is_empty();

    let mut summary = Summary::default();
    for (number, line) in lines(&options.file)? {
        let line = line.map_err(read_error)?;
        if !wanted(number, &line) {
            continue;
        }
        summary.events += 1;
        if let Err(reason) = prepare(&line, privacy.as_ref(), &attributes, &router) {
            summary.bad_lines.push(BadLine {
                line: number,
                reason,
            });
        }
    }
    if !summary.bad_lines.is_empty() && !options.skip_bad_lines {
        return Err(ReplayError::BadLines(summary.bad_lines));
    }
    if options.dry_run {
        return Ok(summary);
    }

    let Bootstrap::Brokers(bootstrap) = &settings.kafka.bootstrap_servers else {
        return Err(ReplayError::Embedded);
    };
    let delivery = crate::config::DeliverySettings {
        mode: DeliveryMode::Kafka,
        ..settings.delivery.clone()
    };
    let config = kafka_client_config(&settings.kafka, bootstrap, &delivery);
    ensure_topics(
        &config,
        &settings.routing.all_topics(),
        settings.kafka.create_topics,
        settings.kafka.topic_partitions,
        settings.kafka.topic_replication_factor,
        settings.kafka.metadata_timeout_ms,
    )
    .await?;
    let publisher = KafkaPublisher::new(&config, settings.ack_timeout())?;

    let progress = ProgressBar::new((summary.events - summary.bad_lines.len()) as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut in_flight = FuturesOrdered::new();
    let mut confirm = |outcome: (usize, Vec<String>, Result<_, PublishError>)| {
        let (line, topics, result) = outcome;
        result.map_err(|error| ReplayError::Publish { line, error })?;
        summary.published += 1;
        for topic in topics {
            *summary.by_topic.entry(topic).or_default() += 1;
        }
        progress.inc(1);
        Ok::<(), ReplayError>(())
    };
    for (number, line) in lines(&options.file)? {
        let line = line.map_err(read_error)?;
        if !wanted(number, &line) {
            continue;
        }
        let Ok(records) = prepare(&line, privacy.as_ref(), &attributes, &router) else {
            continue;
        };
        let topics = records
            .iter()
            .map(|record| record.topic.to_string())
            .collect();
        let delivery = publisher.publish(records);
        in_flight.push_back(async move { (number, topics, delivery.await) });
        if in_flight.len() >= IN_FLIGHT
            && let Some(outcome) = in_flight.next().await
        {
            confirm(outcome)?;
        }
    }
    while let Some(outcome) = in_flight.next().await {
        confirm(outcome)?;
    }
    progress.finish_and_clear();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With `envelope.original = "exact"`, a body kept as its text alone is replayed from it.
    #[test]
    fn an_envelope_keeping_only_the_text_is_replayed_from_it() {
        let router = Router::new(&Settings::default().routing);
        let exact = EnvelopeAttributes::new(&crate::config::EnvelopeSettings {
            original: crate::config::OriginalMode::Exact,
            ..crate::config::EnvelopeSettings::default()
        });
        let payload = r#"{"type":"cdr","status":"answered","cmiuuid":"replay-2","to":1,"to":2}"#;
        let records = prepare(payload, None, &exact, &router).expect("a payload");
        let envelope: Value = serde_json::from_slice(&records[0].payload).expect("envelope");
        assert!(envelope["data"]["original"].get("payload").is_none());
        let again = prepare(&envelope.to_string(), None, &exact, &router).expect("an envelope");
        let replayed: Value = serde_json::from_slice(&again[0].payload).expect("envelope");
        assert_eq!(replayed["id"], envelope["id"]);
        assert_eq!(replayed["data"]["original"]["raw"], payload);
    }

    #[test]
    fn a_line_is_a_payload_or_an_envelope_whose_original_is_replayed() {
        let router = Router::new(&Settings::default().routing);
        let payload = r#"{"type":"cdr","status":"answered","cmiuuid":"replay-1"}"#;
        let records =
            prepare(payload, None, &EnvelopeAttributes::default(), &router).expect("a payload");
        let envelope: Value = serde_json::from_slice(&records[0].payload).expect("envelope");
        let again = prepare(
            &envelope.to_string(),
            None,
            &EnvelopeAttributes::default(),
            &router,
        )
        .expect("an envelope");
        let replayed: Value = serde_json::from_slice(&again[0].payload).expect("envelope");
        assert_eq!(
            replayed["id"], envelope["id"],
            "the same event, the same id"
        );
        assert_eq!(records[0].topic.as_str(), "telecmi.cdr.answered");
        assert!(
            prepare("[1, 2]", None, &EnvelopeAttributes::default(), &router)
                .expect_err("not an object")
                .starts_with("json_not_object")
        );
        assert!(
            prepare(
                r#"{"specversion":"1.0"}"#,
                None,
                &EnvelopeAttributes::default(),
                &router
            )
            .is_err()
        );
    }
}
