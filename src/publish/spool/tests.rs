use bytes::Bytes;
use std::num::NonZeroU64;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::event::FORMAT_VERSION;
use super::store::Quarantine;
use super::tail::TAIL_CAPACITY;
use super::*;
use crate::config::OnCorrupt;
use crate::domain::TopicName;
use crate::pipeline::OutboundRecord;
use crate::pipeline::envelope::unix_millis;
use crate::publish::{PublishError, Publisher, Receipt};

mod removal;
mod unreadable;

fn settings(dir: &tempfile::TempDir) -> SpoolSettings {
    SpoolSettings {
        path: dir.path().join("nested/spool.redb"),
        ..SpoolSettings::default()
    }
}

fn records(n: usize) -> Vec<OutboundRecord> {
    ["telecmi.event.answered", "telecmi.calls"]
        .into_iter()
        .map(|topic| OutboundRecord {
            topic: TopicName::try_from(topic.to_owned()).expect("topic"),
            key: format!("conversation-{n}"),
            headers: vec![("telecmi-event-id", format!("id-{n}"))],
            payload: Bytes::from(format!(r#"{{"n":{n}}}"#)),
            timestamp_ms: 1_700_000_000_000,
        })
        .collect()
}

async fn spool_events(spool: &Spool, count: usize) -> Vec<u64> {
    let publisher = spool.publisher(Duration::from_secs(5));
    let mut sequences = Vec::new();
    for n in 0..count {
        match publisher.publish(records(n)).await {
            Ok(Receipt::Spool { sequence }) => sequences.push(sequence),
            other => panic!("not spooled: {other:?}"),
        }
    }
    sequences
}

/// Asks the writer to remove `sequences` and waits for its commit.
async fn remove(spool: &Spool, sequences: Vec<u64>) -> Result<(), String> {
    let (committed, done) = oneshot::channel();
    spool
        .commands
        .send(Command::Remove {
            sequences,
            committed: Some(committed),
        })
        .expect("writer running");
    done.await
        .expect("writer answered")
        .map_err(|error| error.to_string())
}

fn stored(spool_path: &std::path::Path) -> Vec<(u64, SpooledEvent)> {
    let (store, _) = Store::open(spool_path, OnCorrupt::Refuse).expect("reopen");
    store
        .read_from(0, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|(sequence, bytes)| (sequence, SpooledEvent::decode(&bytes).expect("decode")))
        .collect()
}

#[test]
fn the_encoding_round_trips_and_refuses_an_unknown_version() {
    let event = SpooledEvent::from_records(&records(7), unix_millis(OffsetDateTime::now_utc()));
    let bytes = event.encode().expect("encode");
    assert_eq!(bytes[0], FORMAT_VERSION);
    assert_eq!(SpooledEvent::decode(&bytes).expect("decode"), event);
    let mut future = bytes.clone();
    future[0] = FORMAT_VERSION + 1;
    assert!(SpooledEvent::decode(&future).is_err());
    assert!(SpooledEvent::decode(&[]).is_err());
}

#[tokio::test]
async fn spooled_events_survive_a_restart_in_order_with_their_records_as_routed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(&dir);
    let spool = Spool::open(&settings).expect("open");
    let sequences = spool_events(&spool, 5).await;
    assert_eq!(sequences, vec![0, 1, 2, 3, 4]);
    assert_eq!(
        tokio::task::spawn_blocking(|| spool.close()).await.ok(),
        Some(5)
    );

    let events = stored(&settings.path);
    assert_eq!(events.len(), 5);
    for (n, (sequence, event)) in events.iter().enumerate() {
        assert_eq!(*sequence, n as u64);
        assert_eq!(event.records.len(), 2);
        assert_eq!(event.records[0].topic, "telecmi.event.answered");
        assert_eq!(event.records[1].topic, "telecmi.calls");
        assert_eq!(event.records[0].key, format!("conversation-{n}"));
        assert_eq!(
            event.records[0].payload,
            format!(r#"{{"n":{n}}}"#).into_bytes()
        );
        assert_eq!(
            event.records[0].headers,
            vec![("telecmi-event-id".to_owned(), format!("id-{n}"))]
        );
    }

    // Sequences continue after the highest one kept.
    let spool = Spool::open(&settings).expect("reopen");
    assert_eq!(spool_events(&spool, 1).await, vec![5]);
    let status = spool.monitor().status();
    assert_eq!(status.events, 6);
    assert!(status.bytes > 0);
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("close");
}

#[tokio::test]
async fn a_full_spool_refuses_without_blocking_and_takes_events_again_once_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = SpoolSettings {
        max_events: NonZeroU64::new(3).expect("not zero"),
        ..settings(&dir)
    };
    let spool = Spool::open(&settings).expect("open");
    let sequences = spool_events(&spool, 3).await;
    let publisher = spool.publisher(Duration::from_secs(5));
    let refused = publisher.publish(records(9)).await;
    assert!(
        matches!(refused, Err(PublishError::SpoolFull)),
        "{refused:?}"
    );
    let status = spool.monitor().status();
    assert_eq!(status.events, 3);
    assert!(
        status
            .refusal()
            .is_some_and(|reason| reason.contains("full"))
    );

    remove(&spool, sequences[..2].to_vec())
        .await
        .expect("removal committed");
    assert_eq!(spool.monitor().status().events, 1);
    assert!(spool.monitor().status().refusal().is_none());
    assert!(publisher.publish(records(10)).await.is_ok());
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("close");
    let kept: Vec<u64> = stored(&settings.path)
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(kept, vec![2, 3]);
}

#[test]
fn the_byte_limit_counts_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let one_event = SpooledEvent::from_records(&records(0), unix_millis(OffsetDateTime::now_utc()))
        .encode()
        .expect("encode")
        .len() as u64;
    let settings = SpoolSettings {
        max_bytes: NonZeroU64::new(one_event * 2 + 1).expect("not zero"),
        ..settings(&dir)
    };
    let spool = Spool::open(&settings).expect("open");
    let publisher = spool.publisher(Duration::from_secs(5));
    runtime.block_on(async {
        assert!(publisher.publish(records(0)).await.is_ok());
        assert!(publisher.publish(records(1)).await.is_ok());
        assert!(matches!(
            publisher.publish(records(2)).await,
            Err(PublishError::SpoolFull)
        ));
    });
    spool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(&settings(&dir)).expect("open");
    let publisher = spool.publisher(Duration::from_secs(10));
    let tasks: Vec<_> = (0..400)
        .map(|n| {
            let publisher = publisher.clone();
            tokio::spawn(async move { publisher.publish(records(n)).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("task").is_ok());
    }
    let status = spool.monitor().status();
    assert_eq!(status.events, 400);
    assert!(
        status.commits < 400,
        "400 concurrent events took {} commits: no group commit",
        status.commits
    );
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("close");
}

#[test]
fn the_tail_hands_over_in_order_and_marks_itself_lost_when_full() {
    let tail = Tail::default();
    for sequence in 0..TAIL_CAPACITY as u64 {
        tail.push(sequence, vec![1]);
    }
    assert!(!tail.take_lost(), "nothing left out yet");
    tail.push(TAIL_CAPACITY as u64, vec![2]);
    assert!(
        tail.take_lost(),
        "an event that did not fit marks the tail lost"
    );
    assert!(!tail.take_lost(), "asking clears the mark");

    // Events before the cursor were read from the file already and are dropped unreturned.
    let taken: Vec<u64> = tail
        .take(10, 3)
        .into_iter()
        .map(|(sequence, _)| sequence)
        .collect();
    assert_eq!(taken, vec![10, 11, 12]);
    tail.forget_before(1_000);
    let rest: Vec<u64> = tail
        .take(0, usize::MAX)
        .into_iter()
        .map(|(sequence, _)| sequence)
        .collect();
    assert_eq!(rest, (1_000..TAIL_CAPACITY as u64).collect::<Vec<_>>());
}
