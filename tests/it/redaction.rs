//! Secrets stay secret. The bridge runs as a process with every log level on (trace); tokens
//! sent in the path, the query and the header, a wrong token, and the HMAC secret must then
//! appear nowhere: not in its output, not in its metrics, not in what it publishes.

use std::time::Duration;

use serde_json::Value;
use telecmi_bridge::config::{LogFormat, SignatureEncoding};
use telecmi_bridge::http::signature::sign;

use crate::helpers::{consume, test_settings};
use crate::process::Bridge;

const PATH_TOKEN: &str = "path-token-5f0c1d2e";
const QUERY_TOKEN: &str = "query-token-7a8b9c0d";
const HEADER_TOKEN: &str = "header-token-3e4f5a6b";
const WRONG_TOKEN: &str = "wrong-token-9d8c7b6a";
const HMAC_SECRET: &str = "hmac-secret-1a2b3c4d";

fn signed(request: reqwest::RequestBuilder, message: &[u8]) -> reqwest::RequestBuilder {
    let signature = sign(HMAC_SECRET, message, SignatureEncoding::Hex);
    request.header("x-signature", format!("sha256={signature}"))
}

/// The embedded cluster's address, from the warning the bridge logs when it starts one.
fn embedded_bootstrap(log: &str) -> String {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|line| line["bootstrap_servers"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no bootstrap_servers in the log:\n{log}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_secrets_appear_in_no_log_metric_or_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings();
    settings.logging.format = LogFormat::Json;
    settings.auth.required = true;
    let tokens = format!(r#"["{PATH_TOKEN}","{QUERY_TOKEN}","{HEADER_TOKEN}"]"#);
    let secrets = format!(r#"["{HMAC_SECRET}"]"#);
    let mut bridge = Bridge::start_with_env(
        settings.clone(),
        dir.path(),
        &[
            ("RUST_LOG", "trace"),
            ("TELECMI_BRIDGE_AUTH__TOKENS", &tokens),
            ("TELECMI_BRIDGE_AUTH__HMAC_SECRETS", &secrets),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let url = bridge.webhook_url();
    let event = |id: &str| format!(r#"{{"type":"event","status":"answered","cmiuuid":"{id}"}}"#);

    let mut statuses = Vec::new();
    let body = event("by-path");
    let response = signed(http.post(format!("{url}/{PATH_TOKEN}")), body.as_bytes())
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    statuses.push(("path", response.status().as_u16()));

    let query = format!("type=event&status=missed&cmiuuid=by-query&bridge_token={QUERY_TOKEN}");
    let response = signed(http.get(format!("{url}?{query}")), query.as_bytes())
        .send()
        .await
        .expect("request");
    statuses.push(("query", response.status().as_u16()));

    let body = event("by-header");
    let response = signed(http.post(&url), body.as_bytes())
        .header("x-bridge-token", HEADER_TOKEN)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    statuses.push(("header", response.status().as_u16()));

    // Undecodable, so dead-lettered: the query's token must not travel with it.
    let broken = format!("type=event&bridge_token={QUERY_TOKEN}&from=%C3%28");
    let response = signed(http.get(format!("{url}?{broken}")), broken.as_bytes())
        .send()
        .await
        .expect("request");
    statuses.push(("dead letter", response.status().as_u16()));

    let body = event("wrong");
    let response = signed(http.post(format!("{url}/{WRONG_TOKEN}")), body.as_bytes())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    statuses.push(("wrong token", response.status().as_u16()));
    assert_eq!(
        statuses,
        [
            ("path", 200),
            ("query", 200),
            ("header", 200),
            ("dead letter", 400),
            ("wrong token", 401)
        ]
    );

    let metrics = http
        .get(format!("http://{}/metrics", bridge.admin_address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("telecmi_bridge_auth_failures_total"),
        "{metrics}"
    );
    let log = std::fs::read_to_string(bridge.log_path()).expect("log");
    let records = consume(
        &embedded_bootstrap(&log),
        &settings.routing.all_topics(),
        4,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), 4, "three events and one dead letter");
    let published: Vec<String> = records
        .iter()
        .map(|record| {
            format!(
                "{:?} {:?} {}",
                record.key,
                record.headers,
                String::from_utf8_lossy(&record.payload)
            )
        })
        .collect();

    let status = bridge.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(bridge.log_path()).expect("log");
    assert!(
        log.lines().count() > 20 && log.contains("/webhooks/telecmi/{token}"),
        "trace logging was not on, or requests were not logged: {log}"
    );
    for secret in [
        PATH_TOKEN,
        QUERY_TOKEN,
        HEADER_TOKEN,
        WRONG_TOKEN,
        HMAC_SECRET,
    ] {
        assert!(!log.contains(secret), "{secret} is in the log");
        assert!(!metrics.contains(secret), "{secret} is in the metrics");
        for record in &published {
            assert!(!record.contains(secret), "{secret} was published: {record}");
        }
    }
}
