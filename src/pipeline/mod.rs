//! The pure pipeline: decode -> normalise -> envelope -> route. No I/O happens here, so every
//! step is tested on the fixtures directly.

pub mod correlation;
pub mod decode;
pub mod envelope;
pub mod normalise;
pub mod privacy;
pub mod route;
pub mod warning;

pub use correlation::Correlation;
pub use decode::{Decoded, Encoding, Original, OriginalPayload, RawRequest, decode};
pub use envelope::{ENVELOPE_VERSION, EncodedEvent, Envelope, EnvelopeAttributes};
pub use normalise::{Kind, Normalised, normalise};
pub use privacy::Privacy;
pub use route::{DeadLetter, OutboundRecord, Router};
pub use warning::{Warning, WarningCode};

use time::OffsetDateTime;

/// Normalise and envelope a decoded payload: its fields move into the normalised view, and the
/// envelope is serialised once, as published (in the configured content mode).
pub fn to_envelope(
    attributes: &EnvelopeAttributes,
    decoded: Decoded,
    received_at: OffsetDateTime,
) -> serde_json::Result<(Normalised, EncodedEvent)> {
    correlated_envelope(attributes, decoded, None, received_at)
}

/// [`to_envelope`], keying a payload that names no conversation by the one `correlation`
/// learned for its leg, and teaching it the conversation of one that does.
fn correlated_envelope(
    attributes: &EnvelopeAttributes,
    decoded: Decoded,
    correlation: Option<&Correlation>,
    received_at: OffsetDateTime,
) -> serde_json::Result<(Normalised, EncodedEvent)> {
    let Decoded {
        encoding,
        fields,
        original,
        warnings,
    } = decoded;
    let mut normalised = normalise(fields);
    if !warnings.is_empty() {
        normalised.warnings.splice(0..0, warnings);
    }
    normalised.adopt_learned_conversation(
        correlation.and_then(|known| known.conversation_of(&normalised)),
    );
    if let Some(correlation) = correlation {
        correlation.learn(&normalised);
    }
    let envelope =
        Envelope::new(attributes, encoding, &original, &normalised, received_at).encode()?;
    Ok((normalised, envelope))
}

/// The whole pure path of a decoded payload, as the webhook and `replay` both take it: phone
/// numbers protected (when privacy is on), normalised, enveloped once, routed to its records.
pub fn to_records(
    decoded: Decoded,
    privacy: Option<&Privacy>,
    attributes: &EnvelopeAttributes,
    router: &Router,
    correlation: Option<&Correlation>,
    received_at: OffsetDateTime,
) -> serde_json::Result<(Normalised, Vec<OutboundRecord>)> {
    let decoded = match privacy {
        Some(privacy) => privacy.apply(decoded),
        None => decoded,
    };
    let (normalised, envelope) =
        correlated_envelope(attributes, decoded, correlation, received_at)?;
    let records = router.route(&normalised, envelope, received_at);
    Ok((normalised, records))
}

/// Why a request's payload could not become an envelope. Each reason has a stable code that
/// is part of the HTTP contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("the request carried no payload")]
    EmptyBody,
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the JSON body is {0}, not an object")]
    NotAnObject(&'static str),
    #[error("the payload is not valid UTF-8")]
    InvalidUtf8,
    #[error("the content type is not JSON or form-urlencoded")]
    UnsupportedContentType,
    #[error("only UTF-8 bodies are accepted")]
    UnsupportedCharset,
    #[error("compressed bodies are not accepted")]
    UnsupportedContentEncoding,
}

impl RejectReason {
    /// Whether the body was read and judged: such requests are kept on the dead-letter topic.
    /// The 415 reasons refuse a request by its headers, before its body means anything.
    pub fn is_dead_letter(&self) -> bool {
        !matches!(
            self,
            Self::UnsupportedContentType
                | Self::UnsupportedCharset
                | Self::UnsupportedContentEncoding
        )
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyBody => "empty_payload",
            Self::MalformedJson(_) => "malformed_json",
            Self::NotAnObject(_) => "json_not_object",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::UnsupportedContentType => "unsupported_content_type",
            Self::UnsupportedCharset => "unsupported_charset",
            Self::UnsupportedContentEncoding => "unsupported_content_encoding",
        }
    }
}
