//! Optional protection of phone numbers before anything is published: each matching field
//! is replaced, in the fields and in the kept original alike, by a keyed hash (HMAC-SHA256, so
//! pipelines can still join on a number without holding it) or by a fixed marker.
//!
//! What is matched (docs/security.md, Privacy):
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
//!
//! This file holds the settings' matching of named fields and paths and the protection itself;
//! the search of customer-chosen JSON text for phone-like values is in `free_form`.

mod free_form;
#[cfg(test)]
mod tests;

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
