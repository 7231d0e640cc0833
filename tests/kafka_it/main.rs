//! The real-broker suite: what the bridge promises, checked against Apache Kafka.
//! `cargo test --features kafka-it --test kafka_it` with `KAFKA_BOOTSTRAP_SERVERS` set.

mod quarantine;
mod reconcile;
mod replay;
mod sasl;
mod spool_drain;
mod tls;

// The shared kit's modules, under the names this suite's files use (`crate::helpers`, ...).
use testkit::{broker, fixtures, helpers, scenarios, telecmi_sim};

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use telecmi_bridge::Application;
use telecmi_bridge::app::StartError;

use broker::{real_settings, unique_prefix};
use helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_by_json_form_and_query_round_trips_through_kafka() {
    let prefix = unique_prefix();
    let app = spawn_app(real_settings(&prefix)).await;
    scenarios::fixtures_round_trip(&app, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_call_lifecycles_keep_their_order_per_conversation_and_combined() {
    let prefix = unique_prefix();
    let mut settings = real_settings(&prefix);
    settings.routing.combined_topic_enabled = true;
    let app = spawn_app(settings).await;
    scenarios::lifecycles_keep_order(&app, 120, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topics_are_created_with_the_configured_partitions() {
    let prefix = unique_prefix();
    let mut settings = real_settings(&prefix);
    settings.kafka.topic_partitions = 5;
    let app = spawn_app(settings).await;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker::bootstrap_servers())
        .create()
        .expect("client");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    for topic in &app.topics {
        let found = metadata
            .topics()
            .iter()
            .find(|candidate| candidate.name() == topic.as_str())
            .unwrap_or_else(|| panic!("{topic} was not created"));
        assert_eq!(found.partitions().len(), 5, "{topic}");
        assert!(
            found
                .partitions()
                .iter()
                .all(|partition| partition.replicas().len() == 1)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_topic_creation_a_missing_topic_stops_start_up_by_name() {
    let prefix = unique_prefix();
    let mut settings = real_settings(&prefix);
    settings.kafka.create_topics = false;
    let outcome = Application::build(settings).await;
    let Err(StartError::Topics(error)) = outcome else {
        panic!("start-up must fail on missing topics");
    };
    let message = error.to_string();
    assert!(
        message.contains(&format!("{prefix}telecmi.event.answered")),
        "{message}"
    );
    assert!(message.contains("kafka.create_topics"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_land_on_the_partition_a_java_client_would_choose() {
    let prefix = unique_prefix();
    let mut settings = real_settings(&prefix);
    settings.kafka.topic_partitions = 7;
    let app = spawn_app(settings).await;
    scenarios::keys_land_where_java_clients_put_them(&app, 7).await;
}
