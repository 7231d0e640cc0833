//! How typed settings are written in TOML and the environment: durations as whole
//! milliseconds or seconds (the key's `_ms` or `_seconds` suffix says which) and header names
//! as text. Users write the same values as ever; the settings hold types that cannot be wrong.

pub(crate) mod milliseconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, ser::Error};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        let millis = u64::try_from(duration.as_millis())
            .map_err(|_| S::Error::custom("a duration too long for u64 milliseconds"))?;
        serializer.serialize_u64(millis)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }
}

pub(super) mod header_name {
    use axum::http::HeaderName;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(name: &HeaderName, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(name.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HeaderName, D::Error> {
        let text = String::deserialize(deserializer)?;
        HeaderName::try_from(text.as_str())
            .map_err(|_| D::Error::custom(format!("{text:?} is not a valid header name")))
    }

    /// An optional header name: unset turns its feature off.
    pub mod optional {
        use axum::http::HeaderName;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            name: &Option<HeaderName>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match name {
                Some(name) => super::serialize(name, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<HeaderName>, D::Error> {
            #[derive(Deserialize)]
            struct Named(#[serde(with = "super")] HeaderName);
            Option::<Named>::deserialize(deserializer).map(|name| name.map(|Named(name)| name))
        }
    }
}

#[cfg(test)]
// `figment::Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use std::time::Duration;

    use figment::Jail;

    use crate::config::test_sources as sources;
    use crate::config::*;

    /// The keys of the problems a failed load reports.
    fn problem_keys(error: &ConfigError) -> Vec<&str> {
        match error {
            ConfigError::Invalid(problems) => problems.iter().map(Problem::key).collect(),
            other => panic!("not a list of problems: {other}"),
        }
    }

    #[test]
    fn durations_are_written_in_the_unit_their_key_names() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(
                "config/default.toml",
                "[server]\nrequest_timeout_ms = 15001\n[dedup]\nwindow_seconds = 7\n",
            )?;
            jail.set_env("TELECMI_BRIDGE_KAFKA__LINGER_MS", "0");
            jail.set_env("TELECMI_BRIDGE_RECONCILE__KAFKA_READ_TIMEOUT_MS", "1500");
            jail.set_env(
                "TELECMI_BRIDGE_AUTH__HMAC_TIMESTAMP_TOLERANCE_SECONDS",
                "30",
            );
            let settings = Settings::load(&sources()).expect("valid");
            assert_eq!(
                settings.server.request_timeout_ms,
                Duration::from_millis(15_001)
            );
            assert_eq!(settings.dedup.window_seconds, Duration::from_secs(7));
            assert_eq!(settings.kafka.linger_ms, Duration::ZERO);
            assert_eq!(
                settings.reconcile.kafka_read_timeout_ms,
                Duration::from_millis(1_500)
            );
            assert_eq!(
                settings.auth.hmac_timestamp_tolerance_seconds,
                Duration::from_secs(30)
            );
            let shown = settings.to_redacted_toml();
            for line in [
                "request_timeout_ms = 15001",
                "window_seconds = 7",
                "linger_ms = 0",
                "hmac_timestamp_tolerance_seconds = 30",
                "kafka_read_timeout_ms = 1500",
            ] {
                assert!(shown.lines().any(|shown| shown == line), "{line}: {shown}");
            }
            Ok(())
        });
    }

    #[test]
    fn a_header_name_that_is_not_one_is_refused_naming_its_key() {
        for key in ["header", "hmac_header", "hmac_timestamp_header"] {
            Jail::expect_with(|jail| {
                jail.set_env(format!("TELECMI_BRIDGE_AUTH__{key}"), "bad header");
                let error = Settings::load(&sources()).unwrap_err();
                assert_eq!(problem_keys(&error), [format!("auth.{key}")], "{error}");
                assert!(
                    error.to_string().contains("not a valid header name"),
                    "{error}"
                );
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.set_env("TELECMI_BRIDGE_AUTH__HMAC_HEADER", "X-Hub-Signature-256");
            let settings = Settings::load(&sources()).expect("valid");
            assert_eq!(settings.auth.hmac_header.as_str(), "x-hub-signature-256");
            Ok(())
        });
    }

    #[test]
    fn a_count_of_zero_is_refused_naming_its_key() {
        for key in [
            "server.max_in_flight_requests",
            "server.max_connections",
            "server.max_connections_per_address",
            "server.rate_limit_burst",
            "spool.max_events",
            "spool.max_bytes",
            "spool.forward_window",
            "spool.quarantine_after_attempts",
            "dedup.max_entries",
            "reconcile.max_attempts",
        ] {
            Jail::expect_with(|jail| {
                let variable = format!("TELECMI_BRIDGE_{}", key.replace('.', "__"));
                jail.set_env(variable, "0");
                let error = Settings::load(&sources()).unwrap_err();
                assert_eq!(problem_keys(&error), [key], "{error}");
                assert!(error.to_string().contains("nonzero"), "{error}");
                Ok(())
            });
        }
    }

    #[test]
    fn values_of_the_wrong_form_are_reported_with_every_other_mistake() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(
                "config/default.toml",
                "[server]\nlisten = \"nowhere\"\nmax_connections = 0\n\
                 [auth]\nheader = \"x y\"\n",
            )?;
            jail.set_env("TELECMI_BRIDGE_DELIVERY__ACK_TIMEOUT_MS", "0");
            jail.set_env("TELECMI_BRIDGE_KAFKA__COMPRESSION", "brotli");
            let error = Settings::load(&sources()).unwrap_err();
            assert_eq!(
                problem_keys(&error),
                [
                    "server.listen",
                    "server.max_connections",
                    "kafka.compression",
                    "delivery.ack_timeout_ms",
                    "auth.header",
                ],
                "{error}"
            );
            assert_eq!(error.to_string().lines().count(), 5, "{error}");
            Ok(())
        });
    }
}
