//! Optional HMAC-SHA256 verification of the body, for deployments with a signing proxy in
//! front (TeleCMI itself signs nothing). Several secrets may be active, for rotation.
//!
//! With `auth.hmac_timestamp_header`, the signed message is `"{timestamp}.{body}"` (as Stripe
//! does), the timestamp being that header's Unix time in seconds, so a captured request cannot
//! be replayed once it is older than the tolerance.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::{AuthSettings, SecretValue, SignatureEncoding};

#[derive(Debug, Clone)]
pub struct Signature {
    secrets: Vec<SecretValue>,
    header: HeaderName,
    encoding: SignatureEncoding,
    prefix: String,
    timestamp: Option<SignedTimestamp>,
}

/// The header carrying the signed timestamp, and how far from now it may be.
#[derive(Debug, Clone)]
struct SignedTimestamp {
    header: HeaderName,
    tolerance: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    Mismatch,
    /// No timestamp header, or not decimal Unix seconds.
    MissingTimestamp,
    /// Further from the bridge's clock than the tolerance: a replay, or a clock far off.
    StaleTimestamp,
}

impl Signature {
    /// `None` when no secret is configured.
    pub fn new(settings: &AuthSettings) -> Option<Self> {
        (!settings.hmac_secrets.is_empty()).then(|| Self {
            secrets: settings.hmac_secrets.clone(),
            header: settings.hmac_header.clone(),
            encoding: settings.hmac_encoding,
            prefix: settings.hmac_prefix.clone(),
            timestamp: settings
                .hmac_timestamp_header
                .clone()
                .map(|header| SignedTimestamp {
                    header,
                    tolerance: settings.hmac_timestamp_tolerance_seconds,
                }),
        })
    }

    /// Checks the header's signature of `message` (after the timestamp, when configured)
    /// against every secret, in constant time per secret.
    pub fn verify(&self, headers: &HeaderMap, message: &[u8]) -> Result<(), SignatureError> {
        self.verify_at(headers, message, SystemTime::now())
    }

    fn verify_at(
        &self,
        headers: &HeaderMap,
        message: &[u8],
        now: SystemTime,
    ) -> Result<(), SignatureError> {
        let signed_timestamp = match &self.timestamp {
            Some(timestamp) => Some(timestamp.check(headers, now)?),
            None => None,
        };
        let presented = headers
            .get(&self.header)
            .ok_or(SignatureError::Missing)?
            .to_str()
            .map_err(|_| SignatureError::Malformed)?
            .trim();
        let encoded = presented
            .strip_prefix(self.prefix.as_str())
            .ok_or(SignatureError::Malformed)?;
        let tag = match self.encoding {
            SignatureEncoding::Hex => hex::decode(encoded).ok(),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok(),
        }
        .ok_or(SignatureError::Malformed)?;
        let matches = self.secrets.iter().any(|secret| {
            Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                .map(|mac| {
                    signed_message(mac, signed_timestamp, message)
                        .verify_slice(&tag)
                        .is_ok()
                })
                .unwrap_or(false)
        });
        if matches {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

impl SignedTimestamp {
    /// The header's timestamp, if it is within the tolerance of `now`.
    fn check(&self, headers: &HeaderMap, now: SystemTime) -> Result<u64, SignatureError> {
        let seconds: u64 = headers
            .get(&self.header)
            .and_then(|value| value.to_str().ok())
            .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .and_then(|text| text.parse().ok())
            .ok_or(SignatureError::MissingTimestamp)?;
        let sent = UNIX_EPOCH + Duration::from_secs(seconds);
        let distance = now
            .duration_since(sent)
            .or_else(|_| sent.duration_since(now))
            .unwrap_or(Duration::MAX);
        if distance > self.tolerance {
            return Err(SignatureError::StaleTimestamp);
        }
        Ok(seconds)
    }
}

/// The MAC over `"{timestamp}.{message}"`, or over `message` alone without a timestamp.
fn signed_message(mac: Hmac<Sha256>, timestamp: Option<u64>, message: &[u8]) -> Hmac<Sha256> {
    match timestamp {
        Some(seconds) => mac
            .chain_update(seconds.to_string())
            .chain_update(b".")
            .chain_update(message),
        None => mac.chain_update(message),
    }
}

/// The signature a signing proxy would send: for tests and for documenting the format.
pub fn sign(secret: &str, message: &[u8], encoding: SignatureEncoding) -> String {
    sign_message(secret, None, message, encoding)
}

/// The signature of `"{timestamp}.{message}"`, sent with `timestamp` (Unix seconds) in
/// `auth.hmac_timestamp_header`.
pub fn sign_with_timestamp(
    secret: &str,
    timestamp: u64,
    message: &[u8],
    encoding: SignatureEncoding,
) -> String {
    sign_message(secret, Some(timestamp), message, encoding)
}

fn sign_message(
    secret: &str,
    timestamp: Option<u64>,
    message: &[u8],
    encoding: SignatureEncoding,
) -> String {
    let tag = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map(|mac| {
            signed_message(mac, timestamp, message)
                .finalize()
                .into_bytes()
                .to_vec()
        })
        .unwrap_or_default();
    match encoding {
        SignatureEncoding::Hex => hex::encode(tag),
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(encoding: SignatureEncoding, prefix: &str) -> Signature {
        Signature::new(&AuthSettings {
            hmac_secrets: vec![
                SecretValue::from("old-secret-0123456789"),
                SecretValue::from("new-secret-0123456789"),
            ],
            hmac_encoding: encoding,
            hmac_prefix: prefix.to_owned(),
            ..AuthSettings::default()
        })
        .expect("configured")
    }

    fn with(header: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::try_from(header).expect("name"),
            value.parse().expect("value"),
        );
        headers
    }

    #[test]
    fn a_body_signed_with_any_active_secret_passes_and_anything_else_fails() {
        let body = br#"{"type":"event","status":"answered"}"#;
        let check = signature(SignatureEncoding::Hex, "sha256=");
        for secret in ["old-secret-0123456789", "new-secret-0123456789"] {
            let value = format!("sha256={}", sign(secret, body, SignatureEncoding::Hex));
            assert_eq!(check.verify(&with("x-signature", &value), body), Ok(()));
        }
        let good = format!(
            "sha256={}",
            sign("new-secret-0123456789", body, SignatureEncoding::Hex)
        );
        assert_eq!(
            check.verify(&with("x-signature", &good), b"{\"type\":\"cdr\"}"),
            Err(SignatureError::Mismatch),
            "a changed body"
        );
        let wrong = format!(
            "sha256={}",
            sign("guessed-secret-000000", body, SignatureEncoding::Hex)
        );
        assert_eq!(
            check.verify(&with("x-signature", &wrong), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check.verify(&HeaderMap::new(), body),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check.verify(&with("x-signature", "sha256=not-hex"), body),
            Err(SignatureError::Malformed)
        );
        let unprefixed = sign("new-secret-0123456789", body, SignatureEncoding::Hex);
        assert_eq!(
            check.verify(&with("x-signature", &unprefixed), body),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_timestamped_signature_is_refused_outside_the_tolerance() {
        let check = Signature::new(&AuthSettings {
            hmac_secrets: vec![SecretValue::from("new-secret-0123456789")],
            hmac_timestamp_header: Some(HeaderName::from_static("x-signature-timestamp")),
            hmac_timestamp_tolerance_seconds: Duration::from_secs(300),
            ..AuthSettings::default()
        })
        .expect("configured");
        let body = br#"{"type":"event","status":"answered"}"#;
        let sent_at = 1_700_000_000;
        let headers = |timestamp: &str, signature: String| {
            let mut headers = with("x-signature", &format!("sha256={signature}"));
            headers.insert("x-signature-timestamp", timestamp.parse().expect("value"));
            headers
        };
        let signed = sign_with_timestamp(
            "new-secret-0123456789",
            sent_at,
            body,
            SignatureEncoding::Hex,
        );
        let at = |seconds: u64| UNIX_EPOCH + Duration::from_secs(seconds);
        let request = headers(&sent_at.to_string(), signed.clone());
        assert_eq!(check.verify_at(&request, body, at(sent_at)), Ok(()));
        assert_eq!(check.verify_at(&request, body, at(sent_at + 300)), Ok(()));
        assert_eq!(
            check.verify_at(&request, body, at(sent_at + 301)),
            Err(SignatureError::StaleTimestamp),
            "a replay after the window"
        );
        assert_eq!(
            check.verify_at(&request, body, at(sent_at - 301)),
            Err(SignatureError::StaleTimestamp),
            "a timestamp in the future"
        );
        assert_eq!(
            check.verify_at(
                &headers(&(sent_at + 1).to_string(), signed),
                body,
                at(sent_at)
            ),
            Err(SignatureError::Mismatch),
            "the timestamp is signed: changing it breaks the signature"
        );
        let untimed = sign("new-secret-0123456789", body, SignatureEncoding::Hex);
        let mut without = with("x-signature", &format!("sha256={untimed}"));
        assert_eq!(
            check.verify_at(&without, body, at(sent_at)),
            Err(SignatureError::MissingTimestamp)
        );
        without.insert("x-signature-timestamp", "-5".parse().expect("value"));
        assert_eq!(
            check.verify_at(&without, body, at(sent_at)),
            Err(SignatureError::MissingTimestamp)
        );
    }

    #[test]
    fn base64_signatures_without_a_prefix() {
        let body = b"type=event&status=answered";
        let check = signature(SignatureEncoding::Base64, "");
        let value = sign("old-secret-0123456789", body, SignatureEncoding::Base64);
        assert_eq!(check.verify(&with("x-signature", &value), body), Ok(()));
        assert_eq!(Signature::new(&AuthSettings::default()).map(|_| ()), None);
    }
}
