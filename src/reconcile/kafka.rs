//! Which CDRs are in Kafka, decided from Kafka itself: the CDR topics (the routing's CDR
//! topics and the CDR fallback topic) from a point in time to their end as it was when the
//! reading began. The start is found by record timestamp (`offsetsForTimes`); a CDR is
//! published after its call, so every CDR of a call in the window has a timestamp after the
//! window's start, less the margin that covers clocks apart.
//!
//! Blocking (librdkafka's consumer); call it from `spawn_blocking`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::matching::PublishedCdr;
use crate::config::{Bootstrap, RoutingSettings, Settings};
use crate::domain::TopicName;
use crate::publish::kafka::kafka_connection_config;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "kafka.bootstrap_servers is `embedded`, an in-process cluster of this process with \
         nothing published in it: reconcile needs the brokers the bridge publishes to"
    )]
    Embedded,
    #[error("CDR topic {0} does not exist on the brokers")]
    MissingTopic(TopicName),
    #[error("reading the CDR topics from Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(
        "reading the CDR topics did not finish within {timeout:?}: {behind} partitions not read to their end"
    )]
    Timeout { timeout: Duration, behind: usize },
}

/// The CDRs published since a point in time.
#[derive(Debug, Default)]
pub struct PublishedCdrs {
    pub cdrs: Vec<PublishedCdr>,
    /// Records read on the CDR topics.
    pub records_read: u64,
    /// Records read that are not CDR envelopes (nothing else is published there today).
    pub not_cdrs: u64,
}

/// A consumer's librdkafka properties: the `[kafka]` connection and security settings, without
/// the producer's, committing nothing.
pub(crate) fn consumer_config(settings: &Settings, brokers: &str) -> ClientConfig {
    let mut config = kafka_connection_config(&settings.kafka, brokers);
    config.set("enable.auto.commit", "false");
    config
}

/// Where CDRs are published: each status's topic and the fallback for other statuses.
pub fn cdr_topics(routing: &RoutingSettings) -> Vec<TopicName> {
    let mut topics: Vec<TopicName> = routing
        .cdr_topics
        .values()
        .chain([&routing.cdr_fallback_topic])
        .cloned()
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

/// Every CDR on the CDR topics whose record timestamp is at or after `since_ms` (epoch ms),
/// up to each partition's end when the reading began. Fails rather than return a partial
/// view: a CDR not read would be counted missing and published again.
pub fn read_published_cdrs(
    settings: &Settings,
    since_ms: i64,
    timeout: Duration,
) -> Result<PublishedCdrs, ReadError> {
    let Bootstrap::Brokers(brokers) = &settings.kafka.bootstrap_servers else {
        return Err(ReadError::Embedded);
    };
    let mut config = consumer_config(settings, brokers);
    // Partitions are assigned, never subscribed: the group is never joined nor committed to.
    config
        .set(
            "group.id",
            format!("{}-reconcile", settings.kafka.client_id),
        )
        .set("enable.auto.offset.store", "false");
    let consumer: BaseConsumer = config.create()?;
    let deadline = Instant::now() + timeout;
    let request_timeout = settings.kafka.metadata_timeout_ms;

    let metadata = consumer.fetch_metadata(None, request_timeout)?;
    let mut by_time = TopicPartitionList::new();
    for topic in cdr_topics(&settings.routing) {
        let Some(found) = metadata
            .topics()
            .iter()
            .find(|listed| listed.name() == topic.as_str() && listed.error().is_none())
        else {
            return Err(ReadError::MissingTopic(topic));
        };
        for partition in found.partitions() {
            by_time.add_partition_offset(
                topic.as_str(),
                partition.id(),
                Offset::Offset(since_ms),
            )?;
        }
    }
    let starts = consumer.offsets_for_times(by_time, request_timeout)?;

    let mut assignment = TopicPartitionList::new();
    // Each partition's end when the reading began; records after it are a later run's.
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for element in starts.elements() {
        element.error()?;
        let (topic, partition) = (element.topic(), element.partition());
        let (_, high) = consumer.fetch_watermarks(topic, partition, request_timeout)?;
        // `End`: no record at or after `since_ms` in this partition.
        if let Offset::Offset(start) = element.offset()
            && start < high
        {
            assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
            ends.insert((topic.to_owned(), partition), high);
        }
    }
    consumer.assign(&assignment)?;

    let mut published = PublishedCdrs::default();
    while !ends.is_empty() {
        let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
            return Err(ReadError::Timeout {
                timeout,
                behind: ends.len(),
            });
        };
        let Some(polled) = consumer.poll(remaining.min(Duration::from_millis(200))) else {
            continue;
        };
        let message = polled?;
        let key = (message.topic().to_owned(), message.partition());
        let Some(&end) = ends.get(&key) else {
            continue;
        };
        if message.offset() < end {
            published.records_read += 1;
            match structured_view(&message)
                .and_then(|envelope| PublishedCdr::from_envelope(&envelope))
            {
                Some(cdr) => published.cdrs.push(cdr),
                None => published.not_cdrs += 1,
            }
        }
        if message.offset() + 1 >= end {
            ends.remove(&key);
        }
    }
    Ok(published)
}

/// The record as a structured-mode envelope: as it is in structured mode; in binary mode
/// (`envelope.mode = "binary"`) the value is `data` alone and the id is the `ce_id` header.
fn structured_view(message: &impl Message) -> Option<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_slice(message.payload()?).ok()?;
    let binary_id = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|header| header.key == "ce_id")
            .and_then(|header| std::str::from_utf8(header.value?).ok().map(str::to_owned))
    });
    Some(match binary_id {
        Some(id) => serde_json::json!({"id": id, "data": value}),
        None => value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cdr_topics_and_the_cdr_fallback_are_read() {
        let topics = cdr_topics(&RoutingSettings::default());
        let names: Vec<&str> = topics.iter().map(TopicName::as_str).collect();
        assert_eq!(
            names,
            [
                "telecmi.cdr.answered",
                "telecmi.cdr.missed",
                "telecmi.cdr.other"
            ]
        );
    }

    #[test]
    fn a_binary_mode_record_is_read_as_its_structured_envelope() {
        use rdkafka::Timestamp;
        use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
        let data = br#"{"kind":"cdr","call_leg_id":"leg-1","status":"answered"}"#.to_vec();
        let record = |headers| {
            OwnedMessage::new(
                Some(data.clone()),
                None,
                "telecmi.cdr.answered".to_owned(),
                Timestamp::NotAvailable,
                0,
                0,
                headers,
            )
        };
        let binary = record(Some(OwnedHeaders::new().insert(Header {
            key: "ce_id",
            value: Some("event-1"),
        })));
        let cdr = structured_view(&binary)
            .and_then(|envelope| PublishedCdr::from_envelope(&envelope))
            .expect("a CDR");
        assert_eq!(cdr.event_id, "event-1");
        assert_eq!(cdr.call_leg_id.as_deref(), Some("leg-1"));
        assert!(
            structured_view(&record(None))
                .and_then(|envelope| PublishedCdr::from_envelope(&envelope))
                .is_none(),
            "data without an id is no envelope"
        );
    }

    #[test]
    fn the_embedded_cluster_is_refused() {
        let error = read_published_cdrs(&Settings::default(), 0, Duration::from_secs(1))
            .expect_err("embedded");
        assert!(matches!(error, ReadError::Embedded), "{error}");
    }
}
