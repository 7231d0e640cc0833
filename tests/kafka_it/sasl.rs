//! Authenticated connections: the bridge publishes through `local-kafka.sh`'s SASL listener
//! with each mechanism, and refuses to start, naming the cause, with a wrong password.

use std::time::Duration;

use telecmi_bridge::config::{KafkaSecurity, SaslMechanism, SecretValue, SecurityProtocol};
use telecmi_bridge::{Application, Settings};

use crate::broker::{bootstrap_servers, real_settings, unique_prefix};
use crate::helpers::{consume, spawn_app, with_brokers};
use crate::scenarios::accepted;

fn sasl_bootstrap_servers() -> String {
    std::env::var("KAFKA_SASL_BOOTSTRAP_SERVERS").unwrap_or_else(|_| {
        panic!(
            "KAFKA_SASL_BOOTSTRAP_SERVERS is not set: local-kafka.sh opens a SASL listener on \
             KAFKA_PORT + 2, e.g. export KAFKA_SASL_BOOTSTRAP_SERVERS=127.0.0.1:9094"
        )
    })
}

fn sasl_settings(mechanism: SaslMechanism, password: &str) -> Settings {
    let mut settings = with_brokers(real_settings(&unique_prefix()), &sasl_bootstrap_servers());
    settings.kafka.security = KafkaSecurity {
        protocol: SecurityProtocol::SaslPlaintext,
        sasl_mechanism: mechanism,
        sasl_username: std::env::var("KAFKA_SASL_USER").unwrap_or_else(|_| "bridge".to_owned()),
        sasl_password: Some(SecretValue::from(password)),
        ..KafkaSecurity::default()
    };
    settings
}

fn right_password() -> String {
    std::env::var("KAFKA_SASL_PASSWORD").unwrap_or_else(|_| "bridge-secret-0123".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_through_sasl_with_every_mechanism() {
    for mechanism in [
        SaslMechanism::ScramSha512,
        SaslMechanism::ScramSha256,
        SaslMechanism::Plain,
    ] {
        let app = spawn_app(sasl_settings(mechanism, &right_password())).await;
        let body =
            format!(r#"{{"type":"event","status":"answered","cmiuuid":"sasl-{mechanism:?}"}}"#);
        let (id, _) = accepted(app.post_json(body.as_bytes()).await).await;
        // Read back over the plaintext listener: the same broker, the same topics.
        let records = consume(
            &bootstrap_servers(),
            &app.topics,
            1,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(records.len(), 1, "{mechanism:?}");
        assert_eq!(records[0].id(), id);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_start_up_with_an_authentication_error() {
    let settings = sasl_settings(SaslMechanism::ScramSha512, "not-the-password-000");
    let error = match Application::build(settings).await {
        Ok(_) => panic!("the bridge started with a wrong Kafka password"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.to_lowercase().contains("authentication"),
        "the start-up error should name the cause: {error}"
    );
}
