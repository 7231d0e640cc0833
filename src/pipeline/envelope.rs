//! Envelope: the public contract. A CloudEvents 1.0 event in structured JSON mode whose `data`
//! holds the normalised view and the original payload. `schema/envelope.v2.schema.json`
//! describes it, `schema/data.v2.schema.json` its `data`; the golden files under
//! `tests/golden/` pin it.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::decode::{Encoding, Original, OriginalPayload};
use super::normalise::{ConversationSource, Kind, Normalised};
use super::warning::Warning;
use crate::config::{EnvelopeMode, EnvelopeSettings, OriginalMode};
use crate::domain::Product;

/// The attributes every envelope of one deployment shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeAttributes {
    source: String,
    dataschema: String,
    original: OriginalMode,
    mode: EnvelopeMode,
    product: Product,
}

impl EnvelopeAttributes {
    pub fn new(settings: &EnvelopeSettings) -> Self {
        Self {
            source: settings.source.clone(),
            dataschema: format!("{}{DATA_SCHEMA_FILE}", settings.dataschema_base),
            original: settings.original,
            mode: settings.mode,
            product: settings.product,
        }
    }

    /// These attributes for the product line a webhook's path named.
    pub fn for_product(&self, product: Product) -> Self {
        Self {
            product,
            ..self.clone()
        }
    }
}

impl Default for EnvelopeAttributes {
    fn default() -> Self {
        Self::new(&EnvelopeSettings::default())
    }
}

/// Bumped on any change a consumer could notice; carried in the event and in a Kafka header.
pub const ENVELOPE_VERSION: &str = "2";
/// The schema files (in `schema/`, served by the admin listener under `/schemas/`).
pub const ENVELOPE_SCHEMA_FILE: &str = "envelope.v2.schema.json";
pub const DATA_SCHEMA_FILE: &str = "data.v2.schema.json";
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

#[derive(Serialize)]
pub struct Envelope<'a> {
    specversion: &'static str,
    id: String,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'static str,
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    datacontenttype: &'static str,
    dataschema: &'a str,
    envelopeversion: &'static str,
    partitionkey: &'a str,
    telecmiproduct: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    telecmistatus: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'static str>,
    data: Data<'a>,
    #[serde(skip)]
    mode: EnvelopeMode,
}

/// An envelope laid out for a Kafka record as its mode asks.
#[derive(Debug, Clone)]
pub struct EncodedEvent {
    pub value: Vec<u8>,
    pub content_type: &'static str,
    /// In binary mode, every attribute as a `ce_` header; none in structured mode.
    pub attribute_headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Data<'a> {
    kind: Kind,
    kind_inferred: bool,
    status: Option<&'a str>,
    direction: Option<&'a str>,
    leg: Option<&'a str>,
    conversation_id: &'a str,
    conversation_id_source: ConversationSource,
    call_leg_id: Option<&'a str>,
    app_id: Option<&'a str>,
    event_time: Option<String>,
    received_at: String,
    fields: &'a Map<String, Value>,
    /// Documented fields whose value could not take its type, as sent.
    unconverted: &'a Map<String, Value>,
    warnings: &'a [Warning],
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<OriginalView<'a>>,
}

#[derive(Serialize)]
struct OriginalView<'a> {
    encoding: Encoding,
    /// Whether `payload` is what was sent, byte for byte.
    exact: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    privacy: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Json(&'a RawValue),
    Fields(&'a Map<String, Value>),
}

impl<'a> OriginalView<'a> {
    fn new(mode: OriginalMode, encoding: Encoding, original: &'a Original) -> Option<Self> {
        let payload = match &original.payload {
            OriginalPayload::Json(payload) => Payload::Json(payload),
            OriginalPayload::Fields(fields) => Payload::Fields(fields),
        };
        let (payload, raw) = match (mode, original.raw.as_deref()) {
            (OriginalMode::None, _) => return None,
            (OriginalMode::Exact, Some(raw)) => (None, Some(raw)),
            (OriginalMode::Full | OriginalMode::Exact, raw) => (Some(payload), raw),
        };
        Some(Self {
            encoding,
            exact: original.is_exact(),
            payload,
            raw,
            query: original.query.as_deref(),
            privacy: original.privacy,
        })
    }
}

impl<'a> Envelope<'a> {
    /// `encoding` and `original` are what [`Decoded`](super::Decoded) kept once its fields
    /// moved into normalisation.
    pub fn new(
        attributes: &'a EnvelopeAttributes,
        encoding: Encoding,
        original: &'a Original,
        normalised: &'a Normalised,
        received_at: OffsetDateTime,
    ) -> Self {
        let event_time = normalised.event_time.map(rfc3339);
        Self {
            specversion: "1.0",
            id: normalised.id.to_string(),
            source: &attributes.source,
            event_type: match normalised.kind {
                Kind::Event => "com.telecmi.call.event",
                Kind::Cdr => "com.telecmi.call.cdr",
            },
            subject: &normalised.conversation_id,
            time: event_time.clone(),
            datacontenttype: "application/json",
            dataschema: &attributes.dataschema,
            envelopeversion: ENVELOPE_VERSION,
            partitionkey: &normalised.conversation_id,
            telecmiproduct: attributes.product.as_str(),
            telecmistatus: normalised.status.as_deref(),
            origin: original.origin,
            mode: attributes.mode,
            data: Data {
                kind: normalised.kind,
                kind_inferred: normalised.kind_inferred,
                status: normalised.status.as_deref(),
                direction: normalised.direction.as_deref(),
                leg: normalised.leg.as_deref(),
                conversation_id: &normalised.conversation_id,
                conversation_id_source: normalised.conversation_source,
                call_leg_id: normalised.call_leg_id.as_deref(),
                app_id: normalised.app_id.as_deref(),
                event_time,
                received_at: rfc3339(received_at),
                fields: &normalised.fields,
                unconverted: &normalised.unconverted,
                warnings: &normalised.warnings,
                original: OriginalView::new(attributes.original, encoding, original),
            },
        }
    }

    pub fn to_bytes(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }

    /// The record value and headers: the whole event (structured), or `data` with the
    /// attributes as `ce_` headers (binary), as the CloudEvents Kafka binding lays them out.
    pub fn encode(&self) -> serde_json::Result<EncodedEvent> {
        if self.mode == EnvelopeMode::Structured {
            return Ok(EncodedEvent {
                value: self.to_bytes()?,
                content_type: CLOUDEVENTS_CONTENT_TYPE,
                attribute_headers: Vec::new(),
            });
        }
        let optional = [
            ("ce_time", self.time.clone()),
            ("ce_telecmistatus", self.telecmistatus.map(str::to_owned)),
            ("ce_origin", self.origin.map(str::to_owned)),
        ];
        let attribute_headers = [
            ("ce_specversion", self.specversion.to_owned()),
            ("ce_id", self.id.clone()),
            ("ce_source", self.source.to_owned()),
            ("ce_type", self.event_type.to_owned()),
            ("ce_subject", self.subject.to_owned()),
            ("ce_dataschema", self.dataschema.to_owned()),
            ("ce_envelopeversion", self.envelopeversion.to_owned()),
            ("ce_partitionkey", self.partitionkey.to_owned()),
            ("ce_telecmiproduct", self.telecmiproduct.to_owned()),
        ]
        .into_iter()
        .chain(
            optional
                .into_iter()
                .filter_map(|(name, value)| Some((name, value?))),
        )
        .collect();
        Ok(EncodedEvent {
            value: serde_json::to_vec(&self.data)?,
            content_type: self.datacontenttype,
            attribute_headers,
        })
    }
}

/// RFC 3339 in UTC with exactly three fraction digits, so that the text sorts as the time does.
const RFC3339_MILLIS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Milliseconds since the Unix epoch: the unit of a Kafka record's timestamp.
pub(crate) fn unix_millis(time: OffsetDateTime) -> i64 {
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Normalisation only produces instants between 1970 and 9999, which this format can always
/// write.
pub(crate) fn rfc3339(time: OffsetDateTime) -> String {
    time.to_offset(time::UtcOffset::UTC)
        .format(RFC3339_MILLIS)
        .unwrap_or_default()
}
