//! Liveness, readiness and metrics endpoints.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::publish::spool::SpoolStatus;

/// Whether an event could be accepted safely right now, and if not, why. The Kafka probe,
/// the spool monitor and shutdown write it; `/readyz` reads it.
///
/// In `kafka` mode ready means Kafka answers. In `spool` mode it means the spool can take the
/// event: a Kafka outage shows in the body and in metrics, but does not take every instance out
/// of the load balancer exactly when the spool is there to carry the outage.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<RwLock<Checks>>);

#[derive(Debug, Clone, PartialEq)]
struct Checks {
    kafka: Result<(), NotReady>,
    spool: Option<SpoolStatus>,
    shutting_down: bool,
}

/// Why the bridge is not ready; its text is the `reason` of the admin `/readyz`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotReady {
    /// No Kafka probe has answered yet.
    #[error("starting")]
    Starting,
    #[error("{0}")]
    KafkaUnreachable(String),
    #[error("{0}")]
    SpoolRefuses(String),
    #[error("shutting down")]
    ShuttingDown,
}

impl Checks {
    fn verdict(&self) -> Result<(), NotReady> {
        if self.shutting_down {
            return Err(NotReady::ShuttingDown);
        }
        match &self.spool {
            Some(spool) => spool
                .refusal()
                .map_or(Ok(()), |refusal| Err(NotReady::SpoolRefuses(refusal))),
            None => self.kafka.clone(),
        }
    }
}

impl Readiness {
    /// Not ready until the first Kafka probe (and, in spool mode, the first spool reading).
    pub fn new(spool: Option<SpoolStatus>) -> Self {
        Self(Arc::new(RwLock::new(Checks {
            kafka: Err(NotReady::Starting),
            spool,
            shutting_down: false,
        })))
    }

    pub fn set_kafka(&self, kafka: Result<(), String>) {
        let kafka = kafka.map_err(NotReady::KafkaUnreachable);
        self.update(|checks| {
            if checks.kafka != kafka {
                match &kafka {
                    Ok(()) => tracing::info!("Kafka reachable"),
                    Err(reason) => tracing::warn!(%reason, "Kafka not reachable"),
                }
                metrics::gauge!("telecmi_bridge_kafka_reachable").set(if kafka.is_ok() {
                    1.0
                } else {
                    0.0
                });
            }
            checks.kafka = kafka;
        });
    }

    pub fn set_spool(&self, spool: SpoolStatus) {
        self.update(|checks| checks.spool = Some(spool));
    }

    pub fn set_shutting_down(&self) {
        self.update(|checks| checks.shutting_down = true);
    }

    pub fn get(&self) -> Result<(), NotReady> {
        self.read().verdict()
    }

    fn read(&self) -> Checks {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut Checks)) {
        let mut checks = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = checks.verdict();
        change(&mut checks);
        let after = checks.verdict();
        if before != after {
            match &after {
                Ok(()) => tracing::info!("ready"),
                Err(reason) => tracing::warn!(%reason, "not ready"),
            }
            metrics::gauge!("telecmi_bridge_ready").set(if after.is_ok() { 1.0 } else { 0.0 });
        }
    }
}

pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// The public listener's readiness: the verdict only; details stay on the admin listener.
pub async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    match readiness.get() {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready"})),
        ),
    }
}

/// The admin listener's readiness: the verdict, why, and the state of Kafka and the spool.
pub async fn readyz_detailed(State(readiness): State<Readiness>) -> impl IntoResponse {
    let checks = readiness.read();
    let kafka = match &checks.kafka {
        Ok(()) => json!({"status": "ok"}),
        Err(reason) => json!({"status": "unavailable", "reason": reason.to_string()}),
    };
    let mut body = json!({"status": "ready", "kafka": kafka});
    if let Some(spool) = &checks.spool {
        body["spool"] = json!(spool);
    }
    match checks.verdict() {
        Ok(()) => (StatusCode::OK, Json(body)),
        Err(reason) => {
            body["status"] = json!("not_ready");
            body["reason"] = json!(reason.to_string());
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_why_it_is_not_ready() {
        let readiness = Readiness::new(None);
        assert_eq!(readiness.get(), Err(NotReady::Starting));
        readiness.set_kafka(Err("no broker answers".to_owned()));
        let not_ready = readiness.get().expect_err("Kafka unreachable");
        assert_eq!(not_ready.to_string(), "no broker answers");
        readiness.set_kafka(Ok(()));
        assert_eq!(readiness.get(), Ok(()));
        readiness.set_shutting_down();
        assert_eq!(readiness.get(), Err(NotReady::ShuttingDown));
        assert_eq!(NotReady::ShuttingDown.to_string(), "shutting down");
    }
}
