//! The shared-secret check. TeleCMI lets a customer configure only a URL, so the token may
//! arrive as the last path segment, as a query parameter or as a header.

use axum::http::{HeaderMap, HeaderName};
use subtle::ConstantTimeEq;

use crate::config::{AuthSettings, SecretValue};

#[derive(Debug, Clone)]
pub struct Auth {
    required: bool,
    tokens: Vec<SecretValue>,
    query_param: String,
    header: HeaderName,
}

impl Auth {
    pub fn new(settings: &AuthSettings) -> Self {
        Self {
            required: settings.required,
            tokens: settings.tokens.clone(),
            query_param: settings.query_param.clone(),
            header: settings.header.clone(),
        }
    }

    pub fn query_param(&self) -> &str {
        &self.query_param
    }

    /// True when auth is off, or when any presented token matches any configured one.
    pub fn allows(
        &self,
        path_token: Option<&str>,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> bool {
        if !self.required {
            return true;
        }
        let from_query = query.into_iter().flat_map(|query| {
            query.split('&').filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key == self.query_param).then(|| {
                    percent_encoding::percent_decode_str(value)
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
        });
        let from_header = headers
            .get(&self.header)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        path_token
            .map(str::to_owned)
            .into_iter()
            .chain(from_query)
            .chain(from_header)
            .any(|presented| self.matches(&presented))
    }

    fn matches(&self, presented: &str) -> bool {
        // Every configured token is compared, so timing does not reveal which one matched.
        self.tokens.iter().fold(false, |matched, token| {
            matched | bool::from(token.expose().as_bytes().ct_eq(presented.as_bytes()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let settings: AuthSettings = serde_json::from_value(serde_json::json!({
            "required": true,
            "tokens": ["0123456789abcdef-old", "0123456789abcdef-new"],
            "query_param": "bridge_token",
            "header": "x-bridge-token"
        }))
        .expect("settings");
        Auth::new(&settings)
    }

    #[test]
    fn any_configured_token_in_any_place_is_accepted() {
        let auth = auth();
        let none = HeaderMap::new();
        assert!(auth.allows(Some("0123456789abcdef-old"), None, &none));
        assert!(auth.allows(None, Some("a=1&bridge_token=0123456789abcdef-new"), &none));
        let mut headers = HeaderMap::new();
        headers.insert("x-bridge-token", "0123456789abcdef-new".parse().unwrap());
        assert!(auth.allows(None, None, &headers));
    }

    #[test]
    fn wrong_or_missing_tokens_are_refused() {
        let auth = auth();
        let none = HeaderMap::new();
        assert!(!auth.allows(None, None, &none));
        assert!(!auth.allows(Some("0123456789abcdef"), Some("bridge_token=nope"), &none));
        assert!(!auth.allows(None, Some("token=0123456789abcdef-old"), &none));
    }
}
