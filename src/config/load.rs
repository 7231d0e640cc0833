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
    let mut error = match figment.extract::<Settings>() {
        Ok(settings) => return Ok((settings, problems)),
        Err(error) => without_secret_values(error),
    };
    let mut value = figment
        .extract::<Value>()
        .map_err(|error| Box::new(without_secret_values(error)))?;
    for _ in 0..MAX_BAD_VALUES {
        let Some((key, rest)) = set_aside(&error, value) else {
            return Err(Box::new(error).into());
        };
        problems.add(key, error.kind.to_string());
        value = rest;
        error = match Figment::from(Serialized::defaults(&value)).extract::<Settings>() {
            Ok(settings) => return Ok((settings, problems)),
            Err(error) => without_secret_values(error),
        };
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
mod tests;
