//! What a listing holds: the endpoints a product line lists calls by and the records they
//! answer, typed from TeleCMI's JSON. Separate from the client because matching, recovery and
//! the report use these types without any HTTP.

use serde_json::{Map, Value};

use crate::reconcile::settings::Product;

/// What each endpoint lists; direction and status are not in the records, only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Answered,
    Missed,
    OutAnswered,
    OutMissed,
}

impl Endpoint {
    pub const ALL: [Self; 4] = [
        Self::Answered,
        Self::Missed,
        Self::OutAnswered,
        Self::OutMissed,
    ];

    pub fn path(self, product: Product) -> &'static str {
        match (product, self) {
            (Product::Chub, Self::Answered) => "/v2/answered",
            (Product::Chub, Self::Missed) => "/v2/missed",
            (Product::Chub, Self::OutAnswered) => "/v2/out_answered",
            (Product::Chub, Self::OutMissed) => "/v2/out_missed",
            (Product::ChubIndia, Self::Answered) => "/v1/answered",
            (Product::ChubIndia, Self::Missed) => "/v1/missed",
            (Product::ChubIndia, Self::OutAnswered) => "/v1/outanswered",
            (Product::ChubIndia, Self::OutMissed) => "/v1/outmissed",
        }
    }

    /// As the webhook CDRs spell it in `direction`.
    pub fn direction(self) -> &'static str {
        match self {
            Self::Answered | Self::Missed => "inbound",
            Self::OutAnswered | Self::OutMissed => "outbound",
        }
    }

    /// As the webhook CDRs spell it in `status`.
    pub fn status(self) -> &'static str {
        match self {
            Self::Answered | Self::OutAnswered => "answered",
            Self::Missed | Self::OutMissed => "missed",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Missed => "missed",
            Self::OutAnswered => "out_answered",
            Self::OutMissed => "out_missed",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A time window in epoch milliseconds, as TeleCMI's `start_date` and `end_date` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One pulled call record, typed; `fields` keeps it as TeleCMI sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub endpoint: Endpoint,
    /// CHUB's call id `cmiuid`, or CHUB India's database `_id`.
    pub id: String,
    pub time_ms: i64,
    /// Numbers as text whether TeleCMI sent a number or a string, so no zero is lost.
    pub from: Option<String>,
    pub to: Option<String>,
    pub agent: Option<String>,
    pub fields: Map<String, Value>,
}

/// A record without the id or time that matching needs: counted and reported, not used.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedRecord {
    pub endpoint: Endpoint,
    pub reason: String,
    pub fields: Map<String, Value>,
}

/// An endpoint's records in a window, each once.
#[derive(Debug, Clone)]
pub struct Listing {
    pub endpoint: Endpoint,
    /// TeleCMI's own count (`count`/`total`) in the last answer, when it gave one.
    pub reported_count: Option<u64>,
    pub records: Vec<CallRecord>,
    pub skipped: Vec<SkippedRecord>,
    /// HTTP requests made, retries included.
    pub requests: u32,
}

impl CallRecord {
    pub(super) fn parse(
        product: Product,
        endpoint: Endpoint,
        element: Value,
    ) -> Result<Self, SkippedRecord> {
        let Value::Object(fields) = element else {
            return Err(SkippedRecord {
                endpoint,
                reason: format!("not an object: {element}"),
                fields: Map::new(),
            });
        };
        let id_key = match product {
            Product::Chub => "cmiuid",
            Product::ChubIndia => "_id",
        };
        let skip = |reason: String| SkippedRecord {
            endpoint,
            reason,
            fields: fields.clone(),
        };
        let Some(id) = fields.get(id_key).and_then(text) else {
            return Err(skip(format!("no `{id_key}`")));
        };
        let Some(time_ms) = fields.get("time").and_then(integer) else {
            return Err(skip("no `time` in epoch milliseconds".to_owned()));
        };
        Ok(Self {
            endpoint,
            id,
            time_ms,
            from: fields.get("from").and_then(text),
            to: fields.get("to").and_then(text),
            agent: fields.get("agent").and_then(text),
            fields,
        })
    }
}

/// A string or a number as trimmed text; numbers keep their digits as sent.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.trim().to_owned()).filter(|text| !text.is_empty()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// An integer sent as a number or as a string of digits.
pub(super) fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}
