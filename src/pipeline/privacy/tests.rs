//! Privacy's unit tests, beside the module so that `privacy.rs` reads as the code alone.

use super::*;
use crate::pipeline::{RawRequest, decode};

fn settings(mode: PrivacyMode) -> PrivacySettings {
    PrivacySettings {
        mode,
        hmac_key: Some(SecretValue::from("pipeline-join-key-0123456789")),
        ..PrivacySettings::default()
    }
}

fn decoded(body: &[u8], content_type: &str) -> Decoded {
    decode(&RawRequest {
        content_type: Some(content_type),
        ..RawRequest::json_body(body)
    })
    .expect("decodes")
}

/// Everything the original keeps: payload, raw and query.
fn original_text(decoded: &Decoded) -> String {
    let original = &decoded.original;
    let payload = match &original.payload {
        OriginalPayload::Json(payload) => payload.get().to_owned(),
        OriginalPayload::Fields(fields) => Value::Object(fields.clone()).to_string(),
    };
    let raw = original.raw.as_deref().unwrap_or_default();
    let query = original.query.as_deref().unwrap_or_default();
    format!("{payload} {raw} {query}")
}

#[test]
fn hashing_is_keyed_stable_across_formats_and_leaves_other_fields_alone() {
    let privacy = Privacy::new(&settings(PrivacyMode::Hmac)).expect("on");
    let json = privacy.apply(decoded(
        br#"{"from":919876543210,"to":"+91 98765 43210","status":"answered","user":"204_1"}"#,
        "application/json",
    ));
    let from = json.fields["from"].as_str().expect("text").to_owned();
    assert!(from.starts_with(HASH_PREFIX), "{from}");
    assert_eq!(
        json.fields["to"], from,
        "one number, one hash, whatever its format"
    );
    assert_eq!(json.fields["status"], "answered");
    assert_eq!(json.fields["user"], "204_1");
    let original = original_text(&json);
    assert!(!original.contains("9876543210"), "{original}");
    assert!(
        original.starts_with(r#"{"from":"hmac-sha256:"#),
        "key order kept: {original}"
    );

    let form = privacy.apply(decoded(
        b"from=919876543210&to=1&to=919876543210",
        "application/x-www-form-urlencoded",
    ));
    assert_eq!(form.fields["from"], from, "form and JSON hash alike");
    assert!(!original_text(&form).contains("9876543210"));
    assert_eq!(form.original.raw, None, "the form's text withheld");
    assert_eq!(form.original.privacy, Some("hmac"));

    let other_key = Privacy::new(&PrivacySettings {
        hmac_key: Some(SecretValue::from("another-key-0123456789abc")),
        ..settings(PrivacyMode::Hmac)
    })
    .expect("on");
    let rehashed = other_key.apply(decoded(br#"{"from":919876543210}"#, "application/json"));
    assert_ne!(rehashed.fields["from"], from, "the hash depends on the key");
}

#[test]
fn redaction_also_removes_the_raw_copy_of_a_leading_zero_body() {
    let privacy = Privacy::new(&settings(PrivacyMode::Redact)).expect("on");
    let redacted = privacy.apply(decoded(
        br#"{"callerid": 04471000000, "to": 4471000001, "status": "started"}"#,
        "application/json",
    ));
    assert_eq!(redacted.fields["callerid"], REDACTED);
    assert_eq!(redacted.fields["to"], REDACTED);
    assert_eq!(redacted.original.raw, None, "raw copy dropped");
    assert_eq!(
        redacted.original.privacy,
        Some("redact"),
        "and the original marked"
    );
    let original = original_text(&redacted);
    assert!(!original.contains("4471000"), "{original}");
    assert!(Privacy::new(&settings(PrivacyMode::Off)).is_none());
}

#[test]
fn names_match_without_case_or_separators_at_any_depth_and_paths_from_the_top() {
    let privacy = Privacy::new(&PrivacySettings {
        phone_fields: vec!["callerid".to_owned(), "lead.alt".to_owned()],
        ..settings(PrivacyMode::Redact)
    })
    .expect("on");
    let decoded = privacy.apply(decoded(
        br#"{"Caller_ID":"1","calls":[{"CALLER-id":"2"}],"lead":{"alt":"3"},"x":{"lead":{"alt":"4"}},"alt":"5"}"#,
        "application/json",
    ));
    let fields = Value::Object(decoded.fields);
    assert_eq!(fields["Caller_ID"], REDACTED);
    assert_eq!(fields["calls"][0]["CALLER-id"], REDACTED);
    assert_eq!(fields["lead"]["alt"], REDACTED, "a path from the top");
    assert_eq!(
        fields["x"]["lead"]["alt"], "4",
        "the same path lower down is another field"
    );
    assert_eq!(fields["alt"], "5");
}

#[test]
fn custom_parameters_lose_every_phone_like_value_and_run_but_nothing_else() {
    let privacy = Privacy::new(&settings(PrivacyMode::Redact)).expect("on");
    let decoded = privacy.apply(decoded(
        br#"{"custom":"{\"lead\":\"+91 98765-43210\",\"n\":919876543210,\"crm\":\"true\",\"id\":\"12345\"}","extra_params":"ring (044) 7100 0000 at 9"}"#,
        "application/json",
    ));
    let custom: Value =
        serde_json::from_str(decoded.fields["custom"].as_str().expect("text")).expect("JSON");
    assert_eq!(custom["lead"], REDACTED);
    assert_eq!(custom["n"], REDACTED);
    assert_eq!(custom["crm"], "true");
    assert_eq!(custom["id"], "12345", "five digits are no phone number");
    assert_eq!(
        decoded.fields["extra_params"],
        format!("ring {REDACTED} at 9")
    );
}

#[test]
fn an_original_with_nothing_to_protect_stays_byte_for_byte() {
    let privacy = Privacy::new(&settings(PrivacyMode::Redact)).expect("on");
    let body = br#"{"status" : "answered",  "custom":"{\"crm\": \"true\"}", "n": 1.50}"#;
    let decoded = privacy.apply(decoded(body, "application/json"));
    assert_eq!(original_text(&decoded).trim_end().as_bytes(), body);
    assert!(decoded.original.is_exact());
    assert_eq!(
        decoded.original.privacy, None,
        "nothing rewritten, nothing marked"
    );
}
