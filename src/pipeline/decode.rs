//! Decode: the parts of an HTTP request turned into the payload's fields and an exact copy of
//! what was sent. Nothing here judges the fields; that is normalisation's job.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::RejectReason;
use super::warning::{Warning, WarningCode};

/// How the payload reached us. Part of the envelope contract (`data.original.encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Json,
    Form,
    Query,
}

/// The request as the decoder needs it: borrowed, so decoding allocates only what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    pub is_get: bool,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    /// Query parameter that carries the bridge's own credential; never part of the payload.
    pub reserved_query_param: Option<&'a str>,
}

impl<'a> RawRequest<'a> {
    /// A JSON body posted without query or credential: how `replay` and the tests feed the
    /// webhook's pipeline a payload of their own.
    pub fn json_body(body: &'a [u8]) -> Self {
        Self {
            is_get: false,
            content_type: Some("application/json"),
            content_encoding: None,
            query: None,
            body,
            reserved_query_param: None,
        }
    }

    /// The query string without the bridge's credential, the rest byte for byte; `None` when
    /// nothing is left.
    pub fn query_text(&self) -> Option<String> {
        self.query
            .map(|query| match self.reserved_query_param {
                Some(reserved) => query_without(query, reserved),
                None => query.to_owned(),
            })
            .filter(|query| !query.is_empty())
    }
}

/// What was sent, kept so that the original payload can be rebuilt exactly.
#[derive(Debug, Clone)]
pub struct Original {
    pub payload: OriginalPayload,
    /// The exact text received (the body; for a `GET`, the query string without the bridge's
    /// credential) whenever `payload` is not that text byte for byte.
    pub raw: Option<String>,
    /// A `POST`'s query string as received, without the bridge's credential; not part of the
    /// fields.
    pub query: Option<String>,
    /// The privacy mode that rewrote this original (values protected, or `raw` and `query`
    /// withheld); `None` when it is as received.
    pub privacy: Option<&'static str>,
    /// How the bridge came by an event it did not receive by webhook (`reconcile`: a CDR
    /// recovered from TeleCMI's call records); the envelope's `origin` attribute.
    pub origin: Option<&'static str>,
}

/// The payload as an object without repeated keys, so that the envelope never has any.
#[derive(Debug, Clone)]
pub enum OriginalPayload {
    /// The JSON body: verbatim (every key, number literal and escape) unless it repeats a key
    /// or has leading-zero literals; then rebuilt, and `raw` holds the body.
    Json(Box<RawValue>),
    /// Form or query fields as the text they arrived in; a repeated key holds an array of its
    /// values in arrival order.
    Fields(Map<String, Value>),
}

impl Original {
    /// Whether `payload` is what was sent, byte for byte.
    pub fn is_exact(&self) -> bool {
        matches!(self.payload, OriginalPayload::Json(_))
            && self.raw.is_none()
            && self.privacy.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct Decoded {
    pub encoding: Encoding,
    /// The payload's fields; where a key repeats, its last occurrence (as `JSON.parse` does).
    pub fields: Map<String, Value>,
    pub original: Original,
    /// What decoding had to assume, for the envelope's warnings.
    pub warnings: Vec<Warning>,
}

/// The warning of a JSON object sent with a form content type (what `curl -d @file.json`
/// sends).
pub const JSON_LABELLED_AS_FORM: &str = "content-type said application/x-www-form-urlencoded, but the body is a JSON object; read as JSON";

/// The warning of a JSON body that repeats a key in an object.
pub const DUPLICATE_KEYS: &str = "the body repeats a key in an object; each is kept once, at its last value, and original.raw holds the body as sent";

pub fn decode(request: &RawRequest<'_>) -> Result<Decoded, RejectReason> {
    if let Some(encoding) = request.content_encoding
        && !encoding.trim().eq_ignore_ascii_case("identity")
    {
        return Err(RejectReason::UnsupportedContentEncoding);
    }
    let query = request.query_text();
    if request.is_get {
        let query = query.unwrap_or_default();
        return decode_pairs(
            query.as_bytes(),
            Encoding::Query,
            request.reserved_query_param,
        );
    }
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Err(RejectReason::EmptyBody);
    }
    let mut decoded = match body_kind(request.content_type, request.body)? {
        BodyKind::Json => decode_json(request.body)?,
        BodyKind::Form if starts_like_json_object(request.body) => {
            let mut decoded = decode_json(request.body)?;
            decoded.warnings.push(Warning::new(
                WarningCode::JsonLabelledAsForm,
                JSON_LABELLED_AS_FORM,
            ));
            decoded
        }
        BodyKind::Form => decode_pairs(request.body, Encoding::Form, None)?,
    };
    decoded.original.query = query;
    Ok(decoded)
}

/// A form body never starts with `{`; a JSON object sent with a form label always does. Read
/// as a form, its whole text would become one field name, so it is read as the JSON it is, or
/// refused as malformed JSON.
fn starts_like_json_object(body: &[u8]) -> bool {
    body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{')
}

enum BodyKind {
    Json,
    Form,
}

fn body_kind(content_type: Option<&str>, body: &[u8]) -> Result<BodyKind, RejectReason> {
    let Some(content_type) = content_type.filter(|value| !value.trim().is_empty()) else {
        // No header at all: TeleCMI documents none, so look at the body itself.
        let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
        let looks_like_form = first != Some(&b'{') && body.contains(&b'=');
        return Ok(if looks_like_form {
            BodyKind::Form
        } else {
            BodyKind::Json
        });
    };
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    for parameter in parts {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !(charset.eq_ignore_ascii_case("utf-8")
                || charset.eq_ignore_ascii_case("utf8")
                || charset.eq_ignore_ascii_case("us-ascii"))
            {
                return Err(RejectReason::UnsupportedCharset);
            }
        }
    }
    match essence.as_str() {
        "application/json" | "text/json" | "text/plain" => Ok(BodyKind::Json),
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        other if other.starts_with("application/") && other.ends_with("+json") => {
            Ok(BodyKind::Json)
        }
        _ => Err(RejectReason::UnsupportedContentType),
    }
}

fn decode_json(body: &[u8]) -> Result<Decoded, RejectReason> {
    let text = std::str::from_utf8(body).map_err(|_| RejectReason::InvalidUtf8)?;
    let (payload, raw) = match serde_json::from_str::<Box<RawValue>>(text) {
        Ok(payload) => (payload, None),
        Err(strict_error) => {
            let repaired = quote_leading_zero_numbers(text)
                .ok_or_else(|| RejectReason::MalformedJson(strict_error.to_string()))?;
            let payload = serde_json::from_str::<Box<RawValue>>(&repaired)
                .map_err(|_| RejectReason::MalformedJson(strict_error.to_string()))?;
            (payload, Some(text.to_owned()))
        }
    };
    let fields = match serde_json::from_str::<Value>(payload.get()) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => return Err(RejectReason::NotAnObject(json_type_name(&other))),
        Err(error) => return Err(RejectReason::MalformedJson(error.to_string())),
    };
    let mut warnings = Vec::new();
    let has_duplicate_keys = serde_json::from_str::<DuplicateKeys>(payload.get())
        .is_ok_and(|DuplicateKeys(found)| found);
    let (payload, raw) = if has_duplicate_keys {
        warnings.push(Warning::new(WarningCode::DuplicateKeys, DUPLICATE_KEYS));
        let rebuilt = serde_json::value::to_raw_value(&fields)
            .map_err(|error| RejectReason::MalformedJson(error.to_string()))?;
        (rebuilt, Some(raw.unwrap_or_else(|| text.to_owned())))
    } else {
        (payload, raw)
    };
    Ok(Decoded {
        encoding: Encoding::Json,
        fields,
        original: Original {
            payload: OriginalPayload::Json(payload),
            raw,
            query: None,
            privacy: None,
            origin: None,
        },
        warnings,
    })
}

/// Whether a JSON text repeats a key in any of its objects, at any depth.
struct DuplicateKeys(bool);

impl<'de> serde::Deserialize<'de> for DuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DuplicateKeysVisitor)
    }
}

struct DuplicateKeysVisitor;

impl<'de> serde::de::Visitor<'de> for DuplicateKeysVisitor {
    type Value = DuplicateKeys;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_i64<E>(self, _: i64) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_u64<E>(self, _: u64) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_f64<E>(self, _: f64) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_str<E>(self, _: &str) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_unit<E>(self) -> Result<DuplicateKeys, E> {
        Ok(DuplicateKeys(false))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<DuplicateKeys, A::Error> {
        let mut found = false;
        while let Some(DuplicateKeys(inner)) = seq.next_element()? {
            found |= inner;
        }
        Ok(DuplicateKeys(found))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<DuplicateKeys, A::Error> {
        let mut keys = std::collections::HashSet::new();
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            found |= !keys.insert(key);
            let DuplicateKeys(inner) = map.next_value()?;
            found |= inner;
        }
        Ok(DuplicateKeys(found))
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Quotes number literals written with leading zeros (`04471000000` becomes `"04471000000"`),
/// the only departure from strict JSON seen in TeleCMI's documented payloads. Returns `None`
/// when there is nothing to repair, so the caller reports the original parse error.
fn quote_leading_zero_numbers(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut repaired = String::with_capacity(text.len() + 8);
    let mut copied_up_to = 0;
    let mut index = 0;
    let mut in_string = false;
    let mut changed = false;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match byte {
                b'\\' => index += 1,
                b'"' => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            index += 1;
            continue;
        }
        if byte == b'-' || byte.is_ascii_digit() {
            let start = index;
            let mut end = index + 1;
            while end < bytes.len()
                && matches!(bytes[end], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                end += 1;
            }
            let literal = &text[start..end];
            let digits = literal.strip_prefix('-').unwrap_or(literal);
            if digits.len() > 1
                && digits.starts_with('0')
                && digits.bytes().all(|digit| digit.is_ascii_digit())
            {
                repaired.push_str(&text[copied_up_to..start]);
                repaired.push('"');
                repaired.push_str(literal);
                repaired.push('"');
                copied_up_to = end;
                changed = true;
            }
            index = end;
            continue;
        }
        index += 1;
    }
    changed.then(|| {
        repaired.push_str(&text[copied_up_to..]);
        repaired
    })
}

fn decode_pairs(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(decoded: &Decoded) -> Vec<WarningCode> {
        decoded
            .warnings
            .iter()
            .map(|warning| warning.code)
            .collect()
    }

    fn post(content_type: Option<&'static str>, body: &'static [u8]) -> RawRequest<'static> {
        RawRequest {
            is_get: false,
            content_type,
            content_encoding: None,
            query: None,
            body,
            reserved_query_param: Some("token"),
        }
    }

    #[test]
    fn repeated_keys_are_kept_once_in_the_payload_and_exactly_in_raw() {
        let body = br#"{"a": 1, "a": 2, "n": 123456789012345678901234567890, "f": 1.50}"#;
        let decoded = decode(&post(Some("application/json"), body)).unwrap();
        let OriginalPayload::Json(payload) = &decoded.original.payload else {
            panic!("expected JSON")
        };
        assert_eq!(
            payload.get(),
            r#"{"a":2,"n":123456789012345678901234567890,"f":1.50}"#
        );
        assert_eq!(
            decoded.original.raw.as_deref().map(str::as_bytes),
            Some(&body[..])
        );
        assert_eq!(codes(&decoded), [WarningCode::DuplicateKeys]);
        assert_eq!(decoded.fields["a"], serde_json::json!(2));
        assert_eq!(
            decoded.fields["n"].to_string(),
            "123456789012345678901234567890"
        );
        assert_eq!(decoded.fields["f"].to_string(), "1.50");
    }

    #[test]
    fn leading_zero_literals_are_quoted_and_the_raw_body_kept() {
        let body = br#"{"callerid": 04471000000, "s": "05", "n": -012, "ok": 0, "x": 0.5}"#;
        let decoded = decode(&post(None, body)).unwrap();
        assert_eq!(decoded.fields["callerid"], "04471000000");
        assert_eq!(decoded.fields["n"], "-012");
        assert_eq!(decoded.fields["s"], "05");
        assert_eq!(decoded.fields["ok"], serde_json::json!(0));
        assert_eq!(
            decoded.original.raw.as_deref().map(str::as_bytes),
            Some(&body[..])
        );
        assert!(!decoded.original.is_exact());
    }

    #[test]
    fn malformed_json_without_leading_zeros_is_rejected() {
        let error = decode(&post(None, br#"{"a": 01x"#)).unwrap_err();
        assert!(matches!(error, RejectReason::MalformedJson(_)));
    }

    #[test]
    fn top_level_values_other_than_objects_are_rejected() {
        for (body, name) in [
            (&b"[1]"[..], "array"),
            (b"\"x\"", "string"),
            (b"12", "number"),
            (b"null", "null"),
        ] {
            let request = RawRequest {
                body,
                ..post(Some("application/json"), b"")
            };
            assert_eq!(
                decode(&request).unwrap_err(),
                RejectReason::NotAnObject(name)
            );
        }
    }

    #[test]
    fn content_types_are_recognised_with_parameters() {
        let body = b"{\"a\":1}";
        for accepted in [
            "application/json; charset=UTF-8",
            "Application/JSON",
            "text/plain",
            "application/cloudevents+json",
        ] {
            assert!(decode(&post(Some(accepted), body)).is_ok(), "{accepted}");
        }
        assert_eq!(
            decode(&post(Some("application/xml"), body)).unwrap_err(),
            RejectReason::UnsupportedContentType
        );
        assert_eq!(
            decode(&post(Some("application/json; charset=latin1"), body)).unwrap_err(),
            RejectReason::UnsupportedCharset
        );
    }

    #[test]
    fn a_json_object_labelled_as_a_form_is_read_as_json_with_a_warning() {
        let form = Some("application/x-www-form-urlencoded");
        let body = b" {\"type\":\"event\",\"status\":\"answered\",\"to\":\"a&b=c\"}";
        let decoded = decode(&post(form, body)).expect("read as JSON");
        assert_eq!(decoded.encoding, Encoding::Json);
        assert_eq!(decoded.fields["status"], "answered");
        assert_eq!(decoded.fields["to"], "a&b=c");
        assert_eq!(codes(&decoded), [WarningCode::JsonLabelledAsForm]);
        assert!(matches!(
            decode(&post(form, b"{\"type\":\"event\"")).unwrap_err(),
            RejectReason::MalformedJson(_)
        ));
        let plain_form = decode(&post(form, b"type=event&status=answered")).expect("a form");
        assert_eq!(plain_form.encoding, Encoding::Form);
        assert!(plain_form.warnings.is_empty());
    }

    #[test]
    fn form_fields_keep_text_and_collect_repeated_keys() {
        let body = b"to=%2B0044&custom=%7B%22a%22%3A1%7D&to=0045&empty=&flag";
        let decoded = decode(&post(Some("application/x-www-form-urlencoded"), body)).unwrap();
        assert_eq!(decoded.encoding, Encoding::Form);
        assert_eq!(decoded.fields["to"], "0045");
        assert_eq!(decoded.fields["custom"], r#"{"a":1}"#);
        assert_eq!(decoded.fields["flag"], "");
        let OriginalPayload::Fields(original) = &decoded.original.payload else {
            panic!("expected fields")
        };
        assert_eq!(original["to"], serde_json::json!(["+0044", "0045"]));
        assert_eq!(
            decoded.original.raw.as_deref().map(str::as_bytes),
            Some(&body[..])
        );
    }

    #[test]
    fn query_drops_the_reserved_credential_parameter() {
        let request = RawRequest {
            is_get: true,
            query: Some("token=secret&status=answered"),
            ..post(None, b"")
        };
        let decoded = decode(&request).unwrap();
        assert_eq!(decoded.encoding, Encoding::Query);
        assert!(!decoded.fields.contains_key("token"));
        let OriginalPayload::Fields(original) = &decoded.original.payload else {
            panic!("expected fields")
        };
        assert!(!original.contains_key("token"));
        assert_eq!(decoded.original.raw.as_deref(), Some("status=answered"));
    }

    #[test]
    fn a_json_body_without_repeated_keys_is_exact_and_nested_repeats_are_found() {
        let exact = decode(&post(None, br#"{"a": {"b": 1, "c": [{"b": 2}]}}"#)).unwrap();
        assert!(exact.original.is_exact());
        assert!(exact.warnings.is_empty());
        let nested = decode(&post(None, br#"{"a": {"b": 1, "c": [{"b": 2, "b": 3}]}}"#)).unwrap();
        assert!(!nested.original.is_exact());
        assert_eq!(codes(&nested), [WarningCode::DuplicateKeys]);
    }

    #[test]
    fn a_posts_query_string_is_kept_exactly_without_the_credential() {
        let request = RawRequest {
            query: Some("src=chub+india&token=secret&tag=%41&flag"),
            ..post(Some("application/json"), br#"{"a":1}"#)
        };
        let decoded = decode(&request).unwrap();
        assert_eq!(
            decoded.original.query.as_deref(),
            Some("src=chub+india&tag=%41&flag")
        );
        assert!(
            !decoded.fields.contains_key("src"),
            "the body alone makes the fields"
        );
        let only_token = RawRequest {
            query: Some("token=secret"),
            ..request
        };
        assert_eq!(decode(&only_token).unwrap().original.query, None);
    }

    #[test]
    fn invalid_utf8_is_rejected_in_json_and_form() {
        assert_eq!(
            decode(&post(Some("application/json"), b"{\"a\":\"\xff\"}")).unwrap_err(),
            RejectReason::InvalidUtf8
        );
        assert_eq!(
            decode(&post(Some("application/x-www-form-urlencoded"), b"a=%FF")).unwrap_err(),
            RejectReason::InvalidUtf8
        );
    }

    #[test]
    fn empty_bodies_and_compressed_bodies_are_rejected() {
        assert_eq!(
            decode(&post(None, b"  \n")).unwrap_err(),
            RejectReason::EmptyBody
        );
        let gzip = RawRequest {
            content_encoding: Some("gzip"),
            ..post(None, b"{}")
        };
        assert_eq!(
            decode(&gzip).unwrap_err(),
            RejectReason::UnsupportedContentEncoding
        );
    }
}
