//! The de-duplication window for re-sent webhooks.

use std::num::NonZeroU64;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::forms::seconds;
use super::{Problems, require_positive};

/// The optional de-duplication window for re-sent webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupSettings {
    pub enabled: bool,
    /// How long an accepted event id is remembered.
    #[serde(with = "seconds")]
    pub window_seconds: Duration,
    /// Ids remembered at most; the least recently used go first.
    pub max_entries: NonZeroU64,
}

impl Default for DedupSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            window_seconds: Duration::from_secs(600),
            max_entries: NonZeroU64::new(100_000).expect("not zero"),
        }
    }
}

impl DedupSettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        require_positive(problems, &[("dedup.window_seconds", self.window_seconds)]);
    }
}
