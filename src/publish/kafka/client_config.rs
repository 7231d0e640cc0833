//! Settings become librdkafka properties here, next to the client that uses them (as Vector
//! keeps `to_rdkafka()` beside its Kafka sink); the checks live with the settings in `config`.

use rdkafka::ClientConfig;

use crate::config::{DeliveryMode, DeliverySettings, KafkaSecurity, KafkaSettings};

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
    let ack_timeout_ms = delivery.ack_timeout_ms.as_millis();
    let message_timeout_ms = match delivery.mode {
        DeliveryMode::Kafka => ack_timeout_ms,
        DeliveryMode::Spool => 0,
    };
    let mut config = kafka_connection_config(kafka, bootstrap);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "1")
        .set("partitioner", "murmur2_random")
        .set("compression.type", kafka.compression.as_librdkafka())
        .set("linger.ms", kafka.linger_ms.as_millis().to_string())
        .set("message.timeout.ms", message_timeout_ms.to_string())
        .set("request.timeout.ms", ack_timeout_ms.min(30_000).to_string());
    config
}

/// What every client of the bridge shares, producer or consumer: the brokers, the client id,
/// the security settings, `kafka.properties` and the re-bootstrap trigger.
pub fn kafka_connection_config(kafka: &KafkaSettings, bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set(
        "metadata.recovery.rebootstrap.trigger.ms",
        REBOOTSTRAP_TRIGGER_MS.to_string(),
    );
    for (key, value) in kafka.properties.iter() {
        config.set(key, value.expose());
    }
    kafka.security.apply(&mut config);
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", &kafka.client_id);
    config
}

impl KafkaSecurity {
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
    fn the_connection_is_shared_and_the_producer_promises_are_the_producers_alone() {
        let kafka = KafkaSettings {
            client_id: "bridge-7".to_owned(),
            ..KafkaSettings::default()
        };
        let connection = kafka_connection_config(&kafka, "broker:9092");
        let producer = kafka_client_config(&kafka, "broker:9092", &DeliverySettings::default());
        for key in [
            "bootstrap.servers",
            "client.id",
            "security.protocol",
            "metadata.recovery.rebootstrap.trigger.ms",
        ] {
            assert!(connection.get(key).is_some(), "{key} missing");
            assert_eq!(connection.get(key), producer.get(key), "{key}");
        }
        for key in [
            "acks",
            "enable.idempotence",
            "max.in.flight.requests.per.connection",
            "linger.ms",
            "message.timeout.ms",
            "request.timeout.ms",
        ] {
            assert!(producer.get(key).is_some(), "{key} missing");
            assert_eq!(connection.get(key), None, "{key} is the producer's");
        }
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
            properties: KafkaProperties::try_from(BTreeMap::from([(
                trigger.to_owned(),
                SecretValue::from("60000"),
            )]))
            .expect("valid"),
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
