//! Matching's unit tests, beside the module so that `matching.rs` reads as the code alone.

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
