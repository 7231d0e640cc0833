//! The largest body the configuration accepts makes an envelope Kafka takes: an oversized body
//! gets 413 up front, never a 500 from Kafka.

use serde_json::Value;

use crate::helpers::{spawn_app, test_settings};
use crate::scenarios::accepted;

/// (1,000,000 - 4,096) / 3: the largest `server.body_limit_bytes` start-up accepts with
/// librdkafka's default `message.max.bytes`.
const LARGEST_BODY_LIMIT: usize = 331_968;

fn event_of_size(size: usize) -> String {
    // A repeated key: the envelope then carries the body three times (fields, payload, raw).
    let head = r#"{"type":"event","status":"answered","cmiuuid":"big-1","note":"","note":""#;
    let tail = r#""}"#;
    let filler = "x".repeat(size - head.len() - tail.len());
    format!("{head}{filler}{tail}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_at_the_largest_accepted_limit_is_published_and_one_byte_more_is_413() {
    let mut settings = test_settings();
    settings.server.body_limit_bytes = LARGEST_BODY_LIMIT;
    let app = spawn_app(settings).await;
    accepted(
        app.post_json(event_of_size(LARGEST_BODY_LIMIT).as_bytes())
            .await,
    )
    .await;
    let oversized = app
        .post_json(event_of_size(LARGEST_BODY_LIMIT + 1).as_bytes())
        .await;
    assert_eq!(oversized.status(), 413);
    let body: Value = oversized.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_eq!(app.record_count(), 1);
}
