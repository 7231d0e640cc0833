//! What the rest of the pipeline keys on: the deterministic event id and the texts that become
//! CloudEvents attributes, Kafka keys and headers. Separate from `normalise` because these are
//! part of the envelope contract: a change here changes every id or key already published.

use std::borrow::Cow;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Kind;

/// Namespace of the deterministic event ids. Changing it changes every id: it is part of the
/// envelope contract, like the name layouts in [`event_id`].
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a8e_4b7d_5e3a_9c21_0d8e_7f6a_5b43);

/// The text fields the normalised identity is read from; their values become CloudEvents
/// attributes (`subject`, `partitionkey`, `telecmistatus`), the Kafka key and headers.
pub(super) const ATTRIBUTE_SOURCES: [&str; 8] = [
    "type",
    "status",
    "direction",
    "leg",
    "conversation_uuid",
    "cmiuuid",
    "call_id",
    "app_id",
];

/// CloudEvents' String type excludes the control characters (U+0000-U+001F, U+007F-U+009F)
/// and Unicode's noncharacters; a newline in a Kafka header or key breaks consumers too.
pub(super) fn allowed_in_attribute(c: char) -> bool {
    let code = u32::from(c);
    !c.is_control() && !(0xFDD0..=0xFDEF).contains(&code) && code & 0xFFFE != 0xFFFE
}

/// A text value as the identity takes it: without the characters attributes cannot carry,
/// trimmed; `None` when nothing is left. The field itself keeps them, as sent.
pub(super) fn attribute_text(value: &Value) -> Option<Cow<'_, str>> {
    let text = value.as_str()?;
    let kept = if text.chars().all(allowed_in_attribute) {
        Cow::Borrowed(text.trim())
    } else {
        let kept: String = text.chars().filter(|c| allowed_in_attribute(*c)).collect();
        Cow::Owned(kept.trim().to_owned())
    };
    (!kept.is_empty()).then_some(kept)
}
/// The deterministic event id: UUIDv5 over the event's identity, so that a re-send, or the same
/// event sent as JSON, form or query, gets the same id. Where `cmiuuid` is missing the identity
/// is every field's text, sorted by key.
pub(super) fn event_id(
    kind: Kind,
    status: Option<&str>,
    leg: Option<&str>,
    event_time: Option<OffsetDateTime>,
    identity: Identity<'_>,
) -> Uuid {
    // Serialised straight from tuples (a JSON array each), not through a `Value` tree.
    let name = match identity {
        Identity::CallLeg(cmiuuid) => {
            let millis = event_time
                .map(|time| (time.unix_timestamp_nanos() / 1_000_000).to_string())
                .unwrap_or_default();
            serde_json::to_vec(&(
                "v1",
                kind.as_str(),
                status.unwrap_or_default(),
                cmiuuid,
                leg.unwrap_or_default(),
                millis,
            ))
        }
        Identity::Fields(pairs) => serde_json::to_vec(&("v1-fields", pairs)),
    };
    // Strings and tuples always serialise; the empty name is unreachable.
    Uuid::new_v5(&EVENT_ID_NAMESPACE, &name.unwrap_or_default())
}

/// What an event id is derived from.
pub(super) enum Identity<'a> {
    CallLeg(&'a str),
    /// Every field's text as sent, sorted by key.
    Fields(Vec<(String, String)>),
}

/// Every field's text as sent, sorted by key: the identity of an event without a leg id.
pub(super) fn field_identity(fields: &Map<String, Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| (key.clone(), text_of(value)))
        .collect();
    pairs.sort_unstable();
    pairs
}

/// A value as text, the same whether it arrived as a JSON number, a JSON string or form text.
pub(super) fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
