//! The bridge's own vocabulary, named by settings and used by the pipeline alike: a Kafka
//! topic name and a TeleCMI product line. Here, so that the pipeline does not import the
//! configuration for them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The TeleCMI product line a webhook came from: the envelope's `telecmiproduct`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Product {
    #[default]
    Chub,
    ChubIndia,
}

impl Product {
    /// The envelope's `telecmiproduct` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chub => "chub",
            Self::ChubIndia => "chub_india",
        }
    }

    /// The product a webhook path segment names (`chub`, `chub-india`), if any.
    pub fn from_path_segment(segment: &str) -> Option<Self> {
        match segment {
            "chub" => Some(Self::Chub),
            "chub-india" => Some(Self::ChubIndia),
            _ => None,
        }
    }
}

/// A Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// For names known to be valid: the built-in defaults.
    pub(crate) fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TopicName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let legal = name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if name.is_empty() || name.len() > 249 || !legal || name == "." || name == ".." {
            return Err(format!(
                "{name:?} is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"
            ));
        }
        Ok(Self(Arc::from(name)))
    }
}

impl From<TopicName> for String {
    fn from(topic: TopicName) -> Self {
        topic.0.to_string()
    }
}

impl std::fmt::Display for TopicName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}
