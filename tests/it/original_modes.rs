//! `envelope.original`: what `data.original` keeps, and what each choice costs in record
//! bytes over the 24 documented samples, sent as JSON and as a form (printed; run with
//! `--nocapture` to read them).

use serde_json::Value;
use telecmi_bridge::config::{EnvelopeSettings, OriginalMode};
use telecmi_bridge::pipeline::{EnvelopeAttributes, RawRequest, decode, to_envelope};
use time::OffsetDateTime;

use crate::fixtures::{form_encoded, json_fixtures};
use crate::golden::{schema_errors, schema_validator};

const MODES: [OriginalMode; 3] = [OriginalMode::Full, OriginalMode::Exact, OriginalMode::None];

fn envelopes(content_type: &str, body: &[u8]) -> [Vec<u8>; 3] {
    MODES.map(|mode| {
        let attributes = EnvelopeAttributes::new(&EnvelopeSettings {
            original: mode,
            ..EnvelopeSettings::default()
        });
        let request = RawRequest {
            is_get: false,
            content_type: Some(content_type),
            content_encoding: None,
            query: None,
            body,
            reserved_query_param: None,
        };
        let decoded = decode(&request).expect("a fixture decodes");
        to_envelope(&attributes, decoded, OffsetDateTime::UNIX_EPOCH)
            .expect("envelope")
            .1
            .value
    })
}

fn original(envelope: &[u8]) -> Value {
    let envelope: Value = serde_json::from_slice(envelope).expect("JSON");
    envelope["data"]
        .get("original")
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn each_original_mode_keeps_what_it_promises_at_its_size() {
    let fixtures = json_fixtures();
    let validator = schema_validator();
    // Body, then full, exact and none, for JSON and for form.
    let mut json_totals = [0_usize; 4];
    let mut form_totals = [0_usize; 4];
    for fixture in &fixtures {
        let json_body = std::str::from_utf8(&fixture.body).expect("UTF-8").trim();
        let form_body = form_encoded(fixture.object.as_ref().expect("strict JSON"));
        let json = envelopes("application/json", json_body.as_bytes());
        let form = envelopes("application/x-www-form-urlencoded", form_body.as_bytes());
        let name = &fixture.name;

        assert_eq!(
            json[1], json[0],
            "{name}: an exact JSON body is kept once either way"
        );
        assert_eq!(original(&form[1])["raw"], form_body.as_str(), "{name}");
        assert!(original(&form[1]).get("payload").is_none(), "{name}");
        assert!(
            form[1].len() < form[0].len(),
            "{name}: exact drops the form's object"
        );
        for envelope in json.iter().chain(&form) {
            let envelope: Value = serde_json::from_slice(envelope).expect("JSON");
            let errors = schema_errors(&validator, &envelope);
            assert!(errors.is_empty(), "{name}: {errors:?}");
        }
        for envelopes in [&json, &form] {
            assert_eq!(
                original(&envelopes[2]),
                Value::Null,
                "{name}: none keeps none"
            );
            assert!(envelopes[2].len() < envelopes[1].len(), "{name}");
        }

        json_totals[0] += json_body.len();
        form_totals[0] += form_body.len();
        for (totals, envelopes) in [(&mut json_totals, &json), (&mut form_totals, &form)] {
            for (total, envelope) in totals[1..].iter_mut().zip(envelopes) {
                *total += envelope.len();
            }
        }
    }
    for (sent_as, totals) in [("JSON", json_totals), ("form", form_totals)] {
        let [body, full, exact, none] = totals.map(|total| total / fixtures.len());
        println!(
            "bytes per event, {} samples sent as {sent_as}: body {body}, envelope with \
             original full {full}, exact {exact}, none {none}",
            fixtures.len()
        );
    }
}
