//! The Kafka section: brokers, producer tuning, free-form librdkafka properties and the typed
//! security settings, with their checks. They become librdkafka properties in
//! `publish::kafka::kafka_client_config`.
//!
//! The typed security settings (TLS, SASL) and their checks are in `security`, the free-form
//! properties in `properties`.

mod properties;
mod security;

use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::Problems;
use super::forms::milliseconds;
use super::require_positive;

pub use properties::KafkaProperties;
pub use security::{KafkaSecurity, SaslMechanism, SecurityProtocol};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    pub bootstrap_servers: Bootstrap,
    pub allow_embedded: bool,
    pub client_id: String,
    pub create_topics: bool,
    pub topic_partitions: i32,
    pub topic_replication_factor: i32,
    pub compression: Compression,
    #[serde(with = "milliseconds")]
    pub linger_ms: Duration,
    #[serde(with = "milliseconds")]
    pub metadata_timeout_ms: Duration,
    #[serde(with = "milliseconds")]
    pub readiness_interval_ms: Duration,
    /// Further librdkafka properties (security, tuning); those the bridge owns are refused.
    pub properties: KafkaProperties,
    pub security: KafkaSecurity,
}

/// A property that turns off the verification of the brokers' TLS certificates or names.
fn weakens_tls(key: &str, value: &str) -> bool {
    let value = value.trim();
    match key {
        "enable.ssl.certificate.verification" => {
            value.eq_ignore_ascii_case("false") || value == "0"
        }
        "ssl.endpoint.identification.algorithm" => value.eq_ignore_ascii_case("none"),
        _ => false,
    }
}

/// The largest envelope a body of `body_limit` bytes makes: the payload three times
/// (`data.fields`, `data.original.payload` and, for a form or a body that repeats a key, its
/// exact text in `data.original.raw`) and under 4 KiB of attributes and headers.
pub(super) fn envelope_bound(body_limit: usize) -> usize {
    body_limit.saturating_mul(3).saturating_add(4 * 1024)
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: Bootstrap::Embedded,
            allow_embedded: true,
            client_id: "telecmi-bridge".to_owned(),
            create_topics: true,
            topic_partitions: 6,
            topic_replication_factor: 1,
            compression: Compression::Lz4,
            linger_ms: Duration::from_millis(5),
            metadata_timeout_ms: Duration::from_millis(3_000),
            readiness_interval_ms: Duration::from_millis(2_000),
            properties: KafkaProperties::default(),
            security: KafkaSecurity::default(),
        }
    }
}

/// `embedded` starts librdkafka's in-process mock cluster; anything else is a broker list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    Embedded,
    Brokers(String),
}

impl<'de> Deserialize<'de> for Bootstrap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let text = text.trim();
        if text.eq_ignore_ascii_case("embedded") {
            Ok(Self::Embedded)
        } else if text.is_empty() || text.split(',').any(|broker| broker.trim().is_empty()) {
            Err(serde::de::Error::custom(
                "expected `embedded` or a comma-separated list of host:port",
            ))
        } else {
            Ok(Self::Brokers(text.to_owned()))
        }
    }
}

impl Serialize for Bootstrap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Embedded => serializer.serialize_str("embedded"),
            Self::Brokers(list) => serializer.serialize_str(list),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
}

impl Compression {
    pub(crate) fn as_librdkafka(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
        }
    }
}

/// librdkafka properties the bridge sets itself; overriding them would break its promises.
const OWNED_PROPERTIES: [&str; 18] = [
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "bootstrap.servers",
    "client.id",
    "acks",
    "enable.idempotence",
    "max.in.flight.requests.per.connection",
    "partitioner",
    "compression.type",
    "linger.ms",
    "message.timeout.ms",
    "test.mock.num.brokers",
];

impl KafkaSettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.bootstrap_servers == Bootstrap::Embedded && !self.allow_embedded {
            problems.add(
                "kafka.bootstrap_servers",
                "`embedded` is refused here (kafka.allow_embedded = \
                 false); set it to your brokers, e.g. TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS"
                    .to_owned(),
            );
        }
        for owned in self
            .properties
            .iter()
            .map(|(key, _)| key)
            .filter(|key| OWNED_PROPERTIES.contains(key))
        {
            problems.add(
                format!("kafka.properties.{owned}"),
                "set by the bridge itself; use the typed key instead (kafka.security for TLS \
                 and SASL)",
            );
        }
        self.security.validate(problems);
        if let Some((key, value)) = self.insecure_tls_property()
            && !self.security.allow_insecure_tls
        {
            problems.add(
                format!("kafka.properties.\"{key}\""),
                format!(
                    "{value:?} turns off the verification of the brokers' certificates; remove \
                     it, or set kafka.security.allow_insecure_tls = true to accept that \
                     deliberately"
                ),
            );
        }
        require_positive(
            problems,
            &[
                ("kafka.metadata_timeout_ms", self.metadata_timeout_ms),
                ("kafka.readiness_interval_ms", self.readiness_interval_ms),
            ],
        );
        if self.topic_partitions < 1 {
            problems.add("kafka.topic_partitions", "must be at least 1".to_owned());
        }
        if self.topic_replication_factor < 1 {
            problems.add(
                "kafka.topic_replication_factor",
                "must be at least 1".to_owned(),
            );
        }
    }

    /// The first `kafka.properties` entry that weakens TLS, with its value.
    pub(super) fn insecure_tls_property(&self) -> Option<(&str, &str)> {
        self.properties
            .iter()
            .map(|(key, value)| (key, value.expose()))
            .find(|(key, value)| weakens_tls(key, value))
    }
}

#[cfg(test)]
// `figment::Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use std::collections::BTreeMap;

    use figment::Jail;

    use super::*;
    use crate::config::test_sources as sources;
    use crate::config::*;

    #[test]
    fn tls_weakening_properties_need_an_explicit_flag_and_are_warned_about() {
        for property in [
            "{\"enable.ssl.certificate.verification\"=false}",
            "{\"enable.ssl.certificate.verification\"=\"false\"}",
            "{\"enable.ssl.certificate.verification\"=\"0\"}",
            "{\"ssl.endpoint.identification.algorithm\"=\"none\"}",
        ] {
            Jail::expect_with(|jail| {
                jail.set_env("TELECMI_BRIDGE_KAFKA__PROPERTIES", property);
                let error = Settings::load(&sources()).unwrap_err().to_string();
                assert!(
                    error.contains("kafka.security.allow_insecure_tls"),
                    "{property}: {error}"
                );
                jail.set_env("TELECMI_BRIDGE_KAFKA__SECURITY__ALLOW_INSECURE_TLS", "true");
                let settings = Settings::load(&sources()).expect("explicitly allowed");
                let warnings = settings.warnings();
                assert_eq!(warnings.len(), 1, "{warnings:?}");
                assert!(warnings[0].contains("not fully verified"), "{warnings:?}");
                Ok(())
            });
        }
        assert!(Settings::default().warnings().is_empty());
    }

    #[test]
    fn check_config_shows_property_values_except_secret_ones() {
        let settings = Settings {
            kafka: KafkaSettings {
                properties: KafkaProperties::try_from(BTreeMap::from([
                    ("message.max.bytes".to_owned(), SecretValue::from("2000000")),
                    (
                        "sasl.oauthbearer.config".to_owned(),
                        SecretValue::from("principal=bridge oauth-secret-1"),
                    ),
                    (
                        "ssl.keystore.password".to_owned(),
                        SecretValue::from("keystore-secret-2"),
                    ),
                    ("ssl.key.pem".to_owned(), SecretValue::from("pem-secret-3")),
                ]))
                .expect("valid"),
                ..KafkaSettings::default()
            },
            ..Settings::default()
        };
        let shown = settings.to_redacted_toml();
        assert!(
            shown.contains("\"message.max.bytes\" = \"2000000\""),
            "{shown}"
        );
        for secret in ["oauth-secret-1", "keystore-secret-2", "pem-secret-3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
