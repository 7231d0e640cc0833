//! The de-duplication window for re-sent webhooks.

use serde::{Deserialize, Serialize};

use super::{Problems, require_positive};

/// The optional de-duplication window for re-sent webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupSettings {
    pub enabled: bool,
    /// How long an accepted event id is remembered.
    pub window_seconds: u64,
    /// Ids remembered at most; the least recently used go first.
    pub max_entries: u64,
}

impl Default for DedupSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            window_seconds: 600,
            max_entries: 100_000,
        }
    }
}

impl DedupSettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        require_positive(
            problems,
            &[
                ("dedup.window_seconds", self.window_seconds),
                ("dedup.max_entries", self.max_entries),
            ],
        );
    }
}
