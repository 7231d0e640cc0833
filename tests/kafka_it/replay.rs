//! `telecmi-bridge replay` against the real broker: a file of payloads reaches the same topics
//! with the same ids as the webhook gives them, in file order; a bad line stops everything
//! unless skipped; a re-run shows up as duplicates by id.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use telecmi_bridge::replay::{ReplayError, ReplayOptions, replay};

use crate::broker::{bootstrap_servers, real_settings, unique_prefix};
use crate::fixtures::json_fixtures;
use crate::helpers::{consume, record_count, spawn_app};
use crate::scenarios::accepted;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replays_in_order_with_the_webhook_ids_and_a_rerun_is_visible_as_duplicates() {
    let fixtures = json_fixtures();
    let compact: Vec<String> = fixtures
        .iter()
        .map(|fixture| {
            serde_json::Value::Object(fixture.object.clone().expect("object")).to_string()
        })
        .collect();

    // What the webhook answers for the same payloads, on topics of its own.
    let webhook = spawn_app(real_settings(&unique_prefix())).await;
    let mut webhook_ids = BTreeSet::new();
    for payload in &compact {
        webhook_ids.insert(
            accepted(webhook.post_json(payload.as_bytes()).await)
                .await
                .0,
        );
    }
    webhook.stop().await;

    let prefix = unique_prefix();
    let settings = real_settings(&prefix);
    let topics = settings.routing.all_topics();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("archive.jsonl");
    let mut file = std::fs::File::create(&path).expect("file");
    for payload in &compact[..12] {
        writeln!(file, "{payload}").expect("write");
    }
    writeln!(file).expect("a blank line is not an event");
    writeln!(file, "{{\"type\": \"event\", \"status\":").expect("a truncated line");
    for payload in &compact[12..] {
        writeln!(file, "{payload}").expect("write");
    }
    drop(file);
    let bad_line = 14;
    let options = ReplayOptions {
        file: path.clone(),
        skip_bad_lines: false,
        dry_run: false,
        from_line: 1,
    };

    match replay(&settings, &options).await {
        Err(ReplayError::BadLines(bad)) => {
            assert_eq!(bad.len(), 1, "{bad:?}");
            assert_eq!(bad[0].line, bad_line);
            assert!(bad[0].reason.starts_with("malformed_json"), "{bad:?}");
        }
        other => panic!("a bad line must stop the replay before it publishes: {other:?}"),
    }

    let skipping = ReplayOptions {
        skip_bad_lines: true,
        ..options
    };
    let summary = replay(&settings, &skipping).await.expect("replayed");
    assert_eq!(summary.events, compact.len() + 1);
    assert_eq!(summary.published, compact.len());
    assert_eq!(summary.bad_lines.len(), 1);
    assert_eq!(summary.by_topic.values().sum::<usize>(), compact.len());
    assert_eq!(
        record_count(&bootstrap_servers(), &topics),
        compact.len() as i64,
        "nothing was published by the refused run"
    );

    let records = consume(
        &bootstrap_servers(),
        &topics,
        compact.len(),
        Duration::from_secs(20),
    )
    .await;
    let replayed_ids: BTreeSet<String> = records
        .iter()
        .map(|record| record.id().to_owned())
        .collect();
    assert_eq!(
        replayed_ids, webhook_ids,
        "the webhook's ids, for the same payloads"
    );
    // File order within each partition. Two documented versions of one call share an id, so a
    // record is placed by its payload.
    let position = |record: &crate::helpers::Consumed| {
        let original = record.envelope["data"]["original"]["payload"].to_string();
        compact
            .iter()
            .position(|payload| *payload == original)
            .expect("a payload of the file")
    };
    let mut last_by_partition = BTreeMap::new();
    for record in &records {
        let position = position(record);
        let last = last_by_partition
            .entry((record.topic.clone(), record.partition))
            .or_insert(position);
        assert!(
            *last <= position,
            "line of payload {position} after that of payload {last} on {}/{}",
            record.topic,
            record.partition
        );
        *last = position;
    }

    let again = replay(&settings, &skipping).await.expect("re-run");
    assert_eq!(again.published, compact.len());
    let twice = consume(
        &bootstrap_servers(),
        &topics,
        2 * compact.len(),
        Duration::from_secs(20),
    )
    .await;
    let mut copies: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    let mut count: BTreeMap<usize, usize> = BTreeMap::new();
    for record in &twice {
        copies
            .entry(position(record))
            .or_default()
            .insert(record.id());
        *count.entry(position(record)).or_default() += 1;
    }
    assert_eq!(count.len(), compact.len());
    assert!(count.values().all(|copies| *copies == 2), "{count:?}");
    assert!(
        copies.values().all(|ids| ids.len() == 1),
        "a re-sent payload keeps its id: {copies:?}"
    );
}
