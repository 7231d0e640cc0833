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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::body::Body;
    use axum::response::IntoResponse;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tower::ServiceExt;

    use super::super::tests::state;
    use super::super::{Readiness, RequestLimits, admin_router, error};
    use super::*;

    /// The log lines written while `run` runs on this thread.
    fn logged(run: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        let bytes = captured.0.lock().expect("log").clone();
        String::from_utf8(bytes)
            .expect("UTF-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The log lines of one request to `app`, which must answer 404.
    fn logged_not_found(app: axum::Router, request: Request) -> Vec<String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        logged(|| {
            let response = runtime.block_on(app.oneshot(request)).expect("an answer");
            assert_eq!(response.status(), 404);
        })
    }

    #[test]
    fn a_refusal_is_logged_once_by_the_middleware_in_its_requests_span() {
        let answered = logged(|| {
            let response = ApiError::Unauthorized.into_response();
            assert!(response.extensions().get::<error::Refused>().is_some());
        });
        assert_eq!(answered, Vec::<String>::new(), "into_response must not log");

        let limits = RequestLimits {
            timeout: Duration::from_secs(5),
            max_in_flight: 8,
            retry_after_seconds: 1,
        };
        let app = super::super::router(state(), Readiness::new(None), limits);
        let request = Request::get("/nowhere")
            .header("x-request-id", "refusal-logged-once")
            .body(Body::empty())
            .expect("request");
        let lines = logged_not_found(app, request);
        let refusals: Vec<&String> = lines
            .iter()
            .filter(|line| line.contains("request refused"))
            .collect();
        assert_eq!(refusals.len(), 1, "{lines:#?}");
        assert!(refusals[0].contains("code=\"not_found\""), "{lines:#?}");
        assert!(
            refusals[0].contains("request_id=\"refusal-logged-once\""),
            "{lines:#?}"
        );
    }

    #[test]
    fn the_admin_listener_logs_its_refusals_too() {
        let metrics = PrometheusBuilder::new().build_recorder().handle();
        let app = admin_router(Readiness::new(None), metrics);
        let request = Request::get("/nowhere")
            .body(Body::empty())
            .expect("request");
        let lines = logged_not_found(app, request);
        let refusals = lines
            .iter()
            .filter(|line| line.contains("request refused") && line.contains("not_found"))
            .count();
        assert_eq!(refusals, 1, "{lines:#?}");
    }
}
