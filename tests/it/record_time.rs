//! The Kafka record timestamp is the time the bridge received the event (`data.received_at`),
//! not the time the record was produced (for the spool, see `spool.rs`).

use std::time::Duration;

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use telecmi_bridge::domain::TopicName;
use telecmi_bridge::pipeline::OutboundRecord;
use telecmi_bridge::publish::{KafkaPublisher, Publisher};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{Consumed, consume, on_controlled_cluster, spawn_app, test_settings};
use crate::scenarios::accepted;

fn event(call: &str) -> String {
    format!(
        r#"{{"type":"event","status":"answered","cmiuuid":"{call}-a","conversation_uuid":"{call}","time":1700000000000}}"#
    )
}

pub fn received_at_ms(record: &Consumed) -> i64 {
    let text = record.envelope["data"]["received_at"]
        .as_str()
        .expect("data.received_at");
    let time = OffsetDateTime::parse(text, &Rfc3339).expect("an RFC 3339 time");
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).expect("millis")
}

/// The publisher gives each record the timestamp it carries: one from 2023 stays from 2023.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_publisher_stamps_each_record_with_its_receive_time() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("telecmi.event.answered", 1, 1)
        .expect("topic");
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", cluster.bootstrap_servers());
    let publisher = KafkaPublisher::new(&config, Duration::from_secs(5)).expect("producer");
    let topic = TopicName::try_from("telecmi.event.answered".to_owned()).expect("topic");
    let received_at_ms = 1_700_000_000_123;
    publisher
        .publish(vec![OutboundRecord {
            topic: topic.clone(),
            key: "call".to_owned(),
            headers: Vec::new(),
            payload: Bytes::from_static(b"{}"),
            timestamp_ms: received_at_ms,
        }])
        .await
        .expect("published");
    let records = consume(
        &cluster.bootstrap_servers(),
        &[topic],
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].timestamp_ms, Some(received_at_ms));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_kafka_mode_every_record_carries_its_envelopes_received_at() {
    let mut settings = test_settings();
    settings.routing.combined_topic_enabled = true;
    let (settings, cluster, topics) = on_controlled_cluster(settings);
    let app = spawn_app(settings).await;
    accepted(app.post_json(event("stamped").as_bytes()).await).await;
    app.stop().await;
    let records = consume(
        &cluster.bootstrap_servers(),
        &topics,
        2,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), 2, "the status topic and the combined topic");
    for record in &records {
        assert_eq!(
            record.timestamp_ms,
            Some(received_at_ms(record)),
            "{record:?}"
        );
    }
}
