//! Every answer of the public listener counted, and every refusal logged once, here and not
//! where the refusal is made: `ApiError`'s response carries the error in its extensions.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use super::REQUEST_ID;
use super::error::{ApiError, Refused};
use crate::telemetry::repeats::{Repeats, Verdict};

/// The span of a request's log lines, naming the route template, never the raw path or query,
/// which may carry the token.
pub(super) fn request_span(method: &Method, route: &str, headers: &HeaderMap) -> tracing::Span {
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", %method, route, request_id)
}

pub(super) async fn count_requests(request: Request, next: Next) -> Response {
    let route = super::route_of(&request).to_owned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!("telecmi_bridge_http_request_duration_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    let outcome = log_refusal(&method, &route, &response).unwrap_or("ok");
    metrics::counter!(
        "telecmi_bridge_http_requests_total",
        "route" => route,
        "outcome" => outcome,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

/// The admin listener's refusals, logged like the public one's (they are not counted).
pub(super) async fn log_refusals(request: Request, next: Next) -> Response {
    let route = super::route_of(&request).to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    log_refusal(&method, &route, &response);
    response
}

/// Logs the refusal an answer carries, if any, and returns its code. The request's own span
/// has closed by now, so the line opens one like it; the answer carries the request id.
fn log_refusal(method: &Method, route: &str, response: &Response) -> Option<&'static str> {
    let Refused(error) = response.extensions().get::<Refused>()?;
    request_span(method, route, response.headers()).in_scope(|| log_error(error));
    Some(error.code())
}

/// A client's mistake at INFO; the bridge's own trouble at WARN or ERROR, through the repeat
/// limiter.
fn log_error(error: &ApiError) {
    let code = error.code();
    match error {
        ApiError::Publish { error, .. } => {
            if let Verdict::Log { held_back } = admit(&format!("{code}: {error}")) {
                tracing::warn!(code, %error, held_back, "event not confirmed");
            }
        }
        ApiError::Internal(detail) => {
            if let Verdict::Log { held_back } = admit(&detail.to_string()) {
                tracing::error!(code, %detail, held_back, "internal error");
            }
        }
        other => tracing::info!(code, reason = %other, "request refused"),
    }
}

/// During an outage every webhook meets the same cause: it is logged once, then once per
/// interval with the count of answers held back (the request counter has them all).
fn admit(cause: &str) -> Verdict {
    static REPEATS: OnceLock<Mutex<Repeats>> = OnceLock::new();
    REPEATS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .admit(cause, Instant::now())
}
