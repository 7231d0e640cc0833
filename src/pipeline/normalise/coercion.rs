//! How each documented field is typed in the normalised view (text, integer, time, boolean,
//! JSON text) and which other spellings stand for it. Separate from the steps in `normalise`:
//! this is the table of TeleCMI's fields, changed whenever TeleCMI documents a new one.

use serde_json::{Number, Value};
use time::OffsetDateTime;

use crate::pipeline::warning::{Warning, WarningCode};

/// How a documented field is typed in the normalised view.
#[derive(Clone, Copy)]
pub(super) enum Rule {
    /// Identifiers, phone numbers and names: text, so `0044...` never loses its zero.
    Text,
    Integer,
    /// Epoch seconds or milliseconds, or an RFC 3339 string: see [`event_time`].
    Time,
    Bool,
    /// A string that holds JSON text (`custom`, `extra_params`): parsed when it is an object.
    JsonText,
}

pub(super) fn rule_for(key: &str) -> Option<Rule> {
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
pub(super) const ALIASES: [(&str, &str); 2] = [("appid", "app_id"), ("cmiuid", "cmiuuid")];

/// The documented key an alias stands for; any other key is its own.
pub(super) fn canonical_key(key: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == key)
        .map_or(key, |(_, canonical)| canonical)
}

/// How [`coerce`] answers: most values already have their type and move through untouched.
enum Coerced {
    AsSent,
    Into(Value),
    Unexpected,
}

/// The value in its rule's type, or the value as sent when it cannot take it.
pub(super) fn coerce(value: Value, rule: Rule) -> Result<Value, Value> {
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
pub(super) fn event_time(
    time: Option<&Value>,
    warnings: &mut Vec<Warning>,
) -> Option<OffsetDateTime> {
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
