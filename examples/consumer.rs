//! A downstream consumer of the bridge's topics, as a CRM worker would write one: a typed
//! envelope, de-duplication by event id, and state per conversation.
//!
//! - **Typed, tolerant.** Only the members this worker uses are typed; unknown members are
//!   ignored (the bridge may add members within a version). An `envelopeversion` it was not
//!   written for stops it before it commits anything past that record: an operator upgrades
//!   the worker instead of it guessing.
//! - **At least once.** Offsets are committed after an event is handled, so a crash re-delivers
//!   what was not yet committed; re-deliveries, TeleCMI re-sends and reconciliation's recovered
//!   CDRs all carry the id of the event they repeat, and are recognised by it.
//! - **Per conversation.** Every record of a conversation has the same key, so it is on one
//!   partition and arrives in the order the bridge published it.
//!
//! ```text
//! cargo run --example consumer -- --bootstrap 127.0.0.1:9092 --group crm-worker
//! ```
//!
//! Its test runs against a real broker: `cargo test --features kafka-it --example consumer`
//! with `KAFKA_BOOTSTRAP_SERVERS` set (CI does).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use clap::Parser;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use serde::Deserialize;

/// The envelope versions this worker was written for.
const KNOWN_VERSIONS: [&str; 2] = ["1", "2"];
/// Event ids remembered for de-duplication (a few minutes of traffic).
const REMEMBERED_IDS: usize = 100_000;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "crm-worker")]
    group: String,
    /// Topics to read (comma-separated); the default: every status topic the bridge writes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "telecmi.event.waiting,telecmi.event.started,telecmi.event.answered,telecmi.event.hangup,telecmi.event.other,telecmi.cdr.answered,telecmi.cdr.missed,telecmi.cdr.other"
    )]
    topics: Vec<String>,
    /// Stop after this long without a record (0: never).
    #[arg(long, default_value_t = 0)]
    idle_seconds: u64,
}

/// The members this worker reads.
#[derive(Debug, Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    envelopeversion: String,
    data: Data,
}

#[derive(Debug, Deserialize)]
struct Data {
    status: Option<String>,
    conversation_id: String,
}

/// What the worker knows about one call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Conversation {
    events: usize,
    last_status: Option<String>,
    has_cdr: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Handled,
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
enum WorkerError {
    #[error("a record that is not an envelope: {0}")]
    NotAnEnvelope(#[from] serde_json::Error),
    #[error("envelope version {0} is not one this worker knows ({KNOWN_VERSIONS:?}): upgrade it")]
    UnknownVersion(String),
}

#[derive(Default)]
struct Worker {
    seen: HashSet<String>,
    order: VecDeque<String>,
    conversations: HashMap<String, Conversation>,
}

impl Worker {
    fn handle(&mut self, payload: &[u8]) -> Result<Outcome, WorkerError> {
        let envelope: Envelope = serde_json::from_slice(payload)?;
        if !KNOWN_VERSIONS.contains(&envelope.envelopeversion.as_str()) {
            return Err(WorkerError::UnknownVersion(envelope.envelopeversion));
        }
        if !self.remember(&envelope.id) {
            return Ok(Outcome::Duplicate);
        }
        let conversation = self
            .conversations
            .entry(envelope.data.conversation_id)
            .or_default();
        conversation.events += 1;
        conversation.last_status = envelope.data.status;
        conversation.has_cdr |= envelope.event_type == "com.telecmi.call.cdr";
        Ok(Outcome::Handled)
    }

    /// False when the id was seen already.
    fn remember(&mut self, id: &str) -> bool {
        if !self.seen.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > REMEMBERED_IDS
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        true
    }
}

/// Reads until `idle` passes without a record (`None`: for ever), committing after each.
async fn run(
    args: &Args,
    worker: &mut Worker,
) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let idle = (args.idle_seconds > 0).then(|| Duration::from_secs(args.idle_seconds));
    let (mut handled, mut duplicates) = (0, 0);
    loop {
        let message = match idle {
            Some(idle) => match tokio::time::timeout(idle, consumer.recv()).await {
                Ok(message) => message?,
                Err(_idle) => return Ok((handled, duplicates)),
            },
            None => consumer.recv().await?,
        };
        match worker.handle(message.payload().unwrap_or_default())? {
            Outcome::Handled => handled += 1,
            Outcome::Duplicate => duplicates += 1,
        }
        consumer.commit_message(&message, CommitMode::Async)?;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut worker = Worker::default();
    let (handled, duplicates) = run(&args, &mut worker).await?;
    println!(
        "{handled} events handled, {duplicates} duplicates skipped, {} conversations",
        worker.conversations.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).expect("golden envelope")
    }

    #[test]
    fn an_envelope_is_handled_once_and_its_conversation_kept() {
        let mut worker = Worker::default();
        let cdr = golden("chub-inbound-answered-cdr");
        assert_eq!(worker.handle(&cdr).expect("envelope"), Outcome::Handled);
        assert_eq!(worker.handle(&cdr).expect("envelope"), Outcome::Duplicate);
        let conversation = worker.conversations.values().next().expect("one call");
        assert_eq!(conversation.events, 1);
        assert!(conversation.has_cdr);
        assert_eq!(conversation.last_status.as_deref(), Some("answered"));
    }

    #[test]
    fn unknown_members_are_ignored_and_an_unknown_version_stops_the_worker() {
        let mut worker = Worker::default();
        let mut envelope: serde_json::Value =
            serde_json::from_slice(&golden("chub-inbound-answered-leg-a")).expect("JSON");
        envelope["data"]["something_new"] = serde_json::json!({"a": 1});
        assert_eq!(
            worker
                .handle(envelope.to_string().as_bytes())
                .expect("tolerated"),
            Outcome::Handled
        );
        envelope["envelopeversion"] = "99".into();
        envelope["id"] = "another".into();
        assert!(matches!(
            worker.handle(envelope.to_string().as_bytes()),
            Err(WorkerError::UnknownVersion(version)) if version == "99"
        ));
    }

    /// The bridge publishes to a real broker; the worker reads it back: a re-sent webhook is
    /// skipped by id, and a call's events are counted under its conversation.
    #[cfg(feature = "kafka-it")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn against_a_real_broker_a_resent_event_is_skipped_by_id() {
        use telecmi_bridge::config::Bootstrap;
        use telecmi_bridge::domain::TopicName;
        let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS")
            .expect("KAFKA_BOOTSTRAP_SERVERS: a real broker (deploy/kafka/local-kafka.sh start)");
        let prefix = format!(
            "consumer-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut settings = telecmi_bridge::Settings::default();
        settings.server.listen = "127.0.0.1:0".parse().expect("address");
        settings.server.admin_listen = "127.0.0.1:0".parse().expect("address");
        settings.kafka.bootstrap_servers = Bootstrap::Brokers(bootstrap.clone());
        settings.kafka.topic_partitions = 3;
        let topic = |kind: &str| TopicName::try_from(format!("{prefix}.{kind}")).expect("topic");
        for table in [
            &mut settings.routing.event_topics,
            &mut settings.routing.cdr_topics,
        ] {
            for value in table.values_mut() {
                *value = topic("status");
            }
        }
        settings.routing.event_fallback_topic = topic("status");
        settings.routing.cdr_fallback_topic = topic("status");
        settings.routing.unrouted_topic = topic("unrouted");
        settings.routing.dead_letter_topic = topic("deadletter");
        let application = telecmi_bridge::Application::build(settings)
            .await
            .expect("the bridge starts");
        let url = format!("http://{}/webhooks/telecmi", application.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let events = [
            r#"{"type":"event","status":"started","conversation_uuid":"call-1","time":1}"#,
            r#"{"type":"event","status":"answered","conversation_uuid":"call-1","time":2}"#,
            r#"{"type":"event","status":"answered","conversation_uuid":"call-1","time":2}"#,
            r#"{"type":"cdr","status":"answered","conversation_uuid":"call-1","time":3}"#,
            r#"{"type":"cdr","status":"missed","conversation_uuid":"call-2","time":4}"#,
        ];
        for event in events {
            let answer = client
                .post(&url)
                .header("content-type", "application/json")
                .body(event)
                .send()
                .await
                .expect("answered");
            assert_eq!(answer.status(), 200);
        }
        let args = Args {
            bootstrap,
            group: format!("{prefix}-worker"),
            topics: vec![format!("{prefix}.status")],
            // A new group's first assignment takes a few seconds.
            idle_seconds: 10,
        };
        let mut worker = Worker::default();
        let (handled, duplicates) = run(&args, &mut worker).await.expect("read");
        assert_eq!((handled, duplicates), (4, 1));
        assert_eq!(
            worker.conversations["call-1"],
            Conversation {
                events: 3,
                last_status: Some("answered".to_owned()),
                has_cdr: true
            }
        );
        assert_eq!(worker.conversations["call-2"].events, 1);
        let _ = stop.send(());
        server.await.expect("joined").expect("stopped cleanly");
    }
}
