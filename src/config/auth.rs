//! Who may call the webhook: tokens, HMAC signatures, networks and trusted proxies.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderName;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::forms::{header_name, seconds};
use super::secret::secret_list;
use super::{Problems, SecretValue};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub required: bool,
    #[serde(deserialize_with = "secret_list")]
    pub tokens: Vec<SecretValue>,
    /// Query parameter that may carry a token; removed from the payload before it is kept.
    pub query_param: String,
    #[serde(with = "header_name")]
    pub header: HeaderName,
    /// HMAC-SHA256 secrets; when any is set, every webhook must carry a valid signature of its
    /// body (of its query string for a GET) in `hmac_header`.
    #[serde(deserialize_with = "secret_list")]
    pub hmac_secrets: Vec<SecretValue>,
    #[serde(with = "header_name")]
    pub hmac_header: HeaderName,
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
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "header_name::optional"
    )]
    pub hmac_timestamp_header: Option<HeaderName>,
    #[serde(with = "seconds")]
    pub hmac_timestamp_tolerance_seconds: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            required: false,
            tokens: Vec::new(),
            query_param: "bridge_token".to_owned(),
            header: HeaderName::from_static("x-bridge-token"),
            hmac_secrets: Vec::new(),
            hmac_header: HeaderName::from_static("x-signature"),
            hmac_encoding: SignatureEncoding::Hex,
            hmac_prefix: "sha256=".to_owned(),
            allowed_networks: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            tokens_file: None,
            hmac_secrets_file: None,
            allow_unauthenticated: true,
            hmac_timestamp_header: None,
            hmac_timestamp_tolerance_seconds: Duration::from_secs(300),
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

impl AuthSettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        if self.required && self.tokens.is_empty() {
            problems.add(
                "auth.tokens",
                "auth.required is true but no token is set".to_owned(),
            );
        }
        if !self.required && !self.tokens.is_empty() {
            problems.add(
                "auth.required",
                "auth.tokens are set but auth.required is false, so they would \
                 not be checked; set auth.required = true (TELECMI_BRIDGE_AUTH__REQUIRED=true) or \
                 remove the tokens"
                    .to_owned(),
            );
        }
        if !self.allow_unauthenticated && !self.required && self.hmac_secrets.is_empty() {
            problems.add(
                "auth.allow_unauthenticated",
                "false here, but webhooks need neither a token \
                 (auth.required, auth.tokens) nor a signature (auth.hmac_secrets); configure one, \
                 or set auth.allow_unauthenticated = true to accept anyone"
                    .to_owned(),
            );
        }
        for (key, secrets, noun) in [
            ("auth.tokens", &self.tokens, "tokens"),
            ("auth.hmac_secrets", &self.hmac_secrets, "secrets"),
        ] {
            if let Some(position) = secrets.iter().position(|secret| secret.expose().len() < 16) {
                problems.add(
                    format!("{key}[{position}]"),
                    format!("{noun} must be at least 16 characters"),
                );
            }
        }
        if self.hmac_timestamp_header.is_some() {
            if self.hmac_secrets.is_empty() {
                problems.add(
                    "auth.hmac_timestamp_header",
                    "set, but no auth.hmac_secrets sign anything".to_owned(),
                );
            }
            if self.hmac_timestamp_tolerance_seconds.is_zero() {
                problems.add(
                    "auth.hmac_timestamp_tolerance_seconds",
                    "must be greater than 0".to_owned(),
                );
            }
        }
        if self.query_param.is_empty() {
            problems.add("auth.query_param", "must not be empty");
        }
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
}
