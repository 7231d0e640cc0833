//! One error type for the HTTP edge and its one mapping to responses: a stable `code`, a human
//! message, never an internal detail. The mapping is pure: the error rides along in the
//! response's extensions, and the middleware that counts answers logs it
//! (`answers::count_requests`).

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::pipeline::RejectReason;
use crate::publish::PublishError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Rejected(#[from] RejectReason),
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the event's record would be larger than Kafka accepts ({limit} bytes)")]
    EnvelopeTooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyRead,
    #[error("only GET and POST are accepted here")]
    MethodNotAllowed,
    #[error("no such endpoint")]
    NotFound,
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("missing or invalid request signature")]
    BadSignature,
    #[error("requests from this address are not accepted")]
    ForbiddenSource,
    #[error("the event could not be stored safely; retry later")]
    Publish {
        error: PublishError,
        retry_after_seconds: u64,
    },
    #[error("too many requests from this address; retry later")]
    RateLimited { retry_after_seconds: u64 },
    #[error("too many requests in progress; retry later")]
    Overloaded { retry_after_seconds: u64 },
    #[error("the request was not completed in time")]
    RequestTimeout,
    #[error("internal error")]
    Internal(#[from] InternalError),
}

/// A fault of the bridge itself; logged, never shown to the client.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error("envelope serialisation: {0}")]
    Serialisation(#[from] serde_json::Error),
    #[error("a request handler panicked: {0}")]
    Panic(String),
}

/// Set on every error response: what the answer's middleware counts and logs.
#[derive(Debug, Clone)]
pub struct Refused(pub Arc<ApiError>);

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected(reason) => reason.code(),
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::EnvelopeTooLarge { .. } => "envelope_too_large",
            Self::BodyRead => "body_read_failed",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::BadSignature => "bad_signature",
            Self::ForbiddenSource => "forbidden_source",
            Self::Publish { error, .. } => match error {
                PublishError::Timeout => "kafka_timeout",
                PublishError::QueueFull => "overloaded",
                PublishError::TopicMissing(_) => "topic_missing",
                PublishError::Unavailable(_) => "kafka_unavailable",
                PublishError::Rejected(_) => "publish_rejected",
                PublishError::Unconfirmed(_) => "kafka_unconfirmed",
                PublishError::ShuttingDown => "shutting_down",
                PublishError::SpoolFull => "spool_full",
                PublishError::SpoolUnavailable(_) => "spool_unavailable",
            },
            Self::Overloaded { .. } => "overloaded",
            Self::RateLimited { .. } => "rate_limited",
            Self::RequestTimeout => "request_timeout",
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Rejected(
                RejectReason::UnsupportedContentType
                | RejectReason::UnsupportedCharset
                | RejectReason::UnsupportedContentEncoding,
            ) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Rejected(_) | Self::BodyRead => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } | Self::EnvelopeTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unauthorized | Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::ForbiddenSource => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Publish {
                error: PublishError::Rejected(_),
                ..
            }
            | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Publish { .. } | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let body = Json(json!({"error": {"code": code, "message": self.to_string()}}));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Publish {
                retry_after_seconds,
                ..
            }
            | Self::Overloaded {
                retry_after_seconds,
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            Self::RateLimited {
                retry_after_seconds,
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
            }
            Self::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            }
            _ => {}
        }
        response.extensions_mut().insert(Refused(Arc::new(self)));
        response
    }
}
