//! `spool drain`: a spool from another host forwarded to Kafka by the bridge's own forwarder,
//! in order, each event removed once Kafka acknowledged it. Events Kafka refuses for good go
//! to the quarantine as they would in a running bridge, and stay in the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Snapshot, ToolError};
use crate::config::{Bootstrap, DeliveryMode, DeliverySettings, Settings, SpoolSettings};
use crate::domain::TopicName;
use crate::publish::kafka::{KafkaClient, TopicError, ensure_topics, kafka_client_config};
use crate::publish::spool::{ForwarderControl, Spool, SpoolError};

/// How often the progress bar reads the spool's depth.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error(
        "spool drain needs real brokers: give --bootstrap HOST:PORT[,...] or set \
         kafka.bootstrap_servers (it is `embedded`)"
    )]
    Embedded,
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error("could not create the Kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error(
        "could not finish: {left} event(s) are still in {path}, not acknowledged by Kafka within \
         the timeout ({forwarded} forwarded); run spool drain again once Kafka is reachable"
    )]
    Unfinished {
        path: PathBuf,
        left: u64,
        forwarded: u64,
    },
}

/// What a drain did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    pub path: PathBuf,
    pub forwarded: u64,
    /// Events Kafka refused for good during this drain, now in the quarantine.
    pub quarantined_now: u64,
    pub quarantined: u64,
}

impl std::fmt::Display for Drained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "forwarded {} event(s) to Kafka; {} is empty",
            self.forwarded,
            self.path.display()
        )?;
        if self.quarantined > 0 {
            write!(
                f,
                "; its quarantine holds {} event(s) ({} refused by Kafka during this drain): \
                 see `spool list --quarantine`",
                self.quarantined, self.quarantined_now
            )?;
        }
        Ok(())
    }
}

pub fn drain(
    settings: &Settings,
    path: &Path,
    bootstrap: Option<&str>,
    timeout: Duration,
) -> Result<Drained, ToolError> {
    let bootstrap = match (bootstrap, &settings.kafka.bootstrap_servers) {
        (Some(given), _) if given.trim() != "embedded" => given.trim().to_owned(),
        (None, Bootstrap::Brokers(configured)) => configured.clone(),
        _ => return Err(DrainError::Embedded.into()),
    };
    // Read-only first: a file in use or unreadable is refused before anything opens it for
    // writing (which would repair it, or move an unreadable one aside).
    let stats = Snapshot::open(path)?.stats()?;
    let topics = stats
        .topics
        .keys()
        .map(|topic| TopicName::try_from(topic.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| ToolError::Unreadable {
            path: path.to_owned(),
            reason,
        })?;
    let delivery = DeliverySettings {
        mode: DeliveryMode::Spool,
        ..settings.delivery.clone()
    };
    let client_config = kafka_client_config(&settings.kafka, &bootstrap, &delivery);
    let runtime = tokio::runtime::Runtime::new().map_err(DrainError::Runtime)?;
    // An admin request for no topics at all is refused as invalid; an empty spool needs none.
    if !topics.is_empty() {
        runtime
            .block_on(ensure_topics(
                &client_config,
                &topics,
                settings.kafka.create_topics,
                settings.kafka.topic_partitions,
                settings.kafka.topic_replication_factor,
                settings.kafka.metadata_timeout_ms,
            ))
            .map_err(DrainError::from)?;
    }

    let spool = Spool::open(&SpoolSettings {
        path: path.to_owned(),
        ..settings.spool.clone()
    })
    .map_err(DrainError::from)?;
    let monitor = spool.monitor();
    let before = monitor.status();
    let forwarder = spool.forwarder(KafkaClient::new(client_config).map_err(DrainError::from)?);
    let progress = ProgressBar::new(before.events);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let control = ForwarderControl::default();
    control.drain.cancel();
    runtime.block_on(async {
        let mut forwarding = tokio::spawn(forwarder.run(control.clone()));
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticks = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tokio::select! {
                _ = &mut forwarding => break,
                () = tokio::time::sleep_until(deadline), if !control.stop.is_cancelled() => {
                    control.stop.cancel();
                }
                _ = ticks.tick() => {
                    let events = monitor.status().events;
                    progress.set_position(before.events.saturating_sub(events));
                }
            }
        }
    });
    progress.finish_and_clear();
    let after = monitor.status();
    drop(monitor);
    let left = spool.close();
    let quarantined_now = after.quarantined.saturating_sub(before.quarantined);
    let forwarded = before.events.saturating_sub(left + quarantined_now);
    if left > 0 {
        return Err(DrainError::Unfinished {
            path: path.to_owned(),
            left,
            forwarded,
        }
        .into());
    }
    Ok(Drained {
        path: path.to_owned(),
        forwarded,
        quarantined_now,
        quarantined: after.quarantined,
    })
}
