//! Liveness, readiness and metrics endpoints.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

/// Whether an event could be accepted safely right now, and if not, why. Written by the
/// readiness probe and by shutdown; read by `/readyz`.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<RwLock<Result<(), String>>>);

impl Readiness {
    pub fn new(initial_reason: &str) -> Self {
        Self(Arc::new(RwLock::new(Err(initial_reason.to_owned()))))
    }

    pub fn set(&self, state: Result<(), String>) {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *guard != state {
            match &state {
                Ok(()) => tracing::info!("ready"),
                Err(reason) => tracing::warn!(reason, "not ready"),
            }
            metrics::gauge!("telecmi_bridge_ready").set(if state.is_ok() { 1.0 } else { 0.0 });
        }
        *guard = state;
    }

    pub fn get(&self) -> Result<(), String> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    match readiness.get() {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason})),
        ),
    }
}

pub async fn metrics(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
