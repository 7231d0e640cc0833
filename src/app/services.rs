//! What the listeners serve, put together from settings: the ingest state over the delivery
//! mode's publisher, the two routers and each listener's connection limits. Pure wiring: no
//! task starts here.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Settings;
use crate::http::rate_limit::RateLimit;
use crate::http::server::ConnectionLimits;
use crate::http::signature::Signature;
use crate::http::source::SourcePolicy;
use crate::http::{self, IngestState, Readiness, auth::Auth};
use crate::pipeline::{Correlation, EnvelopeAttributes, Privacy, Router};
use crate::publish::Publisher;
use crate::publish::dedup::Dedup;

/// Open connections on the admin listener, from any addresses: probes and scrapes need a few,
/// and caps tuned for the webhook listener (per address behind a proxy, or small in tests)
/// must not lock them out.
const ADMIN_MAX_CONNECTIONS: usize = 64;

pub(super) struct Services {
    pub public: axum::Router,
    pub public_limits: ConnectionLimits,
    pub admin: axum::Router,
    pub admin_limits: ConnectionLimits,
    /// Shared with the upkeep that forgets idle callers.
    pub rate_limit: Option<Arc<RateLimit>>,
}

pub(super) fn wire(
    settings: &Settings,
    publisher: Arc<dyn Publisher>,
    readiness: &Readiness,
    metrics: &PrometheusHandle,
) -> Services {
    let rate_limit = RateLimit::new(
        settings.server.rate_limit_per_second,
        settings.server.rate_limit_burst,
    )
    .map(Arc::new);
    let state = IngestState {
        publisher,
        dedup: settings
            .dedup
            .enabled
            .then(|| Arc::new(Dedup::new(&settings.dedup))),
        router: Arc::new(Router::new(&settings.routing)),
        auth: Arc::new(Auth::new(&settings.auth)),
        callers: Arc::new(SourcePolicy::new(
            &settings.auth.allowed_networks,
            &settings.auth.trusted_proxies,
            settings.auth.forwarded_header,
        )),
        signature: Signature::new(&settings.auth).map(Arc::new),
        rate_limit: rate_limit.clone(),
        privacy: Privacy::new(&settings.privacy).map(Arc::new),
        attributes: Arc::new(EnvelopeAttributes::new(&settings.envelope)),
        correlation: Arc::new(Correlation::new(
            settings.routing.correlation_max_entries,
            settings.routing.correlation_ttl_seconds,
        )),
        body_limit: settings.server.body_limit_bytes,
        max_record_bytes: settings.kafka.properties.message_max_bytes(),
        retry_after_seconds: settings.delivery.retry_after_seconds.as_secs(),
    };
    let limits = http::RequestLimits {
        timeout: settings.server.request_timeout_ms,
        max_in_flight: settings.server.max_in_flight_requests.get(),
        retry_after_seconds: settings.delivery.retry_after_seconds.as_secs(),
    };
    let public_limits = ConnectionLimits {
        header_read_timeout: settings.server.header_read_timeout_ms,
        max_header_bytes: settings.server.max_header_bytes,
        max_connections: settings.server.max_connections.get(),
        max_connections_per_address: settings.server.max_connections_per_address.get(),
    };
    Services {
        public: http::router(state, readiness.clone(), limits),
        public_limits,
        admin: http::admin_router(readiness.clone(), metrics.clone()),
        admin_limits: ConnectionLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            max_connections_per_address: ADMIN_MAX_CONNECTIONS,
            ..public_limits
        },
        rate_limit,
    }
}
