//! Compose wiring: the Kafka service can serve the bridge.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::deployment::*;
use crate::support::*;

#[test]
fn compose_kafka_can_serve_the_bridge() {
    let deploy = deploy();
    let settings = compose_settings();
    let kafka = deploy.compose_service(KAFKA_SERVICE);
    let kafka_env: BTreeMap<String, String> = kafka["environment"]
        .as_object()
        .expect("the kafka service's environment should be a map")
        .iter()
        .map(|(name, value)| (name.clone(), scalar(value, name)))
        .collect();
    let advertised = kafka_env
        .get("KAFKA_ADVERTISED_LISTENERS")
        .expect("kafka: KAFKA_ADVERTISED_LISTENERS");
    let tested = read("deploy/kafka/local-kafka.sh")
        .lines()
        .find_map(|line| line.strip_prefix("KAFKA_VERSION=\"${KAFKA_VERSION:-"))
        .and_then(|rest| rest.split('}').next())
        .map(str::to_owned)
        .expect("local-kafka.sh sets KAFKA_VERSION");
    assert_eq!(
        scalar(&kafka["image"], "kafka image"),
        format!("apache/kafka:{tested}"),
        "compose should run the Kafka version the suites test against"
    );
    let telecmi_bridge::config::Bootstrap::Brokers(brokers) = &settings.kafka.bootstrap_servers
    else {
        panic!("compose should point the bridge at the kafka service")
    };
    for broker in brokers.split(',') {
        assert!(
            advertised.contains(&format!("://{}", broker.trim())),
            "bridge bootstrap {broker} is not an advertised listener of the kafka service ({advertised})"
        );
    }
    // One broker, topics never auto-created: the bridge creates them, with one replica.
    assert_eq!(
        kafka_env
            .get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")
            .map(String::as_str),
        Some("false")
    );
    assert!(
        settings.kafka.create_topics,
        "nobody else creates the topics in compose"
    );
    assert_eq!(
        settings.kafka.topic_replication_factor, 1,
        "a single broker holds one replica"
    );
    // The bridge waits for a healthy broker, and the broker has a health check.
    assert_eq!(
        deploy
            .compose_service(BRIDGE_SERVICE)
            .pointer(&format!("/depends_on/{KAFKA_SERVICE}/condition")),
        Some(&Value::from("service_healthy"))
    );
    assert!(
        kafka.pointer("/healthcheck/test").is_some(),
        "kafka has no healthcheck"
    );
    // The build section points at this Dockerfile.
    let build = pointer(
        deploy.compose_service(BRIDGE_SERVICE),
        "/build",
        "telecmi-bridge",
    );
    let context = repo()
        .join("deploy")
        .join(scalar(&build["context"], "build.context"));
    let dockerfile = context.join(scalar(&build["dockerfile"], "build.dockerfile"));
    assert_eq!(
        clean(&context),
        clean(repo()),
        "the build context is the repository root"
    );
    assert_eq!(clean(&dockerfile), clean(repo().join("deploy/Dockerfile")));
}
