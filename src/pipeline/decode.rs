//! Decode: the parts of an HTTP request turned into the payload's fields and an exact copy of
//! what was sent. Nothing here judges the fields; that is normalisation's job.
//!
//! This file holds what decoding produces and the choice of decoder by the request's headers;
//! each encoding is read in its own module (`json`, `form`).

mod form;
mod json;
#[cfg(test)]
mod tests;

pub use form::query_without;
pub use json::DUPLICATE_KEYS;

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

pub fn decode(request: &RawRequest<'_>) -> Result<Decoded, RejectReason> {
    if let Some(encoding) = request.content_encoding
        && !encoding.trim().eq_ignore_ascii_case("identity")
    {
        return Err(RejectReason::UnsupportedContentEncoding);
    }
    let query = request.query_text();
    if request.is_get {
        let query = query.unwrap_or_default();
        return form::decode_pairs(
            query.as_bytes(),
            Encoding::Query,
            request.reserved_query_param,
        );
    }
    if request.body.iter().all(u8::is_ascii_whitespace) {
        return Err(RejectReason::EmptyBody);
    }
    let mut decoded = match body_kind(request.content_type, request.body)? {
        BodyKind::Json => json::decode_json(request.body)?,
        BodyKind::Form if starts_like_json_object(request.body) => {
            let mut decoded = json::decode_json(request.body)?;
            decoded.warnings.push(Warning::new(
                WarningCode::JsonLabelledAsForm,
                JSON_LABELLED_AS_FORM,
            ));
            decoded
        }
        BodyKind::Form => form::decode_pairs(request.body, Encoding::Form, None)?,
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
