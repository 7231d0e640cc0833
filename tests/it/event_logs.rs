//! The log at the default level has no line per accepted event: written for every webhook, it
//! cost about a sixth of the bridge's CPU per event (docs/performance.md); Kafka's records and
//! the metrics account for every event, and `debug` still shows each one.

use std::time::Duration;

use serde_json::Value;
use telecmi_bridge::config::LogFormat;

use crate::helpers::test_settings;
use crate::process::Bridge;

async fn accept_and_read_log(level: &str, requests: usize) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings();
    settings.logging.format = LogFormat::Json;
    settings.logging.level = level.to_owned();
    let mut bridge = Bridge::start(settings, dir.path()).await;
    let client = reqwest::Client::new();
    for n in 0..requests {
        let answer = client
            .post(bridge.webhook_url())
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"type":"cdr","status":"answered","cmiuuid":"logged-{n}"}}"#
            ))
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status(), 200);
    }
    bridge.terminate(Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(bridge.log_path()).expect("log");
    log.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn per_event_lines(lines: &[Value]) -> usize {
    lines
        .iter()
        .filter(|line| line.get("event_id").is_some())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_write_no_line_each_at_info_and_one_each_at_debug() {
    let requests = 10;
    let at_info = accept_and_read_log("info", requests).await;
    assert!(!at_info.is_empty(), "the bridge logged nothing at info");
    assert_eq!(per_event_lines(&at_info), 0, "{at_info:#?}");
    let at_debug = accept_and_read_log("debug", requests).await;
    assert_eq!(
        per_event_lines(&at_debug),
        requests,
        "one `event published` each"
    );
}
