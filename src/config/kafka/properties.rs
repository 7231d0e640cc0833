//! `[kafka.properties]`: further librdkafka properties as the user writes them, with
//! `message.max.bytes` read as a number once, at load: the body limit is checked against it
//! and the ingest refuses records larger than it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer, de::Error};

use crate::config::SecretValue;

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Values are shown by `check-config`, except those of keys that can hold a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaProperties {
    entries: BTreeMap<String, SecretValue>,
    message_max_bytes: usize,
}

impl KafkaProperties {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretValue)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value))
    }

    /// The producer's `message.max.bytes`: what the properties set, or librdkafka's default.
    pub fn message_max_bytes(&self) -> usize {
        self.message_max_bytes
    }
}

impl Default for KafkaProperties {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            message_max_bytes: DEFAULT_MESSAGE_MAX_BYTES,
        }
    }
}

impl TryFrom<BTreeMap<String, SecretValue>> for KafkaProperties {
    type Error = &'static str;

    fn try_from(entries: BTreeMap<String, SecretValue>) -> Result<Self, Self::Error> {
        let message_max_bytes = match entries.get("message.max.bytes") {
            None => DEFAULT_MESSAGE_MAX_BYTES,
            Some(value) => value
                .expose()
                .trim()
                .parse()
                .map_err(|_| "\"message.max.bytes\" is not a number of bytes")?,
        };
        Ok(Self {
            entries,
            message_max_bytes,
        })
    }
}

impl<'de> Deserialize<'de> for KafkaProperties {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<String, SecretValue>::deserialize(deserializer)?;
        Self::try_from(entries).map_err(D::Error::custom)
    }
}

impl Serialize for KafkaProperties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter().map(|(key, value)| {
            let shown = if holds_secret(key) {
                "[redacted]"
            } else {
                value.expose()
            };
            (key, shown)
        }))
    }
}

/// Whether a librdkafka property's value may be a secret, and so is never shown.
fn holds_secret(key: &str) -> bool {
    [
        "password",
        "secret",
        "key",
        "token",
        "sasl.jaas",
        "oauthbearer",
    ]
    .iter()
    .any(|marker| key.contains(marker))
}
