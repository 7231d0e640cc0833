//! Form bodies and query strings: `key=value` pairs, percent-decoded as UTF-8, a repeated key
//! collected in arrival order. Separate from JSON decoding: the text is kept as sent, never
//! parsed as JSON.

use serde_json::{Map, Value};

use super::{Decoded, Encoding, Original, OriginalPayload};
use crate::pipeline::RejectReason;

pub(super) fn decode_pairs(
    encoded: &[u8],
    encoding: Encoding,
    reserved: Option<&str>,
) -> Result<Decoded, RejectReason> {
    let mut fields = Map::new();
    let mut original = Map::new();
    for pair in encoded.split(|byte| *byte == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.iter().position(|byte| *byte == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &[][..]),
        };
        let key = form_decode(key)?;
        if reserved == Some(key.as_str()) {
            continue;
        }
        let value = form_decode(value)?;
        match original.get_mut(&key) {
            Some(Value::Array(values)) => values.push(Value::String(value.clone())),
            Some(first) => {
                let first = first.take();
                original.insert(
                    key.clone(),
                    Value::Array(vec![first, Value::String(value.clone())]),
                );
            }
            None => {
                original.insert(key.clone(), Value::String(value.clone()));
            }
        }
        fields.insert(key, Value::String(value));
    }
    if fields.is_empty() {
        return Err(RejectReason::EmptyBody);
    }
    // Text only: each pair decoded as UTF-8 above, and the separators are ASCII.
    let raw = String::from_utf8(encoded.to_vec()).map_err(|_| RejectReason::InvalidUtf8)?;
    Ok(Decoded {
        encoding,
        fields,
        original: Original {
            payload: OriginalPayload::Fields(original),
            raw: Some(raw),
            query: None,
            privacy: None,
            origin: None,
        },
        warnings: Vec::new(),
    })
}

/// The query string without the pairs whose key is `reserved` (the bridge's credential), the
/// rest byte for byte.
pub fn query_without(query: &str, reserved: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(key, _)| key);
            form_decode(key.as_bytes()).map_or(true, |key| key != reserved)
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `application/x-www-form-urlencoded` decoding that refuses invalid UTF-8 instead of
/// replacing it, so that what we keep is exactly what was sent.
fn form_decode(encoded: &[u8]) -> Result<String, RejectReason> {
    let with_spaces: Vec<u8> = encoded
        .iter()
        .map(|byte| if *byte == b'+' { b' ' } else { *byte })
        .collect();
    percent_encoding::percent_decode(&with_spaces)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| RejectReason::InvalidUtf8)
}
