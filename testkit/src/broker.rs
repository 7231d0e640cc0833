//! The real broker under test: `KAFKA_BOOTSTRAP_SERVERS`, started by
//! `deploy/kafka/local-kafka.sh`. Without it these suites fail; they never skip.

use telecmi_bridge::Settings;
use telecmi_bridge::config::RoutingSettings;
use telecmi_bridge::domain::TopicName;

use crate::helpers::{test_settings, with_brokers};

pub fn bootstrap_servers() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| {
        panic!(
            "KAFKA_BOOTSTRAP_SERVERS is not set: start a broker with \
             `deploy/kafka/local-kafka.sh start` and export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092"
        )
    })
}

/// A prefix no other test uses, so tests sharing the broker never read each other's records.
pub fn unique_prefix() -> String {
    format!("it-{}.", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn prefixed(prefix: &str, topic: &TopicName) -> TopicName {
    TopicName::try_from(format!("{prefix}{topic}")).expect("valid topic name")
}

/// Test settings on the real broker, every topic name prefixed, topics created at start-up.
pub fn real_settings(prefix: &str) -> Settings {
    let mut settings = with_brokers(test_settings(), &bootstrap_servers());
    settings.kafka.create_topics = true;
    settings.kafka.topic_replication_factor = 1;
    let routing = &settings.routing;
    let table = |topics: &std::collections::BTreeMap<String, TopicName>| {
        topics
            .iter()
            .map(|(status, topic)| (status.clone(), prefixed(prefix, topic)))
            .collect()
    };
    settings.routing = RoutingSettings {
        event_topics: table(&routing.event_topics),
        cdr_topics: table(&routing.cdr_topics),
        event_fallback_topic: prefixed(prefix, &routing.event_fallback_topic),
        cdr_fallback_topic: prefixed(prefix, &routing.cdr_fallback_topic),
        unrouted_topic: prefixed(prefix, &routing.unrouted_topic),
        combined_topic_enabled: routing.combined_topic_enabled,
        combined_topic: prefixed(prefix, &routing.combined_topic),
        dead_letter_enabled: routing.dead_letter_enabled,
        dead_letter_topic: prefixed(prefix, &routing.dead_letter_topic),
        ..routing.clone()
    };
    settings
}
