//! The log an operator reads during an outage: with Kafka unreachable, every webhook gets 503,
//! but the cause is logged once, not once per request (and not again at ERROR by the HTTP
//! trace layer), and librdkafka's repeated connection errors are held back too.

use std::time::Duration;

use serde_json::Value;
use telecmi_bridge::config::{Bootstrap, LogFormat};

use crate::helpers::test_settings;
use crate::process::Bridge;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_logs_its_cause_once_not_once_per_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings();
    settings.logging.format = LogFormat::Json;
    settings.logging.level = "info".to_owned();
    // Nothing listens on port 1: Kafka is down from the start.
    settings.kafka.bootstrap_servers = Bootstrap::Brokers("127.0.0.1:1".to_owned());
    settings.delivery.ack_timeout_ms = Duration::from_millis(300);
    settings.server.request_timeout_ms = Duration::from_millis(2_000);
    let mut bridge = Bridge::start(settings, dir.path()).await;
    let client = reqwest::Client::new();
    let requests = 40;
    let answers = futures_util::future::join_all((0..requests).map(|n| {
        client
            .post(bridge.webhook_url())
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"type":"cdr","status":"answered","cmiuuid":"outage-{n}"}}"#
            ))
            .send()
    }))
    .await;
    for answer in answers {
        assert_eq!(answer.expect("answered").status(), 503);
    }
    bridge.terminate(Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(bridge.log_path()).expect("log");
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let message = |line: &Value| line["message"].as_str().unwrap_or_default().to_owned();
    let not_confirmed = lines
        .iter()
        .filter(|line| message(line) == "event not confirmed")
        .count();
    assert_eq!(not_confirmed, 1, "the cause once, not per request:\n{log}");
    let errors: Vec<&Value> = lines
        .iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert!(
        errors.len() <= 3,
        "{} ERROR lines for {requests} refused requests:\n{log}",
        errors.len()
    );
    assert!(
        lines.len() < requests,
        "{} lines for {requests} refused requests:\n{log}",
        lines.len()
    );
}
