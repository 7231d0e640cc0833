//! Loading: the layers in order, figment's errors without secret values, and `*_file` secrets
//! read once at start-up.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;

use super::secret::{SECRET_FORM, SECRET_KEYS};
use super::{ConfigError, ENV_PREFIX, Problem, Problems, SecretValue, Settings};

/// Environment variables with the prefix that select files rather than set keys.
const ENV_NOT_KEYS: [&str; 2] = ["PROFILE", "CONFIG_DIR"];

/// Where the layers come from; `main` fills it from the command line and environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config_dir: PathBuf,
    pub profile: Option<String>,
    pub file: Option<PathBuf>,
}

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
        let (mut settings, problems) = extract_setting_aside_bad_values(figment)?;
        settings.read_secret_files()?;
        settings.validate(problems)?;
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
}

/// Keys whose value cannot be set aside are few; this bounds the retries all the same.
const MAX_BAD_VALUES: usize = 64;

/// The settings, with each value of the wrong type or form (a header name with a space, a
/// count of 0) set aside as a problem naming its key and replaced by its default, so that it
/// is reported together with every other mistake. Errors that are no single value's (TOML
/// syntax, an unknown key) end the load as figment reports them.
fn extract_setting_aside_bad_values(
    figment: &Figment,
) -> Result<(Settings, Problems), ConfigError> {
    let mut problems = Problems::default();
    let mut layers = figment.clone();
    let mut merged: Option<Value> = None;
    for _ in 0..MAX_BAD_VALUES {
        let error = match layers.extract::<Settings>() {
            Ok(settings) => return Ok((settings, problems)),
            Err(error) => without_secret_values(error),
        };
        let value = match merged.take() {
            Some(value) => value,
            None => figment
                .extract::<Value>()
                .map_err(|error| Box::new(without_secret_values(error)))?,
        };
        let Some((key, value)) = set_aside(&error, value) else {
            return Err(Box::new(error).into());
        };
        problems.add(key, error.kind.to_string());
        layers = Figment::from(Serialized::defaults(&value));
        merged = Some(value);
    }
    Err(ConfigError::Invalid(problems.0))
}

/// The key of an error about one value and the configuration without that value, or `None`
/// when the error is not about one value that is there to remove.
fn set_aside(error: &figment::Error, mut value: Value) -> Option<(String, Value)> {
    let one_value = matches!(
        error.kind,
        Kind::Message(_)
            | Kind::InvalidType(..)
            | Kind::InvalidValue(..)
            | Kind::InvalidLength(..)
            | Kind::UnknownVariant(..)
    );
    let (last, parents) = error.path.split_last()?;
    if !one_value {
        return None;
    }
    let mut table = &mut value;
    for segment in parents {
        let Value::Dict(_, dict) = table else {
            return None;
        };
        table = dict.get_mut(segment)?;
    }
    let Value::Dict(_, dict) = table else {
        return None;
    };
    dict.remove(last)?;
    Some((error.path.join("."), value))
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
        .map_err(|source| {
            ConfigError::Invalid(vec![Problem::Unreadable {
                key: key.to_owned(),
                path: path.to_owned(),
                source,
            }])
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
        return Err(ConfigError::Invalid(vec![Problem::Invalid {
            key: key.to_owned(),
            reason: format!("set {key} or {key}_file, not both"),
        }]));
    }
    *value = Some(SecretValue::from(
        read_secret_file(&format!("{key}_file"), path)?.as_str(),
    ));
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
        return Err(ConfigError::Invalid(vec![Problem::Invalid {
            key: key.to_owned(),
            reason: format!("set {key} or {key}_file, not both"),
        }]));
    }
    *values = read_secret_file(&format!("{key}_file"), path)?
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty())
        .map(SecretValue::from)
        .collect();
    Ok(())
}

#[cfg(test)]
// `figment::Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;
    use crate::config::test_sources as sources;
    use crate::config::*;

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
            assert_eq!(settings.kafka.linger_ms, Duration::from_millis(3));
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
                let error = Settings::load(&sources()).unwrap_err();
                assert!(
                    matches!(
                        &error,
                        ConfigError::Invalid(problems) if matches!(
                            problems.as_slice(),
                            [Problem::Unreadable { key: unreadable, source, .. }]
                                if unreadable == key
                                    && source.kind() == std::io::ErrorKind::NotFound
                        )
                    ),
                    "{error:?}"
                );
                let error = error.to_string();
                assert!(
                    error.contains(key) && error.contains("no-such-secret-file"),
                    "{error}"
                );
                Ok(())
            });
        }
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
