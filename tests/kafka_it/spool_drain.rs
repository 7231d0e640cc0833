//! `telecmi-bridge spool drain` against the real broker: a spool left by another instance
//! reaches Kafka complete and in order per key, and the file is left empty. And the round trip
//! `spool export --format envelopes` then `replay`: the same events, ids and order per key.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use telecmi_bridge::Settings;
use telecmi_bridge::config::DeliveryMode;
use telecmi_bridge::pipeline::Router;
use telecmi_bridge::publish::Publisher;
use telecmi_bridge::publish::spool::Spool;

use crate::broker::{bootstrap_servers, real_settings, unique_prefix};
use crate::helpers::{consume_all, records_of};
use crate::quarantine::{create_small_topic, event};

const CONVERSATIONS: u32 = 3;
const EVENTS_PER_CONVERSATION: u32 = 40;

async fn run_bridge(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_telecmi-bridge"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("TELECMI_BRIDGE_PROFILE")
            .output()
            .expect("run telecmi-bridge")
    })
    .await
    .expect("joined")
}

fn spool_args(command: &str, config: &Path, spool: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--config", config.to_str().expect("path"), "spool", command]
        .into_iter()
        .map(str::to_owned)
        .collect();
    args.extend(["--spool".to_owned(), spool.display().to_string()]);
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args
}

/// The spool a dead node left: conversations interleaved, as the webhook spools them.
async fn write_spool(settings: &Settings) {
    let spool = Spool::open(&settings.spool).expect("open");
    let publisher = spool.publisher(Duration::from_secs(5));
    let router = Router::new(&settings.routing);
    for n in 0..EVENTS_PER_CONVERSATION {
        for conversation in 0..CONVERSATIONS {
            let body = format!(
                r#"{{"type":"event","status":"answered","cmiuuid":"drain-{conversation}-{n}","conversation_uuid":"conversation-{conversation}","time":{}}}"#,
                1_700_000_000_000_u64 + u64::from(n)
            );
            let records = records_of(&body, &router);
            publisher.publish(records).await.expect("spooled");
        }
    }
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("closed");
}

/// Settings on the real broker, a spool as a dead node left it, and the settings' file.
async fn dead_node_spool(dir: &tempfile::TempDir) -> (Settings, PathBuf) {
    let mut settings = real_settings(&unique_prefix());
    settings.delivery.mode = DeliveryMode::Spool;
    settings.spool.path = dir.path().join("dead-node.redb");
    write_spool(&settings).await;
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, settings.to_redacted_toml()).expect("write config");
    (settings, config)
}

/// `spool drain` of the file, which must succeed; its stdout.
async fn drain(config: &Path, spool: &Path, extra: &[&str]) -> String {
    let output = run_bridge(spool_args("drain", config, spool, extra)).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `spool stats --output json` of the file.
async fn stats(config: &Path, spool: &Path) -> serde_json::Value {
    let output = run_bridge(spool_args("stats", config, spool, &["--output", "json"])).await;
    serde_json::from_slice(&output.stdout).expect("stats as JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_forwards_a_spool_in_order_per_key_and_leaves_it_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (settings, config) = dead_node_spool(&dir).await;
    let topics = settings.routing.all_topics();

    let bootstrap = bootstrap_servers();
    let stdout = drain(&config, &settings.spool.path, &["--bootstrap", &bootstrap]).await;
    let total = CONVERSATIONS * EVENTS_PER_CONVERSATION;
    assert!(
        stdout.contains(&format!("forwarded {total} event(s) to Kafka")),
        "{stdout}"
    );

    // Per topic and key, every event once, in the order they were spooled.
    let mut by_topic_and_key: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for record in consume_all(&bootstrap, &topics).await {
        let cmiuuid = record.envelope["data"]["original"]["payload"]["cmiuuid"]
            .as_str()
            .expect("cmiuuid")
            .to_owned();
        by_topic_and_key
            .entry((record.topic.clone(), record.key.clone().expect("a key")))
            .or_default()
            .push(cmiuuid);
    }
    let keys: Vec<&String> = by_topic_and_key.keys().map(|(_, key)| key).collect();
    assert!(keys.len() >= CONVERSATIONS as usize, "{keys:?}");
    for ((topic, key), received) in &by_topic_and_key {
        let conversation = key.trim_start_matches("conversation-");
        let expected: Vec<String> = (0..EVENTS_PER_CONVERSATION)
            .map(|n| format!("drain-{conversation}-{n}"))
            .collect();
        assert_eq!(received, &expected, "{topic} {key}");
    }

    let stats = stats(&config, &settings.spool.path).await;
    assert_eq!(
        (stats["events"].as_u64(), stats["bytes"].as_u64()),
        (Some(0), Some(0))
    );

    let stdout = drain(&config, &settings.spool.path, &["--bootstrap", &bootstrap]).await;
    assert!(stdout.contains("forwarded 0 event(s)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_runs_out_of_time_fails_and_leaves_the_rest_in_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (settings, config) = dead_node_spool(&dir).await;

    let drained = run_bridge(spool_args(
        "drain",
        &config,
        &settings.spool.path,
        &["--timeout-seconds", "0"],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&drained.stderr);
    assert!(!drained.status.success(), "{stderr}");
    assert!(stderr.contains("could not finish"), "{stderr}");
    let stats = stats(&config, &settings.spool.path).await;
    let left = stats["events"].as_u64().expect("events");
    assert!(left > 0, "{stats}");
    assert!(
        stderr.contains(&format!("{left} event(s) are still in")),
        "the message names what is left ({left}): {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_export_replayed_reaches_kafka_with_the_spooled_ids_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (settings, config) = dead_node_spool(&dir).await;
    let topics = settings.routing.all_topics();

    let exported = run_bridge(spool_args(
        "export",
        &config,
        &settings.spool.path,
        &["--format", "envelopes"],
    ))
    .await;
    assert!(exported.status.success());
    let spooled_ids: Vec<String> = String::from_utf8_lossy(&exported.stdout)
        .lines()
        .map(|line| {
            let envelope: serde_json::Value = serde_json::from_str(line).expect("an envelope");
            envelope["id"].as_str().expect("an id").to_owned()
        })
        .collect();
    assert_eq!(
        spooled_ids.len(),
        (CONVERSATIONS * EVENTS_PER_CONVERSATION) as usize
    );
    let file = dir.path().join("envelopes.jsonl");
    std::fs::write(&file, &exported.stdout).expect("write");

    let replayed = run_bridge(vec![
        "--config".to_owned(),
        config.display().to_string(),
        "replay".to_owned(),
        file.display().to_string(),
    ])
    .await;
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );

    let main_topic = &settings.routing.event_topics["answered"];
    let mut ids_by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in consume_all(&bootstrap_servers(), &topics).await {
        if record.topic == main_topic.as_str() {
            ids_by_key
                .entry(record.key.clone().expect("a key"))
                .or_default()
                .push(record.id().to_owned());
        }
    }
    let mut received: Vec<String> = ids_by_key.values().flatten().cloned().collect();
    received.sort();
    let mut expected = spooled_ids.clone();
    expected.sort();
    assert_eq!(received, expected, "every spooled event once, under its id");
    for ids in ids_by_key.values() {
        let positions: Vec<usize> = ids
            .iter()
            .map(|id| {
                spooled_ids
                    .iter()
                    .position(|spooled| spooled == id)
                    .expect("spooled")
            })
            .collect();
        assert!(positions.is_sorted(), "spool order per key: {positions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kafka_refuses_for_good_during_a_drain_is_quarantined_and_its_key_goes_on() {
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = real_settings(&prefix);
    settings.delivery.mode = DeliveryMode::Spool;
    settings.spool.path = dir.path().join("dead-node.redb");
    settings.spool.quarantine_after_attempts = NonZeroU32::new(2).expect("not zero");
    create_small_topic(&format!("{prefix}telecmi.event.answered")).await;
    let spool = Spool::open(&settings.spool).expect("open");
    let publisher = spool.publisher(Duration::from_secs(5));
    let router = Router::new(&settings.routing);
    for (n, padding) in [(0, 0), (1, 30_000), (2, 0)] {
        let body = String::from_utf8(event("answered", "blocked-call", n, padding)).expect("utf-8");
        publisher
            .publish(records_of(&body, &router))
            .await
            .expect("spooled");
    }
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("closed");
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, settings.to_redacted_toml()).expect("write config");

    let stdout = drain(&config, &settings.spool.path, &["--timeout-seconds", "60"]).await;
    assert!(
        stdout.contains("forwarded 2 event(s)")
            && stdout
                .contains("quarantine holds 1 event(s) (1 refused by Kafka during this drain)"),
        "{stdout}"
    );
    let stats = stats(&config, &settings.spool.path).await;
    assert_eq!(
        (stats["events"].as_u64(), stats["quarantined"].as_u64()),
        (Some(0), Some(1))
    );
    let received: Vec<String> = consume_all(&bootstrap_servers(), &settings.routing.all_topics())
        .await
        .iter()
        .map(|record| {
            record.envelope["data"]["original"]["payload"]["cmiuuid"]
                .as_str()
                .expect("cmiuuid")
                .to_owned()
        })
        .collect();
    assert_eq!(
        received,
        ["blocked-call-0", "blocked-call-2"],
        "a gap, in order"
    );
}
