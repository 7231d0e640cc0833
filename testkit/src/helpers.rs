//! Start the bridge on port 0 against a Kafka cluster, and read back what it published.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use telecmi_bridge::config::Bootstrap;
use telecmi_bridge::domain::TopicName;
use telecmi_bridge::pipeline::OutboundRecord;
use telecmi_bridge::{Application, Settings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub address: SocketAddr,
    pub admin_address: SocketAddr,
    pub bootstrap_servers: String,
    pub topics: Vec<TopicName>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Settings for tests: loopback listeners on port 0, the embedded cluster, short timeouts.
pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().expect("address");
    settings.server.admin_listen = "127.0.0.1:0".parse().expect("address");
    settings.delivery.ack_timeout_ms = Duration::from_millis(3_000);
    settings.server.request_timeout_ms = Duration::from_millis(10_000);
    settings.kafka.readiness_interval_ms = Duration::from_millis(200);
    settings.kafka.metadata_timeout_ms = Duration::from_millis(1_000);
    settings.kafka.topic_partitions = 3;
    settings.logging.level = "warn".to_owned();
    settings
}

pub async fn spawn_app(settings: Settings) -> TestApp {
    let topics = settings.routing.all_topics();
    let application = Application::build(settings)
        .await
        .expect("application builds");
    run_app(application, topics).await
}

/// Runs an application the test built itself (to change the cluster between the start-up
/// checks and the first request), publishing to `topics`.
pub async fn run_app(application: Application, topics: Vec<TopicName>) -> TestApp {
    let (stop, stopped) = oneshot::channel::<()>();
    let address = application.local_addr();
    let admin_address = application.admin_addr();
    let bootstrap_servers = application.bootstrap_servers().to_owned();
    let server = tokio::spawn(async move {
        application
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("application runs");
    });
    let app = TestApp {
        address,
        admin_address,
        bootstrap_servers,
        topics,
        client: reqwest::Client::new(),
        stop: Some(stop),
        server: Some(server),
    };
    app.wait_until_ready().await;
    app
}

impl TestApp {
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/telecmi", self.address)
    }

    pub async fn post_json(&self, body: &[u8]) -> reqwest::Response {
        self.client
            .post(self.webhook_url())
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .expect("request")
    }

    pub async fn post_form(&self, form: &str) -> reqwest::Response {
        self.client
            .post(self.webhook_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .expect("request")
    }

    pub async fn get_query(&self, query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}?{query}", self.webhook_url()))
            .send()
            .await
            .expect("request")
    }

    pub async fn ready_status(&self, admin: bool) -> u16 {
        let address = if admin {
            self.admin_address
        } else {
            self.address
        };
        self.client
            .get(format!("http://{address}/readyz"))
            .send()
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    }

    /// The admin listener's `/readyz`: status code and body.
    pub async fn readiness(&self) -> (u16, Value) {
        let response = self
            .client
            .get(format!("http://{}/readyz", self.admin_address))
            .send()
            .await
            .expect("admin /readyz answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON readiness"))
    }

    /// Waits until the admin `/readyz` body satisfies `condition`.
    pub async fn wait_for_readiness(&self, what: &str, condition: impl Fn(u16, &Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.readiness().await;
            if condition(status, &body) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: still {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks the admin listener, which stays plain HTTP when the webhook listener serves TLS.
    pub async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.ready_status(true).await != 200 {
            assert!(Instant::now() < deadline, "the bridge did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the bridge the way SIGTERM does, and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }

    /// Records now in the bridge's topics, by high watermark.
    pub fn record_count(&self) -> i64 {
        record_count(&self.bootstrap_servers, &self.topics)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Settings that point the bridge at an existing cluster.
pub type ControlledCluster = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// A one-broker mock cluster the test can take down and bring back, holding the topics of
/// `settings`, which are pointed at it (topics are not created by the bridge).
pub fn on_controlled_cluster(settings: Settings) -> (Settings, ControlledCluster, Vec<TopicName>) {
    let topics = settings.routing.all_topics();
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in &topics {
        cluster.create_topic(topic.as_str(), 3, 1).expect("topic");
    }
    let mut settings = with_brokers(settings, &cluster.bootstrap_servers());
    settings.kafka.create_topics = false;
    (settings, cluster, topics)
}

pub fn with_brokers(mut settings: Settings, bootstrap_servers: &str) -> Settings {
    settings.kafka.bootstrap_servers = Bootstrap::Brokers(bootstrap_servers.to_owned());
    settings
}

/// Every record on `topics` (counted first, so that copies beyond what a test expects, such as
/// re-sends, never cut the reading short).
pub async fn consume_all(bootstrap_servers: &str, topics: &[TopicName]) -> Vec<Consumed> {
    let in_kafka =
        usize::try_from(record_count(bootstrap_servers, topics)).expect("a record count");
    consume(bootstrap_servers, topics, in_kafka, Duration::from_secs(20)).await
}

pub fn record_count(bootstrap_servers: &str, topics: &[TopicName]) -> i64 {
    let consumer: BaseConsumer = consumer_config(bootstrap_servers)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .filter(|topic| topics.iter().any(|name| name.as_str() == topic.name()))
        .flat_map(|topic| {
            topic
                .partitions()
                .iter()
                .map(move |partition| (topic.name().to_owned(), partition.id()))
        })
        .map(|(topic, partition)| {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, Duration::from_secs(5))
                .expect("watermarks");
            high - low
        })
        .sum()
}

fn consumer_config(bootstrap_servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", format!("it-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    config
}

#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The payload parsed as JSON (`Null` if it is not: dead letters keep bodies raw).
    pub envelope: Value,
    pub payload: Vec<u8>,
    /// The record's timestamp, in ms since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl Consumed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn id(&self) -> &str {
        self.envelope["id"].as_str().unwrap_or_default()
    }
}

/// A consumer of its own group, assigned every partition of `topics` from the beginning.
pub fn consumer_from_beginning(bootstrap_servers: &str, topics: &[TopicName]) -> StreamConsumer {
    let consumer: StreamConsumer = consumer_config(bootstrap_servers)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for topic in metadata.topics() {
        if topics.iter().any(|name| name.as_str() == topic.name()) {
            for partition in topic.partitions() {
                assignment
                    .add_partition_offset(topic.name(), partition.id(), Offset::Beginning)
                    .expect("assignment");
            }
        }
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// Reads `topics` from the beginning until `expected` records arrived or `timeout` passed.
pub async fn consume(
    bootstrap_servers: &str,
    topics: &[TopicName],
    expected: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    let consumer = consumer_from_beginning(bootstrap_servers, topics);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut consumed = Vec::new();
    while consumed.len() < expected {
        let Ok(received) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let message = received.expect("message");
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        let value = header
                            .value
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default();
                        (header.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        consumed.push(Consumed {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            headers,
            envelope: serde_json::from_slice(message.payload().unwrap_or_default())
                .unwrap_or(Value::Null),
            payload: message.payload().unwrap_or_default().to_vec(),
            timestamp_ms: message.timestamp().to_millis(),
        });
    }
    consumed
}

/// The records the webhook makes of a JSON `body`, as the bridge publishes or spools them.
pub fn records_of(body: &str, router: &telecmi_bridge::pipeline::Router) -> Vec<OutboundRecord> {
    let request = telecmi_bridge::pipeline::RawRequest::json_body(body.as_bytes());
    let decoded = telecmi_bridge::pipeline::decode(&request).expect("a webhook payload");
    let now = time::OffsetDateTime::now_utc();
    telecmi_bridge::pipeline::to_records(
        decoded,
        None,
        &telecmi_bridge::pipeline::EnvelopeAttributes::default(),
        router,
        None,
        now,
    )
    .expect("records")
    .1
}
