use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::oneshot;

use super::*;
use crate::config::SpoolSettings;
use crate::pipeline::{EnvelopeAttributes, OutboundRecord, RawRequest, Router, decode, to_records};
use crate::publish::spool::store::Quarantine;
use crate::publish::spool::{Command, Spool};
use crate::publish::{Publisher, Receipt};

/// The records the webhook makes of a CDR of `conversation`, as the bridge would spool them.
fn webhook_records(conversation: &str, n: u32) -> Vec<OutboundRecord> {
    let body = format!(
        r#"{{"type":"cdr","status":"answered","cmiuuid":"{conversation}-{n}","conversation_uuid":"{conversation}"}}"#
    );
    let request = RawRequest::json_body(body.as_bytes());
    let decoded = decode(&request).expect("a webhook payload");
    let router = Router::new(&Settings::default().routing);
    to_records(
        decoded,
        None,
        &EnvelopeAttributes::default(),
        &router,
        None,
        OffsetDateTime::now_utc(),
    )
    .expect("records")
    .1
}

/// A spool of three events written by the real `Spool`, the first moved to the quarantine.
async fn spool_with_a_quarantined_event(dir: &tempfile::TempDir) -> PathBuf {
    let settings = SpoolSettings {
        path: dir.path().join("spool.redb"),
        ..SpoolSettings::default()
    };
    let spool = Spool::open(&settings).expect("open");
    let publisher = spool.publisher(Duration::from_secs(5));
    for n in 0..3 {
        let receipt = publisher
            .publish(webhook_records("conversation-a", n))
            .await;
        assert_eq!(receipt.ok(), Some(Receipt::Spool { sequence: n.into() }));
    }
    let (committed, done) = oneshot::channel();
    spool
        .commands
        .send(Command::Quarantine {
            quarantine: Quarantine {
                sequence: 0,
                quarantined_at_ms: 1_700_000_000_000,
                attempts: 5,
                error: "Broker: Message size too large".to_owned(),
            },
            committed,
        })
        .expect("writer running");
    let committed = done.await.expect("writer answered");
    assert_eq!(committed.map_err(|error| error.to_string()), Ok(()));
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("closed");
    settings.path
}

/// The SHA-256 of the file and its modification time, to show it was left as it was.
fn fingerprint(path: &Path) -> (Vec<u8>, SystemTime) {
    use sha2::Digest;
    let modified = std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .expect("metadata");
    let bytes = std::fs::read(path).expect("read");
    (sha2::Sha256::digest(&bytes).to_vec(), modified)
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn stats_count_events_bytes_topics_and_the_quarantine_without_changing_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = spool_with_a_quarantined_event(&dir).await;
    let before = fingerprint(&path);

    let stats = Snapshot::open(&path).expect("open").stats().expect("stats");
    assert_eq!((stats.events, stats.quarantined), (2, 1));
    assert!(stats.bytes > 0);
    assert_eq!(stats.oldest.map(|oldest| oldest.sequence), Some(1));
    assert_eq!(stats.newest.map(|newest| newest.sequence), Some(2));
    let records: u64 = stats.topics.values().sum();
    assert_eq!(
        stats.topics.get("telecmi.cdr.answered"),
        Some(&2),
        "{:?}",
        stats.topics
    );
    assert!(records >= 2);
    assert_eq!(fingerprint(&path), before, "stats changed the file");
}

#[tokio::test]
async fn export_writes_each_event_as_sent_and_the_quarantine_with_kafkas_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = spool_with_a_quarantined_event(&dir).await;
    let before = fingerprint(&path);
    let snapshot = Snapshot::open(&path).expect("open");

    let mut out = Vec::new();
    snapshot
        .export(false, ExportFormat::Jsonl, &mut out)
        .expect("export");
    let events = lines(&out);
    let sequences: Vec<u64> = events
        .iter()
        .map(|event| event["sequence"].as_u64().expect("sequence"))
        .collect();
    assert_eq!(sequences, vec![1, 2]);
    let record = &events[0]["records"][0];
    assert_eq!(record["topic"], "telecmi.cdr.answered");
    assert_eq!(record["key"], "conversation-a");
    assert_eq!(
        record["payload"]["data"]["original"]["payload"]["cmiuuid"], "conversation-a-1",
        "the payload as JSON: {record}"
    );
    assert!(
        record["headers"]
            .as_object()
            .is_some_and(|headers| !headers.is_empty())
    );
    assert!(events[0]["accepted_at"].as_str().is_some());
    assert!(events[0].get("quarantine").is_none());

    let mut out = Vec::new();
    snapshot
        .export(true, ExportFormat::Jsonl, &mut out)
        .expect("export the quarantine");
    let quarantined = lines(&out);
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0]["sequence"], 0);
    assert_eq!(quarantined[0]["quarantine"]["attempts"], 5);
    assert_eq!(
        quarantined[0]["quarantine"]["error"],
        "Broker: Message size too large"
    );

    let mut out = Vec::new();
    snapshot.list(true, &mut out).expect("list");
    let listed = String::from_utf8_lossy(&out);
    assert!(listed.starts_with("0\t"), "{listed}");
    assert!(listed.contains("after 5 attempts: Broker: Message size too large"));
    drop(snapshot);
    assert_eq!(fingerprint(&path), before, "export changed the file");
}

#[tokio::test]
async fn an_envelope_export_gives_back_the_payload_that_makes_the_same_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = spool_with_a_quarantined_event(&dir).await;
    let mut out = Vec::new();
    Snapshot::open(&path)
        .expect("open")
        .export(true, ExportFormat::Envelopes, &mut out)
        .expect("export");
    let envelopes = lines(&out);
    assert_eq!(envelopes.len(), 1);
    let original = webhook_records("conversation-a", 0);
    let spooled: Value = serde_json::from_slice(&original[0].payload).expect("envelope");
    assert_eq!(envelopes[0]["id"], spooled["id"], "the same event id");
    assert_eq!(
        envelopes[0]["data"]["original"]["payload"]["cmiuuid"],
        "conversation-a-0"
    );
}

#[test]
fn a_missing_file_is_reported_and_not_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent/spool.redb");
    assert!(matches!(Snapshot::open(&path), Err(ToolError::Missing(_))));
    assert!(!path.exists() && !path.parent().is_some_and(Path::exists));
}

#[tokio::test]
async fn garbage_and_a_truncated_copy_are_refused_and_left_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = spool_with_a_quarantined_event(&dir).await;
    let whole = std::fs::read(&path).expect("read");
    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, b"not a spool, not a redb file at all").expect("write");
    let truncated = dir.path().join("truncated.redb");
    std::fs::write(&truncated, &whole[..whole.len() / 3]).expect("write");

    for corrupt in [&garbage, &truncated] {
        let before = fingerprint(corrupt);
        let refused = Snapshot::open(corrupt).and_then(|snapshot| snapshot.stats());
        let Err(ToolError::Unreadable { path, reason }) = refused else {
            panic!("{} was not refused: {refused:?}", corrupt.display());
        };
        assert_eq!(&path, corrupt);
        assert!(!reason.is_empty());
        assert_eq!(
            fingerprint(corrupt),
            before,
            "{} changed",
            corrupt.display()
        );
    }
    let entries = std::fs::read_dir(dir.path()).expect("read dir").count();
    assert_eq!(entries, 3, "nothing moved aside or created");
}

#[tokio::test]
async fn a_spool_not_closed_cleanly_is_read_from_a_repaired_copy_and_left_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = SpoolSettings {
        path: dir.path().join("spool.redb"),
        ..SpoolSettings::default()
    };
    let spool = Spool::open(&settings).expect("open");
    let publisher = spool.publisher(Duration::from_secs(5));
    for n in 0..4 {
        assert!(
            publisher
                .publish(webhook_records("conversation-b", n))
                .await
                .is_ok()
        );
    }
    // A copy taken while it is open is what a killed bridge leaves behind.
    let crashed = dir.path().join("crashed.redb");
    std::fs::copy(&settings.path, &crashed).expect("copy");
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("closed");
    assert!(matches!(
        Database::builder().open_read_only(&crashed),
        Err(DatabaseError::RepairAborted)
    ));
    let before = fingerprint(&crashed);

    let stats = Snapshot::open(&crashed)
        .expect("open")
        .stats()
        .expect("stats");
    assert_eq!(stats.events, 4);
    assert_eq!(fingerprint(&crashed), before, "the crashed file changed");
}
