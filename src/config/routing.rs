//! Which topic each event and CDR goes to.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Problems;
use super::forms::seconds;
use crate::domain::TopicName;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    pub event_topics: BTreeMap<String, TopicName>,
    pub cdr_topics: BTreeMap<String, TopicName>,
    pub event_fallback_topic: TopicName,
    pub cdr_fallback_topic: TopicName,
    pub unrouted_topic: TopicName,
    pub combined_topic_enabled: bool,
    pub combined_topic: TopicName,
    /// Requests whose body was read but cannot become an envelope are kept here, raw.
    pub dead_letter_enabled: bool,
    pub dead_letter_topic: TopicName,
    /// Leg ids (`cmiuuid`, `call_id`) whose conversation this process remembers, so that a
    /// leg-B CDR without `conversation_uuid` keeps its call's key; the oldest go first.
    pub correlation_max_entries: u64,
    /// How long a learned conversation is remembered: longer than a call and its CDR's delay.
    #[serde(with = "seconds")]
    pub correlation_ttl_seconds: Duration,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        let table = |kind: &str, statuses: &[&str]| {
            statuses
                .iter()
                .map(|status| {
                    let topic = TopicName::new(&format!("telecmi.{kind}.{status}"));
                    ((*status).to_owned(), topic)
                })
                .collect()
        };
        Self {
            event_topics: table("event", &["waiting", "started", "answered", "hangup"]),
            cdr_topics: table("cdr", &["answered", "missed"]),
            event_fallback_topic: TopicName::new("telecmi.event.other"),
            cdr_fallback_topic: TopicName::new("telecmi.cdr.other"),
            unrouted_topic: TopicName::new("telecmi.unrouted"),
            combined_topic_enabled: false,
            combined_topic: TopicName::new("telecmi.calls"),
            dead_letter_enabled: true,
            dead_letter_topic: TopicName::new("telecmi.deadletter"),
            correlation_max_entries: 100_000,
            correlation_ttl_seconds: Duration::from_secs(7200),
        }
    }
}

impl RoutingSettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        for (table, name) in [
            (&self.event_topics, "routing.event_topics"),
            (&self.cdr_topics, "routing.cdr_topics"),
        ] {
            for status in table
                .keys()
                .filter(|status| **status != status.to_lowercase())
            {
                problems.add(
                    format!("{name}.{status}"),
                    "statuses are matched in lower case; write the key in lower case",
                );
            }
        }
    }

    /// Every topic the bridge may write to, each once.
    pub fn all_topics(&self) -> Vec<TopicName> {
        let mut topics: Vec<TopicName> = self
            .event_topics
            .values()
            .chain(self.cdr_topics.values())
            .chain([
                &self.event_fallback_topic,
                &self.cdr_fallback_topic,
                &self.unrouted_topic,
            ])
            .chain(self.combined_topic_enabled.then_some(&self.combined_topic))
            .chain(self.dead_letter_enabled.then_some(&self.dead_letter_topic))
            .cloned()
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }
}
