//! One publishing run at a time, however many are started (replicas, a CronJob next to a manual
//! run): a lease held through Kafka. Every run that would publish joins one consumer group on a
//! one-partition lease topic; Kafka's group coordinator assigns that partition to exactly one
//! member, and with the cooperative-sticky assignor the member that has it keeps it while others
//! join. The holder reads the CDR topics and publishes only while it holds the partition; the
//! others wait for it (a holder that leaves hands the partition on at once, one that dies after
//! the group's session timeout) or give up after `reconcile.lease_wait_seconds`. A run that
//! gets the lease after another one finished reads that run's CDRs and publishes nothing twice.
//!
//! Nothing is written to the lease topic: membership is the lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::oneshot;

use super::kafka::consumer_config;
use crate::config::{Bootstrap, Settings};
use crate::domain::TopicName;
use crate::publish::kafka::ensure_topics;
use crate::publish::kafka::kafka_client_config;

/// How long a holder that stopped heartbeating (a crash, a cut network) keeps the lease.
const SESSION_TIMEOUT_MS: u32 = 10_000;
/// How often the lease's consumer is polled: its membership and assignment live in the polls.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub struct Lease {
    held: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    member: Option<JoinHandle<()>>,
}

impl Lease {
    /// Waits for the lease up to `reconcile.lease_wait_seconds`; the lease topic is created
    /// first when `kafka.create_topics` allows.
    pub async fn acquire(settings: &Settings) -> Result<Self, String> {
        let Bootstrap::Brokers(brokers) = &settings.kafka.bootstrap_servers else {
            return Err("kafka.bootstrap_servers is `embedded`: no lease to hold".to_owned());
        };
        let topic = settings.reconcile.lease_topic.clone();
        let admin = kafka_client_config(&settings.kafka, brokers, &settings.delivery);
        ensure_topics(
            &admin,
            std::slice::from_ref(&topic),
            settings.kafka.create_topics,
            1,
            settings.kafka.topic_replication_factor,
            settings.kafka.metadata_timeout_ms,
        )
        .await
        .map_err(|error| format!("reconcile.lease_topic: {error}"))?;

        let group = lease_group(settings);
        let mut config = consumer_config(settings, brokers);
        config
            .set("group.id", &group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string());
        let held = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (started, member_started) = oneshot::channel();
        let member = {
            let (held, stop, topic) = (Arc::clone(&held), Arc::clone(&stop), topic.clone());
            std::thread::Builder::new()
                .name("reconcile-lease".to_owned())
                .spawn(move || hold(&config, &topic, &held, &stop, started))
                .map_err(|error| format!("cannot start the lease's thread: {error}"))?
        };
        let lease = Self {
            held,
            stop,
            member: Some(member),
        };
        member_started
            .await
            .map_err(|_| "the lease's consumer stopped".to_owned())??;

        let wait = settings.reconcile.lease_wait_seconds;
        let deadline = Instant::now() + wait;
        while !lease.held() {
            if Instant::now() >= deadline {
                lease.release().await;
                return Err(format!(
                    "another reconcile run holds the lease (consumer group {group} on topic \
                     {topic}); gave up after {}s (reconcile.lease_wait_seconds)",
                    wait.as_secs()
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        tracing::info!(%group, %topic, "reconcile lease acquired");
        Ok(lease)
    }

    /// Whether this run still holds the lease: checked before each publication.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Leaves the group, so that a waiting run gets the lease at once.
    pub async fn release(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(member) = self.member.take() {
            let _ = tokio::task::spawn_blocking(move || member.join()).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One group per bridge (`kafka.client_id`) and TeleCMI app: runs for other apps do not wait.
fn lease_group(settings: &Settings) -> String {
    let app = settings
        .reconcile
        .app_id
        .map_or_else(String::new, |app_id| format!("-{app_id}"));
    format!("{}-reconcile-lease{app}", settings.kafka.client_id)
}

/// The group member, on its own thread: polls until asked to stop, publishing whether it holds
/// the lease partition; then leaves the group.
fn hold(
    config: &rdkafka::ClientConfig,
    topic: &TopicName,
    held: &AtomicBool,
    stop: &AtomicBool,
    started: oneshot::Sender<Result<(), String>>,
) {
    let consumer: BaseConsumer = match config
        .create()
        .and_then(|consumer: BaseConsumer| consumer.subscribe(&[topic.as_str()]).map(|()| consumer))
    {
        Ok(consumer) => consumer,
        Err(error) => {
            let _ = started.send(Err(format!("the lease's consumer: {error}")));
            return;
        }
    };
    let _ = started.send(Ok(()));
    while !stop.load(Ordering::SeqCst) {
        if let Some(Err(error)) = consumer.poll(POLL_INTERVAL) {
            tracing::warn!(%error, "reconcile lease consumer");
        }
        let holds = consumer
            .assignment()
            .is_ok_and(|assignment| assignment.count() > 0);
        held.store(holds, Ordering::SeqCst);
    }
    held.store(false, Ordering::SeqCst);
    consumer.unsubscribe();
}
