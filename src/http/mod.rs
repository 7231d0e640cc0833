//! The HTTP edge: the public router (webhooks, health) and the admin router (health, metrics).

mod answers;
pub mod auth;
pub mod error;
pub mod health;
pub mod ingest;
pub mod rate_limit;
pub mod schemas;
pub mod server;
pub mod signature;
pub mod source;
pub mod tls;

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Router};
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
use error::InternalError;
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
    pub retry_after_seconds: u64,
}

/// The listener TeleCMI calls: the webhook (optionally a product line, then optionally the
/// token, as path segments) and health checks. Metrics stay on the admin listener.
pub fn router(state: IngestState, readiness: Readiness, limits: RequestLimits) -> Router {
    let webhook = get(ingest::ingest)
        .post(ingest::ingest)
        // axum would hand a HEAD to the GET handler, which takes it for an empty POST.
        .head(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::MethodNotAllowed });
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(readiness);
    Router::new()
        .route(WEBHOOK_PATH, webhook.clone())
        .route(&format!("{WEBHOOK_PATH}/{{token}}"), webhook.clone())
        .route(&format!("{WEBHOOK_PATH}/{{product}}/{{token}}"), webhook)
        .with_state(state)
        .merge(health)
        .fallback(|| async { ApiError::NotFound })
        // Listed from the inside out. `Router::layer` gives every route its own copy of each
        // layer, so the in-flight permits are a global semaphore: one limit for the listener.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |_: BoxError| async move {
                    ApiError::Overloaded {
                        retry_after_seconds: limits.retry_after_seconds,
                    }
                }))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight)),
        )
        .layer(middleware::from_fn_with_state(limits.timeout, time_limit))
        .layer(CatchPanicLayer::custom(answer_panic))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // Not tower-http's default failure hook: it logs every 5xx at ERROR, one line per
        // request through a whole outage; `count_requests` logs the cause, once.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(keep_only_plain_request_id))
        .layer(middleware::from_fn(close_unless_body_read))
        // Outermost, so that every answer of the service is counted and logged: 408s, panics,
        // 503s.
        .layer(middleware::from_fn(answers::count_requests))
}

/// Loopback by default: health and Prometheus metrics for operators, and the envelope's
/// schemas for consumers.
pub fn admin_router(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/schemas/{file}", get(schemas::schema))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz_detailed))
        .with_state(readiness)
        .route("/metrics", get(health::metrics).with_state(metrics))
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(answers::log_refusals))
}

/// One span per request; the line that logs its refusal opens the same.
fn request_span(request: &Request) -> tracing::Span {
    answers::request_span(request.method(), route_of(request), request.headers())
}

/// The route template a request matched.
fn route_of(request: &Request) -> &str {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// The longest client `x-request-id` kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A client's request id goes into every log line of its request and back into the answer,
/// so only a short, plain one is kept; `SetRequestIdLayer` generates one in place of any other.
async fn keep_only_plain_request_id(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let mut ids = headers.get_all(REQUEST_ID).iter();
    let plain = match (ids.next(), ids.next()) {
        (Some(id), None) => is_plain_request_id(id.as_bytes()),
        (None, None) => true,
        _ => false,
    };
    if !plain {
        headers.remove(REQUEST_ID);
    }
    request
}

fn is_plain_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || b"._:-".contains(byte))
}

/// The whole-request deadline, answered in the JSON error shape.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    tokio::time::timeout(limit, next.run(request))
        .await
        .unwrap_or_else(|_elapsed| ApiError::RequestTimeout.into_response())
}

/// A bug answered like any other internal error: logged with the panic's message, which the
/// client never sees.
fn answer_panic(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    ApiError::from(InternalError::Panic(message)).into_response()
}

/// hyper closes a connection whose request body was not read to its end (a refusal decided by
/// the headers, a timeout). Saying so lets a client that reuses connections open a new one
/// instead of writing its next request into a closed socket.
async fn close_unless_body_read(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let read_to_end = Arc::new(AtomicBool::new(false));
    let body_read = Arc::clone(&read_to_end);
    let request = request.map(|body| {
        Body::new(ReadToEnd {
            body,
            read_to_end: body_read,
        })
    });
    let mut response = next.run(request).await;
    if !read_to_end.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records whether it was read to its end.
struct ReadToEnd {
    body: Body,
    read_to_end: Arc<AtomicBool>,
}

impl HttpBody for ReadToEnd {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(context);
        if matches!(frame, Poll::Ready(None)) {
            self.read_to_end.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::config::{AuthSettings, ForwardedHeader, RoutingSettings};
    use crate::http::auth::Auth;
    use crate::http::source::SourcePolicy;
    use crate::pipeline::{Correlation, OutboundRecord, Router as EventRouter};
    use crate::publish::{PublishFuture, Publisher};

    /// A bug in the publishing path.
    struct Panicking;

    impl Publisher for Panicking {
        fn publish(&self, _records: Vec<OutboundRecord>) -> PublishFuture {
            panic!("a publisher bug")
        }
    }

    pub(super) fn state() -> IngestState {
        IngestState {
            publisher: Arc::new(Panicking),
            dedup: None,
            router: Arc::new(EventRouter::new(&RoutingSettings::default())),
            auth: Arc::new(Auth::new(&AuthSettings::default())),
            callers: Arc::new(SourcePolicy::new(&[], &[], ForwardedHeader::default())),
            signature: None,
            rate_limit: None,
            privacy: None,
            attributes: Arc::default(),
            correlation: Arc::new(Correlation::new(1, Duration::from_secs(1))),
            body_limit: 65_536,
            max_record_bytes: 1_000_000,
            retry_after_seconds: 1,
        }
    }

    #[test]
    fn a_panic_is_answered_500_in_the_json_shape_and_counted() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let limits = RequestLimits {
            timeout: Duration::from_secs(5),
            max_in_flight: 8,
            retry_after_seconds: 1,
        };
        let app = router(state(), Readiness::new(None), limits);
        let request = Request::post(WEBHOOK_PATH)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"type":"event","status":"answered","cmiuuid":"p"}"#,
            ))
            .expect("request");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (status, body) = metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let response = app.oneshot(request).await.expect("an answer");
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 4_096)
                    .await
                    .expect("body");
                (status, body)
            })
        });
        assert_eq!(status, 500);
        let body: Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(
            metrics.render().contains(
                r#"telecmi_bridge_http_requests_total{route="/webhooks/telecmi",outcome="internal_error",status="500"} 1"#
            ),
            "{}",
            metrics.render()
        );
    }
}
