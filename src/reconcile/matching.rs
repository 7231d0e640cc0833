//! Matching (pure): which of TeleCMI's call records already have a CDR in Kafka.
//!
//! - CHUB: by call id, the record's `cmiuid` against the envelope's `data.call_leg_id` (the
//!   webhook CDR's `cmiuuid`).
//! - CHUB India, whose records carry only a database `_id`: by fingerprint. A CDR is a
//!   candidate for a record when its direction and status are the endpoint's, its customer's
//!   number (`from` inbound, `to` outbound) has the record's digits, any other number both
//!   carry agrees, and its time is within the tolerance of the record's.
//!
//! A record is found when exactly one CDR is its candidate and no other record of the listing
//! claims that CDR; with no candidate it is missing; anything else is ambiguous: reported, never
//! guessed (two calls between the same numbers within the tolerance cannot be told apart).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::settings::Product;
use super::telecmi::{CallRecord, Endpoint};

/// What matching needs of one published CDR envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedCdr {
    pub event_id: String,
    pub call_leg_id: Option<String>,
    pub direction: Option<String>,
    pub status: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub time_ms: Option<i64>,
}

impl PublishedCdr {
    /// The CDR view of an envelope as published (`schema/envelope.v2.schema.json`); `None`
    /// for events and for what is not an envelope.
    pub fn from_envelope(envelope: &Value) -> Option<Self> {
        let data = envelope.get("data")?;
        if data.get("kind")?.as_str()? != "cdr" {
            return None;
        }
        let text = |value: Option<&Value>| match value? {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        };
        let fields = data.get("fields");
        let time_ms = data
            .get("event_time")
            .and_then(Value::as_str)
            .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
            .and_then(|time| i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok());
        Some(Self {
            event_id: envelope.get("id")?.as_str()?.to_owned(),
            call_leg_id: text(data.get("call_leg_id")),
            direction: text(data.get("direction")),
            status: text(data.get("status")),
            from: text(fields.and_then(|fields| fields.get("from"))),
            to: text(fields.and_then(|fields| fields.get("to"))),
            time_ms,
        })
    }
}

/// The published CDRs of a window, indexed for both ways of matching.
#[derive(Debug, Default)]
pub struct CdrIndex {
    cdrs: Vec<PublishedCdr>,
    by_call_leg: HashMap<String, Vec<usize>>,
}

impl CdrIndex {
    pub fn new(cdrs: impl IntoIterator<Item = PublishedCdr>) -> Self {
        let cdrs: Vec<PublishedCdr> = cdrs.into_iter().collect();
        let mut by_call_leg: HashMap<String, Vec<usize>> = HashMap::new();
        for (position, cdr) in cdrs.iter().enumerate() {
            if let Some(call_leg_id) = &cdr.call_leg_id {
                by_call_leg
                    .entry(call_leg_id.clone())
                    .or_default()
                    .push(position);
            }
        }
        Self { cdrs, by_call_leg }
    }

    pub fn len(&self) -> usize {
        self.cdrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cdrs.is_empty()
    }
}

/// The verdict on one TeleCMI record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// In Kafka already, under these event ids (several when the CDR was published more than
    /// once, e.g. a webhook re-sent).
    Found {
        event_ids: Vec<String>,
    },
    Missing,
    /// These CDRs could each be the record's, or are claimed by another record too.
    Ambiguous {
        event_ids: Vec<String>,
    },
}

/// The outcome of each record, in the order given. `records` are one endpoint's listing:
/// fingerprints are judged against the other records of the listing.
pub fn match_records(
    product: Product,
    records: &[CallRecord],
    index: &CdrIndex,
    tolerance: Duration,
) -> Vec<Outcome> {
    match product {
        Product::Chub => records
            .iter()
            .map(|record| by_call_id(record, index))
            .collect(),
        Product::ChubIndia => by_fingerprint(records, index, tolerance),
    }
}

fn by_call_id(record: &CallRecord, index: &CdrIndex) -> Outcome {
    match index.by_call_leg.get(&record.id) {
        Some(positions) => Outcome::Found {
            event_ids: event_ids(index, positions),
        },
        None => Outcome::Missing,
    }
}

fn by_fingerprint(records: &[CallRecord], index: &CdrIndex, tolerance: Duration) -> Vec<Outcome> {
    let tolerance_ms = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    let candidates: Vec<Vec<usize>> = records
        .iter()
        .map(|record| {
            (0..index.cdrs.len())
                .filter(|&position| fits(record, &index.cdrs[position], tolerance_ms))
                .collect()
        })
        .collect();
    let mut claims: HashMap<usize, usize> = HashMap::new();
    for position in candidates.iter().flatten() {
        *claims.entry(*position).or_default() += 1;
    }
    candidates
        .iter()
        .map(|positions| match positions.as_slice() {
            [] => Outcome::Missing,
            [only] if claims[only] == 1 => Outcome::Found {
                event_ids: event_ids(index, positions),
            },
            _ => Outcome::Ambiguous {
                event_ids: event_ids(index, positions),
            },
        })
        .collect()
}

/// Whether `cdr` can be the CDR of `record` (see the module's documentation).
fn fits(record: &CallRecord, cdr: &PublishedCdr, tolerance_ms: i64) -> bool {
    let endpoint = record.endpoint;
    let same_kind = cdr.direction.as_deref() == Some(endpoint.direction())
        && cdr.status.as_deref() == Some(endpoint.status());
    let in_time = cdr
        .time_ms
        .is_some_and(|time| time.abs_diff(record.time_ms) <= tolerance_ms.unsigned_abs());
    let (customer, other) = customer_and_other(endpoint);
    let customer_agrees = matches!(
        (customer(record_numbers(record)), customer(cdr_numbers(cdr))),
        (Some(ours), Some(theirs)) if same_number(ours, theirs)
    );
    let other_agrees = match (other(record_numbers(record)), other(cdr_numbers(cdr))) {
        (Some(ours), Some(theirs)) => same_number(ours, theirs),
        _ => true,
    };
    same_kind && in_time && customer_agrees && other_agrees
}

type Numbers<'a> = (Option<&'a str>, Option<&'a str>);
type Pick = fn(Numbers<'_>) -> Option<&str>;

fn record_numbers(record: &CallRecord) -> Numbers<'_> {
    (record.from.as_deref(), record.to.as_deref())
}

fn cdr_numbers(cdr: &PublishedCdr) -> Numbers<'_> {
    (cdr.from.as_deref(), cdr.to.as_deref())
}

/// The customer's number is the caller on incoming calls and the callee on outgoing ones.
fn customer_and_other(endpoint: Endpoint) -> (Pick, Pick) {
    fn from(numbers: Numbers<'_>) -> Option<&str> {
        numbers.0
    }
    fn to(numbers: Numbers<'_>) -> Option<&str> {
        numbers.1
    }
    match endpoint.direction() {
        "inbound" => (from, to),
        _ => (to, from),
    }
}

/// Numbers compare by their digits (`+91 98...` and `9198...` are one number); values with no
/// digits at all, or with letters (a user id such as `209_1111113`), compare as text.
fn same_number(ours: &str, theirs: &str) -> bool {
    let digits = |text: &str| -> Option<String> {
        let phone_like = text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        (phone_like && !digits.is_empty()).then_some(digits)
    };
    match (digits(ours), digits(theirs)) {
        (Some(ours), Some(theirs)) => ours == theirs,
        _ => ours.trim() == theirs.trim(),
    }
}

fn event_ids(index: &CdrIndex, positions: &[usize]) -> Vec<String> {
    positions
        .iter()
        .map(|&position| index.cdrs[position].event_id.clone())
        .collect()
}

#[cfg(test)]
mod tests;
