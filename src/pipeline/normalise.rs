//! Normalise: a payload's fields, however TeleCMI typed them, turned into one stable shape,
//! plus the identity (event id, conversation) the rest of the pipeline keys on.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::warning::{Warning, WarningCode};

/// Namespace of the deterministic event ids. Changing it changes every id: it is part of the
/// envelope contract, like the name layouts in [`event_id`].
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a8e_4b7d_5e3a_9c21_0d8e_7f6a_5b43);

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

/// How a documented field is typed in the normalised view.
#[derive(Clone, Copy)]
enum Rule {
    /// Identifiers, phone numbers and names: text, so `0044...` never loses its zero.
    Text,
    Integer,
    /// Epoch seconds or milliseconds, or an RFC 3339 string: see [`event_time`].
    Time,
    Bool,
    /// A string that holds JSON text (`custom`, `extra_params`): parsed when it is an object.
    JsonText,
}

fn rule_for(key: &str) -> Option<Rule> {
    Some(match key {
        "from" | "to" | "callerid" | "virtual_number" | "app_id" | "cmiuuid"
        | "conversation_uuid" | "call_id" | "request_id" | "user" | "team" | "leg"
        | "direction" | "status" | "type" | "filename" | "voicename" | "hangup_reason"
        | "ivr_name" => Rule::Text,
        "time" => Rule::Time,
        "answeredsec" | "waitedsec" | "billedsec" | "duration" => Rule::Integer,
        "record" | "voicemail" | "click_to_call" => Rule::Bool,
        "custom" | "extra_params" | "ws_status" => Rule::JsonText,
        _ => return None,
    })
}

/// Whether a documented field holds JSON text (`custom`, `extra_params`): privacy looks inside.
pub(crate) fn holds_json_text(key: &str) -> bool {
    matches!(rule_for(key), Some(Rule::JsonText))
}

/// Other spellings of documented keys, with the key each stands for: `appid` in CDRs,
/// `cmiuid` in older payloads.
const ALIASES: [(&str, &str); 2] = [("appid", "app_id"), ("cmiuid", "cmiuuid")];

/// The documented key an alias stands for; any other key is its own.
fn canonical_key(key: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map_or(key, |(_, canonical)| canonical)
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

/// The text fields the normalised identity is read from; their values become CloudEvents
/// attributes (`subject`, `partitionkey`, `telecmistatus`), the Kafka key and headers.
const ATTRIBUTE_SOURCES: [&str; 8] = [
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
fn allowed_in_attribute(c: char) -> bool {
    let code = u32::from(c);
    !c.is_control() && !(0xFDD0..=0xFDEF).contains(&code) && code & 0xFFFE != 0xFFFE
}

/// A text value as the identity takes it: without the characters attributes cannot carry,
/// trimmed; `None` when nothing is left. The field itself keeps them, as sent.
fn attribute_text(value: &Value) -> Option<Cow<'_, str>> {
    let text = value.as_str()?;
    let kept = if text.chars().all(allowed_in_attribute) {
        Cow::Borrowed(text.trim())
    } else {
        let kept: String = text.chars().filter(|c| allowed_in_attribute(*c)).collect();
        Cow::Owned(kept.trim().to_owned())
    };
    (!kept.is_empty()).then_some(kept)
}

/// How [`coerce`] answers: most values already have their type and move through untouched.
enum Coerced {
    AsSent,
    Into(Value),
    Unexpected,
}

/// The value in its rule's type, or the value as sent when it cannot take it.
fn coerce(value: Value, rule: Rule) -> Result<Value, Value> {
    let coerced = match (rule, &value) {
        (_, Value::Null) => Coerced::AsSent,
        (Rule::Text, Value::String(_)) => Coerced::AsSent,
        (Rule::Text, Value::Number(number)) => Coerced::Into(Value::String(number.to_string())),
        (Rule::Text, Value::Bool(flag)) => Coerced::Into(Value::String(flag.to_string())),
        (Rule::Time, Value::String(text)) if is_rfc3339(text) => Coerced::AsSent,
        (Rule::Integer | Rule::Time, Value::Number(number))
            if number.is_i64() || number.is_u64() =>
        {
            Coerced::AsSent
        }
        (Rule::Integer | Rule::Time, Value::String(text)) => match text.trim().parse::<i64>() {
            Ok(parsed) => Coerced::Into(Value::Number(Number::from(parsed))),
            Err(_) => Coerced::Unexpected,
        },
        (Rule::Bool, Value::Bool(_)) => Coerced::AsSent,
        (Rule::Bool, Value::String(text)) => {
            parse_bool(text).map_or(Coerced::Unexpected, |flag| Coerced::Into(Value::Bool(flag)))
        }
        (Rule::Bool, Value::Number(number)) => match number.as_u64() {
            Some(0) => Coerced::Into(Value::Bool(false)),
            Some(1) => Coerced::Into(Value::Bool(true)),
            _ => Coerced::Unexpected,
        },
        (Rule::JsonText, Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(parsed @ Value::Object(_)) => Coerced::Into(parsed),
            _ => Coerced::AsSent,
        },
        (Rule::JsonText, Value::Object(_)) => Coerced::AsSent,
        _ => Coerced::Unexpected,
    };
    match coerced {
        Coerced::AsSent => Ok(value),
        Coerced::Into(coerced) => Ok(coerced),
        Coerced::Unexpected => Err(value),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim();
    ["true", "1", "yes"]
        .iter()
        .any(|word| text.eq_ignore_ascii_case(word))
        .then_some(true)
        .or_else(|| {
            ["false", "0", "no"]
                .iter()
                .any(|word| text.eq_ignore_ascii_case(word))
                .then_some(false)
        })
}

/// `time` is epoch milliseconds in every documented sample; other TeleCMI payloads use epoch
/// seconds. The magnitude tells them apart: below 10^11 is seconds (10^11 ms is 1973, 10^11 s
/// is the year 5138), and micro- and nanoseconds are recognised the same way.
fn event_time(time: Option<&Value>, warnings: &mut Vec<Warning>) -> Option<OffsetDateTime> {
    let value = time.filter(|value| !value.is_null())?;
    let parsed = match value {
        Value::Number(number) => number.as_i64().and_then(|raw| {
            let nanos = match raw {
                ..=0 => return None,
                1..100_000_000_000 => i128::from(raw) * 1_000_000_000,
                100_000_000_000..100_000_000_000_000 => i128::from(raw) * 1_000_000,
                100_000_000_000_000..100_000_000_000_000_000 => i128::from(raw) * 1_000,
                _ => i128::from(raw),
            };
            OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
        }),
        Value::String(text) => {
            OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()
        }
        _ => None,
    };
    if parsed.is_none() {
        warnings.push(Warning::on_field(
            WarningCode::UnusableTime,
            "time",
            "time is not an epoch timestamp or RFC 3339 time",
        ));
    }
    parsed
}

fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()
}

fn is_rfc3339(text: &str) -> bool {
    parse_rfc3339(text).is_some()
}

/// The deterministic event id: UUIDv5 over the event's identity, so that a re-send, or the same
/// event sent as JSON, form or query, gets the same id. Where `cmiuuid` is missing the identity
/// is every field's text, sorted by key.
fn event_id(
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
enum Identity<'a> {
    CallLeg(&'a str),
    /// Every field's text as sent, sorted by key.
    Fields(Vec<(String, String)>),
}

/// Every field's text as sent, sorted by key: the identity of an event without a leg id.
fn field_identity(fields: &Map<String, Value>) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = fields
        .iter()
        .map(|(key, value)| (key.clone(), text_of(value)))
        .collect();
    pairs.sort_unstable();
    pairs
}

/// A value as text, the same whether it arrived as a JSON number, a JSON string or form text.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn numbers_become_text_and_text_numbers_become_integers() {
        let normalised = normalise(fields(json!({
            "from": 440000000002u64, "to": "0044", "appid": 2222223,
            "answeredsec": "11", "time": "1634720920615", "record": "TRUE",
            "custom": "{\"crm\": \"true\"}", "extra_params": "not json", "status": "Answered"
        })));
        let f = &normalised.fields;
        assert_eq!(f["from"], "440000000002");
        assert_eq!(f["to"], "0044");
        assert_eq!(f["app_id"], "2222223");
        assert!(!f.contains_key("appid"));
        assert_eq!(f["answeredsec"], json!(11));
        assert_eq!(f["time"], json!(1634720920615u64));
        assert_eq!(f["record"], json!(true));
        assert_eq!(f["custom"], json!({"crm": "true"}));
        assert_eq!(f["extra_params"], "not json");
        assert_eq!(normalised.status.as_deref(), Some("answered"));
        assert_eq!(normalised.kind, Kind::Cdr);
        assert!(normalised.kind_inferred);
        assert!(normalised.warnings.is_empty(), "{:?}", normalised.warnings);
    }

    #[test]
    fn seconds_and_milliseconds_give_the_same_instant() {
        let millis = normalise(fields(json!({"time": 1634720920000u64})));
        let seconds = normalise(fields(json!({"time": 1634720920})));
        assert_eq!(millis.event_time, seconds.event_time);
        assert_eq!(
            millis.event_time.map(OffsetDateTime::unix_timestamp),
            Some(1634720920)
        );
    }

    #[test]
    fn rfc3339_times_are_accepted_without_warning() {
        let normalised = normalise(fields(json!({"time": "2022-04-22T13:49:00+05:30"})));
        assert!(normalised.warnings.is_empty(), "{:?}", normalised.warnings);
        assert_eq!(
            normalised.event_time.map(OffsetDateTime::unix_timestamp),
            Some(1650615540)
        );
    }

    #[test]
    fn wrong_types_move_to_unconverted_with_a_coded_warning() {
        let normalised = normalise(fields(json!({
            "answeredsec": "eleven", "record": [1], "from": {"x": 1}, "time": -5, "appid": [7]
        })));
        assert_eq!(
            Value::Object(normalised.unconverted.clone()),
            json!({"answeredsec": "eleven", "record": [1], "from": {"x": 1}, "app_id": [7]})
        );
        for key in ["answeredsec", "record", "from", "app_id", "appid"] {
            assert!(!normalised.fields.contains_key(key), "{key} left in fields");
        }
        let coded: Vec<(WarningCode, Option<&str>)> = normalised
            .warnings
            .iter()
            .map(|warning| (warning.code, warning.field.as_deref()))
            .collect();
        assert_eq!(
            coded,
            [
                (WarningCode::UnconvertibleValue, Some("answeredsec")),
                (WarningCode::UnconvertibleValue, Some("record")),
                (WarningCode::UnconvertibleValue, Some("from")),
                (WarningCode::UnconvertibleValue, Some("appid")),
                (WarningCode::UnusableTime, Some("time")),
            ]
        );
        assert_eq!(
            normalised.fields["time"],
            json!(-5),
            "an integer, if unusable"
        );
        assert_eq!(normalised.event_time, None);
    }

    #[test]
    fn conversation_falls_back_to_leg_a_cmiuuid_then_call_id() {
        let leg_a = normalise(fields(json!({"cmiuuid": "A", "call_id": "C", "leg": "a"})));
        assert_eq!(leg_a.conversation_id, "A");
        assert_eq!(leg_a.conversation_source, ConversationSource::Cmiuuid);
        let leg_b = normalise(fields(json!({"cmiuuid": "B", "call_id": "C", "leg": "b"})));
        assert_eq!(leg_b.conversation_id, "C");
        let leg_b_alone = normalise(fields(json!({"cmiuuid": "B", "leg": "b"})));
        assert_eq!(leg_b_alone.conversation_id, "B");
        let nothing = normalise(fields(json!({"status": "x"})));
        assert_eq!(nothing.conversation_id, nothing.id.to_string());
        assert_eq!(nothing.conversation_source, ConversationSource::EventId);
    }

    #[test]
    fn ids_ignore_encoding_but_not_identity() {
        let json_typed = normalise(fields(json!({
            "type": "cdr", "status": "missed", "cmiuuid": "X", "time": 1650625417426u64, "to": 1
        })));
        let text_typed = normalise(fields(json!({
            "type": "CDR", "status": "MISSED", "cmiuuid": "X", "time": "1650625417426", "to": "1"
        })));
        assert_eq!(json_typed.id, text_typed.id);
        let other_status = normalise(fields(json!({
            "type": "cdr", "status": "answered", "cmiuuid": "X", "time": 1650625417426u64
        })));
        assert_ne!(json_typed.id, other_status.id);

        let without_leg_id = normalise(fields(json!({"status": "x", "to": 1})));
        let same_as_text = normalise(fields(json!({"to": "1", "status": "x"})));
        let different = normalise(fields(json!({"status": "x", "to": 2})));
        assert_eq!(without_leg_id.id, same_as_text.id);
        assert_ne!(without_leg_id.id, different.id);
    }

    #[test]
    fn attribute_values_lose_control_characters_and_noncharacters_with_a_warning() {
        let normalised = normalise(fields(json!({
            "type": "event", "status": "Answ\u{7}ered\n", "conversation_uuid": "conv\u{0}-1",
            "cmiuuid": "leg\u{7f}\u{85}-a\u{fffe}", "app_id": "\u{1b}"
        })));
        assert_eq!(normalised.status.as_deref(), Some("answered"));
        assert_eq!(normalised.conversation_id, "conv-1");
        assert_eq!(normalised.call_leg_id.as_deref(), Some("leg-a"));
        assert_eq!(normalised.app_id, None, "nothing left is absent");
        assert_eq!(normalised.fields["conversation_uuid"], "conv\u{0}-1");
        for key in ["status", "conversation_uuid", "cmiuuid", "app_id"] {
            assert!(
                normalised.warnings.iter().any(|warning| {
                    warning.code == WarningCode::AttributeCharactersRemoved
                        && warning.field.as_deref() == Some(key)
                }),
                "{key}: {:?}",
                normalised.warnings
            );
        }
        let clean = normalise(fields(json!({
            "type": "event", "status": "answered", "conversation_uuid": "conv-1", "cmiuuid": "leg-a"
        })));
        assert_eq!(normalised.id, clean.id, "the same event, cleaned");
        assert!(clean.warnings.is_empty());
    }

    #[test]
    fn conflicting_aliases_keep_the_canonical_key_and_warn() {
        let normalised = normalise(fields(json!({"appid": 1, "app_id": 2})));
        assert_eq!(normalised.app_id.as_deref(), Some("2"));
        assert_eq!(normalised.warnings.len(), 1);
    }

    #[test]
    fn aliases_are_renamed_alone_and_dropped_silently_beside_an_equal_canonical_key() {
        let alone = normalise(fields(json!({"cmiuid": "X", "appid": 7})));
        assert_eq!(alone.fields["cmiuuid"], "X");
        assert_eq!(alone.fields["app_id"], "7");
        assert!(!alone.fields.contains_key("cmiuid") && !alone.fields.contains_key("appid"));
        let equal = normalise(fields(json!({"appid": 7, "app_id": "7"})));
        assert!(equal.warnings.is_empty(), "{:?}", equal.warnings);
        assert!(!equal.fields.contains_key("appid"));
        assert_eq!(equal.fields["app_id"], "7");
    }
}
