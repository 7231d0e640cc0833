//! The webhook endpoint: request -> decode -> normalise -> envelope -> route -> publish ->
//! response, answering 200 only once the publisher has the event safe.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{Method, header};
use bytes::Bytes;
use http_body_util::LengthLimitError;
use serde::Serialize;
use time::OffsetDateTime;

use super::auth::Auth;
use super::error::{ApiError, InternalError};
use super::rate_limit::RateLimit;
use super::signature::Signature;
use super::source::SourcePolicy;
use crate::domain::Product;
use crate::pipeline::{
    Correlation, DeadLetter, EnvelopeAttributes, OutboundRecord, Privacy, RawRequest, Router,
    decode, to_records,
};
use crate::publish::dedup::Dedup;
use crate::publish::{Publisher, Receipt};

/// What the webhook handler needs, shared by every request.
#[derive(Clone)]
pub struct IngestState {
    pub publisher: Arc<dyn Publisher>,
    pub dedup: Option<Arc<Dedup>>,
    pub router: Arc<Router>,
    pub auth: Arc<Auth>,
    /// The caller-address allow-list and the proxies trusted to report it.
    pub callers: Arc<SourcePolicy>,
    pub signature: Option<Arc<Signature>>,
    pub rate_limit: Option<Arc<RateLimit>>,
    pub privacy: Option<Arc<Privacy>>,
    pub attributes: Arc<EnvelopeAttributes>,
    /// The conversations of legs seen in this process, for leg-B CDRs that name none.
    pub correlation: Arc<Correlation>,
    pub body_limit: usize,
    /// The producer's `message.max.bytes`: a record that would exceed it gets 413 here rather
    /// than Kafka's refusal (500) later.
    pub max_record_bytes: usize,
    pub retry_after_seconds: u64,
}

/// An authenticated webhook request with its body read, within the size limit. Every way this
/// can fail is an [`ApiError`], so every rejection has the same JSON shape.
pub struct Webhook {
    /// The product line the path named; `None` leaves the configured `envelope.product`.
    product: Option<Product>,
    request_id: String,
    is_get: bool,
    content_type: Option<String>,
    content_encoding: Option<String>,
    query: Option<String>,
    body: Bytes,
}

impl Webhook {
    fn raw<'a>(&'a self, reserved_query_param: &'a str) -> RawRequest<'a> {
        RawRequest {
            is_get: self.is_get,
            content_type: self.content_type.as_deref(),
            content_encoding: self.content_encoding.as_deref(),
            query: self.query.as_deref(),
            body: &self.body,
            reserved_query_param: Some(reserved_query_param),
        }
    }
}

impl FromRequest<IngestState> for Webhook {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &IngestState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let path_segments = Path::<Vec<(String, String)>>::from_request_parts(&mut parts, state)
            .await
            .map(|Path(segments)| segments)
            .unwrap_or_default();
        let (product, path_token) = product_and_token(path_segments)?;
        let query = parts.uri.query().map(str::to_owned);
        let peer = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|ConnectInfo(peer)| *peer);
        let caller = peer.map(|peer| state.callers.client_ip(peer, &parts.headers));
        if !caller.map_or(state.callers.allows_unknown(), |caller| {
            state.callers.allows(caller)
        }) {
            metrics::counter!("telecmi_bridge_auth_failures_total", "reason" => "source")
                .increment(1);
            return Err(ApiError::ForbiddenSource);
        }
        if let (Some(limit), Some(caller)) = (&state.rate_limit, caller)
            && let Err(wait) = limit.check(caller)
        {
            metrics::counter!("telecmi_bridge_rate_limited_total").increment(1);
            return Err(ApiError::RateLimited {
                retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        if !state
            .auth
            .allows(path_token.as_deref(), query.as_deref(), &parts.headers)
        {
            metrics::counter!("telecmi_bridge_auth_failures_total", "reason" => "token")
                .increment(1);
            return Err(ApiError::Unauthorized);
        }
        let declared_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        let limit = state.body_limit;
        if declared_length.is_some_and(|length| length > limit) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let body = axum::body::to_bytes(body, limit).await.map_err(|error| {
            let too_large = error
                .into_inner()
                .downcast_ref::<LengthLimitError>()
                .is_some();
            if too_large {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BodyRead
            }
        })?;
        if let Some(signature) = &state.signature {
            let signed: &[u8] = if parts.method == Method::GET {
                query.as_deref().unwrap_or_default().as_bytes()
            } else {
                &body
            };
            if let Err(error) = signature.verify(&parts.headers, signed) {
                metrics::counter!("telecmi_bridge_auth_failures_total", "reason" => "signature")
                    .increment(1);
                tracing::debug!(?error, "signature check failed");
                return Err(ApiError::BadSignature);
            }
        }
        let header_text = |name| {
            parts
                .headers
                .get(name)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        };
        Ok(Self {
            product,
            request_id: header_text(super::REQUEST_ID).unwrap_or_default(),
            is_get: parts.method == Method::GET,
            content_type: header_text(header::CONTENT_TYPE),
            content_encoding: header_text(header::CONTENT_ENCODING),
            query,
            body,
        })
    }
}

/// The product line and the token a webhook path carries: `/{product}/{token}`, or one
/// segment that is a product name when it is one and the token otherwise.
fn product_and_token(
    mut segments: Vec<(String, String)>,
) -> Result<(Option<Product>, Option<String>), ApiError> {
    let token = segments.pop().map(|(_, value)| value);
    match (segments.pop(), token) {
        (Some((_, product)), token) => Product::from_path_segment(&product)
            .map(|product| (Some(product), token))
            .ok_or(ApiError::NotFound),
        (None, Some(segment)) => Ok(match Product::from_path_segment(&segment) {
            Some(product) => (Some(product), None),
            None => (None, Some(segment)),
        }),
        (None, None) => Ok((None, None)),
    }
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    /// `accepted`, or `duplicate` when the de-duplication window already had this event.
    status: &'static str,
    id: String,
    topic: String,
    /// Where the event is safe: `kafka` or `spool`; absent for a duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<&'static str>,
}

pub async fn ingest(
    State(state): State<IngestState>,
    webhook: Webhook,
) -> Result<Json<Accepted>, ApiError> {
    let received_at = OffsetDateTime::now_utc();
    let raw = webhook.raw(state.auth.query_param());
    let decoded = match decode(&raw) {
        Ok(decoded) => decoded,
        Err(reason) => {
            let letter = DeadLetter {
                reason: &reason,
                request: &raw,
                received_at,
                request_id: &webhook.request_id,
            };
            if let Some(mut record) = state.router.dead_letter(&letter) {
                if let Some(privacy) = &state.privacy {
                    privacy.scrub_dead_letter(&mut record);
                }
                state
                    .publisher
                    .publish(vec![record])
                    .await
                    .map_err(|error| ApiError::Publish {
                        error,
                        retry_after_seconds: state.retry_after_seconds,
                    })?;
                metrics::counter!("telecmi_bridge_dead_letters_total", "reason" => reason.code())
                    .increment(1);
            }
            return Err(reason.into());
        }
    };
    let product_attributes = webhook
        .product
        .map(|product| state.attributes.for_product(product));
    let (normalised, records) = to_records(
        decoded,
        state.privacy.as_deref(),
        product_attributes.as_ref().unwrap_or(&state.attributes),
        &state.router,
        Some(&state.correlation),
        received_at,
    )
    .map_err(InternalError::from)?;
    if !normalised.warnings.is_empty() {
        tracing::debug!(warnings = ?normalised.warnings, "payload normalised with warnings");
    }
    if records
        .iter()
        .any(|record| record_size(record) > state.max_record_bytes)
    {
        return Err(ApiError::EnvelopeTooLarge {
            limit: state.max_record_bytes,
        });
    }
    let topic = records
        .first()
        .map(|record| record.topic.to_string())
        .unwrap_or_default();
    if let Some(dedup) = &state.dedup
        && dedup.already_accepted(&normalised.id)
    {
        metrics::counter!("telecmi_bridge_duplicates_total").increment(1);
        tracing::info!(event_id = %normalised.id, "duplicate within the window; not published again");
        return Ok(Json(Accepted {
            status: "duplicate",
            id: normalised.id.to_string(),
            topic,
            stored: None,
        }));
    }
    let receipt = state
        .publisher
        .publish(records)
        .await
        .map_err(|error| ApiError::Publish {
            error,
            retry_after_seconds: state.retry_after_seconds,
        })?;
    if let Some(dedup) = &state.dedup {
        dedup.record_accepted(normalised.id);
    }
    // One line per event is at debug: at info it cost about a sixth of the bridge's CPU per
    // event (docs/performance.md); the record in Kafka and the metrics account for every event.
    let kind = normalised.kind.as_str();
    let status = normalised.status.as_deref().unwrap_or("-");
    let stored = match receipt {
        Receipt::Kafka {
            topic,
            partition,
            offset,
        } => {
            tracing::debug!(event_id = %normalised.id, kind, status, %topic, partition, offset, "event published");
            "kafka"
        }
        Receipt::Spool { sequence } => {
            tracing::debug!(event_id = %normalised.id, kind, status, sequence, "event spooled");
            "spool"
        }
    };
    Ok(Json(Accepted {
        status: "accepted",
        id: normalised.id.to_string(),
        topic,
        stored: Some(stored),
    }))
}

/// What a record weighs against `message.max.bytes`: its payload, key and headers, plus the
/// record batch's own framing, over-estimated.
fn record_size(record: &OutboundRecord) -> usize {
    const FRAMING: usize = 256;
    let headers: usize = record
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + 8)
        .sum();
    record.payload.len() + record.key.len() + headers + FRAMING
}
