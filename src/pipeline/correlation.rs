//! Which conversation a leg belongs to, learned from the call's earlier events: leg B's events
//! carry `conversation_uuid` next to their own `cmiuuid`, its CDR often only the `cmiuuid`.
//! An in-memory map of this process, bounded in entries and age; no I/O.

use std::time::Duration;

use moka::sync::Cache;

use super::normalise::{ConversationSource, Normalised};

pub struct Correlation {
    conversation_of_leg: Cache<String, String>,
}

impl Correlation {
    pub fn new(max_entries: u64, time_to_live: Duration) -> Self {
        Self {
            conversation_of_leg: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(time_to_live)
                .build(),
        }
    }

    /// The conversation learned for the payload's `cmiuuid` or `call_id`, when it names none.
    pub fn conversation_of(&self, normalised: &Normalised) -> Option<String> {
        if normalised.conversation_source == ConversationSource::ConversationUuid {
            return None;
        }
        leg_ids(normalised).find_map(|leg_id| self.conversation_of_leg.get(leg_id))
    }

    /// Remembers the conversation of the payload's leg ids, when it names one.
    pub fn learn(&self, normalised: &Normalised) {
        if normalised.conversation_source != ConversationSource::ConversationUuid {
            return;
        }
        for leg_id in leg_ids(normalised) {
            self.conversation_of_leg
                .insert(leg_id.to_owned(), normalised.conversation_id.clone());
        }
    }
}

fn leg_ids(normalised: &Normalised) -> impl Iterator<Item = &str> {
    let call_id = normalised
        .fields
        .get("call_id")
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|call_id| !call_id.is_empty());
    normalised.call_leg_id.as_deref().into_iter().chain(call_id)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::pipeline::normalise::normalise;
    use crate::pipeline::warning::WarningCode;

    fn normalised(payload: Value) -> Normalised {
        match payload {
            Value::Object(fields) => normalise(fields),
            _ => unreachable!("a test payload is an object"),
        }
    }

    fn correlated(correlation: &Correlation, payload: Value) -> Normalised {
        let mut normalised = normalised(payload);
        normalised.adopt_learned_conversation(correlation.conversation_of(&normalised));
        correlation.learn(&normalised);
        normalised
    }

    fn warned(normalised: &Normalised) -> bool {
        normalised
            .warnings
            .iter()
            .any(|warning| warning.code == WarningCode::ConversationNotLearned)
    }

    #[test]
    fn a_leg_b_cdr_takes_the_conversation_its_legs_events_named() {
        let correlation = Correlation::new(100, Duration::from_secs(60));
        let event = correlated(
            &correlation,
            json!({"type": "event", "status": "started", "leg": "b", "cmiuuid": "leg-b",
                   "call_id": "call-1", "conversation_uuid": "conv-1"}),
        );
        assert_eq!(event.conversation_id, "conv-1");

        let by_leg = correlated(
            &correlation,
            json!({"type": "cdr", "status": "answered", "leg": "b", "cmiuuid": "leg-b"}),
        );
        assert_eq!(by_leg.conversation_id, "conv-1");
        assert_eq!(by_leg.conversation_source, ConversationSource::Learned);
        assert!(!warned(&by_leg), "{:?}", by_leg.warnings);

        let by_call = correlated(
            &correlation,
            json!({"type": "cdr", "status": "answered", "leg": "b", "cmiuuid": "other",
                   "call_id": "call-1"}),
        );
        assert_eq!(by_call.conversation_id, "conv-1");
        assert_eq!(by_call.conversation_source, ConversationSource::Learned);
    }

    #[test]
    fn a_leg_b_cdr_of_an_unseen_call_keeps_its_own_id_with_a_warning() {
        let correlation = Correlation::new(100, Duration::from_secs(60));
        let cdr = correlated(
            &correlation,
            json!({"type": "cdr", "status": "missed", "leg": "b", "cmiuuid": "leg-b"}),
        );
        assert_eq!(cdr.conversation_id, "leg-b");
        assert_eq!(cdr.conversation_source, ConversationSource::Cmiuuid);
        assert!(warned(&cdr), "{:?}", cdr.warnings);

        let leg_a = correlated(
            &correlation,
            json!({"type": "cdr", "status": "missed", "leg": "a", "cmiuuid": "leg-a"}),
        );
        assert_eq!(leg_a.conversation_source, ConversationSource::Cmiuuid);
        assert!(!warned(&leg_a), "leg A's cmiuuid is its conversation");
    }

    #[test]
    fn a_payload_naming_its_conversation_keeps_it() {
        let correlation = Correlation::new(100, Duration::from_secs(60));
        correlated(
            &correlation,
            json!({"type": "event", "leg": "b", "cmiuuid": "leg-b", "conversation_uuid": "conv-1"}),
        );
        let named = correlated(
            &correlation,
            json!({"type": "cdr", "leg": "b", "cmiuuid": "leg-b", "conversation_uuid": "conv-2"}),
        );
        assert_eq!(named.conversation_id, "conv-2");
        assert_eq!(
            named.conversation_source,
            ConversationSource::ConversationUuid
        );
    }
}
