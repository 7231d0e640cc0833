//! A JSON body: kept verbatim when it can be, rebuilt when it repeats a key or has
//! leading-zero number literals. Separate from form decoding because JSON alone needs a parser
//! of its own for what TeleCMI sends that strict JSON refuses.

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Decoded, Encoding, Original, OriginalPayload};
use crate::pipeline::RejectReason;
use crate::pipeline::warning::{Warning, WarningCode};

/// The warning of a JSON body that repeats a key in an object.
pub const DUPLICATE_KEYS: &str = "the body repeats a key in an object; each is kept once, at its last value, and original.raw holds the body as sent";

pub(super) fn decode_json(body: &[u8]) -> Result<Decoded, RejectReason> {
    let text = std::str::from_utf8(body).map_err(|_| RejectReason::InvalidUtf8)?;
    let (payload, raw) = match serde_json::from_str::<Box<RawValue>>(text) {
        Ok(payload) => (payload, None),
        Err(strict_error) => {
            let repaired = quote_leading_zero_numbers(text)
                .ok_or_else(|| RejectReason::MalformedJson(strict_error.to_string()))?;
            let payload = serde_json::from_str::<Box<RawValue>>(&repaired)
                .map_err(|_| RejectReason::MalformedJson(strict_error.to_string()))?;
            (payload, Some(text.to_owned()))
        }
    };
    let fields = match serde_json::from_str::<Value>(payload.get()) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => return Err(RejectReason::NotAnObject(json_type_name(&other))),
        Err(error) => return Err(RejectReason::MalformedJson(error.to_string())),
    };
    let mut warnings = Vec::new();
    let has_duplicate_keys = serde_json::from_str::<DuplicateKeys>(payload.get())
        .is_ok_and(|DuplicateKeys(found)| found);
    let (payload, raw) = if has_duplicate_keys {
        warnings.push(Warning::new(WarningCode::DuplicateKeys, DUPLICATE_KEYS));
        let rebuilt = serde_json::value::to_raw_value(&fields)
            .map_err(|error| RejectReason::MalformedJson(error.to_string()))?;
        (rebuilt, Some(raw.unwrap_or_else(|| text.to_owned())))
    } else {
        (payload, raw)
    };
    Ok(Decoded {
        encoding: Encoding::Json,
        fields,
        original: Original {
            payload: OriginalPayload::Json(payload),
            raw,
            query: None,
            privacy: None,
            origin: None,
        },
        warnings,
    })
}

/// Whether a JSON text repeats a key in any of its objects, at any depth.
struct DuplicateKeys(bool);

impl<'de> serde::Deserialize<'de> for DuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DuplicateKeysVisitor)
    }
}

struct DuplicateKeysVisitor;

impl<'de> serde::de::Visitor<'de> for DuplicateKeysVisitor {
    type Value = DuplicateKeys;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_i64<E>(self, _: i64) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_u64<E>(self, _: u64) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_f64<E>(self, _: f64) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_str<E>(self, _: &str) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_unit<E>(self) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<DuplicateKeys, A::Error> {
        let mut found = false;
        while let Some(DuplicateKeys(inner)) = seq.next_element()? {
            found |= inner;
        }
        Ok(DuplicateKeys(found))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<DuplicateKeys, A::Error> {
        let mut keys = std::collections::HashSet::new();
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            found |= !keys.insert(key);
            let DuplicateKeys(inner) = map.next_value()?;
            found |= inner;
        }
        Ok(DuplicateKeys(found))
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Quotes number literals written with leading zeros (`04471000000` becomes `"04471000000"`),
/// the only departure from strict JSON seen in TeleCMI's documented payloads. Returns `None`
/// when there is nothing to repair, so the caller reports the original parse error.
fn quote_leading_zero_numbers(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut repaired = String::with_capacity(text.len() + 8);
    let mut copied_up_to = 0;
    let mut index = 0;
    let mut in_string = false;
    let mut changed = false;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match byte {
                b'\\' => index += 1,
                b'"' => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            index += 1;
            continue;
        }
        if byte == b'-' || byte.is_ascii_digit() {
            let start = index;
            let mut end = index + 1;
            while end < bytes.len()
                && matches!(bytes[end], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                end += 1;
            }
            let literal = &text[start..end];
            let digits = literal.strip_prefix('-').unwrap_or(literal);
            if digits.len() > 1
                && digits.starts_with('0')
                && digits.bytes().all(|digit| digit.is_ascii_digit())
            {
                repaired.push_str(&text[copied_up_to..start]);
                repaired.push('"');
                repaired.push_str(literal);
                repaired.push('"');
                copied_up_to = end;
                changed = true;
            }
            index = end;
            continue;
        }
        index += 1;
    }
    changed.then(|| {
        repaired.push_str(&text[copied_up_to..]);
        repaired
    })
}
