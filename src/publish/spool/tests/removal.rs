//! Removal after Kafka's acknowledgement: failed commits and quarantined events.

use super::*;

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
