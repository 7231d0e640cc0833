//! `telecmi-bridge spool …` as an operator runs it: against a file a running bridge holds
//! (refused, untouched), the same file once that bridge was killed, a missing file, and a
//! spool exported for `replay`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use telecmi_bridge::config::{DeliveryMode, SpoolSettings};
use telecmi_bridge::pipeline::Router;
use telecmi_bridge::publish::Publisher;
use telecmi_bridge::publish::spool::Spool;

use crate::cli::{bridge, text};
use crate::helpers::{records_of, test_settings};
use crate::process::Bridge;

/// The SHA-256 of the file and its modification time, to show it was left as it was.
fn fingerprint(path: &Path) -> (Vec<u8>, SystemTime) {
    use sha2::Digest;
    let modified = std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .expect("metadata");
    let bytes = std::fs::read(path).expect("read");
    (sha2::Sha256::digest(&bytes).to_vec(), modified)
}

fn spool_command(command: &[&str], spool: &Path) -> (bool, String, String) {
    let mut args = vec!["spool"];
    args.extend_from_slice(command);
    args.extend(["--spool", spool.to_str().expect("path")]);
    let output = bridge(&args, &[]);
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_held_by_a_running_bridge_is_refused_untouched_and_read_once_it_was_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool.redb");
    let mut settings = test_settings();
    settings.delivery.mode = DeliveryMode::Spool;
    settings.spool.path = spool.clone();
    let mut running = Bridge::start(settings, dir.path()).await;
    let before = fingerprint(&spool);

    let commands: [&[&str]; 4] = [
        &["stats"],
        &["list"],
        &["export", "--quarantine"],
        &[
            "drain",
            "--bootstrap",
            "127.0.0.1:9",
            "--timeout-seconds",
            "1",
        ],
    ];
    for command in commands {
        let (success, _, stderr) = spool_command(command, &spool);
        assert!(!success, "{command:?} ran on a spool in use");
        assert!(
            stderr.contains("is open in another process"),
            "{command:?}: {stderr}"
        );
    }
    assert_eq!(
        fingerprint(&spool),
        before,
        "a refused command changed the file"
    );

    running.kill();
    let before = fingerprint(&spool);
    let (success, stdout, stderr) = spool_command(&["stats", "--output", "json"], &spool);
    assert!(success, "{stderr}");
    let stats: serde_json::Value = serde_json::from_str(&stdout).expect("JSON stats");
    assert_eq!(stats["events"], 0, "{stats}");
    assert_eq!(stats["quarantined"], 0, "{stats}");
    assert_eq!(
        fingerprint(&spool),
        before,
        "stats changed a killed bridge's file"
    );
}

#[test]
fn a_missing_or_unreadable_spool_fails_clearly_and_nothing_is_created_or_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("gone/spool.redb");
    let (success, _, stderr) = spool_command(&["stats"], &missing);
    assert!(!success);
    assert!(stderr.contains("there is no spool file at"), "{stderr}");
    assert!(
        !dir.path().join("gone").exists(),
        "the directory was created"
    );

    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0xa5_u8; 8192]).expect("write");
    let before = fingerprint(&garbage);
    for command in [
        &["stats"][..],
        &["export"],
        &["drain", "--bootstrap", "127.0.0.1:9"],
    ] {
        let (success, _, stderr) = spool_command(command, &garbage);
        assert!(!success, "{command:?} took garbage");
        assert!(
            stderr.contains("cannot be read") && stderr.contains("left unchanged"),
            "{command:?}: {stderr}"
        );
    }
    assert_eq!(fingerprint(&garbage), before);
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

/// A spool of `count` CDRs written by the real `Spool`, closed.
async fn spool_of(path: &Path, count: u32) {
    let spool = Spool::open(&SpoolSettings {
        path: path.to_owned(),
        ..SpoolSettings::default()
    })
    .expect("open");
    let publisher = spool.publisher(Duration::from_secs(5));
    let router = Router::new(&test_settings().routing);
    for n in 0..count {
        let body = format!(r#"{{"type":"cdr","status":"missed","cmiuuid":"export-{n}"}}"#);
        let records = records_of(&body, &router);
        publisher.publish(records).await.expect("spooled");
    }
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("closed");
}

#[tokio::test]
async fn an_envelope_export_is_accepted_by_replay_line_for_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spool.redb");
    spool_of(&path, 3).await;

    let (success, exported, stderr) = spool_command(&["export", "--format", "envelopes"], &path);
    assert!(success, "{stderr}");
    assert_eq!(exported.lines().count(), 3, "{exported}");
    let file = dir.path().join("envelopes.jsonl");
    std::fs::write(&file, &exported).expect("write");
    let output = bridge(&["replay", file.to_str().expect("path"), "--dry-run"], &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("would publish 3 of 3 events"), "{stdout}");
}

#[tokio::test]
async fn a_drain_that_cannot_reach_kafka_fails_and_keeps_every_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spool.redb");
    spool_of(&path, 2).await;
    let before = fingerprint(&path);

    let path_text = path.to_str().expect("path");
    let output = bridge(
        &[
            "spool",
            "drain",
            "--spool",
            path_text,
            "--bootstrap",
            "127.0.0.1:9",
        ],
        &[("TELECMI_BRIDGE_KAFKA__METADATA_TIMEOUT_MS", "1000")],
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("could not reach Kafka"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        fingerprint(&path),
        before,
        "a failed drain changed the file"
    );

    let (_, _, stderr) = spool_command(&["drain", "--bootstrap", "embedded"], &path);
    assert!(stderr.contains("needs real brokers"), "{stderr}");
}
