//! Secrets: a value that is never printed, read from text, numbers or lists, and the keys
//! whose values errors must never show.

use serde::{Deserialize, Serialize, Serializer};

/// A value that is never printed: `check-config` and logs show `[redacted]`, and a value that
/// cannot be read is refused without being shown.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

/// How a secret is written, for messages about one that could not be read.
pub(super) const SECRET_FORM: &str = "a secret as text, e.g. \"s3cr3t-value\" (an all-digit value is \
     read as a number and loses leading zeros: write it in double quotes, e.g. \
     TELECMI_BRIDGE_AUTH__TOKENS='\"000123...\"', or use the key's _file variant)";

/// Keys whose values are secrets: errors about them never show the value.
pub(super) const SECRET_KEYS: [&str; 6] = [
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
pub(super) fn secret_list<'de, D: serde::Deserializer<'de>>(
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

#[cfg(test)]
// `figment::Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;
    use crate::config::test_sources as sources;
    use crate::config::*;

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
}
