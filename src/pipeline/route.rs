//! Route: which topic, key and headers an envelope gets.

use std::collections::HashMap;

use bytes::Bytes;

use time::OffsetDateTime;

use super::RejectReason;
use super::decode::RawRequest;
use super::envelope::{ENVELOPE_VERSION, EncodedEvent, rfc3339, unix_millis};
use super::normalise::{Kind, Normalised};
use crate::config::RoutingSettings;
use crate::domain::TopicName;

/// A dead letter's header holding a POST's query string, which privacy removes with the body.
pub const REQUEST_QUERY_HEADER: &str = "telecmi-request-query";

/// A record ready for Kafka. The payload is shared between the records of one event.
#[derive(Debug, Clone)]
pub struct OutboundRecord {
    pub topic: TopicName,
    pub key: String,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Bytes,
    /// The Kafka record timestamp (ms since the Unix epoch): when the bridge received the
    /// event, not when the record was produced, which can be hours later after a spool backlog.
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Router {
    event_topics: HashMap<String, TopicName>,
    cdr_topics: HashMap<String, TopicName>,
    event_fallback: TopicName,
    cdr_fallback: TopicName,
    unrouted: TopicName,
    combined: Option<TopicName>,
    dead_letter: Option<TopicName>,
}

/// A request whose body was read but cannot become an envelope.
pub struct DeadLetter<'a> {
    pub reason: &'a RejectReason,
    pub request: &'a RawRequest<'a>,
    pub received_at: OffsetDateTime,
    pub request_id: &'a str,
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
            dead_letter: settings
                .dead_letter_enabled
                .then(|| settings.dead_letter_topic.clone()),
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
    pub fn route(
        &self,
        normalised: &Normalised,
        event: EncodedEvent,
        received_at: OffsetDateTime,
    ) -> Vec<OutboundRecord> {
        let envelope = Bytes::from(event.value);
        let mut headers = vec![
            ("content-type", event.content_type.to_owned()),
            ("telecmi-event-id", normalised.id.to_string()),
            ("telecmi-kind", normalised.kind.as_str().to_owned()),
            ("telecmi-envelope-version", ENVELOPE_VERSION.to_owned()),
        ];
        if let Some(status) = &normalised.status {
            headers.push(("telecmi-status", status.clone()));
        }
        headers.extend(event.attribute_headers);
        let primary = self.topic_for(normalised.kind, normalised.status.as_deref());
        std::iter::once(primary)
            .chain(self.combined.as_ref())
            .map(|topic| OutboundRecord {
                topic: topic.clone(),
                key: normalised.conversation_id.clone(),
                headers: headers.clone(),
                payload: envelope.clone(),
                timestamp_ms: unix_millis(received_at),
            })
            .collect()
    }

    /// The dead-letter record of a refused request, if the topic is on and the refusal is of
    /// the body: the payload is the body as received (for a `GET`, the query string), keyed
    /// by the request id. The bridge's token is never in it: the path is not kept, and the
    /// token's query parameter is removed.
    pub fn dead_letter(&self, letter: &DeadLetter<'_>) -> Option<OutboundRecord> {
        let topic = self.dead_letter.as_ref()?;
        if !letter.reason.is_dead_letter() {
            return None;
        }
        let request = letter.request;
        let query = request.query_text();
        let (payload, content_type) = if request.is_get {
            let query = query.clone().unwrap_or_default();
            (
                Bytes::from(query),
                Some("application/x-www-form-urlencoded"),
            )
        } else {
            (Bytes::copy_from_slice(request.body), request.content_type)
        };
        let mut headers = vec![
            ("telecmi-deadletter-reason", letter.reason.code().to_owned()),
            ("telecmi-deadletter-message", letter.reason.to_string()),
            ("telecmi-received-at", rfc3339(letter.received_at)),
            ("telecmi-request-id", letter.request_id.to_owned()),
            (
                "telecmi-request-method",
                if request.is_get { "GET" } else { "POST" }.to_owned(),
            ),
        ];
        if let Some(content_type) = content_type {
            headers.push(("content-type", content_type.to_owned()));
        }
        if let Some(query) = query.filter(|_| !request.is_get) {
            headers.push((REQUEST_QUERY_HEADER, query));
        }
        Some(OutboundRecord {
            topic: topic.clone(),
            key: letter.request_id.to_owned(),
            headers,
            payload,
            timestamp_ms: unix_millis(letter.received_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::envelope::CLOUDEVENTS_CONTENT_TYPE;
    use crate::pipeline::normalise;
    use serde_json::json;

    fn normalised(payload: serde_json::Value) -> Normalised {
        match payload {
            serde_json::Value::Object(fields) => normalise(fields),
            other => panic!("test payloads are objects, not {other}"),
        }
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
        let encoded = EncodedEvent {
            value: b"{}".to_vec(),
            content_type: CLOUDEVENTS_CONTENT_TYPE,
            attribute_headers: vec![("ce_id", event.id.to_string())],
        };
        let records = Router::new(&settings).route(&event, encoded, OffsetDateTime::UNIX_EPOCH);
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
            assert_eq!(
                header("ce_id"),
                header("telecmi-event-id"),
                "attribute headers kept"
            );
        }
    }

    fn header<'a>(record: &'a OutboundRecord, name: &str) -> Option<&'a str> {
        record
            .headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    fn request<'a>(is_get: bool, query: Option<&'a str>, body: &'a [u8]) -> RawRequest<'a> {
        RawRequest {
            is_get,
            content_type: Some("application/json"),
            content_encoding: None,
            query,
            body,
            reserved_query_param: Some("bridge_token"),
        }
    }

    #[test]
    fn a_dead_letter_keeps_the_body_raw_with_why_when_and_which_request() {
        let router = Router::new(&RoutingSettings::default());
        let reason = RejectReason::MalformedJson("expected value".to_owned());
        let raw = request(
            false,
            Some("a=1&bridge_token=secret-token&b=2"),
            b"{\"x\": \xff",
        );
        let received_at = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        let record = router
            .dead_letter(&DeadLetter {
                reason: &reason,
                request: &raw,
                received_at,
                request_id: "req-1",
            })
            .expect("dead-lettered");
        assert_eq!(record.topic.as_str(), "telecmi.deadletter");
        assert_eq!(record.key, "req-1");
        assert_eq!(record.payload.as_ref(), b"{\"x\": \xff");
        assert_eq!(
            header(&record, "telecmi-deadletter-reason"),
            Some("malformed_json")
        );
        assert_eq!(
            header(&record, "telecmi-received-at"),
            Some("2023-11-14T22:13:20.000Z")
        );
        assert_eq!(header(&record, "telecmi-request-id"), Some("req-1"));
        assert_eq!(header(&record, "telecmi-request-method"), Some("POST"));
        assert_eq!(header(&record, "content-type"), Some("application/json"));
        assert_eq!(header(&record, "telecmi-request-query"), Some("a=1&b=2"));
        assert!(
            record
                .headers
                .iter()
                .all(|(_, value)| !value.contains("secret-token")),
            "the token leaked into a header"
        );
    }

    #[test]
    fn a_dead_get_keeps_its_query_without_the_token() {
        let router = Router::new(&RoutingSettings::default());
        let reason = RejectReason::InvalidUtf8;
        let raw = request(true, Some("bridge_token=secret-token&from=%FF"), b"");
        let record = router
            .dead_letter(&DeadLetter {
                reason: &reason,
                request: &raw,
                received_at: OffsetDateTime::UNIX_EPOCH,
                request_id: "req-2",
            })
            .expect("dead-lettered");
        assert_eq!(record.payload.as_ref(), b"from=%FF");
        assert_eq!(header(&record, "telecmi-request-method"), Some("GET"));
        assert_eq!(header(&record, "telecmi-request-query"), None);
    }

    #[test]
    fn header_refusals_and_a_disabled_topic_are_not_dead_lettered() {
        let raw = request(false, None, b"<xml/>");
        let letter = |reason| DeadLetter {
            reason,
            request: &raw,
            received_at: OffsetDateTime::UNIX_EPOCH,
            request_id: "req-3",
        };
        let router = Router::new(&RoutingSettings::default());
        assert!(
            router
                .dead_letter(&letter(&RejectReason::UnsupportedContentType))
                .is_none()
        );
        assert!(
            router
                .dead_letter(&letter(&RejectReason::EmptyBody))
                .is_some()
        );
        let off = Router::new(&RoutingSettings {
            dead_letter_enabled: false,
            ..RoutingSettings::default()
        });
        assert!(off.dead_letter(&letter(&RejectReason::EmptyBody)).is_none());
    }
}
