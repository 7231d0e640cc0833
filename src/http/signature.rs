//! Optional HMAC-SHA256 verification of the body, for deployments with a signing proxy in
//! front (TeleCMI itself signs nothing). Several secrets may be active, for rotation.

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    Mismatch,
}

impl Signature {
    /// `None` when no secret is configured. Settings are validated at start-up, so the header
    /// name is known to be valid.
    pub fn new(settings: &AuthSettings) -> Option<Self> {
        (!settings.hmac_secrets.is_empty()).then(|| Self {
            secrets: settings.hmac_secrets.clone(),
            header: HeaderName::try_from(settings.hmac_header.as_str())
                .unwrap_or(HeaderName::from_static("x-signature")),
            encoding: settings.hmac_encoding,
            prefix: settings.hmac_prefix.clone(),
        })
    }

    /// Checks the header's signature of `message` against every secret, in constant time
    /// per secret.
    pub fn verify(&self, headers: &HeaderMap, message: &[u8]) -> Result<(), SignatureError> {
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
                .map(|mac| mac.chain_update(message).verify_slice(&tag).is_ok())
                .unwrap_or(false)
        });
        if matches {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// The signature a signing proxy would send: for tests and for documenting the format.
pub fn sign(secret: &str, message: &[u8], encoding: SignatureEncoding) -> String {
    let tag = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map(|mac| mac.chain_update(message).finalize().into_bytes().to_vec())
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
    fn base64_signatures_without_a_prefix() {
        let body = b"type=event&status=answered";
        let check = signature(SignatureEncoding::Base64, "");
        let value = sign("old-secret-0123456789", body, SignatureEncoding::Base64);
        assert_eq!(check.verify(&with("x-signature", &value), body), Ok(()));
        assert_eq!(Signature::new(&AuthSettings::default()).map(|_| ()), None);
    }
}
