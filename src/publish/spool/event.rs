//! How spooled and quarantined events are encoded in the spool file.

use serde::{Deserialize, Serialize};

use crate::pipeline::OutboundRecord;

/// The encoding's version, the first byte of every stored event.
pub(super) const FORMAT_VERSION: u8 = 1;
/// The same for every quarantined event.
pub(super) const QUARANTINE_FORMAT_VERSION: u8 = 1;

/// One accepted event as stored: its records exactly as routed when it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledEvent {
    pub accepted_at_ms: i64,
    pub records: Vec<SpooledRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledRecord {
    pub topic: String,
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl SpooledEvent {
    pub(super) fn from_records(records: &[OutboundRecord], accepted_at_ms: i64) -> Self {
        let records = records
            .iter()
            .map(|record| SpooledRecord {
                topic: record.topic.to_string(),
                key: record.key.clone(),
                headers: record
                    .headers
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), value.clone()))
                    .collect(),
                payload: record.payload.to_vec(),
            })
            .collect();
        Self {
            accepted_at_ms,
            records,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        encode_versioned(FORMAT_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        decode_versioned(FORMAT_VERSION, bytes)
    }
}

/// An event Kafka refused for good, as kept in the quarantine: the spooled event unchanged
/// (the encoding of [`SpooledEvent`]), with when, after how many attempts and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantinedEvent {
    pub quarantined_at_ms: i64,
    pub attempts: u32,
    pub error: String,
    pub event: Vec<u8>,
}

impl QuarantinedEvent {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        encode_versioned(QUARANTINE_FORMAT_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        decode_versioned(QUARANTINE_FORMAT_VERSION, bytes)
    }
}

/// `postcard` after a version byte, so that a later format is refused, not misread.
fn encode_versioned<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(value, vec![version])
}

fn decode_versioned<T: serde::de::DeserializeOwned>(
    version: u8,
    bytes: &[u8],
) -> Result<T, postcard::Error> {
    match bytes.split_first() {
        Some((&found, rest)) if found == version => postcard::from_bytes(rest),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}
