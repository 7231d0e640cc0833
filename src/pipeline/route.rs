//! Route: which topic, key and headers an envelope gets.

use std::collections::HashMap;

use bytes::Bytes;

use super::envelope::{CLOUDEVENTS_CONTENT_TYPE, ENVELOPE_VERSION};
use super::normalise::{Kind, Normalised};
use crate::config::{RoutingSettings, TopicName};

/// A record ready for Kafka. The payload is shared between the records of one event.
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    pub topic: TopicName,
    pub key: String,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Bytes,
}

#[derive(Debug, Clone)]
pub struct Router {
    event_topics: HashMap<String, TopicName>,
    cdr_topics: HashMap<String, TopicName>,
    event_fallback: TopicName,
    cdr_fallback: TopicName,
    unrouted: TopicName,
    combined: Option<TopicName>,
}

impl Router {
    pub fn new(settings: &RoutingSettings) -> Self {
        let table = |topics: &std::collections::BTreeMap<String, TopicName>| {
            topics
                .iter()
                .map(|(status, topic)| (status.clone(), topic.clone()))
                .collect()
        };
        Self {
            event_topics: table(&settings.event_topics),
            cdr_topics: table(&settings.cdr_topics),
            event_fallback: settings.event_fallback_topic.clone(),
            cdr_fallback: settings.cdr_fallback_topic.clone(),
            unrouted: settings.unrouted_topic.clone(),
            combined: settings
                .combined_topic_enabled
                .then(|| settings.combined_topic.clone()),
        }
    }

    /// A status outside the table goes to its kind's fallback topic, and a payload with no
    /// status to the unrouted topic: a topic that does not exist never blocks an event.
    pub fn topic_for(&self, kind: Kind, status: Option<&str>) -> &TopicName {
        let Some(status) = status else {
            return &self.unrouted;
        };
        let (table, fallback) = match kind {
            Kind::Event => (&self.event_topics, &self.event_fallback),
            Kind::Cdr => (&self.cdr_topics, &self.cdr_fallback),
        };
        table.get(status).unwrap_or(fallback)
    }

    /// The records for one envelope: its status topic first, then the combined topic if on.
    pub fn route(&self, normalised: &Normalised, envelope: Bytes) -> Vec<OutboundRecord> {
        let mut headers = vec![
            ("content-type", CLOUDEVENTS_CONTENT_TYPE.to_owned()),
            ("telecmi-event-id", normalised.id.to_string()),
            ("telecmi-kind", normalised.kind.as_str().to_owned()),
            ("telecmi-envelope-version", ENVELOPE_VERSION.to_owned()),
        ];
        if let Some(status) = &normalised.status {
            headers.push(("telecmi-status", status.clone()));
        }
        let primary = self.topic_for(normalised.kind, normalised.status.as_deref());
        std::iter::once(primary)
            .chain(self.combined.as_ref())
            .map(|topic| OutboundRecord {
                topic: topic.clone(),
                key: normalised.conversation_id.clone(),
                headers: headers.clone(),
                payload: envelope.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::normalise;
    use serde_json::json;

    fn normalised(payload: serde_json::Value) -> Normalised {
        normalise(payload.as_object().expect("object"))
    }

    #[test]
    fn documented_unknown_and_missing_statuses_each_have_a_topic() {
        let router = Router::new(&RoutingSettings::default());
        let topic = |kind, status| router.topic_for(kind, status).as_str().to_owned();
        assert_eq!(
            topic(Kind::Event, Some("answered")),
            "telecmi.event.answered"
        );
        assert_eq!(topic(Kind::Cdr, Some("missed")), "telecmi.cdr.missed");
        assert_eq!(topic(Kind::Cdr, Some("waiting")), "telecmi.cdr.other");
        assert_eq!(
            topic(Kind::Event, Some("call_transferred")),
            "telecmi.event.other"
        );
        assert_eq!(topic(Kind::Event, None), "telecmi.unrouted");
    }

    #[test]
    fn records_carry_key_headers_and_the_combined_copy() {
        let settings = RoutingSettings {
            combined_topic_enabled: true,
            ..RoutingSettings::default()
        };
        let event = normalised(json!({
            "type": "event", "status": "ANSWERED", "conversation_uuid": "conv-1", "cmiuuid": "leg"
        }));
        let records = Router::new(&settings).route(&event, Bytes::from_static(b"{}"));
        let topics: Vec<&str> = records.iter().map(|record| record.topic.as_str()).collect();
        assert_eq!(topics, ["telecmi.event.answered", "telecmi.calls"]);
        for record in &records {
            assert_eq!(record.key, "conv-1");
            let header = |name| {
                record
                    .headers
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.as_str())
            };
            assert_eq!(header("telecmi-status"), Some("answered"));
            assert_eq!(header("telecmi-kind"), Some("event"));
            assert_eq!(
                header("telecmi-event-id"),
                Some(event.id.to_string().as_str())
            );
            assert_eq!(header("content-type"), Some(CLOUDEVENTS_CONTENT_TYPE));
        }
    }
}
