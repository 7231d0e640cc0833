//! Every metric the bridge exports, in one table: name, type, help text, and the label values
//! created at zero when the bridge starts, so that `/metrics` describes each metric (`# HELP`)
//! and a counter that has not moved yet reads 0 instead of being absent. A metric emitted
//! anywhere must be listed here (a test reads the sources to keep it so); the Grafana
//! dashboard and the alert rules under `deploy/` name only metrics listed here.

use std::sync::OnceLock;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::{DeliveryMode, Settings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Label sets created at zero at start (counters only); `&[&[]]` for an unlabelled one.
    pub initial: &'static [&'static [(&'static str, &'static str)]],
    /// Present only in spool mode.
    pub spool_only: bool,
}

const fn counter(
    name: &'static str,
    help: &'static str,
    initial: &'static [&'static [(&'static str, &'static str)]],
) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        help,
        initial,
        spool_only: false,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        help,
        initial: &[],
        spool_only: false,
    }
}

const fn histogram(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Histogram,
        help,
        initial: &[],
        spool_only: false,
    }
}

const fn spool(metric: Metric) -> Metric {
    Metric {
        spool_only: true,
        ..metric
    }
}

const UNLABELLED: &[&[(&str, &str)]] = &[&[]];

/// The request-counter series that dashboards and the 5xx-ratio alert divide by.
const WEBHOOK_OK: &[&[(&str, &str)]] = &[&[
    ("route", crate::http::WEBHOOK_PATH),
    ("outcome", "ok"),
    ("status", "200"),
]];

pub const CATALOGUE: &[Metric] = &[
    counter(
        "telecmi_bridge_http_requests_total",
        "Answers on the webhook listener, by route template, outcome (ok or the error code) and status.",
        WEBHOOK_OK,
    ),
    histogram(
        "telecmi_bridge_http_request_duration_seconds",
        "Time from a request's head to its answer on the webhook listener, by route template.",
    ),
    counter(
        "telecmi_bridge_events_published_total",
        "Events Kafka acknowledged in kafka mode, by topic.",
        &[],
    ),
    histogram(
        "telecmi_bridge_publish_duration_seconds",
        "Time from handing an event to the producer to Kafka's acknowledgement (kafka mode).",
    ),
    counter(
        "telecmi_bridge_kafka_errors_total",
        "Kafka client and delivery errors, by kind.",
        &[
            &[("kind", "client")],
            &[("kind", "timeout")],
            &[("kind", "queue_full")],
            &[("kind", "topic_missing")],
            &[("kind", "unavailable")],
            &[("kind", "rejected")],
            &[("kind", "unconfirmed")],
        ],
    ),
    counter(
        "telecmi_bridge_auth_failures_total",
        "Webhook requests refused for their credentials, by reason (token, source, signature).",
        &[
            &[("reason", "token")],
            &[("reason", "source")],
            &[("reason", "signature")],
        ],
    ),
    counter(
        "telecmi_bridge_dead_letters_total",
        "Requests whose body could not become an envelope, kept on the dead-letter topic, by reason.",
        &[
            &[("reason", "empty_payload")],
            &[("reason", "malformed_json")],
            &[("reason", "json_not_object")],
            &[("reason", "invalid_utf8")],
        ],
    ),
    counter(
        "telecmi_bridge_duplicates_total",
        "Re-sent events answered as duplicates within the de-duplication window.",
        UNLABELLED,
    ),
    counter(
        "telecmi_bridge_rate_limited_total",
        "Webhook requests refused by the per-caller rate limit.",
        UNLABELLED,
    ),
    counter(
        "telecmi_bridge_tls_handshake_failures_total",
        "TLS handshakes on the webhook listener that failed or timed out.",
        UNLABELLED,
    ),
    gauge(
        "telecmi_bridge_connections_open",
        "Open connections, by listener (public, admin).",
    ),
    counter(
        "telecmi_bridge_connections_refused_total",
        "Connections closed as soon as accepted, by listener and the cap reached (max_connections, max_connections_per_address).",
        &[
            &[("listener", "public"), ("reason", "max_connections")],
            &[
                ("listener", "public"),
                ("reason", "max_connections_per_address"),
            ],
        ],
    ),
    counter(
        "telecmi_bridge_connections_closed_total",
        "Connections the bridge closed without an answer, by listener and reason (header_read_timeout: headers not sent in time, or idle keep-alive).",
        &[&[("listener", "public"), ("reason", "header_read_timeout")]],
    ),
    gauge(
        "telecmi_bridge_ready",
        "1 when /readyz answers 200 (an event can be taken safely now), else 0.",
    ),
    gauge(
        "telecmi_bridge_kafka_reachable",
        "1 when Kafka answered the last metadata request and every topic exists, else 0.",
    ),
    spool(gauge(
        "telecmi_bridge_spool_events",
        "Events in the spool, not yet acknowledged by Kafka.",
    )),
    spool(gauge(
        "telecmi_bridge_spool_bytes",
        "Bytes of the records in the spool.",
    )),
    spool(gauge(
        "telecmi_bridge_spool_max_events",
        "spool.max_events: events the spool may hold before webhooks get 503.",
    )),
    spool(gauge(
        "telecmi_bridge_spool_max_bytes",
        "spool.max_bytes: record bytes the spool may hold before webhooks get 503.",
    )),
    spool(gauge(
        "telecmi_bridge_spool_oldest_age_seconds",
        "Age of the oldest event in the spool; 0 when empty.",
    )),
    spool(counter(
        "telecmi_bridge_spool_forwarded_total",
        "Spooled records Kafka acknowledged.",
        UNLABELLED,
    )),
    spool(counter(
        "telecmi_bridge_spool_refused_total",
        "Events the spool refused, by reason (full, write_error).",
        &[&[("reason", "full")], &[("reason", "write_error")]],
    )),
    spool(gauge(
        "telecmi_bridge_spool_kafka_refused_events",
        "Spooled events Kafka refused for good, being tried again; later events of their keys wait.",
    )),
    spool(gauge(
        "telecmi_bridge_spool_quarantined_events",
        "Events in the spool file's quarantine: refused by Kafka for good, kept, not forwarded.",
    )),
    spool(counter(
        "telecmi_bridge_spool_quarantined_total",
        "Events moved to the spool's quarantine after Kafka refused them for good.",
        UNLABELLED,
    )),
    spool(histogram(
        "telecmi_bridge_spool_commit_seconds",
        "Time to commit (fsync) one group of spooled events.",
    )),
    spool(histogram(
        "telecmi_bridge_spool_commit_group_size",
        "Events committed together in one spool transaction.",
    )),
    gauge(
        "telecmi_bridge_reconcile_telecmi_calls",
        "Calls TeleCMI counted in the last reconciliation run's window, by endpoint.",
    ),
    gauge(
        "telecmi_bridge_reconcile_found_calls",
        "Calls of the last reconciliation run found in Kafka, by endpoint.",
    ),
    gauge(
        "telecmi_bridge_reconcile_missing_calls",
        "Calls of the last reconciliation run with no CDR in Kafka, by endpoint.",
    ),
    gauge(
        "telecmi_bridge_reconcile_ambiguous_calls",
        "Calls of the last reconciliation run matching several CDRs, reported and not published, by endpoint.",
    ),
    gauge(
        "telecmi_bridge_reconcile_published_calls",
        "Missing CDRs the last reconciliation run published, by endpoint.",
    ),
    counter(
        "telecmi_bridge_reconcile_api_errors_total",
        "Failed TeleCMI API requests of reconciliation runs, retried ones included, by cause.",
        &[
            &[("cause", "bad_credentials")],
            &[("cause", "bad_request")],
            &[("cause", "unexpected_status")],
            &[("cause", "server_error")],
            &[("cause", "rate_limited")],
            &[("cause", "timeout")],
            &[("cause", "connection")],
            &[("cause", "malformed")],
            &[("cause", "window_changed")],
            &[("cause", "too_many_pages")],
        ],
    ),
    counter(
        "telecmi_bridge_reconcile_runs_total",
        "Reconciliation runs, by result (complete, incomplete).",
        &[&[("result", "complete")], &[("result", "incomplete")]],
    ),
    gauge(
        "telecmi_bridge_reconcile_last_run_complete",
        "1 when the last reconciliation run listed, matched and published everything, else 0 (0 before any run).",
    ),
    gauge(
        "telecmi_bridge_reconcile_last_run_timestamp_seconds",
        "When the last reconciliation run ended, whatever its result; 0 before any run.",
    ),
    gauge(
        "telecmi_bridge_reconcile_last_success_timestamp_seconds",
        "When the last complete reconciliation run ended; 0 before any.",
    ),
    gauge(
        "telecmi_bridge_reconcile_last_run_duration_seconds",
        "How long the last reconciliation run took.",
    ),
];

const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed once; every `Application` in a process
/// shares it.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours stays empty.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    for metric in CATALOGUE {
        let unit = metric.name.ends_with("_seconds").then_some(Unit::Seconds);
        match (metric.kind, unit) {
            (Kind::Counter, _) => metrics::describe_counter!(metric.name, metric.help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(metric.name, unit, metric.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(metric.name, metric.help),
            (Kind::Histogram, Some(unit)) => {
                metrics::describe_histogram!(metric.name, unit, metric.help)
            }
            (Kind::Histogram, None) => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

/// Creates every counter series known at start at 0 (adding 0 to one that already moved), the
/// per-topic publish counters among them, and sets the spool's limits.
pub fn register_at_start(settings: &Settings) {
    let spool_mode = settings.delivery.mode == DeliveryMode::Spool;
    for metric in CATALOGUE {
        if metric.kind != Kind::Counter || (metric.spool_only && !spool_mode) {
            continue;
        }
        create_at_zero(metric);
    }
    for topic in settings.routing.all_topics() {
        metrics::counter!("telecmi_bridge_events_published_total", "topic" => topic.to_string())
            .increment(0);
    }
    crate::reconcile::metrics::register_at_start();
    if spool_mode {
        metrics::gauge!("telecmi_bridge_spool_max_events")
            .set(settings.spool.max_events.get() as f64);
        metrics::gauge!("telecmi_bridge_spool_max_bytes")
            .set(settings.spool.max_bytes.get() as f64);
    }
}

/// Creates a counter's `initial` series at 0 (adding 0 to one that already moved).
pub fn create_at_zero(metric: &Metric) {
    for labels in metric.initial {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(key, value)| metrics::Label::new(*key, *value))
            .collect();
        metrics::counter!(metric.name, labels).increment(0);
    }
}
