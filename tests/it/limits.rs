//! Abuse limits: headers must arrive in time (slow loris), and requests beyond the in-flight
//! limit are refused at once.

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant};

use serde_json::Value;
use telecmi_bridge::config::KafkaProperties;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{on_controlled_cluster, spawn_app, test_settings};
use crate::scenarios::accepted;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_with_its_headers_is_cut_off() {
    let mut settings = test_settings();
    settings.server.header_read_timeout_ms = Duration::from_millis(500);
    let app = spawn_app(settings).await;

    let mut slow = TcpStream::connect(app.address).await.expect("connect");
    slow.write_all(b"POST /webhooks/telecmi HTTP/1.1\r\nHost: bridge\r\n")
        .await
        .expect("partial headers");
    let answer = closed_by_the_bridge(&mut slow, Duration::from_millis(400)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "a request without its headers was served"
    );
    accepted(
        app.post_json(br#"{"type":"event","status":"answered","cmiuuid":"quick"}"#)
            .await,
    )
    .await;
}

/// Waits (up to 5 s) for the bridge to close `connection`, no sooner than `not_before`;
/// returns what it sent first.
pub async fn closed_by_the_bridge(connection: &mut TcpStream, not_before: Duration) -> Vec<u8> {
    let started = Instant::now();
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(5), connection.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection was still open after 5 s");
    let waited = started.elapsed();
    assert!(
        waited >= not_before,
        "cut off after {waited:?}, before the deadline"
    );
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_get_503_at_once() {
    let (mut settings, cluster, _topics) = on_controlled_cluster(test_settings());
    settings.server.max_in_flight_requests = NonZeroUsize::new(1).expect("not zero");
    settings.delivery.ack_timeout_ms = Duration::from_millis(2_000);
    let app = spawn_app(settings).await;
    cluster.broker_down(1).expect("broker down");

    // Held in flight: Kafka cannot acknowledge it until the ack timeout.
    let held = {
        let client = app.client.clone();
        let url = app.webhook_url();
        tokio::spawn(async move {
            client
                .post(url)
                .body(r#"{"type":"event","status":"answered","cmiuuid":"held"}"#)
                .send()
                .await
                .expect("request")
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let refused = app
        .post_json(br#"{"type":"event","status":"answered","cmiuuid":"second"}"#)
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the second request waited instead of being refused"
    );
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(held.await.expect("held request"), 503, "Kafka was down");
    cluster.broker_up(1).expect("broker up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_gets_429_with_retry_after() {
    let mut settings = test_settings();
    settings.server.rate_limit_per_second = 1;
    settings.server.rate_limit_burst = NonZeroU32::new(2).expect("not zero");
    let app = spawn_app(settings).await;
    let event = |n: u32| format!(r#"{{"type":"event","status":"answered","cmiuuid":"rate-{n}"}}"#);
    accepted(app.post_json(event(1).as_bytes()).await).await;
    accepted(app.post_json(event(2).as_bytes()).await).await;
    let limited = app.post_json(event(3).as_bytes()).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let body: Value = limited.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    accepted(app.post_json(event(4).as_bytes()).await).await;
    assert_eq!(
        app.record_count(),
        3,
        "the limited request was not published"
    );
}

/// A form body within the body limit can still make a record Kafka refuses: control
/// characters sent as `%01` (3 bytes) are written `\u0001` (6 bytes) in the normalised fields
/// and again in the original. Such an event is answered 413 before publishing, not 500 after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_for_kafka_is_refused_413_before_publishing() {
    let mut settings = test_settings();
    settings.server.body_limit_bytes = 7_000;
    settings.kafka.properties = KafkaProperties::try_from(BTreeMap::from([(
        "message.max.bytes".to_owned(),
        telecmi_bridge::config::SecretValue::from("20000"),
    )]))
    .expect("a number of bytes");
    let app = spawn_app(settings).await;
    let form = format!("type=event&status=answered&note={}", "%01".repeat(2_200));
    assert!(form.len() < 7_000);
    let answer = app.post_form(&form).await;
    assert_eq!(answer.status(), 413);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "envelope_too_large", "{body}");
    accepted(
        app.post_form("type=event&status=answered&cmiuuid=small")
            .await,
    )
    .await;
    assert_eq!(app.record_count(), 1, "only the small event reached Kafka");
}
