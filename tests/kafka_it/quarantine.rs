//! Spool mode against a broker that refuses a record for good: a topic whose
//! `max.message.bytes` is smaller than one envelope, so the broker answers MSG_SIZE_TOO_LARGE
//! (librdkafka's own limit, `message.max.bytes`, is far above it and does not refuse it first).

use std::num::NonZeroU32;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use serde_json::Value;
use telecmi_bridge::config::DeliveryMode;
use telecmi_bridge::publish::spool::{Spool, SpooledEvent};

use crate::broker::{bootstrap_servers, real_settings, unique_prefix};
use crate::helpers::{TestApp, consume_all, consumer_from_beginning, spawn_app};
use crate::scenarios::accepted;

/// Bytes a record batch may have on the small topic: a few plain envelopes, not a padded one.
const SMALL_TOPIC_MAX_BYTES: &str = "6000";
const ATTEMPTS: u32 = 5;

/// An event, with `padding` random hex characters in a field: random, so that the producer's
/// compression cannot shrink it below the topic's limit.
pub fn event(status: &str, conversation: &str, n: u32, padding: usize) -> Vec<u8> {
    let notes: String = std::iter::repeat_with(|| uuid::Uuid::new_v4().simple().to_string())
        .flat_map(|hex| hex.chars().collect::<Vec<_>>())
        .take(padding)
        .collect();
    format!(
        r#"{{"type":"event","status":"{status}","cmiuuid":"{conversation}-{n}","conversation_uuid":"{conversation}","time":{},"notes":"{notes}"}}"#,
        1_700_000_000_000_u64 + u64::from(n),
    )
    .into_bytes()
}

pub async fn create_small_topic(topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers())
        .create()
        .expect("admin client");
    let topic = NewTopic::new(topic, 3, TopicReplication::Fixed(1))
        .set("max.message.bytes", SMALL_TOPIC_MAX_BYTES);
    let results = admin
        .create_topics(&[topic], &AdminOptions::new())
        .await
        .expect("create topics");
    for result in results {
        result.expect("small topic created");
    }
}

async fn spool_state(app: &TestApp) -> Value {
    app.readiness().await.1["spool"].clone()
}

/// The ids read so far from the bridge's topics, by one consumer from the beginning.
struct Reader {
    consumer: StreamConsumer,
    ids: Vec<String>,
}

impl Reader {
    fn new(app: &TestApp) -> Self {
        Self {
            consumer: consumer_from_beginning(&app.bootstrap_servers, &app.topics),
            ids: Vec::new(),
        }
    }

    /// Reads, bounded, until every id in `wanted` was read.
    async fn until(&mut self, wanted: &[String]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !wanted.iter().all(|id| self.ids.contains(id)) {
            let Ok(received) = tokio::time::timeout_at(deadline, self.consumer.recv()).await else {
                panic!("{wanted:?} did not reach Kafka; read {:?}", self.ids);
            };
            let message = received.expect("message");
            let envelope: Value =
                serde_json::from_slice(message.payload().unwrap_or_default()).expect("envelope");
            self.ids
                .push(envelope["id"].as_str().unwrap_or_default().to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_broker_refuses_for_good_is_quarantined_while_its_key_waits_and_others_flow() {
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = real_settings(&prefix);
    settings.delivery.mode = DeliveryMode::Spool;
    settings.spool.path = dir.path().join("spool.redb");
    settings.spool.quarantine_after_attempts = NonZeroU32::new(ATTEMPTS).expect("not zero");
    settings.spool.retry_backoff_max_ms = Duration::from_millis(3_000);
    let small_topic = format!("{prefix}telecmi.event.answered");
    create_small_topic(&small_topic).await;
    let spool_settings = settings.spool.clone();
    let app = spawn_app(settings).await;
    let mut reader = Reader::new(&app);

    let blocked = "blocked-call";
    let (first, topic) = accepted(app.post_json(&event("answered", blocked, 0, 0)).await).await;
    assert_eq!(topic, small_topic);
    reader.until(std::slice::from_ref(&first)).await;

    let (refused, _) = accepted(app.post_json(&event("answered", blocked, 1, 30_000)).await).await;
    app.wait_for_readiness("the padded event refused and retried", |_, body| {
        body["spool"]["kafka_refused"] == 1
    })
    .await;

    // Posted once the refusal is known: it must wait behind the refused event of its key.
    let (after, _) = accepted(app.post_json(&event("answered", blocked, 2, 0)).await).await;
    let mut others = Vec::new();
    for n in 0..5 {
        let conversation = format!("other-call-{n}");
        others.push(
            accepted(app.post_json(&event("started", &conversation, n, 0)).await)
                .await
                .0,
        );
    }
    reader.until(&others).await;
    // Everything but the refused event and the one held behind it forwarded and removed.
    app.wait_for_readiness(
        "other keys forwarded while the refused one is retried",
        |_, body| body["spool"]["events"] == 2 && body["spool"]["kafka_refused"] == 1,
    )
    .await;
    let spool = spool_state(&app).await;
    assert_eq!(
        spool["quarantined"], 0,
        "the test must look while the event is still retried: {spool}"
    );
    assert!(
        !reader.ids.contains(&after),
        "a later event of the key overtook the refused one while it was retried"
    );

    app.wait_for_readiness("quarantined, and the key went on", |_, body| {
        body["spool"]["quarantined"] == 1
            && body["spool"]["kafka_refused"] == 0
            && body["spool"]["events"] == 0
    })
    .await;
    reader.until(std::slice::from_ref(&after)).await;
    let (bootstrap_servers, topics) = (app.bootstrap_servers.clone(), app.topics.clone());
    app.stop().await;

    let records = consume_all(&bootstrap_servers, &topics).await;
    let on_key: Vec<&str> = records
        .iter()
        .filter(|record| record.key.as_deref() == Some(blocked))
        .map(|record| record.id())
        .collect();
    assert_eq!(
        on_key,
        vec![first.as_str(), after.as_str()],
        "the key's order, with a gap where the refused event was"
    );
    for id in &others {
        assert!(records.iter().any(|record| record.id() == id), "{id} lost");
    }

    let spool = Spool::open(&spool_settings).expect("the spool reopens");
    let quarantined = spool.quarantined().expect("the quarantine is readable");
    spool.close();
    assert_eq!(quarantined.len(), 1);
    let entry = &quarantined[0].1;
    assert_eq!(entry.attempts, ATTEMPTS);
    assert!(
        entry.error.to_lowercase().contains("too large"),
        "{}",
        entry.error
    );
    let kept = SpooledEvent::decode(&entry.event).expect("the event is kept whole");
    let envelope: Value = serde_json::from_slice(&kept.records[0].payload).expect("envelope");
    assert_eq!(envelope["id"], refused.as_str());
    assert_eq!(kept.records[0].topic, small_topic);
}
