//! Reconciliation's view of Kafka: the CDRs published since a point in time, read by record
//! timestamp from the CDR topics only.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use telecmi_bridge::Settings;
use telecmi_bridge::reconcile::kafka::{PublishedCdrs, read_published_cdrs};

use crate::broker::{real_settings, unique_prefix};
use crate::helpers::{TestApp, spawn_app};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/telecmi/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds")
}

/// Posts `payload` and returns the event id the bridge answered with.
async fn publish(app: &TestApp, payload: &Value) -> String {
    let response = app.post_json(payload.to_string().as_bytes()).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON answer");
    answer["id"].as_str().expect("event id").to_owned()
}

async fn read(settings: &Settings, since_ms: i64) -> PublishedCdrs {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        read_published_cdrs(&settings, since_ms, Duration::from_secs(30))
    })
    .await
    .expect("reader thread")
    .expect("CDRs read")
}

fn event_ids(published: &PublishedCdrs) -> BTreeSet<String> {
    published
        .cdrs
        .iter()
        .map(|cdr| cdr.event_id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdrs_published_since_a_time_are_read_from_the_cdr_topics_only() {
    let prefix = unique_prefix();
    let settings = real_settings(&prefix);
    let app = spawn_app(settings.clone()).await;

    let earlier = publish(&app, &fixture("chub-inbound-answered-cdr.json")).await;
    let since = now_ms() + 1;
    // Record timestamps have millisecond resolution: the next records must be stamped later.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while now_ms() <= since {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stands still"
        );
        tokio::task::yield_now().await;
    }
    let missed = publish(&app, &fixture("chub-outbound-missed-cdr-leg-a.json")).await;
    let mut unusual = fixture("chub-india-inbound-answered-cdr.json");
    unusual["status"] = Value::from("busy");
    let on_fallback = publish(&app, &unusual).await;
    publish(&app, &fixture("chub-inbound-answered-leg-a.json")).await;

    let since_then = read(&settings, since).await;
    assert_eq!(
        event_ids(&since_then),
        BTreeSet::from([missed.clone(), on_fallback.clone()]),
        "the CDRs after `since`, the fallback topic's included; no live event"
    );
    assert_eq!(since_then.records_read, 2);
    assert_eq!(since_then.not_cdrs, 0);
    let fallback = since_then
        .cdrs
        .iter()
        .find(|cdr| cdr.event_id == on_fallback)
        .expect("the fallback CDR");
    assert_eq!(fallback.status.as_deref(), Some("busy"));
    assert_eq!(fallback.from.as_deref(), Some("9200000000"));

    let everything = read(&settings, 0).await;
    assert_eq!(
        event_ids(&everything),
        BTreeSet::from([earlier, missed, on_fallback])
    );

    let future = read(&settings, now_ms() + 3_600_000).await;
    assert_eq!(future.records_read, 0);
    app.stop().await;
}
