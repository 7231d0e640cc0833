//! Protection of phone numbers before publishing.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Problems, SecretValue};

/// Optional protection of phone numbers before publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySettings {
    pub mode: PrivacyMode,
    /// The HMAC-SHA256 key of `hmac` mode (16+ characters).
    pub hmac_key: Option<SecretValue>,
    /// Payload fields holding phone numbers, matched at any depth without regard to case, `_`
    /// or `-`; an entry with dots (`custom.lead.mobile`) is one path from the top.
    pub phone_fields: Vec<String>,
    /// A file holding `hmac_key`, read once at start-up; trailing newlines are ignored.
    pub hmac_key_file: Option<PathBuf>,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            mode: PrivacyMode::Off,
            hmac_key: None,
            phone_fields: ["from", "to", "callerid", "virtual_number", "did"]
                .map(str::to_owned)
                .to_vec(),
            hmac_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyMode {
    Off,
    /// Replace each number with a fixed marker.
    Redact,
    /// Replace each number with a keyed hash of its digits.
    Hmac,
}

impl PrivacySettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.mode == PrivacyMode::Hmac
            && self
                .hmac_key
                .as_ref()
                .is_none_or(|key| key.expose().len() < 16)
        {
            problems.add(
                "privacy.hmac_key",
                "hmac mode needs a key of at least 16 characters".to_owned(),
            );
        }
        if let Some(field) = self
            .phone_fields
            .iter()
            .find(|field| field.split('.').any(str::is_empty))
        {
            problems.add(
                "privacy.phone_fields",
                format!(
                    "{field:?} has an empty name; write a field name or a \
                 dotted path such as \"custom.lead.mobile\""
                ),
            );
        }
    }
}
