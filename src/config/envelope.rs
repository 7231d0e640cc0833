//! The CloudEvents envelope: its `source`, `dataschema`, content mode and what it keeps of the
//! payload as sent.

use serde::{Deserialize, Serialize};

use super::Problems;
use crate::domain::Product;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvelopeSettings {
    /// CloudEvents `source` of every envelope.
    pub source: String,
    /// Where consumers fetch the schemas: `dataschema` is this followed by the file name of
    /// the schema of `data` (`data.v2.schema.json`).
    pub dataschema_base: String,
    /// How much of the payload as sent `data.original` keeps next to `data.fields`.
    pub original: OriginalMode,
    /// The CloudEvents Kafka binding's content mode.
    pub mode: EnvelopeMode,
    /// The product line of webhooks on `/webhooks/telecmi` (and `/webhooks/telecmi/{token}`);
    /// `/webhooks/telecmi/{product}` names it explicitly.
    pub product: Product,
}

/// How a CloudEvent is laid out in a Kafka record (CloudEvents Kafka protocol binding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeMode {
    /// The value is the whole event as JSON (`application/cloudevents+json`).
    #[default]
    Structured,
    /// The value is `data` alone (`application/json`); every attribute is a `ce_` header.
    Binary,
}

/// What `data.original` keeps: the record size against what a consumer can rebuild.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginalMode {
    /// Lossless: the payload as an object, and its exact text whenever that object is not it.
    #[default]
    Full,
    /// Lossless and smaller: only the exact form of what was sent, the payload object when it
    /// is the body verbatim, else the text (`raw`) alone.
    Exact,
    /// No `data.original`: `data.fields` only, which cannot rebuild the bytes sent.
    None,
}

impl Default for EnvelopeSettings {
    fn default() -> Self {
        Self {
            source: "urn:telecmi-bridge".to_owned(),
            dataschema_base: "http://localhost:9090/schemas/".to_owned(),
            original: OriginalMode::Full,
            mode: EnvelopeMode::Structured,
            product: Product::Chub,
        }
    }
}

impl EnvelopeSettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        let source = &self.source;
        if source.is_empty() || source.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.add(
                "envelope.source",
                format!("{source:?} is not a URI reference (CloudEvents `source`)"),
            );
        }
        let base = &self.dataschema_base;
        let has_scheme = base.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if !has_scheme || base.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.add(
                "envelope.dataschema_base",
                format!(
                    "{base:?} is not an absolute URI (CloudEvents \
                 `dataschema`), e.g. \"https://schemas.example.com/telecmi-bridge/\""
                ),
            );
        }
    }
}

#[cfg(test)]
// `figment::Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use crate::config::test_sources as sources;
    use crate::config::*;

    #[test]
    fn the_dataschema_base_must_be_an_absolute_uri() {
        for refused in ["schemas/", "http://host/a b/", "", "1http://host/"] {
            Jail::expect_with(|jail| {
                jail.set_env("TELECMI_BRIDGE_ENVELOPE__DATASCHEMA_BASE", refused);
                let error = Settings::load(&sources()).unwrap_err().to_string();
                assert!(
                    error.contains("envelope.dataschema_base"),
                    "{refused}: {error}"
                );
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env(
                "TELECMI_BRIDGE_ENVELOPE__DATASCHEMA_BASE",
                "https://schemas.example.com/telecmi-bridge/",
            );
            let settings = Settings::load(&sources()).expect("valid");
            assert_eq!(
                settings.envelope.dataschema_base,
                "https://schemas.example.com/telecmi-bridge/"
            );
            Ok(())
        });
    }
}
