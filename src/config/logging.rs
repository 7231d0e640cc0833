//! Log format and level.

use serde::{Deserialize, Serialize};

use super::Problems;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSettings {
    pub format: LogFormat,
    /// A `tracing` filter directive; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl LoggingSettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            problems.add(
                "logging.level",
                format!("{:?} is not a tracing filter directive", self.level),
            );
        }
    }
}
