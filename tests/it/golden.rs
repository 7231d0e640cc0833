//! The envelope contract over every documented sample: golden files pin the exact envelope,
//! `schema/envelope.v2.schema.json` describes it, the original payload can be rebuilt from it,
//! and the encoding a payload arrived in changes nothing but `data.original`.
//!
//! Run with `UPDATE_GOLDEN=1` to (re)write `tests/golden/*.json` after a deliberate change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use telecmi_bridge::pipeline::{EnvelopeAttributes, RawRequest, decode, to_envelope};
use time::OffsetDateTime;

use crate::fixtures::{
    Fixture, as_text_pairs, form_encoded, json_fixtures, raw_leading_zero_fixture,
};

const RECEIVED_AT_UNIX: i64 = 1_700_000_000;

/// The documented events that are genuinely the same event (same kind, status, cmiuuid, leg
/// and time) as two page versions of TeleCMI's documentation, so they share an id.
const SAME_EVENT: [(&str, &str); 2] = [
    // Two versions of the "Incoming Missed CDR" page: v2 adds virtual_number, conversation_uuid
    // and ivr_name, and shows a different `from`, for the same call leg at the same instant.
    ("chub-inbound-missed-cdr-v1", "chub-inbound-missed-cdr-v2"),
    // CHUB India's page and CHUB's older page: `click_to_call` is "true" in one, true in the other.
    (
        "chub-india-outbound-missed-cdr",
        "chub-outbound-missed-cdr-old",
    ),
];

fn received_at() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(RECEIVED_AT_UNIX).expect("valid timestamp")
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/envelope.v2.schema.json")
}

fn data_schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/data.v2.schema.json")
}

const DATA_SCHEMA_ID: &str = "https://telecmi-bridge.invalid/schemas/data.v2.schema.json";

pub fn read_schema(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    if let Err(error) = jsonschema::meta::validate(&schema) {
        panic!("{} is not a valid JSON Schema: {error}", path.display());
    }
    schema
}

/// Resolves the envelope schema's references to the schema of `data`, from the repository.
struct DataSchema;

impl jsonschema::Retrieve for DataSchema {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        if uri.as_str() == DATA_SCHEMA_ID {
            Ok(read_schema(&data_schema_path()))
        } else {
            Err(format!("no schema {} in schema/", uri.as_str()).into())
        }
    }
}

pub fn validator_of(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .with_retriever(DataSchema)
        .build(schema)
        .unwrap_or_else(|error| panic!("the schema does not compile: {error}"))
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|value| value == "1")
}

/// Every sample: the 24 strict-JSON ones and CHUB India's leading-zero one.
fn all_fixtures() -> Vec<Fixture> {
    let mut fixtures = json_fixtures();
    fixtures.push(raw_leading_zero_fixture());
    fixtures
}

fn post_json(body: &[u8]) -> RawRequest<'_> {
    RawRequest {
        is_get: false,
        content_type: Some("application/json"),
        content_encoding: None,
        query: None,
        body,
        reserved_query_param: Some("token"),
    }
}

fn post_form(body: &[u8]) -> RawRequest<'_> {
    RawRequest {
        content_type: Some("application/x-www-form-urlencoded"),
        ..post_json(body)
    }
}

fn get_query(query: &str) -> RawRequest<'_> {
    RawRequest {
        is_get: true,
        content_type: None,
        query: Some(query),
        ..post_json(b"")
    }
}

/// The envelope bytes exactly as the bridge publishes them.
fn envelope_bytes(request: &RawRequest<'_>, received_at: OffsetDateTime) -> Vec<u8> {
    let decoded = decode(request).unwrap_or_else(|error| panic!("decode: {error}"));
    to_envelope(&EnvelopeAttributes::default(), decoded, received_at)
        .expect("envelope serialises")
        .1
        .value
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("the envelope is JSON")
}

fn envelope(request: &RawRequest<'_>) -> Value {
    parse(&envelope_bytes(request, received_at()))
}

/// The fixture's fields as an object: the parsed sample, or, for the leading-zero sample that
/// strict JSON rejects, the fields the bridge decoded from it (`callerid` as "04471000000").
fn object_of(fixture: &Fixture) -> Map<String, Value> {
    match &fixture.object {
        Some(object) => object.clone(),
        None => {
            decode(&post_json(&fixture.body))
                .unwrap_or_else(|error| panic!("{}: {error}", fixture.name))
                .fields
        }
    }
}

/// The envelopes of one fixture sent as a POST JSON body, a POST form body and a GET query.
struct ThreeWays {
    json: Value,
    form: Value,
    query: Value,
}

fn three_ways(fixture: &Fixture) -> ThreeWays {
    let encoded = form_encoded(&object_of(fixture));
    ThreeWays {
        json: envelope(&post_json(&fixture.body)),
        form: envelope(&post_form(encoded.as_bytes())),
        query: envelope(&get_query(&encoded)),
    }
}

fn pointer<'v>(envelope: &'v Value, path: &str) -> &'v Value {
    envelope
        .pointer(path)
        .unwrap_or_else(|| panic!("envelope has no {path}: {envelope}"))
}

fn without_original(envelope: &Value) -> Value {
    let mut envelope = envelope.clone();
    let removed = envelope
        .pointer_mut("/data")
        .and_then(Value::as_object_mut)
        .and_then(|data| data.shift_remove("original"));
    assert!(removed.is_some(), "envelope has no data.original");
    envelope
}

/// Serialised text: compares key order and number literals, which `Value`'s `==` does not.
fn text(value: &Value) -> String {
    serde_json::to_string(value).expect("serialises")
}

fn pretty(envelope: &Value) -> String {
    let mut text = serde_json::to_string_pretty(envelope).expect("serialises");
    text.push('\n');
    text
}

pub fn schema_validator() -> jsonschema::Validator {
    validator_of(&read_schema(&schema_path()))
}

/// `dataschema` names the schema `data` adheres to: every golden envelope's `data` validates
/// against the schema of `data` alone, whose `$id` the envelope schema refers to, and
/// `dataschema` is the default base followed by its file name.
#[test]
fn every_envelopes_data_validates_against_the_data_schema_alone() {
    let data_schema = read_schema(&data_schema_path());
    assert_eq!(data_schema["$id"], DATA_SCHEMA_ID);
    let validator = validator_of(&data_schema);
    for fixture in all_fixtures() {
        let envelopes = three_ways(&fixture);
        for envelope in [&envelopes.json, &envelopes.form, &envelopes.query] {
            let errors = schema_errors(&validator, pointer(envelope, "/data"));
            assert!(errors.is_empty(), "{}: {errors:?}", fixture.name);
            assert_eq!(
                pointer(envelope, "/dataschema"),
                "http://localhost:9090/schemas/data.v2.schema.json"
            );
        }
    }
    let mut broken = envelope(&post_json(&all_fixtures()[0].body));
    insert(&mut broken, "/data", "kind", Value::from("call"));
    assert!(!validator.is_valid(pointer(&broken, "/data")));
}

pub fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect()
}

fn golden_path(name: &str) -> PathBuf {
    golden_dir().join(format!("{name}.json"))
}

fn golden_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.expect("entry").path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .map(|path| {
                    path.file_stem()
                        .expect("name")
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn golden_envelopes_match_for_every_fixture() {
    let fixtures = all_fixtures();
    if updating() {
        std::fs::create_dir_all(golden_dir()).expect("tests/golden");
    }
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let actual = pretty(&envelope(&post_json(&fixture.body)));
        let path = golden_path(&fixture.name);
        if updating() {
            std::fs::write(&path, &actual).expect("write golden file");
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: the envelope differs from {}\n--- golden\n{expected}--- actual\n{actual}",
                fixture.name,
                path.display()
            )),
            Err(error) => failures.push(format!(
                "{}: cannot read {} ({error}); run `UPDATE_GOLDEN=1 cargo test --test it golden` \
                 to create it",
                fixture.name,
                path.display()
            )),
        }
    }
    let mut expected_names: Vec<String> = fixtures.iter().map(|f| f.name.clone()).collect();
    expected_names.sort();
    let stale: Vec<String> = golden_files(&golden_dir())
        .into_iter()
        .filter(|name| !expected_names.contains(name))
        .collect();
    if !stale.is_empty() {
        failures.push(format!("golden files without a fixture: {stale:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_envelope_validates_against_the_schema() {
    let validator = schema_validator();
    let mut failures = Vec::new();
    let mut check = |what: String, instance: &Value| {
        let errors = schema_errors(&validator, instance);
        if !errors.is_empty() {
            failures.push(format!("{what}:\n  {}", errors.join("\n  ")));
        }
    };
    for fixture in all_fixtures() {
        let envelopes = three_ways(&fixture);
        let path = golden_path(&fixture.name);
        // While the golden files are being rewritten (by the test above, perhaps concurrently)
        // check what they will hold; otherwise check what they hold.
        let golden = if updating() {
            Ok(pretty(&envelopes.json))
        } else {
            std::fs::read_to_string(&path)
        };
        match golden {
            Ok(golden) => check(
                format!("golden {}", path.display()),
                &serde_json::from_str(&golden).expect("golden file is JSON"),
            ),
            Err(error) => panic!("{}: {error}; run with UPDATE_GOLDEN=1", path.display()),
        }
        check(format!("{} as JSON", fixture.name), &envelopes.json);
        check(format!("{} as form", fixture.name), &envelopes.form);
        check(format!("{} as query", fixture.name), &envelopes.query);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_schema_rejects_envelopes_that_break_the_contract() {
    let validator = schema_validator();
    let fixture = json_fixtures()
        .into_iter()
        .find(|fixture| fixture.name == "chub-outbound-answered-leg-a")
        .expect("fixture");
    let valid = envelope(&post_json(&fixture.body));
    assert!(
        validator.is_valid(&valid),
        "{:?}",
        schema_errors(&validator, &valid)
    );

    type Breakage = fn(&mut Value);
    let breakages: [(&str, Breakage); 24] = [
        ("without id", |e| remove(e, "", "id")),
        ("without data", |e| remove(e, "", "data")),
        ("without partitionkey", |e| remove(e, "", "partitionkey")),
        ("without telecmiproduct", |e| {
            remove(e, "", "telecmiproduct")
        }),
        ("with an unknown telecmiproduct", |e| {
            insert(e, "", "telecmiproduct", Value::from("chub-india"))
        }),
        ("with an extra top-level attribute", |e| {
            insert(e, "", "topic", Value::from("x"))
        }),
        ("with an extra data attribute", |e| {
            insert(e, "/data", "topic", Value::from("x"))
        }),
        ("with an extra original attribute", |e| {
            insert(e, "/data/original", "bytes", Value::from("x"))
        }),
        ("without data.warnings", |e| remove(e, "/data", "warnings")),
        ("with an id that is not a UUID", |e| {
            insert(e, "", "id", Value::from("not-a-uuid"))
        }),
        ("with a time that is not RFC 3339", |e| {
            insert(e, "", "time", Value::from("2022-04-22 13:49:00"))
        }),
        ("with an impossible received_at", |e| {
            insert(
                e,
                "/data",
                "received_at",
                Value::from("2023-13-45T25:61:00Z"),
            )
        }),
        ("with a type that contradicts data.kind", |e| {
            insert(e, "", "type", Value::from("com.telecmi.call.cdr"))
        }),
        ("with time but a null data.event_time", |e| {
            insert(e, "/data", "event_time", Value::Null)
        }),
        ("exact but with a raw copy", |e| {
            insert(e, "/data/original", "raw", Value::from("{}"))
        }),
        ("not exact without raw or a privacy mark", |e| {
            insert(e, "/data/original", "exact", Value::from(false))
        }),
        ("with an unknown encoding", |e| {
            insert(e, "/data/original", "encoding", Value::from("xml"))
        }),
        ("with a dataschema naming another schema", |e| {
            insert(
                e,
                "",
                "dataschema",
                Value::from("https://example.com/envelope.v2.schema.json"),
            )
        }),
        ("with a dataschema that is not a URI", |e| {
            insert(e, "", "dataschema", Value::from("data.v2.schema.json"))
        }),
        ("with a documented field of another type", |e| {
            insert(e, "/data/fields", "answeredsec", Value::from("eleven"))
        }),
        ("with a warning without a code", |e| {
            insert(
                e,
                "/data",
                "warnings",
                serde_json::json!([{"field": null, "message": "x"}]),
            )
        }),
        ("with a control character in subject", |e| {
            insert(e, "", "subject", Value::from("call\u{0}1"))
        }),
        ("with a newline in partitionkey", |e| {
            insert(e, "", "partitionkey", Value::from("call\n1"))
        }),
        ("with a DEL in telecmistatus", |e| {
            insert(e, "", "telecmistatus", Value::from("answered\u{7f}"))
        }),
    ];
    for (what, breakage) in breakages {
        let mut broken = valid.clone();
        breakage(&mut broken);
        assert_ne!(broken, valid, "{what}: the breakage changed nothing");
        assert!(
            !validator.is_valid(&broken),
            "an envelope {what} passes the schema"
        );
    }
}

/// Every documented field has one type: a value that cannot take it moves, as sent, to
/// `data.unconverted`, with a coded warning, and the envelope still validates.
#[test]
fn a_value_that_cannot_take_its_type_moves_to_unconverted() {
    let body = br#"{"type":"cdr","status":"answered","cmiuuid":"leg-1","answeredsec":"eleven","record":"maybe","billedsec":"7"}"#;
    let envelope = envelope(&post_json(body));
    let errors = schema_errors(&schema_validator(), &envelope);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        pointer(&envelope, "/data/unconverted"),
        &serde_json::json!({"answeredsec": "eleven", "record": "maybe"})
    );
    assert!(envelope.pointer("/data/fields/answeredsec").is_none());
    assert_eq!(pointer(&envelope, "/data/fields/billedsec"), 7);
    assert_eq!(
        pointer(&envelope, "/data/warnings"),
        &serde_json::json!([
            {"code": "unconvertible_value", "field": "answeredsec",
             "message": "answeredsec cannot be converted to its type; moved to unconverted"},
            {"code": "unconvertible_value", "field": "record",
             "message": "record cannot be converted to its type; moved to unconverted"}
        ])
    );
}

/// What a payload's control characters would make an invalid CloudEvent is cleaned: the
/// attributes (and so the Kafka key and headers) lose them, a warning says so, the schema holds.
#[test]
fn control_characters_in_a_payload_never_reach_an_attribute() {
    let validator = schema_validator();
    let body = br#"{"type":"event","status":"answered\u0007","conversation_uuid":"call\u0000-1\n2","cmiuuid":"leg\u001b","time":1700000000000}"#;
    let envelope = envelope(&post_json(body));
    let errors = schema_errors(&validator, &envelope);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(pointer(&envelope, "/subject"), "call-12");
    assert_eq!(pointer(&envelope, "/partitionkey"), "call-12");
    assert_eq!(pointer(&envelope, "/telecmistatus"), "answered");
    assert_eq!(pointer(&envelope, "/data/call_leg_id"), "leg");
    assert_eq!(
        pointer(&envelope, "/data/fields/conversation_uuid"),
        "call\u{0}-1\n2"
    );
    let warnings = pointer(&envelope, "/data/warnings")
        .as_array()
        .expect("warnings");
    assert_eq!(warnings.len(), 3, "{warnings:?}");
}

fn object_at<'v>(envelope: &'v mut Value, path: &str) -> &'v mut Map<String, Value> {
    envelope
        .pointer_mut(path)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {path:?}"))
}

fn remove(envelope: &mut Value, path: &str, key: &str) {
    assert!(
        object_at(envelope, path).shift_remove(key).is_some(),
        "no {key} at {path:?}"
    );
}

fn insert(envelope: &mut Value, path: &str, key: &str, value: Value) {
    object_at(envelope, path).insert(key.to_owned(), value);
}

#[test]
fn the_original_payload_rebuilds_every_fixture_exactly() {
    for fixture in json_fixtures() {
        let bytes = envelope_bytes(&post_json(&fixture.body), received_at());
        let envelope = parse(&bytes);
        let object = Value::Object(fixture.object.clone().expect("strict JSON fixture"));
        assert_eq!(
            pointer(&envelope, "/data/original/encoding"),
            "json",
            "{}",
            fixture.name
        );
        assert_eq!(
            text(pointer(&envelope, "/data/original/payload")),
            text(&object),
            "{}: keys, order, values and JSON types",
            fixture.name
        );
        // Stronger: the body's text is embedded byte for byte (whitespace included).
        let body = std::str::from_utf8(&fixture.body)
            .expect("UTF-8 fixture")
            .trim();
        let published = std::str::from_utf8(&bytes).expect("UTF-8 envelope");
        assert!(
            published.contains(body),
            "{}: the body is not embedded verbatim",
            fixture.name
        );
        assert!(
            envelope.pointer("/data/original/raw").is_none(),
            "{}: strict JSON needs no raw copy",
            fixture.name
        );
        assert_eq!(
            pointer(&envelope, "/data/original/exact"),
            true,
            "{}",
            fixture.name
        );
    }

    let fixture = raw_leading_zero_fixture();
    let envelope = envelope(&post_json(&fixture.body));
    let body = std::str::from_utf8(&fixture.body).expect("UTF-8 fixture");
    assert!(
        body.contains(": 04471000000,"),
        "the fixture has the leading-zero literal"
    );
    assert_eq!(pointer(&envelope, "/data/original/encoding"), "json");
    assert_eq!(
        pointer(&envelope, "/data/original/raw").as_str(),
        Some(body),
        "raw is the body byte for byte"
    );
    assert_eq!(pointer(&envelope, "/data/original/exact"), false);
    assert_eq!(pointer(&envelope, "/data/fields/callerid"), "04471000000");
    assert_eq!(
        pointer(&envelope, "/data/original/payload/callerid"),
        "04471000000"
    );
    assert!(
        envelope
            .pointer("/data/warnings")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty),
        "{envelope}"
    );
}

#[test]
fn the_encoding_changes_nothing_but_the_original() {
    for fixture in all_fixtures() {
        let envelopes = three_ways(&fixture);
        let name = &fixture.name;
        let json = without_original(&envelopes.json);
        assert_eq!(
            text(&without_original(&envelopes.form)),
            text(&json),
            "{name}: form differs from JSON"
        );
        assert_eq!(
            text(&without_original(&envelopes.query)),
            text(&json),
            "{name}: query differs from JSON"
        );
        let id = pointer(&envelopes.json, "/id");
        assert_eq!(pointer(&envelopes.form, "/id"), id, "{name}");
        assert_eq!(pointer(&envelopes.query, "/id"), id, "{name}");

        let pairs: Map<String, Value> = as_text_pairs(&object_of(&fixture))
            .into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect();
        let pairs = Value::Object(pairs);
        for (encoding, envelope) in [("form", &envelopes.form), ("query", &envelopes.query)] {
            assert_eq!(
                pointer(envelope, "/data/original/encoding"),
                encoding,
                "{name}"
            );
            assert_eq!(
                text(pointer(envelope, "/data/original/payload")),
                text(&pairs),
                "{name}: {encoding} payload is the text pairs"
            );
            assert_eq!(
                pointer(envelope, "/data/original/raw").as_str(),
                Some(form_encoded(&object_of(&fixture)).as_str()),
                "{name}: {encoding} raw is the text as sent"
            );
            assert_eq!(pointer(envelope, "/data/original/exact"), false, "{name}");
        }
    }
}

/// A form or query keeps its exact text: percent-encoding, `+`, `k` against `k=`, empty
/// pairs and the order of repeated keys, none of which the decoded fields can tell.
#[test]
fn form_and_query_originals_keep_the_text_as_sent() {
    let text = "type=event&status=answered&cmiuuid=leg%2D1&to=%2B91+98&to=0045&k&k2=&&custom=a%20b";
    for envelope in [
        envelope(&post_form(text.as_bytes())),
        envelope(&get_query(&format!("token=secret&{text}"))),
    ] {
        assert_eq!(pointer(&envelope, "/data/original/raw"), text);
        assert_eq!(pointer(&envelope, "/data/original/exact"), false);
        assert_eq!(
            pointer(&envelope, "/data/original/payload/to"),
            &serde_json::json!(["+91 98", "0045"])
        );
        assert!(envelope.pointer("/data/original/query").is_none());
    }
}

/// A POST's query parameters are kept exactly (without the bridge's token) next to its body,
/// and do not become fields.
#[test]
fn a_posts_query_string_is_kept_in_the_original() {
    let request = RawRequest {
        query: Some("token=secret&line=chub%20india&b"),
        ..post_json(br#"{"type":"event","status":"answered","cmiuuid":"leg-1"}"#)
    };
    let envelope = envelope(&request);
    assert_eq!(
        pointer(&envelope, "/data/original/query"),
        "line=chub%20india&b"
    );
    assert_eq!(pointer(&envelope, "/data/original/exact"), true);
    assert!(envelope.pointer("/data/fields/line").is_none());
    let errors = schema_errors(&schema_validator(), &envelope);
    assert!(errors.is_empty(), "{errors:?}");
}

/// A body that repeats a key would make the envelope repeat it (RFC 8259: receivers then
/// behave unpredictably): the payload holds each key once, at its last value, `raw` the body.
#[test]
fn a_body_with_repeated_keys_never_repeats_a_key_in_the_envelope() {
    let body = br#"{"type":"event","status":"started","status":"answered","cmiuuid":"leg-1","custom":{"a":1,"a":2.50}}"#;
    let bytes = envelope_bytes(&post_json(body), received_at());
    let envelope = parse(&bytes);
    assert_eq!(
        text(&envelope).as_bytes(),
        &bytes[..],
        "parsed and written again, the envelope is unchanged: no key appears twice"
    );
    assert_eq!(
        text(pointer(&envelope, "/data/original/payload")),
        r#"{"type":"event","status":"answered","cmiuuid":"leg-1","custom":{"a":2.50}}"#
    );
    assert_eq!(
        pointer(&envelope, "/data/original/raw")
            .as_str()
            .map(str::as_bytes),
        Some(&body[..])
    );
    assert_eq!(pointer(&envelope, "/data/original/exact"), false);
    assert_eq!(pointer(&envelope, "/data/status"), "answered");
    assert_eq!(
        pointer(&envelope, "/data/warnings")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let errors = schema_errors(&schema_validator(), &envelope);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn ids_survive_a_resend_and_differ_between_different_events() {
    let fixtures = json_fixtures();
    let later = received_at() + time::Duration::minutes(5);
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for fixture in &fixtures {
        let first = envelope(&post_json(&fixture.body));
        let resent = parse(&envelope_bytes(&post_json(&fixture.body), later));
        assert_eq!(
            pointer(&first, "/id"),
            pointer(&resent, "/id"),
            "{}",
            fixture.name
        );
        assert_ne!(
            pointer(&first, "/data/received_at"),
            pointer(&resent, "/data/received_at"),
            "{}: the re-send was received later",
            fixture.name
        );
        let id = pointer(&first, "/id")
            .as_str()
            .expect("id is text")
            .to_owned();
        by_id.entry(id).or_default().push(fixture.name.clone());
    }

    let mut collisions: Vec<Vec<String>> = by_id
        .into_values()
        .filter(|names| names.len() > 1)
        .map(|mut names| {
            names.sort();
            names
        })
        .collect();
    collisions.sort();
    let expected: Vec<Vec<String>> = SAME_EVENT
        .iter()
        .map(|(a, b)| vec![(*a).to_owned(), (*b).to_owned()])
        .collect();
    assert_eq!(collisions, expected, "fixtures sharing an id");

    // What makes them the same event: the identity the id is derived from.
    let by_name = |name: &str| {
        let fixture = fixtures.iter().find(|f| f.name == name).expect("fixture");
        envelope(&post_json(&fixture.body))
    };
    for (a, b) in SAME_EVENT {
        let (a_envelope, b_envelope) = (by_name(a), by_name(b));
        for path in [
            "/type",
            "/time",
            "/data/status",
            "/data/leg",
            "/data/call_leg_id",
        ] {
            assert_eq!(
                a_envelope.pointer(path),
                b_envelope.pointer(path),
                "{a} and {b} share {path}"
            );
        }
        assert_ne!(
            text(pointer(&a_envelope, "/data/original/payload")),
            text(pointer(&b_envelope, "/data/original/payload")),
            "{a} and {b} are different documents"
        );
    }

    // The documented leading-zero sample is the same event as its strict transcription.
    let raw = envelope(&post_json(&raw_leading_zero_fixture().body));
    let strict = by_name("chub-india-outbound-started-leg-a");
    assert_eq!(pointer(&raw, "/id"), pointer(&strict, "/id"));
    assert_ne!(
        pointer(&raw, "/data/fields/callerid"),
        pointer(&strict, "/data/fields/callerid")
    );
}

// ---------------------------------------------------------------------------------------------
// Properties over arbitrary payloads (proptest): nothing panics, and the original is always
// rebuilt exactly.

mod properties {
    use proptest::prelude::*;
    use serde_json::{Map, Value};
    use telecmi_bridge::pipeline::{EnvelopeAttributes, RawRequest, decode, to_envelope};

    use super::{envelope_bytes, parse, pointer, post_form, post_json, received_at, text};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |number| number.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            // Field names and values TeleCMI uses, so normalisation's rules are exercised too.
            prop::sample::select(vec![
                "event",
                "cdr",
                "answered",
                "missed",
                "hangup",
                "a",
                "b",
                "1634724624830",
                "04471000000",
                "true",
                "{\"crm\":\"true\"}",
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            prop::sample::select(vec![
                "type",
                "status",
                "cmiuuid",
                "conversation_uuid",
                "leg",
                "time",
                "from",
                "to",
                "appid",
                "app_id",
                "answeredsec",
                "custom",
                "extra_params",
                "record",
                "duration",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn json_object() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::vec((key(), json_value()), 0..12)
            .prop_map(|pairs| pairs.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_json_object_is_kept_verbatim_in_the_envelope(
            object in json_object(),
            pretty in any::<bool>(),
        ) {
            let body = if pretty {
                serde_json::to_string_pretty(&object)
            } else {
                serde_json::to_string(&object)
            }
            .expect("serialises");
            let bytes = envelope_bytes(&post_json(body.as_bytes()), received_at());
            let published = std::str::from_utf8(&bytes).expect("UTF-8 envelope");
            prop_assert!(published.contains(&body), "the body is not embedded verbatim");
            let envelope = parse(&bytes);
            prop_assert_eq!(
                text(pointer(&envelope, "/data/original/payload")),
                text(&Value::Object(object))
            );
        }

        #[test]
        fn any_form_is_kept_as_its_text(
            pairs in prop::collection::vec((key(), any::<String>()), 1..10),
        ) {
            let body = serde_urlencoded::to_string(&pairs).expect("form");
            let mut expected = Map::new();
            for (name, value) in &pairs {
                let value = Value::String(value.clone());
                match expected.get_mut(name) {
                    Some(Value::Array(values)) => values.push(value),
                    Some(first) => *first = Value::Array(vec![first.take(), value]),
                    None => {
                        expected.insert(name.clone(), value);
                    }
                }
            }
            let envelope = parse(&envelope_bytes(&post_form(body.as_bytes()), received_at()));
            prop_assert_eq!(
                text(pointer(&envelope, "/data/original/payload")),
                text(&Value::Object(expected))
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            body in prop::collection::vec(any::<u8>(), 0..512),
            content_type in prop::option::of(prop::sample::select(vec![
                "application/json", "application/x-www-form-urlencoded", "text/plain",
                "application/json; charset=latin1", "image/png",
            ])),
            is_get in any::<bool>(),
        ) {
            let query = String::from_utf8_lossy(&body).into_owned();
            let request = RawRequest {
                is_get,
                content_type,
                content_encoding: None,
                query: Some(&query),
                body: &body,
                reserved_query_param: Some("token"),
            };
            if let Ok(decoded) = decode(&request) {
                let (_, event) = to_envelope(&EnvelopeAttributes::default(), decoded, received_at())
                    .expect("an accepted payload always makes an envelope");
                prop_assert!(serde_json::from_slice::<Value>(&event.value).is_ok());
            }
        }
    }
}
