//! Both CloudEvents content modes (`envelope.mode`): binary carries exactly what structured
//! does, and every record of every sample parses as a valid CloudEvent with the CloudEvents
//! Python SDK (`pip install cloudevents==2.2.0`). That check runs with the `kafka-it` feature,
//! the suites needing what `.ci/run` installs; without the feature it is listed as ignored.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use serde_json::{Value, json};
use telecmi_bridge::config::{EnvelopeMode, EnvelopeSettings, RoutingSettings};
use telecmi_bridge::pipeline::{
    EnvelopeAttributes, OutboundRecord, RawRequest, Router, decode, to_records,
};
use time::OffsetDateTime;

use crate::fixtures::json_fixtures;
use crate::golden::{schema_errors, schema_validator};

fn records(mode: EnvelopeMode, body: &[u8]) -> Vec<OutboundRecord> {
    let attributes = EnvelopeAttributes::new(&EnvelopeSettings {
        mode,
        ..EnvelopeSettings::default()
    });
    let request = RawRequest::json_body(body);
    let decoded = decode(&request).expect("a sample decodes");
    let router = Router::new(&RoutingSettings::default());
    to_records(
        decoded,
        None,
        &attributes,
        &router,
        None,
        OffsetDateTime::UNIX_EPOCH,
    )
    .expect("records")
    .1
}

fn headers(record: &OutboundRecord) -> BTreeMap<&str, &str> {
    record
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

/// The structured event rebuilt from a binary record: its `ce_` headers and its value.
fn from_binary(record: &OutboundRecord) -> Value {
    let mut event = serde_json::Map::new();
    for (name, value) in &record.headers {
        if let Some(attribute) = name.strip_prefix("ce_") {
            event.insert(attribute.to_owned(), Value::from(value.as_str()));
        }
    }
    event.insert("datacontenttype".to_owned(), json!("application/json"));
    let data: Value = serde_json::from_slice(&record.payload).expect("the value is JSON");
    event.insert("data".to_owned(), data);
    Value::Object(event)
}

#[test]
fn binary_mode_carries_the_structured_event_as_headers_and_data() {
    let validator = schema_validator();
    for fixture in json_fixtures() {
        let structured = records(EnvelopeMode::Structured, &fixture.body);
        let binary = records(EnvelopeMode::Binary, &fixture.body);
        assert_eq!(binary.len(), structured.len());
        let envelope: Value = serde_json::from_slice(&structured[0].payload).expect("JSON");
        let rebuilt = from_binary(&binary[0]);
        assert_eq!(rebuilt, envelope, "{}", fixture.name);
        let errors = schema_errors(&validator, &rebuilt);
        assert!(errors.is_empty(), "{}: {errors:?}", fixture.name);
        assert_eq!(headers(&binary[0])["content-type"], "application/json");
        assert_eq!(binary[0].key, structured[0].key);
    }
}

#[test]
#[cfg_attr(
    not(feature = "kafka-it"),
    ignore = "needs the CloudEvents Python SDK: pip install cloudevents==2.2.0, then --features kafka-it"
)]
fn every_record_in_both_modes_parses_with_the_cloudevents_sdk() {
    let mut lines = tempfile::NamedTempFile::new().expect("temp file");
    let mut written = 0;
    for fixture in json_fixtures() {
        for mode in [EnvelopeMode::Structured, EnvelopeMode::Binary] {
            for record in records(mode, &fixture.body) {
                let value = std::str::from_utf8(&record.payload).expect("UTF-8 value");
                let line = json!({"key": record.key, "headers": headers(&record), "value": value});
                writeln!(lines, "{line}").expect("write");
                written += 1;
            }
        }
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cloudevents/parse_records.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(lines.path())
        .output()
        .expect("python3 runs (the CloudEvents SDK check needs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the CloudEvents SDK refused a record (needs `pip install cloudevents==2.2.0`): \
         {stdout}{stderr}"
    );
    let half = written / 2;
    assert_eq!(
        stdout.trim(),
        format!("parsed {half} structured, {half} binary")
    );
}
