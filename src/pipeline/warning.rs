//! Warnings: what decoding and normalisation had to assume or change. The code is for
//! machines and part of the contract; the message is for people and may change.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningCode {
    /// A documented field's value cannot take its documented type: it moved from
    /// `data.fields` to `data.unconverted`.
    UnconvertibleValue,
    /// An alias (`appid`, `cmiuid`) differs from its canonical key, which is kept.
    AliasConflict,
    /// `time` is neither an epoch timestamp nor an RFC 3339 time: `event_time` is null.
    UnusableTime,
    /// Characters an attribute cannot carry were removed from a value the identity reads.
    AttributeCharactersRemoved,
    /// The JSON body repeats a key: the payload holds each once, `raw` the body.
    DuplicateKeys,
    /// A JSON object arrived with a form content type, and was read as JSON.
    JsonLabelledAsForm,
    /// A CDR of leg B (or another non-A leg) without `conversation_uuid` whose conversation
    /// was not learned from an earlier event: keyed by its own `cmiuuid`/`call_id`.
    ConversationNotLearned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub code: WarningCode,
    /// The payload field concerned, if one is.
    pub field: Option<String>,
    pub message: String,
}

impl Warning {
    pub fn new(code: WarningCode, message: impl Into<String>) -> Self {
        Self {
            code,
            field: None,
            message: message.into(),
        }
    }

    pub fn on_field(code: WarningCode, field: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}
