//! Normalise: a payload's fields, however TeleCMI typed them, turned into one stable shape,
//! plus the identity (event id, conversation) the rest of the pipeline keys on.
//!
//! This file holds the normalised shape and the order of the steps; how a documented field is
//! typed is in `coercion`, and how the event id and the attribute texts are derived in
//! `identity`.

mod coercion;
mod identity;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

pub(crate) use coercion::holds_json_text;
use coercion::{ALIASES, Rule, canonical_key, coerce, event_time, rule_for};
pub use identity::EVENT_ID_NAMESPACE;
use identity::{
    ATTRIBUTE_SOURCES, Identity, allowed_in_attribute, attribute_text, event_id, field_identity,
    text_of,
};

use super::warning::{Warning, WarningCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Event,
    Cdr,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Cdr => "cdr",
        }
    }
}

/// Where the conversation id was taken from, in the order the fallback rule tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationSource {
    ConversationUuid,
    Cmiuuid,
    CallId,
    /// Learned from an earlier event of the call that named the conversation of this
    /// payload's `cmiuuid` or `call_id`.
    Learned,
    /// Nothing in the payload identifies the call: the event id keys it.
    EventId,
}

#[derive(Debug, Clone)]
pub struct Normalised {
    pub id: Uuid,
    pub kind: Kind,
    pub kind_inferred: bool,
    pub status: Option<String>,
    pub direction: Option<String>,
    pub leg: Option<String>,
    pub conversation_id: String,
    pub conversation_source: ConversationSource,
    pub call_leg_id: Option<String>,
    pub app_id: Option<String>,
    pub event_time: Option<OffsetDateTime>,
    pub fields: Map<String, Value>,
    /// Documented fields whose value cannot take the field's type, as sent: moved out of
    /// `fields`, so that every documented field there has its one type.
    pub unconverted: Map<String, Value>,
    pub warnings: Vec<Warning>,
}

/// Fields only CDRs carry; used to tell a CDR from an event when `type` does not.
const CDR_MARKERS: [&str; 10] = [
    "appid",
    "answeredsec",
    "waitedsec",
    "hangup_reason",
    "filename",
    "record",
    "voicemail",
    "voicename",
    "billedsec",
    "duration",
];

/// Takes the fields by value and normalises them in place: what keeps its type and name is
/// not copied.
pub fn normalise(fields: Map<String, Value>) -> Normalised {
    let mut warnings = Vec::new();
    // Judged on the fields as sent, before they change: CDR markers include alias spellings,
    // and the event id falls back to every field's text as it arrived.
    let has_cdr_marker = CDR_MARKERS
        .iter()
        .any(|marker| fields.contains_key(*marker));
    // An alias sent next to its canonical key is dropped, with a warning if their texts differ.
    let shadowed_aliases: Vec<(&str, bool)> = ALIASES
        .iter()
        .filter_map(|(alias, canonical)| {
            let differs = text_of(fields.get(*alias)?) != text_of(fields.get(*canonical)?);
            Some((*alias, differs))
        })
        .collect();
    let call_leg_id = fields
        .get("cmiuuid")
        .or_else(|| fields.get("cmiuid"))
        .and_then(|value| coerce(value.clone(), Rule::Text).ok())
        .as_ref()
        .and_then(attribute_text)
        .map(Cow::into_owned);
    let identity = match &call_leg_id {
        Some(call_leg_id) => Identity::CallLeg(call_leg_id),
        None => Identity::Fields(field_identity(&fields)),
    };

    // In place: most keys keep their name and position, so the map is not rebuilt.
    let mut normalised = fields;
    let mut unconvertible = Vec::new();
    for (key, value) in normalised.iter_mut() {
        let canonical = canonical_key(key);
        if let Some((_, differs)) = shadowed_aliases.iter().find(|(alias, _)| alias == key) {
            if *differs {
                warnings.push(Warning::on_field(
                    WarningCode::AliasConflict,
                    key,
                    format!("{key} differs from {canonical}; kept {canonical}"),
                ));
            }
            continue;
        }
        if let Some(rule) = rule_for(canonical) {
            match coerce(std::mem::take(value), rule) {
                Ok(coerced) => *value = coerced,
                Err(as_sent) => {
                    warnings.push(Warning::on_field(
                        WarningCode::UnconvertibleValue,
                        key,
                        format!("{key} cannot be converted to its type; moved to unconverted"),
                    ));
                    unconvertible.push((key.clone(), as_sent));
                }
            }
        }
    }
    let mut unconverted = Map::new();
    for (key, as_sent) in unconvertible {
        normalised.shift_remove(&key);
        unconverted.insert(canonical_key(&key).to_owned(), as_sent);
    }
    for (alias, canonical) in ALIASES {
        if shadowed_aliases
            .iter()
            .any(|(shadowed, _)| *shadowed == alias)
        {
            normalised.shift_remove(alias);
        } else if let Some(position) = normalised.keys().position(|key| key == alias)
            && let Some(value) = normalised.shift_remove(alias)
        {
            normalised.shift_insert(position, canonical.to_owned(), value);
        }
    }

    for key in ATTRIBUTE_SOURCES {
        if normalised
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|text| !text.chars().all(allowed_in_attribute))
        {
            warnings.push(Warning::on_field(
                WarningCode::AttributeCharactersRemoved,
                key,
                format!(
                    "{key} has characters CloudEvents forbids in attribute values (control \
                     characters, noncharacters); removed from the normalised value"
                ),
            ));
        }
    }
    let text = |key: &str| normalised.get(key).and_then(attribute_text);
    let lower = |key: &str| text(key).map(|text| text.to_lowercase());
    let present = |key: &str| text(key).map(Cow::into_owned);

    let (kind, kind_inferred) = match lower("type").as_deref() {
        Some("event") => (Kind::Event, false),
        Some("cdr") => (Kind::Cdr, false),
        _ if has_cdr_marker => (Kind::Cdr, true),
        _ => (Kind::Event, true),
    };
    let status = lower("status");
    let leg = lower("leg");
    let event_time = event_time(normalised.get("time"), &mut warnings);
    let id = event_id(
        kind,
        status.as_deref(),
        leg.as_deref(),
        event_time,
        identity,
    );

    let leg_a_or_none = matches!(leg.as_deref(), None | Some("a"));
    let (conversation_id, conversation_source) = if let Some(id) = present("conversation_uuid") {
        (id, ConversationSource::ConversationUuid)
    } else if let Some(cmiuuid) = call_leg_id.clone().filter(|_| leg_a_or_none) {
        (cmiuuid, ConversationSource::Cmiuuid)
    } else if let Some(call_id) = present("call_id") {
        (call_id, ConversationSource::CallId)
    } else if let Some(cmiuuid) = call_leg_id.clone() {
        (cmiuuid, ConversationSource::Cmiuuid)
    } else {
        (id.to_string(), ConversationSource::EventId)
    };

    Normalised {
        id,
        kind,
        kind_inferred,
        direction: lower("direction"),
        app_id: present("app_id"),
        status,
        leg,
        conversation_id,
        conversation_source,
        call_leg_id,
        event_time,
        fields: normalised,
        unconverted,
        warnings,
    }
}

impl Normalised {
    /// Keys the payload by the conversation an earlier event of its call named (`learned`),
    /// when it names none itself; a CDR of a leg other than A that stays keyed by its own ids
    /// gets a warning, since its call's other records may sit on another partition.
    pub fn adopt_learned_conversation(&mut self, learned: Option<String>) {
        match learned {
            Some(conversation) if conversation != self.conversation_id => {
                self.conversation_id = conversation;
                self.conversation_source = ConversationSource::Learned;
            }
            Some(_) => {}
            None if self.kind == Kind::Cdr
                && self.conversation_source != ConversationSource::ConversationUuid
                && self.leg.as_deref().is_some_and(|leg| leg != "a") =>
            {
                self.warnings.push(Warning::new(
                    WarningCode::ConversationNotLearned,
                    "a CDR of a leg other than A without conversation_uuid, and no earlier \
                     event of its call seen by this instance: keyed by its own ids",
                ));
            }
            None => {}
        }
    }
}
