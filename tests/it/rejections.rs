//! Malformed and hostile requests, one table: each row's status and code, the JSON error
//! shape, and what reached Kafka: nothing for a refusal by headers (405, 413, 415), the raw
//! request on the dead-letter topic for a body that cannot become an envelope, the event for
//! whatever the bridge accepts. The bridge must still serve after every row.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use telecmi_bridge::config::DeliveryMode;

use crate::helpers::{TestApp, consume, on_controlled_cluster, spawn_app, test_settings};

/// What a row must get back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 200 and the event published.
    Accepted,
    /// Refused before the body means anything: counted and logged, nothing published.
    Refused(u16, &'static str),
    /// Refused after the body was read: the 4xx, and the raw request on the dead-letter topic.
    DeadLettered(u16, &'static str),
}

struct Row {
    name: &'static str,
    method: &'static str,
    /// Path and query.
    target: String,
    content_type: Option<&'static str>,
    content_encoding: Option<&'static str>,
    body: Vec<u8>,
    expect: Expect,
}

fn post(
    name: &'static str,
    content_type: Option<&'static str>,
    body: &[u8],
    expect: Expect,
) -> Row {
    Row {
        name,
        method: "POST",
        target: "/webhooks/telecmi".to_owned(),
        content_type,
        content_encoding: None,
        body: body.to_vec(),
        expect,
    }
}

fn json(name: &'static str, body: &[u8], expect: Expect) -> Row {
    post(name, Some("application/json"), body, expect)
}

fn form(name: &'static str, body: &[u8], expect: Expect) -> Row {
    post(
        name,
        Some("application/x-www-form-urlencoded"),
        body,
        expect,
    )
}

fn get(name: &'static str, query: &str, expect: Expect) -> Row {
    Row {
        method: "GET",
        target: if query.is_empty() {
            "/webhooks/telecmi".to_owned()
        } else {
            format!("/webhooks/telecmi?{query}")
        },
        ..post(name, None, b"", expect)
    }
}

fn with_method(method: &'static str, row: Row) -> Row {
    Row { method, ..row }
}

fn nested(depth: usize) -> Vec<u8> {
    format!(
        r#"{{"type":"event","status":"answered","cmiuuid":"deep-{depth}","deep":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
    .into_bytes()
}

fn table() -> Vec<Row> {
    use Expect::{Accepted, DeadLettered, Refused};
    let event = |cmiuuid: &str| {
        format!(r#"{{"type":"event","status":"answered","cmiuuid":"{cmiuuid}"}}"#).into_bytes()
    };
    let mut too_large = br#"{"pad":""#.to_vec();
    too_large.extend(std::iter::repeat_n(b'x', 70_000));
    too_large.extend(br#""}"#);
    let mut long_string =
        br#"{"type":"event","status":"answered","cmiuuid":"long","note":""#.to_vec();
    long_string.extend(std::iter::repeat_n(b'y', 60_000));
    long_string.extend(br#""}"#);
    let huge_number = format!(
        r#"{{"type":"event","status":"answered","cmiuuid":"huge","big":{}}}"#,
        "9".repeat(400)
    );
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend(event("bom"));
    vec![
        // Not JSON, or not quite.
        json("malformed_json", br#"{"type": "event","#, DeadLettered(400, "malformed_json")),
        json("truncated_json", br#"{"type":"event","status":"ans"#, DeadLettered(400, "malformed_json")),
        json("trailing_garbage", br#"{"type":"event"} x"#, DeadLettered(400, "malformed_json")),
        json("trailing_comma", br#"{"type":"event",}"#, DeadLettered(400, "malformed_json")),
        json("single_quotes", b"{'type':'event'}", DeadLettered(400, "malformed_json")),
        json("byte_order_mark", &with_bom, DeadLettered(400, "malformed_json")),
        json("lone_surrogate_escape", br#"{"from":"\ud800"}"#, DeadLettered(400, "malformed_json")),
        json("raw_nul_byte_in_a_string", b"{\"from\":\"a\0b\"}", DeadLettered(400, "malformed_json")),
        json("form_body_labelled_json", b"type=event&status=answered", DeadLettered(400, "malformed_json")),
        // JSON, but not an object.
        json("top_level_array", b"[1, 2]", DeadLettered(400, "json_not_object")),
        json("top_level_string", br#""answered""#, DeadLettered(400, "json_not_object")),
        json("top_level_number", b"42", DeadLettered(400, "json_not_object")),
        json("top_level_null", b"null", DeadLettered(400, "json_not_object")),
        json("top_level_boolean", b"true", DeadLettered(400, "json_not_object")),
        // Not UTF-8.
        json("invalid_utf8_in_json", b"{\"from\": \"\xc3\x28\"}", DeadLettered(400, "invalid_utf8")),
        form("invalid_utf8_percent_encoded", b"type=event&from=%FF", DeadLettered(400, "invalid_utf8")),
        form("invalid_utf8_raw_in_form", b"type=event&from=\xff", DeadLettered(400, "invalid_utf8")),
        get("invalid_utf8_in_query", "type=event&from=%C3%28", DeadLettered(400, "invalid_utf8")),
        // Empty.
        json("empty_body", b"", DeadLettered(400, "empty_payload")),
        json("whitespace_body", b" \r\n\t ", DeadLettered(400, "empty_payload")),
        form("empty_form", b"", DeadLettered(400, "empty_payload")),
        form("form_of_separators", b"&&&", DeadLettered(400, "empty_payload")),
        get("get_without_fields", "", DeadLettered(400, "empty_payload")),
        get("get_with_only_the_token", "bridge_token=0123456789abcdef", DeadLettered(400, "empty_payload")),
        // Refused by their headers or method.
        post("xml_content_type", Some("application/xml"), b"<event/>", Refused(415, "unsupported_content_type")),
        post("html_content_type", Some("text/html"), b"<p>hi</p>", Refused(415, "unsupported_content_type")),
        post("multipart_content_type", Some("multipart/form-data; boundary=x"), b"--x--", Refused(415, "unsupported_content_type")),
        post("latin1_charset", Some("application/json; charset=iso-8859-1"), b"{}", Refused(415, "unsupported_charset")),
        Row { content_encoding: Some("gzip"), ..json("gzip_body", b"\x1f\x8b\x08\x00", Refused(415, "unsupported_content_encoding")) },
        Row { content_encoding: Some("br"), ..json("brotli_body", b"\x0b\x02\x80", Refused(415, "unsupported_content_encoding")) },
        json("body_over_the_limit", &too_large, Refused(413, "payload_too_large")),
        with_method("PUT", json("put", &event("put"), Refused(405, "method_not_allowed"))),
        with_method("DELETE", json("delete", b"", Refused(405, "method_not_allowed"))),
        with_method("PATCH", json("patch", &event("patch"), Refused(405, "method_not_allowed"))),
        Row { target: "/webhooks/other".to_owned(), ..json("unknown_path", &event("path"), Refused(404, "not_found")) },
        Row { target: "/webhooks/telecmi/a/b".to_owned(), ..json("too_deep_path", &event("path"), Refused(404, "not_found")) },
        // Hostile or odd, and still an event: accepted, kept exactly.
        json("deeply_nested_beyond_the_parser_limit", &nested(30_000), DeadLettered(400, "malformed_json")),
        json("nested_within_the_parser_limit", &nested(100), Accepted),
        json("huge_number_literal", huge_number.as_bytes(), Accepted),
        json("huge_exponent", br#"{"type":"event","status":"answered","cmiuuid":"exp","x":1e999999}"#, Accepted),
        json("very_long_string", &long_string, Accepted),
        json("duplicate_keys", br#"{"type":"event","status":"hangup","status":"answered","cmiuuid":"dup"}"#, Accepted),
        json("escaped_nul_character", br#"{"type":"event","status":"answered","cmiuuid":"nul","from":"a\u0000b"}"#, Accepted),
        json("leading_zero_number", br#"{"type":"event","status":"answered","cmiuuid":"zero","callerid":04471000000}"#, Accepted),
        json("every_documented_field_of_the_wrong_type", br#"{"type":1,"status":true,"cmiuuid":[],"conversation_uuid":{},"time":"soon","from":{"a":1},"answeredsec":"x","record":"maybe","leg":7}"#, Accepted),
        post("missing_content_type_json", None, &event("no-type-json"), Accepted),
        post("missing_content_type_form", None, b"type=event&status=answered&cmiuuid=no-type-form", Accepted),
        Row { content_encoding: Some("identity"), ..json("identity_encoding", &event("identity"), Accepted) },
        form("repeated_form_keys", b"type=event&status=answered&cmiuuid=a&cmiuuid=b", Accepted),
        get("repeated_query_keys", "type=event&status=answered&cmiuuid=c&cmiuuid=d", Accepted),
        get("invalid_percent_escape_kept", "type=event&status=answered&cmiuuid=pct&note=%ZZ", Accepted),
        form("control_characters_in_values", b"type=event&status=answered&cmiuuid=ctl&note=%01%02%1F", Accepted),
    ]
}

struct Outcome {
    status: u16,
    request_id: String,
    body: Value,
}

async fn send(app: &TestApp, row: &Row) -> Outcome {
    let method = reqwest::Method::from_bytes(row.method.as_bytes()).expect("method");
    let mut request = app
        .client
        .request(method, format!("http://{}{}", app.address, row.target))
        .body(row.body.clone());
    if let Some(content_type) = row.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(encoding) = row.content_encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    Outcome {
        status,
        request_id,
        body,
    }
}

/// The payload a dead letter must carry: the body, or a GET's query without the token.
fn dead_letter_payload(row: &Row) -> Vec<u8> {
    if row.method != "GET" {
        return row.body.clone();
    }
    let query = row.target.split_once('?').map_or("", |(_, query)| query);
    query
        .split('&')
        .filter(|pair| !pair.starts_with("bridge_token="))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_a_clear_answer_and_nothing_is_lost() {
    let rows = table();
    assert!(rows.len() >= 40, "the issue asks for at least 40 rows");
    let app = spawn_app(test_settings()).await;
    let mut failures = Vec::new();
    let mut dead_letters: HashMap<String, &Row> = HashMap::new();
    let mut accepted_ids = Vec::new();
    let mut refused_request_ids = Vec::new();
    for row in &rows {
        let outcome = send(&app, row).await;
        let mut fail = |what: String| failures.push(format!("{}: {what}", row.name));
        if outcome.request_id.is_empty() {
            fail("no x-request-id".to_owned());
        }
        match row.expect {
            Expect::Accepted => {
                if outcome.status != 200 || outcome.body["status"] != "accepted" {
                    fail(format!(
                        "expected 200 accepted, got {} {}",
                        outcome.status, outcome.body
                    ));
                } else {
                    accepted_ids.push(outcome.body["id"].as_str().unwrap_or_default().to_owned());
                }
            }
            Expect::Refused(status, code) | Expect::DeadLettered(status, code) => {
                let error = &outcome.body["error"];
                let message = error["message"].as_str().unwrap_or_default();
                if outcome.status != status || error["code"] != code || message.is_empty() {
                    fail(format!(
                        "expected {status} {code}, got {} {}",
                        outcome.status, outcome.body
                    ));
                }
                if matches!(row.expect, Expect::DeadLettered(..)) {
                    dead_letters.insert(outcome.request_id.clone(), row);
                } else {
                    refused_request_ids.push(outcome.request_id.clone());
                }
            }
        }
        let still_serving = app
            .post_json(br#"{"type":"event","status":"answered","cmiuuid":"still-serving"}"#)
            .await;
        if still_serving.status() != 200 {
            fail(format!(
                "the bridge stopped serving: {}",
                still_serving.status()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let expected = accepted_ids.len() + rows.len() + dead_letters.len();
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        expected,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(records.len(), expected, "records published");
    let mut letters_seen = 0;
    for record in records
        .iter()
        .filter(|record| record.topic == "telecmi.deadletter")
    {
        let key = record.key.clone().unwrap_or_default();
        let row = dead_letters
            .get(&key)
            .unwrap_or_else(|| panic!("a dead letter for request {key} that should not have one"));
        assert_eq!(
            record.payload,
            dead_letter_payload(row),
            "{}: dead-letter payload",
            row.name
        );
        let Expect::DeadLettered(_, code) = row.expect else {
            unreachable!()
        };
        assert_eq!(
            record.header("telecmi-deadletter-reason"),
            Some(code),
            "{}",
            row.name
        );
        assert!(
            record.header("telecmi-received-at").is_some(),
            "{}",
            row.name
        );
        assert_eq!(record.header("telecmi-request-id"), Some(key.as_str()));
        assert!(
            record
                .headers
                .iter()
                .all(|(_, value)| !value.contains("0123456789abcdef")),
            "{}: the token reached the dead-letter topic",
            row.name
        );
        letters_seen += 1;
    }
    assert_eq!(
        letters_seen,
        dead_letters.len(),
        "one dead letter per dead-lettered row"
    );
    for id in &accepted_ids {
        assert!(
            records.iter().any(|record| record.id() == id),
            "accepted {id} not published"
        );
    }
    for request_id in &refused_request_ids {
        assert!(
            records
                .iter()
                .all(|record| record.key.as_deref() != Some(request_id.as_str())),
            "a request refused by its headers was published"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_stored_is_answered_503_so_the_sender_retries() {
    let (mut settings, cluster, _topics) = on_controlled_cluster(test_settings());
    settings.delivery.ack_timeout_ms = Duration::from_millis(1_000);
    let app = spawn_app(settings).await;
    cluster.broker_down(1).expect("broker down");
    let response = app.post_json(br#"{"type": "event","#).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    cluster.broker_up(1).expect("broker up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_spool_mode_dead_letters_go_through_the_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings();
    settings.delivery.mode = DeliveryMode::Spool;
    settings.spool.path = dir.path().join("spool.redb");
    let app = spawn_app(settings).await;
    let response = app.post_json(b"[1]").await;
    assert_eq!(response.status(), 400);
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].topic, "telecmi.deadletter");
    assert_eq!(records[0].payload, b"[1]");
}
