//! Encrypted connections: the bridge publishes through `local-kafka.sh`'s SASL_SSL listener,
//! verifying the broker against the CA the script generated, and refuses to start, naming
//! the cause, when told to trust a CA that did not sign the broker's certificate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use telecmi_bridge::config::{KafkaSecurity, SaslMechanism, SecretValue, SecurityProtocol};
use telecmi_bridge::{Application, Settings};

use crate::broker::{bootstrap_servers, real_settings, unique_prefix};
use crate::helpers::{consume, spawn_app, with_brokers};
use crate::scenarios::accepted;

fn ssl_bootstrap_servers() -> String {
    std::env::var("KAFKA_SSL_BOOTSTRAP_SERVERS").unwrap_or_else(|_| {
        panic!(
            "KAFKA_SSL_BOOTSTRAP_SERVERS is not set: local-kafka.sh opens a SASL_SSL listener on \
             KAFKA_PORT + 3, e.g. export KAFKA_SSL_BOOTSTRAP_SERVERS=127.0.0.1:9095"
        )
    })
}

/// Not derived from KAFKA_DATA_DIR: a guessed path could silently point at another
/// instance's CA.
fn broker_ca() -> PathBuf {
    std::env::var_os("KAFKA_SSL_CA_LOCATION")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "KAFKA_SSL_CA_LOCATION is not set: local-kafka.sh writes the CA that signed its \
                 broker certificate to $KAFKA_DATA_DIR/tls/ca.pem, e.g. export \
                 KAFKA_SSL_CA_LOCATION=/tmp/telecmi-bridge-kafka/tls/ca.pem"
            )
        })
}

/// A valid self-signed certificate that signed nothing the broker presents, written to `dir`.
fn unrelated_ca(dir: &Path) -> PathBuf {
    let generated = rcgen::generate_simple_self_signed(vec!["unrelated-ca".to_owned()])
        .expect("self-signed certificate");
    let path = dir.join("unrelated-ca.pem");
    std::fs::write(&path, generated.cert.pem()).expect("write CA");
    path
}

fn tls_settings(ca: PathBuf) -> Settings {
    let mut settings = with_brokers(real_settings(&unique_prefix()), &ssl_bootstrap_servers());
    settings.kafka.security = KafkaSecurity {
        protocol: SecurityProtocol::SaslSsl,
        sasl_mechanism: SaslMechanism::ScramSha512,
        sasl_username: std::env::var("KAFKA_SASL_USER").unwrap_or_else(|_| "bridge".to_owned()),
        sasl_password: Some(SecretValue::from(
            std::env::var("KAFKA_SASL_PASSWORD")
                .unwrap_or_else(|_| "bridge-secret-0123".to_owned())
                .as_str(),
        )),
        ssl_ca_location: Some(ca),
        ..KafkaSecurity::default()
    };
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_through_sasl_ssl_trusting_the_brokers_ca() {
    let app = spawn_app(tls_settings(broker_ca())).await;
    let body = r#"{"type":"event","status":"answered","cmiuuid":"tls-scram-sha-512"}"#;
    let (id, _) = accepted(app.post_json(body.as_bytes()).await).await;
    // Read back over the plaintext listener: the same broker, the same topics.
    let records = consume(
        &bootstrap_servers(),
        &app.topics,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id(), id);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_ca_stops_start_up_with_a_certificate_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = match Application::build(tls_settings(unrelated_ca(dir.path()))).await {
        Ok(_) => panic!("the bridge started trusting a CA that did not sign the broker"),
        Err(error) => error.to_string(),
    };
    // OpenSSL's own words, which librdkafka passes on: specific to this cause, unlike a hint
    // about kafka.security that any refusal could print.
    assert!(
        error.contains("certificate verify failed"),
        "the start-up error should name the cause: {error}"
    );
}
