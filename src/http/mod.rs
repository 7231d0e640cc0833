//! The HTTP edge: the public router (webhooks, health) and the admin router (health, metrics).

pub mod auth;
pub mod error;
pub mod health;
pub mod ingest;
pub mod rate_limit;
pub mod server;
pub mod signature;
pub mod source;
pub mod tls;

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{BoxError, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use health::Readiness;
pub use ingest::IngestState;

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const WEBHOOK_PATH: &str = "/webhooks/telecmi";

/// Limits applied to every request on the public listener.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Whole-request deadline (408).
    pub timeout: Duration,
    /// Requests being handled at once; beyond it, 503 `overloaded` at once, not a queue.
    pub max_in_flight: usize,
    /// `Retry-After` of that 503.
    pub retry_after_seconds: u32,
}

/// The listener TeleCMI calls: the webhook (token optionally as the last path segment) and
/// health checks. Metrics stay on the admin listener.
pub fn router(state: IngestState, readiness: Readiness, limits: RequestLimits) -> Router {
    let webhook = get(ingest::ingest)
        .post(ingest::ingest)
        .fallback(|| async { ApiError::MethodNotAllowed });
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(readiness);
    Router::new()
        .route(WEBHOOK_PATH, webhook.clone())
        .route(&format!("{WEBHOOK_PATH}/{{token}}"), webhook)
        .with_state(state)
        .merge(health)
        .fallback(|| async { ApiError::NotFound })
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |_: BoxError| async move {
                    ApiError::Overloaded {
                        retry_after_seconds: limits.retry_after_seconds,
                    }
                }))
                .load_shed()
                .concurrency_limit(limits.max_in_flight),
        )
        .layer(middleware::from_fn(count_requests))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.timeout,
        ))
        // Outermost last: request ids are set before the span opens, and a panic anywhere
        // inside still becomes a 500 instead of a dropped connection.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(CatchPanicLayer::new())
}

/// Loopback by default: health and Prometheus metrics for operators.
pub fn admin_router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz_detailed))
        .with_state(readiness)
        .route("/metrics", get(health::metrics).with_state(metrics))
        .fallback(|| async { ApiError::NotFound })
}

/// One span per request, naming the route template, never the raw path or query, which may
/// carry the token.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %request.method(), route, request_id)
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let outcome = response
        .extensions()
        .get::<error::ErrorCode>()
        .map_or("ok", |code| code.0);
    metrics::counter!(
        "telecmi_bridge_http_requests_total",
        "route" => route,
        "outcome" => outcome,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}
