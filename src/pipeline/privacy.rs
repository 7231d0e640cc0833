//! Optional protection of phone numbers before anything is published: each configured field
//! is replaced, in the fields and in the kept original alike, by a keyed hash (HMAC-SHA256, so
//! pipelines can still join on a number without holding it) or by a fixed marker.
//!
//! With it on, the original is no longer the request byte for byte: a JSON original is
//! re-serialised with those values replaced (key order and number literals kept, a repeated
//! key kept once, at its last value), and the raw copy of a leading-zero body is dropped.

use std::collections::BTreeSet;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::Sha256;

use super::decode::{Decoded, Original};
use super::route::OutboundRecord;
use crate::config::{PrivacyMode, PrivacySettings, SecretValue};

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";
/// Prefix of a hashed value, naming the scheme so that a key or scheme change is visible.
pub const HASH_PREFIX: &str = "hmac-sha256:";

#[derive(Debug, Clone)]
pub struct Privacy {
    fields: BTreeSet<String>,
    protection: Protection,
}

#[derive(Debug, Clone)]
enum Protection {
    Redact,
    Hash(SecretValue),
}

impl Privacy {
    /// `None` when off. Settings are validated at start-up: `hmac` mode has a key.
    pub fn new(settings: &PrivacySettings) -> Option<Self> {
        let protection = match settings.mode {
            PrivacyMode::Off => return None,
            PrivacyMode::Redact => Protection::Redact,
            PrivacyMode::Hmac => Protection::Hash(settings.hmac_key.clone()?),
        };
        Some(Self {
            fields: settings.phone_fields.iter().cloned().collect(),
            protection,
        })
    }

    pub fn apply(&self, mut decoded: Decoded) -> Decoded {
        self.protect_map(&mut decoded.fields);
        decoded.original = match decoded.original {
            Original::Fields(mut fields) => {
                self.protect_map(&mut fields);
                Original::Fields(fields)
            }
            Original::Json(payload) | Original::LenientJson { payload, .. } => {
                Original::Json(self.protect_raw(payload))
            }
        };
        decoded
    }

    fn protect_raw(&self, payload: Box<RawValue>) -> Box<RawValue> {
        let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(payload.get()) else {
            return payload;
        };
        if !object.keys().any(|key| self.fields.contains(key)) {
            return payload;
        }
        self.protect_map(&mut object);
        serde_json::to_string(&Value::Object(object))
            .ok()
            .and_then(|text| RawValue::from_string(text).ok())
            .unwrap_or(payload)
    }

    fn protect_map(&self, map: &mut Map<String, Value>) {
        for (key, value) in map.iter_mut() {
            if self.fields.contains(key) {
                self.protect_value(value);
            }
        }
    }

    fn protect_value(&self, value: &mut Value) {
        match value {
            Value::Array(values) => values
                .iter_mut()
                .for_each(|value| self.protect_value(value)),
            Value::Null => {}
            Value::String(text) if text.is_empty() => {}
            other => *other = Value::String(self.protect_text(&scalar_text(other))),
        }
    }

    fn protect_text(&self, text: &str) -> String {
        match &self.protection {
            Protection::Redact => REDACTED.to_owned(),
            Protection::Hash(key) => {
                // Digits only, so that "+91 98765-43210", "919876543210" and the number
                // 919876543210 hash alike; text without digits is hashed as it is.
                let digits: String = text.chars().filter(char::is_ascii_digit).collect();
                let canonical = if digits.is_empty() { text } else { &digits };
                let tag = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
                    .map(|mac| {
                        mac.chain_update(canonical.as_bytes())
                            .finalize()
                            .into_bytes()
                    })
                    .map(hex::encode)
                    .unwrap_or_default();
                format!("{HASH_PREFIX}{tag}")
            }
        }
    }
}

impl Privacy {
    /// A dead letter's body could not be read as fields, so nothing in it can be protected
    /// field by field: with privacy on it is dropped (and the query with it), and a header
    /// says so; the reason, time and request id remain.
    pub fn scrub_dead_letter(&self, record: &mut OutboundRecord) {
        record.payload = bytes::Bytes::new();
        record
            .headers
            .retain(|(name, _)| *name != "telecmi-request-query");
        record
            .headers
            .push(("telecmi-deadletter-body", "omitted: privacy".to_owned()));
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{RawRequest, decode};

    fn settings(mode: PrivacyMode) -> PrivacySettings {
        PrivacySettings {
            mode,
            hmac_key: Some(SecretValue::from("pipeline-join-key-0123456789")),
            ..PrivacySettings::default()
        }
    }

    fn decoded(body: &[u8], content_type: &str) -> Decoded {
        decode(&RawRequest {
            is_get: false,
            content_type: Some(content_type),
            content_encoding: None,
            query: None,
            body,
            reserved_query_param: None,
        })
        .expect("decodes")
    }

    fn original_text(decoded: &Decoded) -> String {
        match &decoded.original {
            Original::Json(payload) => payload.get().to_owned(),
            Original::LenientJson { payload, raw } => format!("{} {raw}", payload.get()),
            Original::Fields(fields) => Value::Object(fields.clone()).to_string(),
        }
    }

    #[test]
    fn hashing_is_keyed_stable_across_formats_and_leaves_other_fields_alone() {
        let privacy = Privacy::new(&settings(PrivacyMode::Hmac)).expect("on");
        let json = privacy.apply(decoded(
            br#"{"from":919876543210,"to":"+91 98765 43210","status":"answered","user":"204_1"}"#,
            "application/json",
        ));
        let from = json.fields["from"].as_str().expect("text").to_owned();
        assert!(from.starts_with(HASH_PREFIX), "{from}");
        assert_eq!(
            json.fields["to"], from,
            "one number, one hash, whatever its format"
        );
        assert_eq!(json.fields["status"], "answered");
        assert_eq!(json.fields["user"], "204_1");
        let original = original_text(&json);
        assert!(!original.contains("9876543210"), "{original}");
        assert!(
            original.starts_with(r#"{"from":"hmac-sha256:"#),
            "key order kept: {original}"
        );

        let form = privacy.apply(decoded(
            b"from=919876543210&to=1&to=919876543210",
            "application/x-www-form-urlencoded",
        ));
        assert_eq!(form.fields["from"], from, "form and JSON hash alike");
        assert!(!original_text(&form).contains("9876543210"));

        let other_key = Privacy::new(&PrivacySettings {
            hmac_key: Some(SecretValue::from("another-key-0123456789abc")),
            ..settings(PrivacyMode::Hmac)
        })
        .expect("on");
        let rehashed = other_key.apply(decoded(br#"{"from":919876543210}"#, "application/json"));
        assert_ne!(rehashed.fields["from"], from, "the hash depends on the key");
    }

    #[test]
    fn redaction_also_removes_the_raw_copy_of_a_leading_zero_body() {
        let privacy = Privacy::new(&settings(PrivacyMode::Redact)).expect("on");
        let redacted = privacy.apply(decoded(
            br#"{"callerid": 04471000000, "to": 4471000001, "status": "started"}"#,
            "application/json",
        ));
        assert_eq!(redacted.fields["callerid"], REDACTED);
        assert_eq!(redacted.fields["to"], REDACTED);
        assert!(
            matches!(redacted.original, Original::Json(_)),
            "raw copy dropped"
        );
        let original = original_text(&redacted);
        assert!(!original.contains("4471000"), "{original}");
        assert!(Privacy::new(&settings(PrivacyMode::Off)).is_none());
    }
}
