//! Configuration: built-in defaults < `config/default.toml` < `config/<profile>.toml` <
//! `--config FILE` < `TELECMI_BRIDGE_*` environment variables. Parsed into types that cannot
//! hold an invalid value, then checked as a whole; this is also the only place that turns
//! settings into librdkafka properties.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use ipnet::IpNet;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize, Serializer};

pub const ENV_PREFIX: &str = "TELECMI_BRIDGE_";
/// hyper refuses a read buffer below 8 KiB. Above 64 KiB a long URI would get hyper's 414
/// before the buffer fills, and the listener counts every too-large head as 431.
const MIN_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Environment variables with the prefix that select files rather than set keys.
const ENV_NOT_KEYS: [&str; 2] = ["PROFILE", "CONFIG_DIR"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("profile {profile:?} has no file at {path}")]
    MissingProfile { profile: String, path: PathBuf },
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error(transparent)]
    Figment(#[from] Box<figment::Error>),
}

/// Where the layers come from; `main` fills it from the command line and environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config_dir: PathBuf,
    pub profile: Option<String>,
    pub file: Option<PathBuf>,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
    /// A client must send a request's headers within this time (slow-loris protection).
    pub header_read_timeout_ms: u64,
    /// Requests handled at once on the public listener; beyond it, 503 `overloaded`.
    pub max_in_flight_requests: usize,
    /// hyper's read buffer per connection, which must hold a request's line and headers;
    /// beyond it, 431. Bounds what a connection that never finishes its headers costs.
    pub max_header_bytes: usize,
    /// Open connections per listener; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Open connections per peer address (the TCP peer, so a proxy in front counts as one).
    pub max_connections_per_address: usize,
    /// Webhooks per second per caller address (after trusted proxies); 0 turns it off.
    pub rate_limit_per_second: u32,
    /// Webhooks a caller may send at once before the rate applies.
    pub rate_limit_burst: u32,
    /// TLS on the webhook listener, for deployments without a terminating proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
    /// Refuse to start without `tls` unless `tls_terminated_by_proxy` (the production profile).
    pub require_tls: bool,
    /// The operator's statement that a proxy in front terminates TLS.
    pub tls_terminated_by_proxy: bool,
}

/// PEM files of the webhook listener's certificate chain and private key. They are read again
/// when they change, so a renewed certificate (cert-manager, certbot) needs no restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub certificate_path: PathBuf,
    pub private_key_path: PathBuf,
    /// How often the files are checked for a change; 0 reads them only at start-up.
    #[serde(default = "ServerTls::default_reload_interval_seconds")]
    pub reload_interval_seconds: u64,
}

impl ServerTls {
    fn default_reload_interval_seconds() -> u64 {
        60
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            body_limit_bytes: 64 * 1024,
            request_timeout_ms: 15_000,
            shutdown_timeout_ms: 20_000,
            header_read_timeout_ms: 10_000,
            max_in_flight_requests: 1_024,
            max_header_bytes: 16 * 1024,
            max_connections: 2_048,
            max_connections_per_address: 256,
            rate_limit_per_second: 0,
            rate_limit_burst: 100,
            tls: None,
            require_tls: false,
            tls_terminated_by_proxy: false,
        }
    }
}

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
    pub linger_ms: u64,
    pub metadata_timeout_ms: u64,
    pub readiness_interval_ms: u64,
    /// Further librdkafka properties (security, tuning); those the bridge owns are refused.
    /// Values are shown by `check-config`, except those of keys that can hold a secret.
    #[serde(serialize_with = "serialize_properties")]
    pub properties: BTreeMap<String, SecretValue>,
    pub security: KafkaSecurity,
}

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
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn uses_tls(self) -> bool {
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
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaSecurity {
    /// Settings have read `sasl_password_file` into `sasl_password` at load.
    fn validate(&self) -> Result<(), String> {
        let password = self.sasl_password.as_ref().map(SecretValue::expose);
        if self.protocol.uses_sasl() {
            if self.sasl_username.is_empty() {
                return Err(format!(
                    "kafka.security.sasl_username: required with protocol {}",
                    self.protocol.as_librdkafka()
                ));
            }
            if password.is_none_or(str::is_empty) {
                return Err(format!(
                    "kafka.security: protocol {} needs sasl_password or sasl_password_file",
                    self.protocol.as_librdkafka()
                ));
            }
        }
        for (key, path) in [
            ("ssl_ca_location", &self.ssl_ca_location),
            ("ssl_certificate_location", &self.ssl_certificate_location),
            ("ssl_key_location", &self.ssl_key_location),
        ] {
            if let Some(path) = path {
                if !self.protocol.uses_tls() {
                    return Err(format!(
                        "kafka.security.{key}: set, but protocol {} does not use TLS",
                        self.protocol.as_librdkafka()
                    ));
                }
                if !path.is_file() {
                    return Err(format!(
                        "kafka.security.{key}: {} is not a readable file",
                        path.display()
                    ));
                }
            }
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            return Err(
                "kafka.security: ssl_certificate_location and ssl_key_location go together"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// librdkafka properties; no I/O: the password file was read once, at load.
    fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_librdkafka());
        if self.protocol.uses_sasl() {
            config
                .set("sasl.mechanism", self.sasl_mechanism.as_librdkafka())
                .set("sasl.username", &self.sasl_username);
            if let Some(password) = &self.sasl_password {
                config.set("sasl.password", password.expose());
            }
        }
        let paths = [
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
        ];
        for (property, path) in paths {
            if let Some(path) = path {
                config.set(property, path.to_string_lossy());
            }
        }
        if let Some(password) = &self.ssl_key_password {
            config.set("ssl.key.password", password.expose());
        }
    }
}

/// Whether a librdkafka property's value may be a secret, and so is never shown.
fn property_holds_secret(key: &str) -> bool {
    [
        "password",
        "secret",
        "key",
        "token",
        "sasl.jaas",
        "oauthbearer",
    ]
    .iter()
    .any(|marker| key.contains(marker))
}

/// Properties for `check-config`: values shown, except those of keys that can hold a secret.
fn serialize_properties<S: Serializer>(
    properties: &BTreeMap<String, SecretValue>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(properties.iter().map(|(key, value)| {
        let shown = if property_holds_secret(key) {
            "[redacted]"
        } else {
            value.expose()
        };
        (key, shown)
    }))
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

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The largest envelope a body of `body_limit` bytes makes: the payload three times
/// (`data.fields`, `data.original.payload` and, for a form or a body that repeats a key, its
/// exact text in `data.original.raw`) and under 4 KiB of attributes and headers.
fn envelope_bound(body_limit: usize) -> usize {
    body_limit.saturating_mul(3).saturating_add(4 * 1024)
}

impl KafkaSettings {
    /// The producer's `message.max.bytes`: what `kafka.properties` sets, or librdkafka's
    /// default; `None` when the property is not a number.
    pub fn message_max_bytes(&self) -> Option<usize> {
        match self.properties.get("message.max.bytes") {
            None => Some(DEFAULT_MESSAGE_MAX_BYTES),
            Some(value) => value.expose().trim().parse().ok(),
        }
    }
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
            linger_ms: 5,
            metadata_timeout_ms: 3_000,
            readiness_interval_ms: 2_000,
            properties: BTreeMap::new(),
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
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    pub mode: DeliveryMode,
    pub ack_timeout_ms: u64,
    pub retry_after_seconds: u32,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::Kafka,
            ack_timeout_ms: 5_000,
            retry_after_seconds: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryMode {
    /// Answer 2xx only once Kafka has acknowledged the record.
    Kafka,
    /// Answer 2xx once the event is synced to the local spool; a forwarder moves it to Kafka.
    Spool,
}

/// The on-disk spool of `spool` delivery mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSettings {
    /// The spool's database file; its directory is created if missing.
    pub path: PathBuf,
    /// Events held at most; beyond it requests are answered 503 with Retry-After.
    pub max_events: u64,
    /// Bytes of spooled records held at most (the file itself is somewhat larger).
    pub max_bytes: u64,
    /// What to do with a spool that cannot be read at start-up. It is always moved aside,
    /// never deleted.
    pub on_corrupt: OnCorrupt,
    /// Events the forwarder has handed to Kafka and not yet seen acknowledged, at most.
    pub forward_window: usize,
    /// Longest pause between attempts when Kafka refuses a spooled record.
    pub retry_backoff_max_ms: u64,
    /// Attempts at an event Kafka refuses for good (too large, not authorised, no such topic)
    /// before it is moved to the spool's quarantine; until then later events of its key wait.
    pub quarantine_after_attempts: u32,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("spool/telecmi-bridge.redb"),
            max_events: 1_000_000,
            max_bytes: 1 << 30,
            on_corrupt: OnCorrupt::Refuse,
            forward_window: 10_000,
            retry_backoff_max_ms: 30_000,
            quarantine_after_attempts: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCorrupt {
    /// Refuse to start, so that an operator looks at the file kept aside.
    Refuse,
    /// Keep the unreadable file aside and start with an empty spool.
    StartEmpty,
}

/// Optional protection of phone numbers before publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySettings {
    pub mode: PrivacyMode,
    /// The HMAC-SHA256 key of `hmac` mode (16+ characters).
    pub hmac_key: Option<SecretValue>,
    /// Payload fields holding phone numbers, matched at any depth without regard to case, `_`
    /// or `-`; an entry with dots (`custom.lead.mobile`) is one path from the top.
    pub phone_fields: Vec<String>,
    /// A file holding `hmac_key`, read once at start-up; trailing newlines are ignored.
    pub hmac_key_file: Option<PathBuf>,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            mode: PrivacyMode::Off,
            hmac_key: None,
            phone_fields: ["from", "to", "callerid", "virtual_number", "did"]
                .map(str::to_owned)
                .to_vec(),
            hmac_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyMode {
    Off,
    /// Replace each number with a fixed marker.
    Redact,
    /// Replace each number with a keyed hash of its digits.
    Hmac,
}

/// The optional de-duplication window for re-sent webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupSettings {
    pub enabled: bool,
    /// How long an accepted event id is remembered.
    pub window_seconds: u64,
    /// Ids remembered at most; the least recently used go first.
    pub max_entries: u64,
}

impl Default for DedupSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            window_seconds: 600,
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    pub event_topics: BTreeMap<String, TopicName>,
    pub cdr_topics: BTreeMap<String, TopicName>,
    pub event_fallback_topic: TopicName,
    pub cdr_fallback_topic: TopicName,
    pub unrouted_topic: TopicName,
    pub combined_topic_enabled: bool,
    pub combined_topic: TopicName,
    /// Requests whose body was read but cannot become an envelope are kept here, raw.
    pub dead_letter_enabled: bool,
    pub dead_letter_topic: TopicName,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        let table = |kind: &str, statuses: &[&str]| {
            statuses
                .iter()
                .map(|status| {
                    let topic = TopicName::new(&format!("telecmi.{kind}.{status}"));
                    ((*status).to_owned(), topic)
                })
                .collect()
        };
        Self {
            event_topics: table("event", &["waiting", "started", "answered", "hangup"]),
            cdr_topics: table("cdr", &["answered", "missed"]),
            event_fallback_topic: TopicName::new("telecmi.event.other"),
            cdr_fallback_topic: TopicName::new("telecmi.cdr.other"),
            unrouted_topic: TopicName::new("telecmi.unrouted"),
            combined_topic_enabled: false,
            combined_topic: TopicName::new("telecmi.calls"),
            dead_letter_enabled: true,
            dead_letter_topic: TopicName::new("telecmi.deadletter"),
        }
    }
}

impl RoutingSettings {
    /// Every topic the bridge may write to, each once.
    pub fn all_topics(&self) -> Vec<TopicName> {
        let mut topics: Vec<TopicName> = self
            .event_topics
            .values()
            .chain(self.cdr_topics.values())
            .chain([
                &self.event_fallback_topic,
                &self.cdr_fallback_topic,
                &self.unrouted_topic,
            ])
            .chain(self.combined_topic_enabled.then_some(&self.combined_topic))
            .chain(self.dead_letter_enabled.then_some(&self.dead_letter_topic))
            .cloned()
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }
}

/// A Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicName(Arc<str>);

impl TopicName {
    fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TopicName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let legal = name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if name.is_empty() || name.len() > 249 || !legal || name == "." || name == ".." {
            return Err(format!(
                "{name:?} is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"
            ));
        }
        Ok(Self(Arc::from(name)))
    }
}

impl From<TopicName> for String {
    fn from(topic: TopicName) -> Self {
        topic.0.to_string()
    }
}

impl std::fmt::Display for TopicName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub required: bool,
    #[serde(deserialize_with = "secret_list")]
    pub tokens: Vec<SecretValue>,
    /// Query parameter that may carry a token; removed from the payload before it is kept.
    pub query_param: String,
    pub header: String,
    /// HMAC-SHA256 secrets; when any is set, every webhook must carry a valid signature of its
    /// body (of its query string for a GET) in `hmac_header`.
    #[serde(deserialize_with = "secret_list")]
    pub hmac_secrets: Vec<SecretValue>,
    pub hmac_header: String,
    pub hmac_encoding: SignatureEncoding,
    /// Text before the encoded signature in the header, e.g. `sha256=`.
    pub hmac_prefix: String,
    /// Networks allowed to call the webhook; empty allows every address.
    pub allowed_networks: Vec<IpNet>,
    /// Proxies whose `Forwarded`/`X-Forwarded-For` headers are believed; none by default.
    pub trusted_proxies: Vec<IpNet>,
    /// The one header the trusted proxies set; the other is the client's word and ignored.
    pub forwarded_header: ForwardedHeader,
    /// Files holding `tokens` / `hmac_secrets`, one per line, read once at start-up.
    pub tokens_file: Option<PathBuf>,
    pub hmac_secrets_file: Option<PathBuf>,
    /// false (the production profile): refuse to start unless webhooks need a token or a
    /// signature.
    pub allow_unauthenticated: bool,
    /// When set, signatures cover `"{timestamp}.{body}"` with the Unix time (seconds) sent in
    /// this header, and a timestamp outside the tolerance is refused: no replays later on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_timestamp_header: Option<String>,
    pub hmac_timestamp_tolerance_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            required: false,
            tokens: Vec::new(),
            query_param: "bridge_token".to_owned(),
            header: "x-bridge-token".to_owned(),
            hmac_secrets: Vec::new(),
            hmac_header: "x-signature".to_owned(),
            hmac_encoding: SignatureEncoding::Hex,
            hmac_prefix: "sha256=".to_owned(),
            allowed_networks: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            tokens_file: None,
            hmac_secrets_file: None,
            allow_unauthenticated: true,
            hmac_timestamp_header: None,
            hmac_timestamp_tolerance_seconds: 300,
        }
    }
}

/// Where trusted proxies put the caller's address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, which nearly every proxy and ingress sets.
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// A value that is never printed: `check-config` and logs show `[redacted]`, and a value that
/// cannot be read is refused without being shown.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

/// How a secret is written, for messages about one that could not be read.
const SECRET_FORM: &str = "a secret as text, e.g. \"s3cr3t-value\" (an all-digit value is \
     read as a number and loses leading zeros: write it in double quotes, e.g. \
     TELECMI_BRIDGE_AUTH__TOKENS='\"000123...\"', or use the key's _file variant)";

/// Keys whose values are secrets: errors about them never show the value.
const SECRET_KEYS: [&str; 6] = [
    "tokens",
    "hmac_secrets",
    "hmac_key",
    "sasl_password",
    "ssl_key_password",
    "properties",
];

/// Accepts text, and numbers and booleans as their text (the environment provider parses
/// `123456` as a number); the error for anything else never contains the value.
struct SecretVisitor;

impl serde::de::Visitor<'_> for SecretVisitor {
    type Value = SecretValue;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(SECRET_FORM)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SecretValue, E> {
        Ok(SecretValue(text.to_owned()))
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<SecretValue, E> {
        Ok(SecretValue(value.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<SecretValue, E> {
        Ok(SecretValue(value.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<SecretValue, E> {
        Ok(SecretValue(value.to_string()))
    }

    fn visit_i128<E: serde::de::Error>(self, value: i128) -> Result<SecretValue, E> {
        Ok(SecretValue(value.to_string()))
    }

    fn visit_u128<E: serde::de::Error>(self, value: u128) -> Result<SecretValue, E> {
        Ok(SecretValue(value.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretValue, E> {
        Err(E::custom(format!(
            "read as a decimal number, which cannot be kept exactly (value not shown); expected \
             {SECRET_FORM}"
        )))
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// A list of secrets: a list, or one secret on its own (`TELECMI_BRIDGE_AUTH__TOKENS=mytoken`).
/// A lone value is never split at commas: a comma may be part of a secret, and splitting one
/// would silently weaken it.
fn secret_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SecretValue>, D::Error> {
    struct ListVisitor;

    impl<'de> serde::de::Visitor<'de> for ListVisitor {
        type Value = Vec<SecretValue>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str(
                "one secret, e.g. TELECMI_BRIDGE_AUTH__TOKENS=s3cr3t-value, or a list, e.g. \
                 TELECMI_BRIDGE_AUTH__TOKENS='[\"s3cr3t-1\", \"s3cr3t-2\"]'",
            )
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut sequence: A,
        ) -> Result<Self::Value, A::Error> {
            let mut secrets = Vec::new();
            while let Some(secret) = sequence.next_element::<SecretValue>()? {
                secrets.push(secret);
            }
            Ok(secrets)
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            if text.trim_start().starts_with('[') {
                return Err(E::custom(
                    "starts with `[` but is not a well-formed list (value not shown); expected \
                     [\"s3cr3t-1\", \"s3cr3t-2\"], or one secret without brackets",
                ));
            }
            SecretVisitor.visit_str(text).map(|secret| vec![secret])
        }

        fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Self::Value, E> {
            SecretVisitor.visit_bool(value).map(|secret| vec![secret])
        }

        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
            SecretVisitor.visit_i64(value).map(|secret| vec![secret])
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
            SecretVisitor.visit_u64(value).map(|secret| vec![secret])
        }

        fn visit_i128<E: serde::de::Error>(self, value: i128) -> Result<Self::Value, E> {
            SecretVisitor.visit_i128(value).map(|secret| vec![secret])
        }

        fn visit_u128<E: serde::de::Error>(self, value: u128) -> Result<Self::Value, E> {
            SecretVisitor.visit_u128(value).map(|secret| vec![secret])
        }

        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
            SecretVisitor.visit_f64(value).map(|secret| vec![secret])
        }
    }

    deserializer.deserialize_any(ListVisitor)
}

/// Replaces what figment says about a secret key's value (its messages quote the value found)
/// with the accepted form; messages of the secret deserialisers above never hold the value.
/// A TOML syntax error loses its quote of the offending line, which may hold a secret.
fn without_secret_values(error: figment::Error) -> figment::Error {
    let scrubbed: Vec<figment::Error> = error
        .into_iter()
        .map(|mut error| {
            if let figment::error::Kind::Message(message) = &mut error.kind {
                *message = without_quoted_lines(message);
            }
            let secret = error
                .path
                .iter()
                .any(|segment| SECRET_KEYS.contains(&segment.as_str()));
            if secret && !matches!(error.kind, figment::error::Kind::Message(_)) {
                error.kind = figment::error::Kind::Message(format!(
                    "invalid value (not shown: the key holds a secret); expected {SECRET_FORM}"
                ));
            }
            error
        })
        .collect();
    // `chain` puts its argument in front, so the chain is rebuilt from its end.
    scrubbed
        .into_iter()
        .rev()
        .reduce(|chain, error| chain.chain(error))
        .unwrap_or_else(|| figment::Error::from("invalid configuration".to_owned()))
}

/// The message without the lines of a quoted source excerpt (`  |`, `2 | tokens = [...`).
fn without_quoted_lines(message: &str) -> String {
    let quoted = |line: &str| {
        let line = line.trim_start();
        let after_number = line.trim_start_matches(|c: char| c.is_ascii_digit());
        line.starts_with('|') || (after_number.len() < line.len() && after_number.starts_with(" |"))
    };
    message
        .lines()
        .filter(|line| !quoted(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A secret file's content, without its trailing newlines. The error names the key and the
/// path, never the content.
fn read_secret_file(key: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|error| {
            ConfigError::Invalid(format!("{key}: cannot read {}: {error}", path.display()))
        })
}

/// Reads `path` into `value` when `path` is set; setting both is refused.
fn resolve_secret_file(
    key: &str,
    value: &mut Option<SecretValue>,
    path: Option<&Path>,
) -> Result<(), ConfigError> {
    let Some(path) = path else { return Ok(()) };
    if value.is_some() {
        return Err(ConfigError::Invalid(format!(
            "{key}: set {key} or {key}_file, not both"
        )));
    }
    *value = Some(SecretValue(read_secret_file(&format!("{key}_file"), path)?));
    Ok(())
}

/// Reads one secret per line of `path` into `values` when `path` is set; blank lines are
/// skipped; setting both is refused.
fn resolve_secret_lines(
    key: &str,
    values: &mut Vec<SecretValue>,
    path: Option<&Path>,
) -> Result<(), ConfigError> {
    let Some(path) = path else { return Ok(()) };
    if !values.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{key}: set {key} or {key}_file, not both"
        )));
    }
    *values = read_secret_file(&format!("{key}_file"), path)?
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty())
        .map(SecretValue::from)
        .collect();
    Ok(())
}

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretValue {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("[redacted]")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvelopeSettings {
    /// CloudEvents `source` of every envelope.
    pub source: String,
    /// Where consumers fetch the schemas: `dataschema` is this followed by the file name of
    /// the schema of `data` (`data.v2.schema.json`).
    pub dataschema_base: String,
    /// How much of the payload as sent `data.original` keeps next to `data.fields`.
    pub original: OriginalMode,
    /// The CloudEvents Kafka binding's content mode.
    pub mode: EnvelopeMode,
}

/// How a CloudEvent is laid out in a Kafka record (CloudEvents Kafka protocol binding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeMode {
    /// The value is the whole event as JSON (`application/cloudevents+json`).
    #[default]
    Structured,
    /// The value is `data` alone (`application/json`); every attribute is a `ce_` header.
    Binary,
}

/// What `data.original` keeps: the record size against what a consumer can rebuild.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginalMode {
    /// Lossless: the payload as an object, and its exact text whenever that object is not it.
    #[default]
    Full,
    /// Lossless and smaller: only the exact form of what was sent, the payload object when it
    /// is the body verbatim, else the text (`raw`) alone.
    Exact,
    /// No `data.original`: `data.fields` only, which cannot rebuild the bytes sent.
    None,
}

impl Default for EnvelopeSettings {
    fn default() -> Self {
        Self {
            source: "urn:telecmi-bridge".to_owned(),
            dataschema_base: "http://localhost:9090/schemas/".to_owned(),
            original: OriginalMode::Full,
            mode: EnvelopeMode::Structured,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSettings {
    pub format: LogFormat,
    /// A `tracing` filter directive; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
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

impl Settings {
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut figment = Figment::new().merge(Toml::file(sources.config_dir.join("default.toml")));
        if let Some(profile) = &sources.profile {
            let path = sources.config_dir.join(format!("{profile}.toml"));
            if !path.is_file() {
                return Err(ConfigError::MissingProfile {
                    profile: profile.clone(),
                    path,
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        if let Some(file) = &sources.file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.clone()));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).ignore(&ENV_NOT_KEYS).split("__"));
        Self::from_figment(&figment)
    }

    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let mut settings: Self = figment
            .extract()
            .map_err(|error| Box::new(without_secret_values(error)))?;
        settings.read_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Every `*_file` secret is read here, once, at start-up, into its value; the path stays
    /// for display. Nothing re-reads them later.
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        resolve_secret_lines(
            "auth.tokens",
            &mut self.auth.tokens,
            self.auth.tokens_file.as_deref(),
        )?;
        resolve_secret_lines(
            "auth.hmac_secrets",
            &mut self.auth.hmac_secrets,
            self.auth.hmac_secrets_file.as_deref(),
        )?;
        resolve_secret_file(
            "privacy.hmac_key",
            &mut self.privacy.hmac_key,
            self.privacy.hmac_key_file.as_deref(),
        )?;
        let security = &mut self.kafka.security;
        resolve_secret_file(
            "kafka.security.sasl_password",
            &mut security.sasl_password,
            security.sasl_password_file.as_deref(),
        )
    }

    pub fn default_config_dir() -> &'static Path {
        Path::new("config")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if self.kafka.bootstrap_servers == Bootstrap::Embedded && !self.kafka.allow_embedded {
            return invalid(
                "kafka.bootstrap_servers: `embedded` is refused here (kafka.allow_embedded = \
                 false); set it to your brokers, e.g. TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS"
                    .to_owned(),
            );
        }
        if let Some(owned) = self
            .kafka
            .properties
            .keys()
            .find(|key| OWNED_PROPERTIES.contains(&key.as_str()))
        {
            return invalid(format!(
                "kafka.properties.{owned}: set by the bridge itself; use the typed key instead \
                 (kafka.security for TLS and SASL)"
            ));
        }
        self.kafka
            .security
            .validate()
            .map_err(ConfigError::Invalid)?;
        self.reconcile.validate().map_err(ConfigError::Invalid)?;
        if let Some((key, value)) = self.insecure_tls_property()
            && !self.kafka.security.allow_insecure_tls
        {
            return invalid(format!(
                "kafka.properties.\"{key}\" = {value:?} turns off the verification of the \
                 brokers' certificates; remove it, or set kafka.security.allow_insecure_tls = \
                 true to accept that deliberately"
            ));
        }
        let Some(message_max_bytes) = self.kafka.message_max_bytes() else {
            return invalid(
                "kafka.properties.\"message.max.bytes\": not a number of bytes".to_owned(),
            );
        };
        if envelope_bound(self.server.body_limit_bytes) > message_max_bytes {
            return invalid(format!(
                "server.body_limit_bytes: a body of {} bytes can make an envelope of {} bytes \
                 (3 x body + 4 KiB), more than Kafka's message.max.bytes ({message_max_bytes}); \
                 lower the body limit to at most {}, or raise kafka.properties.\
                 \"message.max.bytes\" (and the topics' max.message.bytes)",
                self.server.body_limit_bytes,
                envelope_bound(self.server.body_limit_bytes),
                message_max_bytes.saturating_sub(4 * 1024) / 3
            ));
        }
        let positive = [
            ("delivery.ack_timeout_ms", self.delivery.ack_timeout_ms),
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            (
                "server.shutdown_timeout_ms",
                self.server.shutdown_timeout_ms,
            ),
            ("kafka.metadata_timeout_ms", self.kafka.metadata_timeout_ms),
            (
                "server.header_read_timeout_ms",
                self.server.header_read_timeout_ms,
            ),
            (
                "server.max_in_flight_requests",
                self.server.max_in_flight_requests as u64,
            ),
            ("server.max_connections", self.server.max_connections as u64),
            (
                "server.max_connections_per_address",
                self.server.max_connections_per_address as u64,
            ),
            ("spool.max_events", self.spool.max_events),
            ("spool.max_bytes", self.spool.max_bytes),
            ("spool.forward_window", self.spool.forward_window as u64),
            (
                "spool.retry_backoff_max_ms",
                self.spool.retry_backoff_max_ms,
            ),
            (
                "spool.quarantine_after_attempts",
                u64::from(self.spool.quarantine_after_attempts),
            ),
            ("dedup.window_seconds", self.dedup.window_seconds),
            ("dedup.max_entries", self.dedup.max_entries),
            (
                "kafka.readiness_interval_ms",
                self.kafka.readiness_interval_ms,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return invalid(format!("{key}: must be greater than 0"));
        }
        if self.server.request_timeout_ms <= self.delivery.ack_timeout_ms {
            return invalid(format!(
                "server.request_timeout_ms: must exceed delivery.ack_timeout_ms ({} ms), or \
                 requests would time out before Kafka can acknowledge them",
                self.delivery.ack_timeout_ms
            ));
        }
        if self.delivery.mode == DeliveryMode::Spool && self.spool.path.as_os_str().is_empty() {
            return invalid("spool.path: must be set in spool delivery mode".to_owned());
        }
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&self.server.max_header_bytes) {
            return invalid(format!(
                "server.max_header_bytes: must be between {MIN_HEADER_BYTES} and \
                 {MAX_HEADER_BYTES}"
            ));
        }
        if self.server.body_limit_bytes == 0 {
            return invalid("server.body_limit_bytes: must be greater than 0".to_owned());
        }
        if self.kafka.topic_partitions < 1 {
            return invalid("kafka.topic_partitions: must be at least 1".to_owned());
        }
        if self.kafka.topic_replication_factor < 1 {
            return invalid("kafka.topic_replication_factor: must be at least 1".to_owned());
        }
        for (table, name) in [
            (&self.routing.event_topics, "routing.event_topics"),
            (&self.routing.cdr_topics, "routing.cdr_topics"),
        ] {
            if let Some(status) = table
                .keys()
                .find(|status| **status != status.to_lowercase())
            {
                return invalid(format!(
                    "{name}.{status}: statuses are matched in lower case; write the key in lower case"
                ));
            }
        }
        if self.auth.required && self.auth.tokens.is_empty() {
            return invalid("auth.tokens: auth.required is true but no token is set".to_owned());
        }
        if !self.auth.required && !self.auth.tokens.is_empty() {
            return invalid(
                "auth.required: auth.tokens are set but auth.required is false, so they would \
                 not be checked; set auth.required = true (TELECMI_BRIDGE_AUTH__REQUIRED=true) or \
                 remove the tokens"
                    .to_owned(),
            );
        }
        if !self.auth.allow_unauthenticated
            && !self.auth.required
            && self.auth.hmac_secrets.is_empty()
        {
            return invalid(
                "auth.allow_unauthenticated: false here, but webhooks need neither a token \
                 (auth.required, auth.tokens) nor a signature (auth.hmac_secrets); configure one, \
                 or set auth.allow_unauthenticated = true to accept anyone"
                    .to_owned(),
            );
        }
        if self.server.require_tls
            && self.server.tls.is_none()
            && !self.server.tls_terminated_by_proxy
        {
            return invalid(
                "server.require_tls: the webhook token travels in the URL, so this profile needs \
                 TLS: configure [server.tls], or set server.tls_terminated_by_proxy = true when a \
                 proxy in front terminates it"
                    .to_owned(),
            );
        }
        if let Some(position) = self
            .auth
            .tokens
            .iter()
            .position(|token| token.expose().len() < 16)
        {
            return invalid(format!(
                "auth.tokens[{position}]: tokens must be at least 16 characters"
            ));
        }
        if let Some(position) = self
            .auth
            .hmac_secrets
            .iter()
            .position(|secret| secret.expose().len() < 16)
        {
            return invalid(format!(
                "auth.hmac_secrets[{position}]: secrets must be at least 16 characters"
            ));
        }
        if axum::http::HeaderName::try_from(self.auth.hmac_header.as_str()).is_err() {
            return invalid(format!(
                "auth.hmac_header: {:?} is not a valid header name",
                self.auth.hmac_header
            ));
        }
        if let Some(header) = &self.auth.hmac_timestamp_header {
            if axum::http::HeaderName::try_from(header.as_str()).is_err() {
                return invalid(format!(
                    "auth.hmac_timestamp_header: {header:?} is not a valid header name"
                ));
            }
            if self.auth.hmac_secrets.is_empty() {
                return invalid(
                    "auth.hmac_timestamp_header: set, but no auth.hmac_secrets sign anything"
                        .to_owned(),
                );
            }
            if self.auth.hmac_timestamp_tolerance_seconds == 0 {
                return invalid(
                    "auth.hmac_timestamp_tolerance_seconds: must be greater than 0".to_owned(),
                );
            }
        }
        if self.privacy.mode == PrivacyMode::Hmac
            && self
                .privacy
                .hmac_key
                .as_ref()
                .is_none_or(|key| key.expose().len() < 16)
        {
            return invalid(
                "privacy.hmac_key: hmac mode needs a key of at least 16 characters".to_owned(),
            );
        }
        if let Some(field) = self
            .privacy
            .phone_fields
            .iter()
            .find(|field| field.split('.').any(str::is_empty))
        {
            return invalid(format!(
                "privacy.phone_fields: {field:?} has an empty name; write a field name or a \
                 dotted path such as \"custom.lead.mobile\""
            ));
        }
        if self.auth.query_param.is_empty() || self.auth.header.is_empty() {
            return invalid("auth.query_param and auth.header must not be empty".to_owned());
        }
        if axum::http::HeaderName::try_from(self.auth.header.as_str()).is_err() {
            return invalid(format!(
                "auth.header: {:?} is not a valid header name",
                self.auth.header
            ));
        }
        let source = &self.envelope.source;
        if source.is_empty() || source.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid(format!(
                "envelope.source: {source:?} is not a URI reference (CloudEvents `source`)"
            ));
        }
        let base = &self.envelope.dataschema_base;
        let has_scheme = base.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if !has_scheme || base.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid(format!(
                "envelope.dataschema_base: {base:?} is not an absolute URI (CloudEvents \
                 `dataschema`), e.g. \"https://schemas.example.com/telecmi-bridge/\""
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err() {
            return invalid(format!(
                "logging.level: {:?} is not a tracing filter directive",
                self.logging.level
            ));
        }
        Ok(())
    }

    /// The first `kafka.properties` entry that weakens TLS, with its value.
    fn insecure_tls_property(&self) -> Option<(&str, &str)> {
        self.kafka
            .properties
            .iter()
            .map(|(key, value)| (key.as_str(), value.expose()))
            .find(|(key, value)| weakens_tls(key, value))
    }

    /// What an operator should know about a configuration that is valid but weak; logged at
    /// start-up.
    pub fn warnings(&self) -> Vec<String> {
        self.insecure_tls_property()
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
        Duration::from_millis(self.delivery.ack_timeout_ms)
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|error| format!("# unprintable: {error}\n"))
    }
}

/// How long librdkafka may go without metadata before it starts again from
/// `bootstrap.servers`.
const REBOOTSTRAP_TRIGGER_MS: u32 = 10_000;

/// The one place where settings become librdkafka properties.
///
/// - `acks=all` and `enable.idempotence=true`: a record is acknowledged only once every in-sync
///   replica has it, and retries can neither duplicate nor reorder it.
/// - `max.in.flight.requests.per.connection=1`: with more, librdkafka's idempotent producer
///   can report a batch delivered because a later batch of its partition succeeded, although
///   the broker refused the first one (a partition's first writes during a leadership change);
///   records were acknowledged that never reached the log. One request at a time per broker
///   keeps a refused batch ahead of everything after it. (Deliveries without an offset are
///   refused as well: see `publish::kafka::is_confirmed`.)
/// - `partitioner=murmur2_random`: the Java client's partitioner, so a conversation lands on the
///   partition Kafka Streams and Java producers would choose for the same key.
/// - `message.timeout.ms`: in `kafka` mode it equals `delivery.ack_timeout_ms`, so librdkafka
///   gives up on a record exactly when the HTTP answer turns into a 503 and nothing lingers that
///   nobody waits for. In `spool` mode it is 0 (never): a record that expired while a later one
///   of its partition got through would reach Kafka out of order when retried from the spool.
/// - `metadata.recovery.rebootstrap.trigger.ms=10000` (a default: `kafka.properties` may change
///   it): a broker in controlled shutdown can answer metadata listing no brokers at all, and
///   librdkafka then forgets every broker it knew, bootstrap servers included. Until it
///   re-bootstraps (300 s by default) nothing can be produced, although the brokers are back.
pub fn kafka_client_config(
    kafka: &KafkaSettings,
    bootstrap: &str,
    delivery: &DeliverySettings,
) -> ClientConfig {
    let ack_timeout_ms = delivery.ack_timeout_ms;
    let message_timeout_ms = match delivery.mode {
        DeliveryMode::Kafka => ack_timeout_ms,
        DeliveryMode::Spool => 0,
    };
    let mut config = ClientConfig::new();
    config.set(
        "metadata.recovery.rebootstrap.trigger.ms",
        REBOOTSTRAP_TRIGGER_MS.to_string(),
    );
    for (key, value) in &kafka.properties {
        config.set(key, value.expose());
    }
    kafka.security.apply(&mut config);
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", &kafka.client_id)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "1")
        .set("partitioner", "murmur2_random")
        .set("compression.type", kafka.compression.as_librdkafka())
        .set("linger.ms", kafka.linger_ms.to_string())
        .set("message.timeout.ms", message_timeout_ms.to_string())
        .set("request.timeout.ms", ack_timeout_ms.min(30_000).to_string());
    config
}

#[cfg(test)]
// `figment::Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn sources() -> Sources {
        Sources {
            config_dir: PathBuf::from("config"),
            profile: std::env::var("TELECMI_BRIDGE_PROFILE").ok(),
            file: None,
        }
    }

    #[test]
    fn the_shipped_default_file_matches_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let from_file =
            Settings::from_figment(&Figment::new().merge(Toml::file(path))).expect("valid");
        assert_eq!(from_file, Settings::default());
    }

    #[test]
    fn layers_apply_in_order_and_environment_wins() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(
                "config/default.toml",
                "[kafka]\nclient_id = \"from-default\"\nlinger_ms = 1\n",
            )?;
            jail.create_file(
                "config/staging.toml",
                "[kafka]\nclient_id = \"from-profile\"\nlinger_ms = 2\n",
            )?;
            jail.create_file("extra.toml", "[kafka]\nlinger_ms = 3\n")?;
            jail.set_env("TELECMI_BRIDGE_PROFILE", "staging");
            jail.set_env("TELECMI_BRIDGE_SERVER__LISTEN", "127.0.0.1:18080");
            jail.set_env("TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS", "broker-1:9092");
            let settings = Settings::load(&Sources {
                file: Some(PathBuf::from("extra.toml")),
                ..sources()
            })
            .expect("valid");
            assert_eq!(settings.kafka.client_id, "from-profile");
            assert_eq!(settings.kafka.linger_ms, 3);
            assert_eq!(settings.server.listen, "127.0.0.1:18080".parse().unwrap());
            assert_eq!(
                settings.kafka.bootstrap_servers,
                Bootstrap::Brokers("broker-1:9092".to_owned())
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file("config/default.toml", "[kafka]\nbootstrap_server = \"x\"\n")?;
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(error.contains("bootstrap_server"), "{error}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_KAFKA__NOPE", "1");
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(error.contains("nope"), "{error}");
            Ok(())
        });
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
    fn a_missing_profile_file_is_an_error() {
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_PROFILE", "nope");
            let error = Settings::load(&sources()).unwrap_err();
            assert!(
                matches!(error, ConfigError::MissingProfile { .. }),
                "{error}"
            );
            Ok(())
        });
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
    fn the_production_profile_needs_authentication_unless_explicitly_opted_out() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_PROFILE", "production");
            jail.set_env("TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092");
            jail.set_env("TELECMI_BRIDGE_SERVER__TLS_TERMINATED_BY_PROXY", "true");
            jail.set_env("TELECMI_BRIDGE_AUTH__REQUIRED", "false");
            let production = Sources {
                config_dir: dir.clone(),
                ..sources()
            };
            let error = Settings::load(&production).unwrap_err().to_string();
            assert!(error.contains("auth.allow_unauthenticated"), "{error}");
            jail.set_env(
                "TELECMI_BRIDGE_AUTH__HMAC_SECRETS",
                "signing-secret-0123456789",
            );
            Settings::load(&production).expect("a signature is authentication");
            jail.set_env("TELECMI_BRIDGE_AUTH__HMAC_SECRETS", "[]");
            jail.set_env("TELECMI_BRIDGE_AUTH__ALLOW_UNAUTHENTICATED", "true");
            let settings = Settings::load(&production).expect("explicitly open");
            assert!(!settings.auth.required);

            jail.set_env("TELECMI_BRIDGE_SERVER__TLS_TERMINATED_BY_PROXY", "false");
            jail.create_file("tls.crt", "")?;
            jail.create_file("tls.key", "")?;
            jail.set_env(
                "TELECMI_BRIDGE_SERVER__TLS",
                "{certificate_path=\"tls.crt\",private_key_path=\"tls.key\"}",
            );
            Settings::load(&production).expect("TLS in the process");
            Ok(())
        });
    }

    #[test]
    fn tokens_that_would_not_be_checked_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_AUTH__TOKENS", "0123456789abcdef-unchecked");
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(
                error.contains("auth.required") && error.contains("auth.tokens"),
                "{error}"
            );
            assert!(!error.contains("0123456789abcdef-unchecked"), "{error}");
            jail.set_env("TELECMI_BRIDGE_AUTH__REQUIRED", "true");
            Settings::load(&sources()).expect("valid");
            Ok(())
        });
    }

    #[test]
    fn the_dataschema_base_must_be_an_absolute_uri() {
        for refused in ["schemas/", "http://host/a b/", "", "1http://host/"] {
            Jail::expect_with(|jail| {
                jail.set_env("TELECMI_BRIDGE_ENVELOPE__DATASCHEMA_BASE", refused);
                let error = Settings::load(&sources()).unwrap_err().to_string();
                assert!(
                    error.contains("envelope.dataschema_base"),
                    "{refused}: {error}"
                );
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env(
                "TELECMI_BRIDGE_ENVELOPE__DATASCHEMA_BASE",
                "https://schemas.example.com/telecmi-bridge/",
            );
            let settings = Settings::load(&sources()).expect("valid");
            assert_eq!(
                settings.envelope.dataschema_base,
                "https://schemas.example.com/telecmi-bridge/"
            );
            Ok(())
        });
    }

    /// Every secret key, set to values that cannot be read or are refused: the value never
    /// appears in the error.
    #[test]
    fn secret_values_never_appear_in_configuration_errors() {
        let secret = "Leaky0Secret0Value";
        let keys = [
            "TELECMI_BRIDGE_AUTH__TOKENS",
            "TELECMI_BRIDGE_AUTH__HMAC_SECRETS",
            "TELECMI_BRIDGE_PRIVACY__HMAC_KEY",
            "TELECMI_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD",
            "TELECMI_BRIDGE_KAFKA__SECURITY__SSL_KEY_PASSWORD",
            "TELECMI_BRIDGE_KAFKA__PROPERTIES__SASL_OAUTHBEARER_CONFIG",
        ];
        let values = [
            secret.to_owned(),
            format!("[{secret}"),
            format!("{{inner=\"{secret}\"}}"),
            format!("[[\"{secret}\"]]"),
            "98765.4321".to_owned(),
        ];
        for key in keys {
            for value in &values {
                Jail::expect_with(|jail| {
                    jail.set_env(key, value);
                    jail.set_env("TELECMI_BRIDGE_PRIVACY__MODE", "hmac");
                    jail.set_env("TELECMI_BRIDGE_KAFKA__SECURITY__PROTOCOL", "sasl_plaintext");
                    if let Err(error) = Settings::load(&sources()) {
                        let error = error.to_string();
                        for shown in [secret, "98765"] {
                            assert!(!error.contains(shown), "{key}={value}: {error}");
                        }
                    }
                    Ok(())
                });
            }
        }
    }

    #[test]
    fn a_refused_secret_list_shows_the_accepted_form() {
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_AUTH__TOKENS", "[not-a-closed-list");
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(error.to_lowercase().contains("auth.tokens"), "{error}");
            assert!(error.contains(r#"["s3cr3t-1", "s3cr3t-2"]"#), "{error}");
            assert!(!error.contains("not-a-closed-list"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn numeric_and_bare_secrets_are_accepted_from_the_environment() {
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_AUTH__REQUIRED", "true");
            jail.set_env("TELECMI_BRIDGE_AUTH__TOKENS", "1234567890123456");
            jail.set_env(
                "TELECMI_BRIDGE_AUTH__HMAC_SECRETS",
                "[9876543210987654, \"x\"]",
            );
            jail.set_env("TELECMI_BRIDGE_PRIVACY__MODE", "hmac");
            jail.set_env("TELECMI_BRIDGE_PRIVACY__HMAC_KEY", "11112222333344445555");
            jail.set_env("TELECMI_BRIDGE_KAFKA__SECURITY__SSL_KEY_PASSWORD", "123456");
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(error.contains("auth.hmac_secrets[1]"), "{error}");
            jail.set_env(
                "TELECMI_BRIDGE_AUTH__HMAC_SECRETS",
                "[9876543210987654, \"signing-0123456789\"]",
            );
            let settings = Settings::load(&sources()).expect("numbers are text");
            let exposed = |secrets: &[SecretValue]| {
                secrets
                    .iter()
                    .map(|s| s.expose().to_owned())
                    .collect::<Vec<_>>()
            };
            assert_eq!(exposed(&settings.auth.tokens), ["1234567890123456"]);
            assert_eq!(
                exposed(&settings.auth.hmac_secrets),
                ["9876543210987654", "signing-0123456789"]
            );
            let key = settings.privacy.hmac_key.as_ref().map(SecretValue::expose);
            assert_eq!(key, Some("11112222333344445555"));
            let password = settings.kafka.security.ssl_key_password.as_ref();
            assert_eq!(password.map(SecretValue::expose), Some("123456"));

            // One token without brackets is one token, commas included.
            jail.set_env(
                "TELECMI_BRIDGE_AUTH__TOKENS",
                "a-bare-token-0123,with-a-comma",
            );
            let settings = Settings::load(&sources()).expect("a bare token");
            assert_eq!(
                exposed(&settings.auth.tokens),
                ["a-bare-token-0123,with-a-comma"]
            );

            // The environment provider reads all-digit values as numbers: leading zeros are
            // lost (documented), unless the value is written in double quotes.
            jail.set_env("TELECMI_BRIDGE_AUTH__TOKENS", "\"0001234567890123\"");
            let settings = Settings::load(&sources()).expect("a quoted number");
            assert_eq!(exposed(&settings.auth.tokens), ["0001234567890123"]);
            jail.set_env("TELECMI_BRIDGE_AUTH__TOKENS", "0001234567890123");
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(error.contains("at least 16 characters"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn secret_files_are_read_once_at_start_up() {
        Jail::expect_with(|jail| {
            jail.create_file("tokens", "token-one-0123456789\n\ntoken-two-0123456789\r\n")?;
            jail.create_file("hmac", "signing-secret-0123456789\n")?;
            jail.create_file("privacy-key", "0001112223334445556\n\n")?;
            jail.set_env("TELECMI_BRIDGE_AUTH__REQUIRED", "true");
            jail.set_env("TELECMI_BRIDGE_AUTH__TOKENS_FILE", "tokens");
            jail.set_env("TELECMI_BRIDGE_AUTH__HMAC_SECRETS_FILE", "hmac");
            jail.set_env("TELECMI_BRIDGE_PRIVACY__MODE", "hmac");
            jail.set_env("TELECMI_BRIDGE_PRIVACY__HMAC_KEY_FILE", "privacy-key");
            let settings = Settings::load(&sources()).expect("valid");
            let tokens: Vec<&str> = settings.auth.tokens.iter().map(|t| t.expose()).collect();
            assert_eq!(tokens, ["token-one-0123456789", "token-two-0123456789"]);
            let secrets: Vec<&str> = settings
                .auth
                .hmac_secrets
                .iter()
                .map(|t| t.expose())
                .collect();
            assert_eq!(secrets, ["signing-secret-0123456789"]);
            let key = settings.privacy.hmac_key.as_ref().map(SecretValue::expose);
            assert_eq!(key, Some("0001112223334445556"), "leading zeros kept");
            let shown = settings.to_redacted_toml();
            assert!(
                !shown.contains("0123456789") && !shown.contains("000111"),
                "{shown}"
            );

            std::fs::remove_file("tokens").expect("remove");
            assert_eq!(settings.auth.tokens.len(), 2, "read once, kept");
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(
                error.contains("auth.tokens_file") && error.contains("tokens"),
                "{error}"
            );

            jail.create_file("tokens", "token-one-0123456789\n")?;
            jail.set_env(
                "TELECMI_BRIDGE_AUTH__TOKENS",
                "[\"token-inline-0123456789\"]",
            );
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(error.contains("not both"), "{error}");
            assert!(!error.contains("token-"), "{error}");
            Ok(())
        });
        for (variable, key) in [
            (
                "TELECMI_BRIDGE_AUTH__HMAC_SECRETS_FILE",
                "auth.hmac_secrets_file",
            ),
            (
                "TELECMI_BRIDGE_PRIVACY__HMAC_KEY_FILE",
                "privacy.hmac_key_file",
            ),
            (
                "TELECMI_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD_FILE",
                "kafka.security.sasl_password_file",
            ),
        ] {
            Jail::expect_with(|jail| {
                jail.set_env(variable, "no-such-secret-file");
                let error = Settings::load(&sources()).unwrap_err().to_string();
                assert!(
                    error.contains(key) && error.contains("no-such-secret-file"),
                    "{error}"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn the_sasl_password_file_is_read_at_load_and_never_again() {
        Jail::expect_with(|jail| {
            jail.create_file("kafka-password", "from-a-file-secret\n")?;
            jail.set_env("TELECMI_BRIDGE_KAFKA__SECURITY__PROTOCOL", "sasl_plaintext");
            jail.set_env("TELECMI_BRIDGE_KAFKA__SECURITY__SASL_USERNAME", "bridge");
            jail.set_env(
                "TELECMI_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD_FILE",
                "kafka-password",
            );
            let settings = Settings::load(&sources()).expect("valid");
            std::fs::remove_file("kafka-password").expect("remove");
            let config = kafka_client_config(&settings.kafka, "broker:9092", &settings.delivery);
            assert_eq!(config.get("sasl.password"), Some("from-a-file-secret"));
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(
                error.contains("kafka.security.sasl_password_file"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn kafka_properties_keep_the_delivery_promises() {
        let kafka_mode = DeliverySettings::default();
        let config = kafka_client_config(&KafkaSettings::default(), "localhost:9092", &kafka_mode);
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(
            config.get("max.in.flight.requests.per.connection"),
            Some("1")
        );
        assert_eq!(config.get("partitioner"), Some("murmur2_random"));
        assert_eq!(config.get("message.timeout.ms"), Some("5000"));
        let spool_mode = DeliverySettings {
            mode: DeliveryMode::Spool,
            ..kafka_mode
        };
        let config = kafka_client_config(&KafkaSettings::default(), "localhost:9092", &spool_mode);
        assert_eq!(
            config.get("message.timeout.ms"),
            Some("0"),
            "spooled records must never expire inside librdkafka"
        );
    }

    #[test]
    fn the_rebootstrap_trigger_is_short_by_default_and_can_be_tuned() {
        let delivery = DeliverySettings::default();
        let trigger = "metadata.recovery.rebootstrap.trigger.ms";
        let config = kafka_client_config(&KafkaSettings::default(), "localhost:9092", &delivery);
        assert_eq!(config.get(trigger), Some("10000"));
        let tuned = KafkaSettings {
            properties: BTreeMap::from([(trigger.to_owned(), SecretValue("60000".to_owned()))]),
            ..KafkaSettings::default()
        };
        let config = kafka_client_config(&tuned, "localhost:9092", &delivery);
        assert_eq!(config.get(trigger), Some("60000"));
    }

    #[test]
    fn kafka_security_is_typed_checked_and_its_secrets_redacted() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file("config/default.toml", "")?;
            jail.set_env("TELECMI_BRIDGE_KAFKA__SECURITY__PROTOCOL", "sasl_ssl");
            let error = Settings::load(&sources()).expect_err("no user").to_string();
            assert!(error.contains("sasl_username"), "{error}");

            jail.set_env("TELECMI_BRIDGE_KAFKA__SECURITY__SASL_USERNAME", "bridge");
            let error = Settings::load(&sources())
                .expect_err("no password")
                .to_string();
            assert!(error.contains("sasl_password"), "{error}");

            jail.set_env(
                "TELECMI_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD",
                "inline-secret-value",
            );
            let settings = Settings::load(&sources()).expect("valid");
            assert!(!settings.to_redacted_toml().contains("inline-secret-value"));

            jail.create_file("kafka-password", "from-a-file-secret\n")?;
            jail.set_env(
                "TELECMI_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD_FILE",
                "kafka-password",
            );
            let error = Settings::load(&sources()).expect_err("both").to_string();
            assert!(error.contains("not both"), "{error}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file("config/default.toml", "")?;
            jail.create_file("kafka-password", "from-a-file-secret\n")?;
            jail.set_env("TELECMI_BRIDGE_KAFKA__SECURITY__PROTOCOL", "sasl_ssl");
            jail.set_env("TELECMI_BRIDGE_KAFKA__SECURITY__SASL_USERNAME", "bridge");
            jail.set_env(
                "TELECMI_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD_FILE",
                "kafka-password",
            );
            jail.set_env(
                "TELECMI_BRIDGE_KAFKA__SECURITY__SASL_MECHANISM",
                "SCRAM-SHA-256",
            );
            let settings = Settings::load(&sources()).expect("valid");
            let config = kafka_client_config(&settings.kafka, "broker:9093", &settings.delivery);
            assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
            assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
            assert_eq!(config.get("sasl.username"), Some("bridge"));
            assert_eq!(config.get("sasl.password"), Some("from-a-file-secret"));

            jail.set_env(
                "TELECMI_BRIDGE_KAFKA__SECURITY__SSL_CA_LOCATION",
                "missing-ca.pem",
            );
            let error = Settings::load(&sources())
                .expect_err("no CA file")
                .to_string();
            assert!(error.contains("ssl_ca_location"), "{error}");

            jail.set_env(
                "TELECMI_BRIDGE_KAFKA__PROPERTIES",
                "{\"sasl.password\"=\"sneaky\"}",
            );
            let error = Settings::load(&sources()).expect_err("owned").to_string();
            assert!(error.contains("kafka.security"), "{error}");
            Ok(())
        });
    }

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
                properties: BTreeMap::from([
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
                ]),
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

    #[test]
    fn a_toml_syntax_error_does_not_quote_the_line() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(
                "config/default.toml",
                "[auth]\nrequired = true\ntokens = [\"SecretInBrokenToml\n",
            )?;
            let error = Settings::load(&sources()).unwrap_err().to_string();
            assert!(!error.contains("SecretInBrokenToml"), "{error}");
            assert!(error.contains("line 3"), "{error}");
            Ok(())
        });
    }
}
