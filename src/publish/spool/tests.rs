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
fn an_unreadable_spool_is_kept_aside_and_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(&dir);
    std::fs::create_dir_all(settings.path.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &settings.path,
        b"this is not a redb file, but it is someone's data",
    )
    .expect("write");
    let error = match Spool::open(&settings) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("a corrupt spool was opened"),
    };
    assert!(error.contains("cannot be read"), "{error}");
    assert!(error.contains("start_empty"), "{error}");
    assert!(
        !settings.path.exists(),
        "the corrupt file must be moved aside"
    );
    let kept = kept_aside(&settings);
    assert_eq!(
        std::fs::read(&kept[0]).expect("kept"),
        b"this is not a redb file, but it is someone's data"
    );

    std::fs::write(&settings.path, b"corrupt again").expect("write");
    let spool = Spool::open(&SpoolSettings {
        on_corrupt: OnCorrupt::StartEmpty,
        ..settings.clone()
    })
    .expect("start_empty opens an empty spool");
    assert_eq!(spool.monitor().status().events, 0);
    spool.close();
    assert_eq!(
        kept_aside(&settings).len(),
        2,
        "both corrupt files are kept"
    );
}

#[test]
fn an_event_that_cannot_be_decoded_makes_the_spool_unreadable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(&dir);
    {
        let (store, _) = Store::open(&settings.path, OnCorrupt::Refuse).expect("open");
        let good = SpooledEvent::from_records(&records(0), unix_millis(OffsetDateTime::now_utc()))
            .encode()
            .expect("encode");
        store
            .commit(&[(0, &good), (1, b"\x01garbage")], &[], &[])
            .expect("commit");
    }
    let error = match Spool::open(&settings) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("an undecodable event went unnoticed"),
    };
    assert!(error.contains("event 1"), "{error}");
    assert_eq!(kept_aside(&settings).len(), 1);
}

fn kept_aside(settings: &SpoolSettings) -> Vec<std::path::PathBuf> {
    let parent = settings.path.parent().expect("parent");
    let mut kept: Vec<_> = std::fs::read_dir(parent)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.to_string_lossy().contains(".corrupt-"))
        .collect();
    kept.sort();
    kept
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

#[tokio::test]
async fn a_failed_commit_is_reported_to_removal_waiters_and_the_removal_stays_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(&settings(&dir)).expect("open");
    let sequences = spool_events(&spool, 3).await;

    spool.store.failing_commits.store(1, Ordering::Release);
    let outcome = remove(&spool, sequences[..2].to_vec()).await;
    assert!(
        outcome
            .as_ref()
            .is_err_and(|error| error.contains("injected")),
        "a failed commit must not be reported as committed: {outcome:?}"
    );
    assert_eq!(spool.monitor().status().events, 3, "nothing was removed");

    // The next commit carries the pending removal.
    assert_eq!(remove(&spool, Vec::new()).await, Ok(()));
    assert_eq!(spool.monitor().status().events, 1);
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("close");
}

#[tokio::test]
async fn a_quarantined_event_leaves_the_spool_and_is_kept_with_why_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings(&dir);
    let spool = Spool::open(&settings).expect("open");
    let sequences = spool_events(&spool, 2).await;
    let original = spool.store.read_from(0, 1).expect("read");

    let (committed, done) = oneshot::channel();
    spool
        .commands
        .send(Command::Quarantine {
            quarantine: Quarantine {
                sequence: sequences[0],
                quarantined_at_ms: 42,
                attempts: 5,
                error: "Message size too large".to_owned(),
            },
            committed,
        })
        .expect("writer running");
    let committed = done.await.expect("writer answered");
    assert_eq!(committed.map_err(|error| error.to_string()), Ok(()));
    let status = spool.monitor().status();
    assert_eq!((status.events, status.quarantined), (1, 1));
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("close");

    let remaining: Vec<u64> = stored(&settings.path)
        .into_iter()
        .map(|(sequence, _)| sequence)
        .collect();
    assert_eq!(remaining, vec![sequences[1]]);
    let spool = Spool::open(&settings).expect("reopen");
    assert_eq!(
        spool.monitor().status().quarantined,
        1,
        "counted at start-up"
    );
    let quarantined = spool.quarantined().expect("quarantine readable");
    assert_eq!(quarantined.len(), 1);
    let (sequence, entry) = &quarantined[0];
    assert_eq!(*sequence, sequences[0]);
    assert_eq!(
        (
            entry.quarantined_at_ms,
            entry.attempts,
            entry.error.as_str()
        ),
        (42, 5, "Message size too large")
    );
    assert_eq!(entry.event, original[0].1, "the event unchanged");
    spool.close();
}

/// Records on `topics` of a mock cluster, by high watermark.
fn records_on(
    cluster: &rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    topics: &[&str],
) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .expect("consumer");
    topics
        .iter()
        .map(|topic| {
            consumer
                .fetch_watermarks(topic, 0, Duration::from_secs(5))
                .expect("watermarks")
                .1
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_removal_commit_the_forwarder_retries_it_and_sends_nothing_twice() {
    use crate::config::{DeliveryMode, DeliverySettings, KafkaSettings};
    use crate::publish::kafka::{KafkaClient, kafka_client_config};
    let topics = ["telecmi.event.answered", "telecmi.calls"];
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    for topic in topics {
        cluster.create_topic(topic, 1, 1).expect("topic");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(&settings(&dir)).expect("open");
    spool_events(&spool, 3).await;
    let delivery = DeliverySettings {
        mode: DeliveryMode::Spool,
        ..DeliverySettings::default()
    };
    let client_config = kafka_client_config(
        &KafkaSettings::default(),
        &cluster.bootstrap_servers(),
        &delivery,
    );
    let forwarder = spool.forwarder(KafkaClient::new(client_config).expect("producer"));

    // The forwarder's first removal fails; only a confirmed one lets it read the file again.
    spool.store.failing_commits.store(1, Ordering::Release);
    let control = ForwarderControl::default();
    control.drain.cancel();
    let forwarding = tokio::spawn(forwarder.run(control.clone()));
    let drained = tokio::time::timeout(Duration::from_secs(20), forwarding)
        .await
        .expect("the forwarder drains the spool")
        .expect("forwarder task");
    assert!(drained, "the spool was found empty");
    assert_eq!(spool.monitor().status().events, 0, "removed in the end");
    assert_eq!(
        spool.store.failing_commits.load(Ordering::Acquire),
        0,
        "the injected failure was met"
    );
    assert_eq!(records_on(&cluster, &topics), 6, "each record sent once");
    tokio::task::spawn_blocking(|| spool.close())
        .await
        .expect("close");
}
