//! `[reconcile]`: how to reach TeleCMI's call-record APIs and how far to trust them. Typed like
//! every other section; the credentials are resolved (the secret file read) once, when a run
//! starts, since the server itself never needs them.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::Uri;
use serde::{Deserialize, Serialize};

use crate::config::SecretValue;
use crate::config::forms::{milliseconds, seconds};
use crate::domain::TopicName;

/// TeleCMI's two product lines: their pull APIs differ in base, paths, credential field and
/// record identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Product {
    /// CHUB (global): records carry the call id `cmiuid`.
    Chub,
    /// CHUB India (piopiy): records carry only a database `_id`.
    ChubIndia,
}

impl Product {
    /// The documented base of the product's REST APIs.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Chub => "https://rest.telecmi.com",
            Self::ChubIndia => "https://piopiy.telecmi.com",
        }
    }

    /// Records a page may hold: CHUB documents 20; CHUB India documents no maximum, so the
    /// bridge keeps to a size that bounds one answer's memory and time.
    pub fn max_page_size(self) -> u32 {
        match self {
            Self::Chub => 20,
            Self::ChubIndia => 100,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chub => "chub",
            Self::ChubIndia => "chub_india",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    pub product: Product,
    /// The API's base; the product's documented base when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The TeleCMI app id (a number, as the dashboard shows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    /// The app secret itself (CHUB's `secret`, CHUB India's `token`)...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretValue>,
    /// ...or a file holding it (a mounted secret); trailing newlines are ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// How long after a call TeleCMI's records are trusted complete.
    #[serde(with = "seconds")]
    pub lag_seconds: Duration,
    /// How far back a run without `--from` looks, ending `lag_seconds` ago.
    #[serde(with = "seconds")]
    pub window_seconds: Duration,
    /// Deadline of one API request, answer body included.
    #[serde(with = "milliseconds")]
    pub request_timeout_ms: Duration,
    /// Attempts of one page at most (the first included) on 5xx, 429, timeouts, resets and
    /// malformed answers.
    pub max_attempts: NonZeroU32,
    /// The first pause between attempts; it doubles up to `retry_backoff_max_ms`.
    #[serde(with = "milliseconds")]
    pub retry_backoff_ms: Duration,
    #[serde(with = "milliseconds")]
    pub retry_backoff_max_ms: Duration,
    /// Records asked for per page (`limit`).
    pub page_size: u32,
    /// CHUB India only: how far apart a pulled record's time and a CDR's time may be and
    /// still be the same call.
    #[serde(with = "seconds")]
    pub match_tolerance_seconds: Duration,
    /// The CDR topics are read from this long before the window's start (by record
    /// timestamp), for clocks apart between TeleCMI and the bridge.
    #[serde(with = "seconds")]
    pub kafka_margin_seconds: Duration,
    /// Reading the CDR topics must finish within this time.
    #[serde(with = "milliseconds")]
    pub kafka_read_timeout_ms: Duration,
    /// A publishing run holds the lease on this one-partition topic (see `reconcile::lease`).
    pub lease_topic: TopicName,
    /// How long a publishing run waits for another run to finish before it gives up.
    #[serde(with = "seconds")]
    pub lease_wait_seconds: Duration,
    /// The server runs a publishing reconciliation itself, at its start and then every
    /// `schedule_interval_seconds`, over the trailing window.
    pub schedule_enabled: bool,
    #[serde(with = "seconds")]
    pub schedule_interval_seconds: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            product: Product::Chub,
            base_url: None,
            app_id: None,
            secret: None,
            secret_file: None,
            lag_seconds: Duration::from_secs(600),
            window_seconds: Duration::from_secs(7_200),
            request_timeout_ms: Duration::from_millis(10_000),
            max_attempts: NonZeroU32::new(5).expect("not zero"),
            retry_backoff_ms: Duration::from_millis(500),
            retry_backoff_max_ms: Duration::from_millis(30_000),
            page_size: 20,
            match_tolerance_seconds: Duration::from_secs(5),
            kafka_margin_seconds: Duration::from_secs(600),
            kafka_read_timeout_ms: Duration::from_millis(120_000),
            lease_topic: TopicName::new("telecmi.reconcile.lease"),
            lease_wait_seconds: Duration::from_secs(60),
            schedule_enabled: false,
            schedule_interval_seconds: Duration::from_secs(1_800),
        }
    }
}

/// What TeleCMI's APIs authenticate with.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub app_id: u64,
    pub secret: SecretValue,
}

impl ReconcileSettings {
    /// Checked with the rest of the configuration; credentials are checked by
    /// [`ReconcileSettings::credentials`] when a run starts.
    pub fn validate(&self) -> Result<(), String> {
        if self.secret.is_some() && self.secret_file.is_some() {
            return Err("reconcile: set secret or secret_file, not both".to_owned());
        }
        let positive = [
            ("reconcile.window_seconds", self.window_seconds),
            ("reconcile.request_timeout_ms", self.request_timeout_ms),
            ("reconcile.retry_backoff_ms", self.retry_backoff_ms),
            (
                "reconcile.kafka_read_timeout_ms",
                self.kafka_read_timeout_ms,
            ),
            (
                "reconcile.schedule_interval_seconds",
                self.schedule_interval_seconds,
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| value.is_zero()) {
            return Err(format!("{key}: must be greater than 0"));
        }
        if self.page_size == 0 {
            return Err("reconcile.page_size: must be greater than 0".to_owned());
        }
        if self.retry_backoff_max_ms < self.retry_backoff_ms {
            return Err(
                "reconcile.retry_backoff_max_ms: must be at least reconcile.retry_backoff_ms"
                    .to_owned(),
            );
        }
        let max_page_size = self.product.max_page_size();
        if self.page_size > max_page_size {
            return Err(format!(
                "reconcile.page_size: at most {max_page_size} for product {}",
                self.product.as_str()
            ));
        }
        // The server must not start a schedule that cannot run; the secret file itself is
        // read by each run, as by the command.
        if self.schedule_enabled
            && (self.app_id.is_none() || (self.secret.is_none() && self.secret_file.is_none()))
        {
            return Err(
                "reconcile.schedule_enabled: needs reconcile.app_id and reconcile.secret or \
                 reconcile.secret_file"
                    .to_owned(),
            );
        }
        self.base_url().map(|_| ())
    }

    /// The API base: a URL whose scheme is https, or http to a loopback host only (a
    /// simulator), since the app secret travels in every request body.
    pub fn base_url(&self) -> Result<Uri, String> {
        let text = self
            .base_url
            .as_deref()
            .unwrap_or(self.product.default_base_url());
        let not_a_url = |reason: &dyn std::fmt::Display| {
            format!("reconcile.base_url: {text:?} is not a URL: {reason}")
        };
        let url: Uri = text.parse().map_err(|error| not_a_url(&error))?;
        if url.authority().is_none() {
            return Err(not_a_url(&"no host"));
        }
        let loopback = url.host().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|address| address.is_loopback())
        });
        match url.scheme_str() {
            Some("https") => Ok(url),
            Some("http") if loopback => Ok(url),
            _ => Err(format!(
                "reconcile.base_url: {text:?} must be https (http only to a loopback host): \
                 the app secret travels in every request"
            )),
        }
    }

    /// The app id and secret, the secret file read now. Names the setting that is missing.
    pub fn credentials(&self) -> Result<Credentials, String> {
        let app_id = self.app_id.ok_or_else(|| {
            "reconcile.app_id: required to call TeleCMI (TELECMI_BRIDGE_RECONCILE__APP_ID)"
                .to_owned()
        })?;
        let secret = match (&self.secret, &self.secret_file) {
            (Some(_), Some(_)) => {
                return Err("reconcile: set secret or secret_file, not both".to_owned());
            }
            (Some(secret), None) => secret.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|text| SecretValue::from(text.trim_end_matches(['\r', '\n'])))
                .map_err(|error| {
                    format!(
                        "reconcile.secret_file: cannot read {}: {error}",
                        file.display()
                    )
                })?,
            (None, None) => {
                return Err(
                    "reconcile.secret or reconcile.secret_file: required to call \
                     TeleCMI (TELECMI_BRIDGE_RECONCILE__SECRET)"
                        .to_owned(),
                );
            }
        };
        if secret.expose().is_empty() {
            return Err("reconcile.secret: is empty".to_owned());
        }
        Ok(Credentials { app_id, secret })
    }
}

#[cfg(test)]
mod tests;
