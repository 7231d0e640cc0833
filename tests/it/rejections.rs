//! Every rejection is a JSON error with a stable code, publishes nothing, and leaves the
//! bridge serving.

use serde_json::Value;

use crate::helpers::{spawn_app, test_settings};

struct Case {
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    content_encoding: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

impl Case {
    fn post(
        content_type: Option<&'static str>,
        body: &[u8],
        status: u16,
        code: &'static str,
    ) -> Self {
        Self {
            method: "POST",
            path: "/webhooks/telecmi",
            content_type,
            content_encoding: None,
            body: body.to_vec(),
            status,
            code,
        }
    }
}

async fn assert_rejected(case: Case) {
    let app = spawn_app(test_settings()).await;
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).expect("method");
    let mut request = app
        .client
        .request(method, format!("http://{}{}", app.address, case.path))
        .body(case.body);
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(encoding) = case.content_encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status().as_u16(), case.status);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], case.code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty())
    );
    assert_eq!(
        app.record_count(),
        0,
        "a rejected request published something"
    );

    let still_serving = app
        .post_json(br#"{"type":"event","status":"answered","cmiuuid":"after"}"#)
        .await;
    assert_eq!(still_serving.status(), 200);
}

macro_rules! rejection_tests {
    ($($name:ident: $case:expr;)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                assert_rejected($case).await;
            }
        )+
    };
}

rejection_tests! {
    malformed_json: Case::post(Some("application/json"), br#"{"type": "event","#, 400, "malformed_json");
    json_array_is_not_an_object: Case::post(Some("application/json"), b"[1, 2]", 400, "json_not_object");
    json_string_is_not_an_object: Case::post(None, br#""answered""#, 400, "json_not_object");
    invalid_utf8: Case::post(Some("application/json"), b"{\"from\": \"\xc3\x28\"}", 400, "invalid_utf8");
    empty_body: Case::post(Some("application/json"), b"", 400, "empty_payload");
    body_over_the_limit: Case::post(
        Some("application/json"),
        format!(r#"{{"pad": "{}"}}"#, "x".repeat(70_000)).as_bytes(),
        413,
        "payload_too_large"
    );
    unsupported_content_type: Case::post(Some("application/xml"), b"<event/>", 415, "unsupported_content_type");
    unsupported_charset: Case::post(Some("application/json; charset=iso-8859-1"), b"{}", 415, "unsupported_charset");
    compressed_body: Case {
        content_encoding: Some("gzip"),
        ..Case::post(Some("application/json"), b"\x1f\x8b\x08\x00", 415, "unsupported_content_encoding")
    };
    unsupported_method: Case { method: "PUT", ..Case::post(Some("application/json"), b"{}", 405, "method_not_allowed") };
    unknown_path: Case { path: "/webhooks/other/x/y", ..Case::post(None, b"{}", 404, "not_found") };
    get_without_fields: Case { method: "GET", ..Case::post(None, b"", 400, "empty_payload") };
}
