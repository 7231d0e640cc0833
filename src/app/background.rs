//! The loops a running application keeps besides serving: the Kafka readiness probe, the spool
//! monitor and periodic upkeep. Each runs until shutdown begins; blocking calls go through
//! the supervisor's tracker so that shutdown waits for them too.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::domain::TopicName;
use crate::http::Readiness;
use crate::publish::kafka::{KafkaClient, TopicError, ensure_topics};
use crate::publish::spool::SpoolMonitor;

/// How often the spool's depth, size and oldest age are read into readiness and metrics.
const SPOOL_MONITOR_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the spool's state into readiness and metrics until `stop`.
pub(super) async fn monitor_spool(
    monitor: SpoolMonitor,
    readiness: Readiness,
    blocking: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let reading = monitor.clone();
        if let Ok(status) = blocking.spawn_blocking(move || reading.status()).await {
            metrics::gauge!("telecmi_bridge_spool_events").set(status.events as f64);
            metrics::gauge!("telecmi_bridge_spool_bytes").set(status.bytes as f64);
            metrics::gauge!("telecmi_bridge_spool_oldest_age_seconds")
                .set(status.oldest_age_seconds);
            metrics::gauge!("telecmi_bridge_spool_kafka_refused_events")
                .set(status.kafka_refused as f64);
            metrics::gauge!("telecmi_bridge_spool_quarantined_events")
                .set(status.quarantined as f64);
            readiness.set_spool(status);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SPOOL_MONITOR_INTERVAL) => {}
        }
    }
}

/// Creates or checks the bridge's topics with the client's own properties.
pub(super) async fn check_topics(
    settings: &Settings,
    kafka: &KafkaClient,
    topics: &[TopicName],
) -> Result<(), TopicError> {
    ensure_topics(
        kafka.config(),
        topics,
        settings.kafka.create_topics,
        settings.kafka.topic_partitions,
        settings.kafka.topic_replication_factor,
        settings.kafka.metadata_timeout_ms,
    )
    .await
}

pub(super) struct Probe {
    pub kafka: KafkaClient,
    pub readiness: Readiness,
    pub settings: Settings,
    pub topics: Vec<TopicName>,
    pub topics_ready: bool,
}

/// Kafka is reachable when it answers metadata requests and every topic is in place. Runs
/// until `stop`.
pub(super) async fn probe_kafka(mut probe: Probe, blocking: TaskTracker, stop: CancellationToken) {
    let interval = probe.settings.kafka.readiness_interval_ms;
    let timeout = probe.settings.kafka.metadata_timeout_ms;
    loop {
        // Shutdown does not wait for an answer nobody will read.
        let asked = stop.run_until_cancelled(async {
            let kafka = probe.kafka.clone();
            let reachable = blocking
                .spawn_blocking(move || kafka.probe(timeout))
                .await
                .unwrap_or_else(|error| Err(error.to_string()));
            match reachable {
                Ok(()) if !probe.topics_ready => {
                    match check_topics(&probe.settings, &probe.kafka, &probe.topics).await {
                        Ok(()) => {
                            probe.topics_ready = true;
                            Ok(())
                        }
                        Err(error) => Err(error.to_string()),
                    }
                }
                other => other,
            }
        });
        let Some(state) = asked.await else {
            return;
        };
        probe.readiness.set_kafka(state);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Runs `task` every `interval` until `stop` is cancelled.
pub(super) async fn every(
    interval: Duration,
    stop: CancellationToken,
    mut task: impl FnMut() + Send + 'static,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        task();
    }
}
