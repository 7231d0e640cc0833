//! Decoding's unit tests, beside the module so that `decode.rs` reads as the code alone.

use super::*;

fn codes(decoded: &Decoded) -> Vec<WarningCode> {
    decoded
        .warnings
        .iter()
        .map(|warning| warning.code)
        .collect()
}

fn post(content_type: Option<&'static str>, body: &'static [u8]) -> RawRequest<'static> {
    RawRequest {
        is_get: false,
        content_type,
        content_encoding: None,
        query: None,
        body,
        reserved_query_param: Some("token"),
    }
}

#[test]
fn repeated_keys_are_kept_once_in_the_payload_and_exactly_in_raw() {
    let body = br#"{"a": 1, "a": 2, "n": 123456789012345678901234567890, "f": 1.50}"#;
    let decoded = decode(&post(Some("application/json"), body)).unwrap();
    let OriginalPayload::Json(payload) = &decoded.original.payload else {
        panic!("expected JSON")
    };
    assert_eq!(
        payload.get(),
        r#"{"a":2,"n":123456789012345678901234567890,"f":1.50}"#
    );
    assert_eq!(
        decoded.original.raw.as_deref().map(str::as_bytes),
        Some(&body[..])
    );
    assert_eq!(codes(&decoded), [WarningCode::DuplicateKeys]);
    assert_eq!(decoded.fields["a"], serde_json::json!(2));
    assert_eq!(
        decoded.fields["n"].to_string(),
        "123456789012345678901234567890"
    );
    assert_eq!(decoded.fields["f"].to_string(), "1.50");
}

#[test]
fn leading_zero_literals_are_quoted_and_the_raw_body_kept() {
    let body = br#"{"callerid": 04471000000, "s": "05", "n": -012, "ok": 0, "x": 0.5}"#;
    let decoded = decode(&post(None, body)).unwrap();
    assert_eq!(decoded.fields["callerid"], "04471000000");
    assert_eq!(decoded.fields["n"], "-012");
    assert_eq!(decoded.fields["s"], "05");
    assert_eq!(decoded.fields["ok"], serde_json::json!(0));
    assert_eq!(
        decoded.original.raw.as_deref().map(str::as_bytes),
        Some(&body[..])
    );
    assert!(!decoded.original.is_exact());
}

#[test]
fn malformed_json_without_leading_zeros_is_rejected() {
    let error = decode(&post(None, br#"{"a": 01x"#)).unwrap_err();
    assert!(matches!(error, RejectReason::MalformedJson(_)));
}

#[test]
fn top_level_values_other_than_objects_are_rejected() {
    for (body, name) in [
        (&b"[1]"[..], "array"),
        (b"\"x\"", "string"),
        (b"12", "number"),
        (b"null", "null"),
    ] {
        let request = RawRequest {
            body,
            ..post(Some("application/json"), b"")
        };
        assert_eq!(
            decode(&request).unwrap_err(),
            RejectReason::NotAnObject(name)
        );
    }
}

#[test]
fn content_types_are_recognised_with_parameters() {
    let body = b"{\"a\":1}";
    for accepted in [
        "application/json; charset=UTF-8",
        "Application/JSON",
        "text/plain",
        "application/cloudevents+json",
    ] {
        assert!(decode(&post(Some(accepted), body)).is_ok(), "{accepted}");
    }
    assert_eq!(
        decode(&post(Some("application/xml"), body)).unwrap_err(),
        RejectReason::UnsupportedContentType
    );
    assert_eq!(
        decode(&post(Some("application/json; charset=latin1"), body)).unwrap_err(),
        RejectReason::UnsupportedCharset
    );
}

#[test]
fn a_json_object_labelled_as_a_form_is_read_as_json_with_a_warning() {
    let form = Some("application/x-www-form-urlencoded");
    let body = b" {\"type\":\"event\",\"status\":\"answered\",\"to\":\"a&b=c\"}";
    let decoded = decode(&post(form, body)).expect("read as JSON");
    assert_eq!(decoded.encoding, Encoding::Json);
    assert_eq!(decoded.fields["status"], "answered");
    assert_eq!(decoded.fields["to"], "a&b=c");
    assert_eq!(codes(&decoded), [WarningCode::JsonLabelledAsForm]);
    assert!(matches!(
        decode(&post(form, b"{\"type\":\"event\"")).unwrap_err(),
        RejectReason::MalformedJson(_)
    ));
    let plain_form = decode(&post(form, b"type=event&status=answered")).expect("a form");
    assert_eq!(plain_form.encoding, Encoding::Form);
    assert!(plain_form.warnings.is_empty());
}

#[test]
fn form_fields_keep_text_and_collect_repeated_keys() {
    let body = b"to=%2B0044&custom=%7B%22a%22%3A1%7D&to=0045&empty=&flag";
    let decoded = decode(&post(Some("application/x-www-form-urlencoded"), body)).unwrap();
    assert_eq!(decoded.encoding, Encoding::Form);
    assert_eq!(decoded.fields["to"], "0045");
    assert_eq!(decoded.fields["custom"], r#"{"a":1}"#);
    assert_eq!(decoded.fields["flag"], "");
    let OriginalPayload::Fields(original) = &decoded.original.payload else {
        panic!("expected fields")
    };
    assert_eq!(original["to"], serde_json::json!(["+0044", "0045"]));
    assert_eq!(
        decoded.original.raw.as_deref().map(str::as_bytes),
        Some(&body[..])
    );
}

#[test]
fn query_drops_the_reserved_credential_parameter() {
    let request = RawRequest {
        is_get: true,
        query: Some("token=secret&status=answered"),
        ..post(None, b"")
    };
    let decoded = decode(&request).unwrap();
    assert_eq!(decoded.encoding, Encoding::Query);
    assert!(!decoded.fields.contains_key("token"));
    let OriginalPayload::Fields(original) = &decoded.original.payload else {
        panic!("expected fields")
    };
    assert!(!original.contains_key("token"));
    assert_eq!(decoded.original.raw.as_deref(), Some("status=answered"));
}

#[test]
fn a_json_body_without_repeated_keys_is_exact_and_nested_repeats_are_found() {
    let exact = decode(&post(None, br#"{"a": {"b": 1, "c": [{"b": 2}]}}"#)).unwrap();
    assert!(exact.original.is_exact());
    assert!(exact.warnings.is_empty());
    let nested = decode(&post(None, br#"{"a": {"b": 1, "c": [{"b": 2, "b": 3}]}}"#)).unwrap();
    assert!(!nested.original.is_exact());
    assert_eq!(codes(&nested), [WarningCode::DuplicateKeys]);
}

#[test]
fn a_posts_query_string_is_kept_exactly_without_the_credential() {
    let request = RawRequest {
        query: Some("src=chub+india&token=secret&tag=%41&flag"),
        ..post(Some("application/json"), br#"{"a":1}"#)
    };
    let decoded = decode(&request).unwrap();
    assert_eq!(
        decoded.original.query.as_deref(),
        Some("src=chub+india&tag=%41&flag")
    );
    assert!(
        !decoded.fields.contains_key("src"),
        "the body alone makes the fields"
    );
    let only_token = RawRequest {
        query: Some("token=secret"),
        ..request
    };
    assert_eq!(decode(&only_token).unwrap().original.query, None);
}

#[test]
fn invalid_utf8_is_rejected_in_json_and_form() {
    assert_eq!(
        decode(&post(Some("application/json"), b"{\"a\":\"\xff\"}")).unwrap_err(),
        RejectReason::InvalidUtf8
    );
    assert_eq!(
        decode(&post(Some("application/x-www-form-urlencoded"), b"a=%FF")).unwrap_err(),
        RejectReason::InvalidUtf8
    );
}

#[test]
fn empty_bodies_and_compressed_bodies_are_rejected() {
    assert_eq!(
        decode(&post(None, b"  \n")).unwrap_err(),
        RejectReason::EmptyBody
    );
    let gzip = RawRequest {
        content_encoding: Some("gzip"),
        ..post(None, b"{}")
    };
    assert_eq!(
        decode(&gzip).unwrap_err(),
        RejectReason::UnsupportedContentEncoding
    );
}
