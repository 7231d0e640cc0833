//! Optional protection of phone numbers before anything is published: each matching field
//! is replaced, in the fields and in the kept original alike, by a keyed hash (HMAC-SHA256, so
//! pipelines can still join on a number without holding it) or by a fixed marker.
//!
//! What is matched (README, Privacy):
//! - a field whose name is in `privacy.phone_fields`, compared without case, `_` or `-`
//!   (`From`, `caller_id` and `callerId` all match `callerid`), at any depth of the payload;
//! - an entry with dots (`custom.lead.mobile`) names one path from the top instead;
//! - inside the fields that hold JSON text (`custom`, `extra_params`), whose keys the customer
//!   chooses, also every value that looks like a phone number (7 to 15 digits, with `+`,
//!   spaces, dashes, dots or brackets), and in such text that is not JSON, every such run.
//!
//! Numbers anywhere else under other names are not found: name them.
//!
//! With it on, the original is no longer the request byte for byte: a JSON original that had
//! anything to protect is re-serialised with those values replaced (key order and number
//! literals kept), the exact texts (`raw`, a POST's `query`) are withheld, and the original
//! names the mode that rewrote it (`data.original.privacy`).

use std::collections::BTreeSet;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::Sha256;

use super::decode::{Decoded, OriginalPayload};
use super::normalise::holds_json_text;
use super::route::{OutboundRecord, REQUEST_QUERY_HEADER};
use crate::config::{PrivacyMode, PrivacySettings, SecretValue};

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";
/// Prefix of a hashed value, naming the scheme so that a key or scheme change is visible.
pub const HASH_PREFIX: &str = "hmac-sha256:";
/// Digits in a phone number: E.164 allows 15; 7 keeps years, amounts and ids short of it out.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 7..=15;

#[derive(Debug, Clone)]
pub struct Privacy {
    /// Field names matched at any depth, in [`comparable`] form.
    names: BTreeSet<String>,
    /// Dotted entries: paths from the top of the payload, each segment in [`comparable`] form.
    paths: Vec<Vec<String>>,
    protection: Protection,
}

#[derive(Debug, Clone)]
enum Protection {
    Redact,
    Hash(SecretValue),
}

/// A field name as matched: lower case, without `_` and `-`.
fn comparable(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

impl Privacy {
    /// `None` when off. Settings are validated at start-up: `hmac` mode has a key.
    pub fn new(settings: &PrivacySettings) -> Option<Self> {
        let protection = match settings.mode {
            PrivacyMode::Off => return None,
            PrivacyMode::Redact => Protection::Redact,
            PrivacyMode::Hmac => Protection::Hash(settings.hmac_key.clone()?),
        };
        let (paths, names): (Vec<&String>, Vec<&String>) = settings
            .phone_fields
            .iter()
            .partition(|field| field.contains('.'));
        Some(Self {
            names: names.into_iter().map(|name| comparable(name)).collect(),
            paths: paths
                .into_iter()
                .map(|path| path.split('.').map(comparable).collect())
                .collect(),
            protection,
        })
    }

    /// The original's exact texts (`raw`, a POST's `query`) cannot be protected value by value,
    /// so they are withheld; the original then says which privacy mode rewrote it.
    pub fn apply(&self, mut decoded: Decoded) -> Decoded {
        self.protect_map(&mut decoded.fields, &mut Vec::new());
        let original = &mut decoded.original;
        let protected = match &mut original.payload {
            OriginalPayload::Fields(fields) => self.protect_map(fields, &mut Vec::new()),
            OriginalPayload::Json(payload) => match self.protect_raw(payload) {
                Some(protected) => {
                    *payload = protected;
                    true
                }
                None => false,
            },
        };
        let withheld = original.raw.take().is_some() | original.query.take().is_some();
        if protected || withheld {
            original.privacy = Some(self.mode());
        }
        decoded
    }

    /// The mode's name as configured (`privacy.mode`).
    fn mode(&self) -> &'static str {
        match self.protection {
            Protection::Redact => "redact",
            Protection::Hash(_) => "hmac",
        }
    }

    /// The payload re-serialised, only when something in it was protected, so an original
    /// without phone numbers stays byte for byte.
    fn protect_raw(&self, payload: &RawValue) -> Option<Box<RawValue>> {
        let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(payload.get()) else {
            return None;
        };
        if !self.protect_map(&mut object, &mut Vec::new()) {
            return None;
        }
        serde_json::value::to_raw_value(&object).ok()
    }

    /// Protects the matching fields of `map`, found under `path`; true if anything changed.
    fn protect_map(&self, map: &mut Map<String, Value>, path: &mut Vec<String>) -> bool {
        let mut changed = false;
        for (key, value) in map.iter_mut() {
            let name = comparable(key);
            path.push(name);
            changed |= if self.matches(path) {
                self.protect_value(value)
            } else if holds_json_text(&key.to_ascii_lowercase()) {
                self.protect_json_text(value, path)
            } else {
                self.protect_children(value, path)
            };
            path.pop();
        }
        changed
    }

    fn matches(&self, path: &[String]) -> bool {
        path.last().is_some_and(|name| self.names.contains(name))
            || self.paths.iter().any(|wanted| wanted == path)
    }

    /// Looks for matching names below a field that does not match itself.
    fn protect_children(&self, value: &mut Value, path: &mut Vec<String>) -> bool {
        match value {
            Value::Object(map) => self.protect_map(map, path),
            Value::Array(values) => values.iter_mut().fold(false, |changed, value| {
                self.protect_children(value, path) | changed
            }),
            _ => false,
        }
    }

    /// Every scalar in `value` (a matched field), however deep.
    fn protect_value(&self, value: &mut Value) -> bool {
        match value {
            Value::Array(values) => values
                .iter_mut()
                .fold(false, |changed, value| self.protect_value(value) | changed),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |changed, value| self.protect_value(value) | changed),
            Value::Null => false,
            Value::String(text) if text.is_empty() => false,
            other => {
                *other = Value::String(self.protect_text(&scalar_text(other)));
                true
            }
        }
    }

    /// A field of JSON text whose keys the customer chooses: named fields and anything that
    /// looks like a phone number are protected inside it; text that is not JSON has its
    /// phone-like runs replaced. Already parsed (a form's fields after normalisation never
    /// are, but a JSON body may send an object), it is searched the same way.
    fn protect_json_text(&self, value: &mut Value, path: &mut Vec<String>) -> bool {
        if let Value::String(text) = value
            && let Ok(mut parsed @ (Value::Object(_) | Value::Array(_))) =
                serde_json::from_str::<Value>(text)
        {
            let changed = self.protect_free_form(&mut parsed, path);
            if changed {
                *text = parsed.to_string();
            }
            return changed;
        }
        self.protect_free_form(value, path)
    }

    fn protect_free_form(&self, value: &mut Value, path: &mut Vec<String>) -> bool {
        match value {
            Value::Object(map) => {
                let mut changed = false;
                for (key, value) in map.iter_mut() {
                    path.push(comparable(key));
                    changed |= if self.matches(path) {
                        self.protect_value(value)
                    } else {
                        self.protect_free_form(value, path)
                    };
                    path.pop();
                }
                changed
            }
            Value::Array(values) => values.iter_mut().fold(false, |changed, value| {
                self.protect_free_form(value, path) | changed
            }),
            Value::String(text) => match self.protect_runs(text) {
                Some(protected) => {
                    *text = protected;
                    true
                }
                None => false,
            },
            Value::Number(number) if looks_like_phone_number(&number.to_string()) => {
                self.protect_value(value)
            }
            _ => false,
        }
    }

    /// `text` with each phone-like run replaced; `None` when it has none.
    fn protect_runs(&self, text: &str) -> Option<String> {
        let mut protected = String::with_capacity(text.len());
        let mut rest = text;
        let mut changed = false;
        while let Some(start) = rest.find(|c: char| c.is_ascii_digit() || matches!(c, '+' | '(')) {
            let run_length = rest[start..]
                .find(|c: char| !is_phone_char(c))
                .unwrap_or(rest.len() - start);
            let run =
                rest[start..start + run_length].trim_end_matches(|c: char| !c.is_ascii_digit());
            let end = start + run.len().max(1);
            protected.push_str(&rest[..start]);
            if looks_like_phone_number(run) {
                protected.push_str(&self.protect_text(run));
                changed = true;
            } else {
                protected.push_str(&rest[start..end]);
            }
            rest = &rest[end..];
        }
        protected.push_str(rest);
        changed.then_some(protected)
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

fn is_phone_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')')
}

/// 7 to 15 digits, written only with what phone numbers are written with.
fn looks_like_phone_number(text: &str) -> bool {
    let text = text.trim();
    let digits = text.chars().filter(char::is_ascii_digit).count();
    PHONE_DIGITS.contains(&digits) && text.chars().all(is_phone_char)
}

impl Privacy {
    /// A dead letter's body could not be read as fields, so nothing in it can be protected
    /// field by field: with privacy on it is dropped (and the query with it), and a header
    /// says so; the reason, time and request id remain.
    pub fn scrub_dead_letter(&self, record: &mut OutboundRecord) {
        record.payload = bytes::Bytes::new();
        record
            .headers
            .retain(|(name, _)| *name != REQUEST_QUERY_HEADER);
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

    /// Everything the original keeps: payload, raw and query.
    fn original_text(decoded: &Decoded) -> String {
        let original = &decoded.original;
        let payload = match &original.payload {
            OriginalPayload::Json(payload) => payload.get().to_owned(),
            OriginalPayload::Fields(fields) => Value::Object(fields.clone()).to_string(),
        };
        let raw = original.raw.as_deref().unwrap_or_default();
        let query = original.query.as_deref().unwrap_or_default();
        format!("{payload} {raw} {query}")
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
        assert_eq!(form.original.raw, None, "the form's text withheld");
        assert_eq!(form.original.privacy, Some("hmac"));

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
        assert_eq!(redacted.original.raw, None, "raw copy dropped");
        assert_eq!(
            redacted.original.privacy,
            Some("redact"),
            "and the original marked"
        );
        let original = original_text(&redacted);
        assert!(!original.contains("4471000"), "{original}");
        assert!(Privacy::new(&settings(PrivacyMode::Off)).is_none());
    }

    #[test]
    fn names_match_without_case_or_separators_at_any_depth_and_paths_from_the_top() {
        let privacy = Privacy::new(&PrivacySettings {
            phone_fields: vec!["callerid".to_owned(), "lead.alt".to_owned()],
            ..settings(PrivacyMode::Redact)
        })
        .expect("on");
        let decoded = privacy.apply(decoded(
            br#"{"Caller_ID":"1","calls":[{"CALLER-id":"2"}],"lead":{"alt":"3"},"x":{"lead":{"alt":"4"}},"alt":"5"}"#,
            "application/json",
        ));
        let fields = Value::Object(decoded.fields);
        assert_eq!(fields["Caller_ID"], REDACTED);
        assert_eq!(fields["calls"][0]["CALLER-id"], REDACTED);
        assert_eq!(fields["lead"]["alt"], REDACTED, "a path from the top");
        assert_eq!(
            fields["x"]["lead"]["alt"], "4",
            "the same path lower down is another field"
        );
        assert_eq!(fields["alt"], "5");
    }

    #[test]
    fn custom_parameters_lose_every_phone_like_value_and_run_but_nothing_else() {
        let privacy = Privacy::new(&settings(PrivacyMode::Redact)).expect("on");
        let decoded = privacy.apply(decoded(
            br#"{"custom":"{\"lead\":\"+91 98765-43210\",\"n\":919876543210,\"crm\":\"true\",\"id\":\"12345\"}","extra_params":"ring (044) 7100 0000 at 9"}"#,
            "application/json",
        ));
        let custom: Value =
            serde_json::from_str(decoded.fields["custom"].as_str().expect("text")).expect("JSON");
        assert_eq!(custom["lead"], REDACTED);
        assert_eq!(custom["n"], REDACTED);
        assert_eq!(custom["crm"], "true");
        assert_eq!(custom["id"], "12345", "five digits are no phone number");
        assert_eq!(
            decoded.fields["extra_params"],
            format!("ring {REDACTED} at 9")
        );
    }

    #[test]
    fn an_original_with_nothing_to_protect_stays_byte_for_byte() {
        let privacy = Privacy::new(&settings(PrivacyMode::Redact)).expect("on");
        let body = br#"{"status" : "answered",  "custom":"{\"crm\": \"true\"}", "n": 1.50}"#;
        let decoded = privacy.apply(decoded(body, "application/json"));
        assert_eq!(original_text(&decoded).trim_end().as_bytes(), body);
        assert!(decoded.original.is_exact());
        assert_eq!(
            decoded.original.privacy, None,
            "nothing rewritten, nothing marked"
        );
    }
}
