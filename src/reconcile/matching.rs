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
mod tests {
    use serde_json::{Map, json};

    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(5);

    fn record(endpoint: Endpoint, id: &str, time_ms: i64, from: &str, to: &str) -> CallRecord {
        CallRecord {
            endpoint,
            id: id.to_owned(),
            time_ms,
            from: Some(from.to_owned()),
            to: Some(to.to_owned()),
            agent: None,
            fields: Map::new(),
        }
    }

    fn cdr(event_id: &str, endpoint: Endpoint, time_ms: i64, from: &str, to: &str) -> PublishedCdr {
        PublishedCdr {
            event_id: event_id.to_owned(),
            call_leg_id: None,
            direction: Some(endpoint.direction().to_owned()),
            status: Some(endpoint.status().to_owned()),
            from: Some(from.to_owned()),
            to: Some(to.to_owned()),
            time_ms: Some(time_ms),
        }
    }

    fn golden(name: &str) -> Value {
        let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("JSON")
    }

    #[test]
    fn a_published_cdr_envelope_gives_its_identity_numbers_and_time() {
        let cdr = PublishedCdr::from_envelope(&golden("chub-india-inbound-answered-cdr.json"))
            .expect("a CDR");
        assert_eq!(
            cdr,
            PublishedCdr {
                event_id: "78000c96-0345-58d3-91c5-46f9161600e7".to_owned(),
                call_leg_id: Some("dbff2a12-5ea0-4303-908d-72a2e216e74a".to_owned()),
                direction: Some("inbound".to_owned()),
                status: Some("answered".to_owned()),
                from: Some("9200000000".to_owned()),
                to: Some("9100000000".to_owned()),
                time_ms: Some(1_570_114_729_565),
            }
        );
        assert_eq!(
            PublishedCdr::from_envelope(&golden("chub-inbound-answered-leg-a.json")),
            None,
            "live events are not CDRs"
        );
        assert_eq!(PublishedCdr::from_envelope(&json!({"id": "x"})), None);
    }

    #[test]
    fn chub_matches_by_call_id_against_the_call_leg_id() {
        let envelope = golden("chub-inbound-answered-cdr.json");
        let index = CdrIndex::new(PublishedCdr::from_envelope(&envelope));
        let call_id = "16132200-57fa-47b5-888d-4ab5b7e631ee";
        let published = record(Endpoint::Answered, call_id, 0, "1", "2");
        let other = record(
            Endpoint::Answered,
            "0d5e8a17-2c3b-4f6e-9a41-7b8c9d0e1f23",
            0,
            "1",
            "2",
        );
        let outcomes = match_records(Product::Chub, &[published, other], &index, TOLERANCE);
        assert_eq!(
            outcomes,
            [
                Outcome::Found {
                    event_ids: vec![envelope["id"].as_str().expect("id").to_owned()]
                },
                Outcome::Missing
            ]
        );
    }

    #[test]
    fn india_matches_direction_status_numbers_and_time_within_the_tolerance() {
        let t = 1_700_000_000_000;
        let index = CdrIndex::new([
            cdr(
                "in-answered",
                Endpoint::Answered,
                t + 4_000,
                "+91 92000 00000",
                "9100000000",
            ),
            cdr(
                "out-missed",
                Endpoint::OutMissed,
                t,
                "209_1111113",
                "9300000000",
            ),
        ]);
        let outcomes = match_records(
            Product::ChubIndia,
            &[
                record(Endpoint::Answered, "a", t, "919200000000", "9100000000"),
                record(Endpoint::Missed, "b", t, "919200000000", "9100000000"),
                record(
                    Endpoint::OutMissed,
                    "c",
                    t - 1_000,
                    "209_1111113",
                    "9300000000",
                ),
                record(
                    Endpoint::OutMissed,
                    "d",
                    t + 6_000,
                    "209_1111113",
                    "9300000001",
                ),
            ],
            &index,
            TOLERANCE,
        );
        assert_eq!(
            outcomes[0],
            Outcome::Found {
                event_ids: vec!["in-answered".to_owned()]
            },
            "digits compare, within 4 s of 5"
        );
        assert_eq!(
            outcomes[1],
            Outcome::Missing,
            "a missed call is not the answered one"
        );
        assert_eq!(
            outcomes[2],
            Outcome::Found {
                event_ids: vec!["out-missed".to_owned()]
            }
        );
        assert_eq!(outcomes[3], Outcome::Missing, "another callee");

        let late = match_records(
            Product::ChubIndia,
            &[record(
                Endpoint::Answered,
                "a",
                t - 2_000,
                "919200000000",
                "9100000000",
            )],
            &index,
            TOLERANCE,
        );
        assert_eq!(
            late,
            [Outcome::Missing],
            "6 s apart is beyond the tolerance"
        );
    }

    #[test]
    fn india_reports_two_candidates_as_ambiguous_and_never_guesses() {
        let t = 1_700_000_000_000;
        let index = CdrIndex::new([
            cdr("first", Endpoint::Answered, t, "9200000000", "9100000000"),
            cdr(
                "second",
                Endpoint::Answered,
                t + 3_000,
                "9200000000",
                "9100000000",
            ),
        ]);
        let outcomes = match_records(
            Product::ChubIndia,
            &[record(
                Endpoint::Answered,
                "a",
                t + 1_000,
                "9200000000",
                "9100000000",
            )],
            &index,
            TOLERANCE,
        );
        assert_eq!(
            outcomes,
            [Outcome::Ambiguous {
                event_ids: vec!["first".to_owned(), "second".to_owned()]
            }]
        );

        // Two calls between the same numbers, one CDR published: which call it belongs to is
        // unknowable, so neither is found (and neither would be published as missing).
        let index = CdrIndex::new([cdr(
            "only",
            Endpoint::Answered,
            t,
            "9200000000",
            "9100000000",
        )]);
        let outcomes = match_records(
            Product::ChubIndia,
            &[
                record(
                    Endpoint::Answered,
                    "a",
                    t - 2_000,
                    "9200000000",
                    "9100000000",
                ),
                record(
                    Endpoint::Answered,
                    "b",
                    t + 2_000,
                    "9200000000",
                    "9100000000",
                ),
            ],
            &index,
            TOLERANCE,
        );
        let ambiguous = Outcome::Ambiguous {
            event_ids: vec!["only".to_owned()],
        };
        assert_eq!(outcomes, [ambiguous.clone(), ambiguous]);
    }
}
