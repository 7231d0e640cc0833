//! Configuration: built-in defaults < `config/default.toml` < `config/<profile>.toml` <
//! `--config FILE` < `TELECMI_BRIDGE_*` environment variables. Parsed into types that cannot
//! hold an invalid value, then checked as a whole, every mistake reported at once. Each
//! section's file owns its schema, defaults and checks; the settings become librdkafka
//! properties next to the Kafka client, in `publish::kafka::kafka_client_config`.

mod auth;
mod dedup;
mod delivery;
mod envelope;
pub(crate) mod forms;
mod kafka;
mod load;
mod logging;
mod privacy;
mod routing;
mod secret;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use auth::{AuthSettings, ForwardedHeader, SignatureEncoding};
pub use dedup::DedupSettings;
pub use delivery::{DeliveryMode, DeliverySettings, OnCorrupt, SpoolSettings};
pub use envelope::{EnvelopeMode, EnvelopeSettings, OriginalMode};
pub use kafka::{
    Bootstrap, Compression, KafkaProperties, KafkaSecurity, KafkaSettings, SaslMechanism,
    SecurityProtocol,
};
pub use load::Sources;
pub use logging::{LogFormat, LoggingSettings};
pub use privacy::{PrivacyMode, PrivacySettings};
pub use routing::RoutingSettings;
pub use secret::SecretValue;
pub use server::{ServerSettings, ServerTls};

pub const ENV_PREFIX: &str = "TELECMI_BRIDGE_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Every mistake found, each naming its key.
    #[error("invalid configuration: {}", one_per_line(.0))]
    Invalid(Vec<Problem>),
    #[error("profile {profile:?} has no file at {path}")]
    MissingProfile { profile: String, path: PathBuf },
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error(transparent)]
    Figment(#[from] Box<figment::Error>),
}

/// One mistake in the configuration, naming the key to change.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{key}: cannot read {}: {source}", path.display())]
    Unreadable {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Problem {
    pub fn key(&self) -> &str {
        match self {
            Self::Invalid { key, .. } | Self::Unreadable { key, .. } => key,
        }
    }
}

fn one_per_line(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// The mistakes the sections' checks find, gathered so that all are reported at once.
#[derive(Debug, Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Problem::Invalid {
            key: key.into(),
            reason: reason.into(),
        });
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub kafka: KafkaSettings,
    pub delivery: DeliverySettings,
    pub spool: SpoolSettings,
    pub dedup: DedupSettings,
    pub privacy: PrivacySettings,
    pub routing: RoutingSettings,
    pub auth: AuthSettings,
    pub envelope: EnvelopeSettings,
    pub logging: LoggingSettings,
    pub reconcile: crate::reconcile::ReconcileSettings,
}

impl Settings {
    /// Every section's checks, then those that span sections; all mistakes, not the first,
    /// with `problems` (values of the wrong form) among them, grouped by section.
    fn validate(&self, mut problems: Problems) -> Result<(), ConfigError> {
        self.server.validate(&mut problems);
        self.kafka.validate(&mut problems);
        self.delivery.validate(&mut problems);
        self.spool.validate(self.delivery.mode, &mut problems);
        self.dedup.validate(&mut problems);
        self.privacy.validate(&mut problems);
        self.routing.validate(&mut problems);
        self.auth.validate(&mut problems);
        self.envelope.validate(&mut problems);
        self.logging.validate(&mut problems);
        if let Err(message) = self.reconcile.validate() {
            // The reconcile section still reports "key: reason" as text.
            let (key, reason) = message.split_once(": ").unwrap_or(("reconcile", &message));
            problems.add(key, reason);
        }
        let message_max_bytes = self.kafka.properties.message_max_bytes();
        if kafka::envelope_bound(self.server.body_limit_bytes) > message_max_bytes {
            problems.add(
                "server.body_limit_bytes",
                format!(
                    "a body of {} bytes can make an envelope of {} bytes \
                 (3 x body + 4 KiB), more than Kafka's message.max.bytes ({message_max_bytes}); \
                 lower the body limit to at most {}, or raise kafka.properties.\
                 \"message.max.bytes\" (and the topics' max.message.bytes)",
                    self.server.body_limit_bytes,
                    kafka::envelope_bound(self.server.body_limit_bytes),
                    message_max_bytes.saturating_sub(4 * 1024) / 3
                ),
            );
        }
        if self.server.request_timeout_ms <= self.delivery.ack_timeout_ms {
            problems.add(
                "server.request_timeout_ms",
                format!(
                    "must exceed delivery.ack_timeout_ms ({} ms), or \
                 requests would time out before Kafka can acknowledge them",
                    self.delivery.ack_timeout_ms.as_millis()
                ),
            );
        }
        if problems.0.is_empty() {
            Ok(())
        } else {
            problems
                .0
                .sort_by_key(|problem| section_position(problem.key()));
            Err(ConfigError::Invalid(problems.0))
        }
    }

    /// What an operator should know about a configuration that is valid but weak; logged at
    /// start-up.
    pub fn warnings(&self) -> Vec<String> {
        self.kafka
            .insecure_tls_property()
            .map(|(key, value)| {
                format!(
                    "kafka.properties.\"{key}\" = {value:?}: the brokers' certificates are not \
                     fully verified (kafka.security.allow_insecure_tls = true)"
                )
            })
            .into_iter()
            .collect()
    }

    pub fn ack_timeout(&self) -> Duration {
        self.delivery.ack_timeout_ms
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# unprintable: {error}\n"))
    }
}

/// Where a key's section comes in the configuration; problems are reported in this order.
fn section_position(key: &str) -> usize {
    const SECTIONS: [&str; 11] = [
        "server",
        "kafka",
        "delivery",
        "spool",
        "dedup",
        "privacy",
        "routing",
        "auth",
        "envelope",
        "logging",
        "reconcile",
    ];
    let section = key.split(['.', '[']).next().unwrap_or(key);
    SECTIONS
        .iter()
        .position(|known| *known == section)
        .unwrap_or(SECTIONS.len())
}

/// Adds "must be greater than 0" for each key whose value is 0 (or a zero duration).
fn require_positive<T: Default + PartialEq>(problems: &mut Problems, values: &[(&str, T)]) {
    for (key, _) in values.iter().filter(|(_, value)| *value == T::default()) {
        problems.add(*key, "must be greater than 0");
    }
}

/// The layers a test loads: `config/` of the working directory (a `figment::Jail`'s) and the
/// profile its environment names.
#[cfg(test)]
pub(crate) fn test_sources() -> Sources {
    Sources {
        config_dir: PathBuf::from("config"),
        profile: std::env::var("TELECMI_BRIDGE_PROFILE").ok(),
        file: None,
    }
}

#[cfg(test)]
// `figment::Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::Path;

    use figment::providers::{Format, Toml};
    use figment::{Figment, Jail};

    use super::test_sources as sources;
    use super::*;

    #[test]
    fn the_shipped_default_file_matches_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let from_file =
            Settings::from_figment(&Figment::new().merge(Toml::file(path))).expect("valid");
        assert_eq!(from_file, Settings::default());
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            (
                "TELECMI_BRIDGE_ROUTING__UNROUTED_TOPIC",
                "bad topic!",
                "unrouted_topic",
            ),
            (
                "TELECMI_BRIDGE_DELIVERY__ACK_TIMEOUT_MS",
                "0",
                "delivery.ack_timeout_ms",
            ),
            ("TELECMI_BRIDGE_AUTH__REQUIRED", "true", "auth.tokens"),
            (
                "TELECMI_BRIDGE_AUTH__HMAC_TIMESTAMP_HEADER",
                "x-signature-timestamp",
                "auth.hmac_timestamp_header",
            ),
            ("TELECMI_BRIDGE_SERVER__LISTEN", "nowhere", "listen"),
            ("TELECMI_BRIDGE_KAFKA__COMPRESSION", "brotli", "compression"),
            (
                "TELECMI_BRIDGE_PRIVACY__PHONE_FIELDS",
                "[\"from\", \"custom..mobile\"]",
                "privacy.phone_fields",
            ),
            (
                "TELECMI_BRIDGE_KAFKA__PROPERTIES__ACKS",
                "1",
                "kafka.properties.acks",
            ),
        ];
        for (variable, value, key) in cases {
            Jail::expect_with(|jail| {
                jail.set_env(variable, value);
                let error = Settings::load(&sources()).unwrap_err().to_string();
                assert!(
                    error.to_lowercase().contains(key),
                    "{variable}={value}: {error}"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn the_production_profile_refuses_the_embedded_cluster_and_needs_tokens() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_PROFILE", "production");
            let production = Sources {
                config_dir: dir.clone(),
                ..sources()
            };
            let error = Settings::load(&production).unwrap_err().to_string();
            assert!(error.contains("kafka.bootstrap_servers"), "{error}");
            jail.set_env("TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092");
            let error = Settings::load(&production).unwrap_err().to_string();
            assert!(error.contains("auth.tokens"), "{error}");
            jail.set_env("TELECMI_BRIDGE_AUTH__TOKENS", "[0123456789abcdef0123]");
            let error = Settings::load(&production).unwrap_err().to_string();
            assert!(error.contains("server.require_tls"), "{error}");
            assert!(error.contains("tls_terminated_by_proxy"), "{error}");
            jail.set_env("TELECMI_BRIDGE_SERVER__TLS_TERMINATED_BY_PROXY", "true");
            let settings = Settings::load(&production).expect("valid");
            assert!(settings.auth.required);
            assert!(!settings.to_redacted_toml().contains("0123456789abcdef"));
            Ok(())
        });
    }

    #[test]
    fn every_mistake_is_reported_at_once_one_per_line() {
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_DELIVERY__ACK_TIMEOUT_MS", "0");
            jail.set_env("TELECMI_BRIDGE_ENVELOPE__SOURCE", "not a uri");
            jail.set_env("TELECMI_BRIDGE_AUTH__HEADER", "bad header");
            let error = Settings::load(&sources()).unwrap_err();
            let ConfigError::Invalid(problems) = &error else {
                panic!("not a validation error: {error}");
            };
            assert_eq!(problems.len(), 3, "{problems:?}");
            let keys: Vec<&str> = problems.iter().map(Problem::key).collect();
            assert_eq!(
                keys,
                ["delivery.ack_timeout_ms", "auth.header", "envelope.source"]
            );
            let shown = error.to_string();
            assert_eq!(shown.lines().count(), 3, "{shown}");
            for key in ["delivery.ack_timeout_ms", "envelope.source", "auth.header"] {
                assert_eq!(
                    shown.lines().filter(|line| line.contains(key)).count(),
                    1,
                    "{key}: {shown}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn the_body_limit_must_fit_kafkas_message_size() {
        // (1,000,000 - 4,096) / 3: the largest body whose envelope fits librdkafka's default.
        let largest = 331_968;
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_SERVER__BODY_LIMIT_BYTES", largest);
            Settings::load(&sources()).expect("fits");
            jail.set_env("TELECMI_BRIDGE_SERVER__BODY_LIMIT_BYTES", largest + 1);
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(
                error.contains("server.body_limit_bytes")
                    && error.contains("message.max.bytes")
                    && error.contains(&largest.to_string()),
                "{error}"
            );
            jail.set_env(
                "TELECMI_BRIDGE_KAFKA__PROPERTIES",
                "{\"message.max.bytes\"=2000000}",
            );
            Settings::load(&sources()).expect("a larger message size");
            jail.set_env(
                "TELECMI_BRIDGE_KAFKA__PROPERTIES",
                "{\"message.max.bytes\"=\"lots\"}",
            );
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(error.contains("message.max.bytes"), "{error}");
            Ok(())
        });
    }
}
