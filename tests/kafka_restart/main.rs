//! Real-broker tests that stop and restart the broker: run one at a time
//! (`cargo test --features kafka-it --test kafka_restart -- --test-threads=1`).

#[path = "../kafka_it/broker.rs"]
mod broker;
#[allow(dead_code)]
#[path = "../it/fixtures.rs"]
mod fixtures;
#[allow(dead_code)]
#[path = "../it/helpers.rs"]
mod helpers;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use broker::{real_settings, unique_prefix};
use helpers::{TestApp, consume, spawn_app};

/// Runs `deploy/kafka/local-kafka.sh <action>`, which returns once the broker has stopped, or
/// once it answers metadata requests again.
pub fn local_kafka(action: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kafka/local-kafka.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(action)
        .status()
        .expect("run local-kafka.sh");
    assert!(status.success(), "local-kafka.sh {action} failed");
}

async fn wait_for_ready_status(app: &TestApp, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let main = app.ready_status(false).await;
        let admin = app.ready_status(true).await;
        if main == status && admin == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "/readyz is {main} (admin {admin}), not {status}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_down_and_back_up() {
    let app = spawn_app(real_settings(&unique_prefix())).await;
    local_kafka("stop");
    let down = wait_for_ready_status(&app, 503, Duration::from_secs(15)).await;
    local_kafka("start");
    let up = wait_for_ready_status(&app, 200, Duration::from_secs(15)).await;
    eprintln!("readyz: 503 {down:?} after the broker stopped, 200 {up:?} after it was back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_while_events_flow_loses_nothing_acknowledged() {
    let app = spawn_app(real_settings(&unique_prefix())).await;
    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for client in 0..8 {
        let http = app.client.clone();
        let url = app.webhook_url();
        let running = running.clone();
        let sent = sent.clone();
        senders.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut refused = 0_usize;
            let mut n = 0_u64;
            while running.load(Ordering::Relaxed) {
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                let body = format!(
                    r#"{{"type":"event","status":"answered","cmiuuid":"r{client}-{n}","conversation_uuid":"c{client}","time":{}}}"#,
                    1_700_000_000_000_u64 + n
                );
                match http.post(&url).body(body).send().await {
                    Ok(response) if response.status() == 200 => {
                        let answer: Value = response.json().await.expect("JSON");
                        acknowledged.push(answer["id"].as_str().expect("id").to_owned());
                    }
                    Ok(response) => {
                        assert_eq!(response.status(), 503, "only 200 or 503 during an outage");
                        assert!(response.headers().contains_key("retry-after"));
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(error) => panic!("request failed: {error}"),
                }
            }
            (acknowledged, refused)
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    local_kafka("stop");
    tokio::time::sleep(Duration::from_secs(5)).await;
    local_kafka("start");
    app.wait_until_ready().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    running.store(false, Ordering::Relaxed);

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for sender in senders {
        let (ids, refusals) = sender.await.expect("sender");
        acknowledged.extend(ids);
        refused += refusals;
    }
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        acknowledged.len() + refused,
        Duration::from_secs(20),
    )
    .await;
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for record in &records {
        *copies.entry(record.id()).or_default() += 1;
    }
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !copies.contains_key(id.as_str()))
        .collect();
    let duplicates: usize = copies.values().map(|count| count - 1).sum();
    eprintln!(
        "broker restart: sent {}, 2xx {}, 503 {refused}, records {}, duplicates {duplicates}, lost {}",
        sent.load(Ordering::Relaxed),
        acknowledged.len(),
        records.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but missing: {lost:?}");
    assert!(
        acknowledged.len() > 100,
        "too little traffic to mean anything"
    );
}
