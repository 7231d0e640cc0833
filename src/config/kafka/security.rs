//! `[kafka.security]`: how the bridge connects to the brokers (TLS, SASL), typed and checked.
//! Separate from the rest of the Kafka section because it holds credentials and files that
//! are checked on their own, and each of its fields becomes a property the bridge owns.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{Problems, SecretValue};

/// How the bridge connects to Kafka: TLS and SASL (PLAIN, SCRAM-SHA-256/512), typed and
/// checked at start-up rather than passed through as free-form properties.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    pub sasl_mechanism: SaslMechanism,
    pub sasl_username: String,
    /// The password itself (e.g. from TELECMI_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD)...
    pub sasl_password: Option<SecretValue>,
    /// ...or a file holding it (a mounted secret), read once at start-up into `sasl_password`;
    /// trailing newlines are ignored.
    pub sasl_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the brokers' certificates; the system store if unset.
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate and key (PEM) for brokers that require mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    pub ssl_key_location: Option<PathBuf>,
    pub ssl_key_password: Option<SecretValue>,
    /// Accept `kafka.properties` that turn off the verification of the brokers' certificates
    /// (logged as a warning at start-up); refused otherwise.
    pub allow_insecure_tls: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub(crate) fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub(crate) fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    pub(crate) fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub(crate) fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaSecurity {
    /// Settings have read `sasl_password_file` into `sasl_password` at load.
    pub(super) fn validate(&self, problems: &mut Problems) {
        let password = self.sasl_password.as_ref().map(SecretValue::expose);
        if self.protocol.uses_sasl() {
            if self.sasl_username.is_empty() {
                problems.add(
                    "kafka.security.sasl_username",
                    format!("required with protocol {}", self.protocol.as_librdkafka()),
                );
            }
            if password.is_none_or(str::is_empty) {
                problems.add(
                    "kafka.security",
                    format!(
                        "protocol {} needs sasl_password or sasl_password_file",
                        self.protocol.as_librdkafka()
                    ),
                );
            }
        }
        for (key, path) in [
            ("ssl_ca_location", &self.ssl_ca_location),
            ("ssl_certificate_location", &self.ssl_certificate_location),
            ("ssl_key_location", &self.ssl_key_location),
        ] {
            let Some(path) = path else { continue };
            if !self.protocol.uses_tls() {
                problems.add(
                    format!("kafka.security.{key}"),
                    format!(
                        "set, but protocol {} does not use TLS",
                        self.protocol.as_librdkafka()
                    ),
                );
            } else if !path.is_file() {
                problems.add(
                    format!("kafka.security.{key}"),
                    format!("{} is not a readable file", path.display()),
                );
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            problems.add(
                "kafka.security",
                "ssl_certificate_location and ssl_key_location go together".to_owned(),
            );
        }
    }
}
