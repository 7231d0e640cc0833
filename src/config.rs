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
    /// Webhooks per second per caller address (after trusted proxies); 0 turns it off.
    pub rate_limit_per_second: u32,
    /// Webhooks a caller may send at once before the rate applies.
    pub rate_limit_burst: u32,
    /// TLS on the webhook listener, for deployments without a terminating proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
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
            rate_limit_per_second: 0,
            rate_limit_burst: 100,
            tls: None,
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
    /// ...or a file holding it (a mounted secret); trailing newlines are ignored.
    pub sasl_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the brokers' certificates; the system store if unset.
    pub ssl_ca_location: Option<PathBuf>,
    /// Client certificate and key (PEM) for brokers that require mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    pub ssl_key_location: Option<PathBuf>,
    pub ssl_key_password: Option<SecretValue>,
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
    /// The SASL password, read from its file if it comes from one.
    fn sasl_password(&self) -> Result<Option<String>, String> {
        match (&self.sasl_password, &self.sasl_password_file) {
            (Some(_), Some(_)) => {
                Err("kafka.security: set sasl_password or sasl_password_file, not both".to_owned())
            }
            (Some(password), None) => Ok(Some(password.expose().to_owned())),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|error| {
                    format!(
                        "kafka.security.sasl_password_file: cannot read {}: {error}",
                        file.display()
                    )
                }),
            (None, None) => Ok(None),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let password = self.sasl_password()?;
        if self.protocol.uses_sasl() {
            if self.sasl_username.is_empty() {
                return Err(format!(
                    "kafka.security.sasl_username: required with protocol {}",
                    self.protocol.as_librdkafka()
                ));
            }
            if password.as_deref().is_none_or(str::is_empty) {
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

    /// librdkafka properties; validation has already read the password file once.
    fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_librdkafka());
        if self.protocol.uses_sasl() {
            config
                .set("sasl.mechanism", self.sasl_mechanism.as_librdkafka())
                .set("sasl.username", &self.sasl_username)
                .set(
                    "sasl.password",
                    self.sasl_password().ok().flatten().unwrap_or_default(),
                );
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
    /// Top-level payload fields holding phone numbers.
    pub phone_fields: Vec<String>,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            mode: PrivacyMode::Off,
            hmac_key: None,
            phone_fields: ["from", "to", "callerid", "virtual_number"]
                .map(str::to_owned)
                .to_vec(),
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
    pub tokens: Vec<SecretValue>,
    /// Query parameter that may carry a token; removed from the payload before it is kept.
    pub query_param: String,
    pub header: String,
    /// HMAC-SHA256 secrets; when any is set, every webhook must carry a valid signature of its
    /// body (of its query string for a GET) in `hmac_header`.
    pub hmac_secrets: Vec<SecretValue>,
    pub hmac_header: String,
    pub hmac_encoding: SignatureEncoding,
    /// Text before the encoded signature in the header, e.g. `sha256=`.
    pub hmac_prefix: String,
    /// Networks allowed to call the webhook; empty allows every address.
    pub allowed_networks: Vec<IpNet>,
    /// Proxies whose `Forwarded`/`X-Forwarded-For` headers are believed; none by default.
    pub trusted_proxies: Vec<IpNet>,
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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    Hex,
    Base64,
}

/// A value that is never printed: `check-config` and logs show `[redacted]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

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
}

impl Default for EnvelopeSettings {
    fn default() -> Self {
        Self {
            source: "urn:telecmi-bridge".to_owned(),
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
        let settings: Self = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
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
            ("spool.max_events", self.spool.max_events),
            ("spool.max_bytes", self.spool.max_bytes),
            ("spool.forward_window", self.spool.forward_window as u64),
            (
                "spool.retry_backoff_max_ms",
                self.spool.retry_backoff_max_ms,
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
        if tracing_subscriber::EnvFilter::try_new(&self.logging.level).is_err() {
            return invalid(format!(
                "logging.level: {:?} is not a tracing filter directive",
                self.logging.level
            ));
        }
        Ok(())
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
            ("TELECMI_BRIDGE_SERVER__LISTEN", "nowhere", "listen"),
            ("TELECMI_BRIDGE_KAFKA__COMPRESSION", "brotli", "compression"),
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
            let settings = Settings::load(&production).expect("valid");
            assert!(settings.auth.required);
            assert!(!settings.to_redacted_toml().contains("0123456789abcdef"));
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
}
