//! Which rdkafka producer API keeps the bridge's hot path cheapest? Each HTTP request hands
//! its records to librdkafka and waits for their delivery reports, so the question is the
//! cost of one send plus one per-record notification back to the waiting task:
//!
//! - `future`: `FutureProducer::send_result` and awaiting its `DeliveryFuture` (what the
//!   bridge does; a `ThreadedProducer` whose delivery callback completes a oneshot channel).
//! - `callback`: a `ThreadedProducer` with our own `ProducerContext` whose delivery callback
//!   completes a tokio oneshot passed as the record's opaque (the hand-written alternative).
//! - `count`: the same `ThreadedProducer`, but the callback only counts and nobody waits per
//!   record: the floor, no notification at all, which the bridge cannot use (it answers each
//!   request only after its records are acknowledged).
//!
//! Every variant runs the producer settings the bridge would (`kafka_client_config`, so the
//! `TELECMI_BRIDGE_*` variables apply: e.g. `TELECMI_BRIDGE_KAFKA__LINGER_MS=0`), with
//! `--concurrency` tasks each keeping one record in flight, like that many HTTP connections.
//! Variants are interleaved round by round; the medians go to stdout as a markdown table.
//!
//! ```text
//! bash deploy/kafka/local-kafka.sh start
//! cargo run --release --example producer_api -- --records 40000 --concurrency 256 --rounds 3
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext,
    ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext, Message};
use telecmi_bridge::config::{Settings, Sources};
use telecmi_bridge::publish::kafka::kafka_client_config;
use tokio::sync::oneshot;

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const TOPIC: &str = "telecmi.bench.producer-api";
const VARIANTS: [Variant; 3] = [Variant::Future, Variant::Callback, Variant::Count];

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Future,
    Callback,
    Count,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Future => "future",
            Variant::Callback => "callback",
            Variant::Count => "count",
        }
    }
}

struct Options {
    bootstrap: String,
    records: usize,
    concurrency: usize,
    rounds: usize,
}

impl Options {
    fn parse() -> Result<Self, String> {
        let mut options = Options {
            bootstrap: "127.0.0.1:9092".to_owned(),
            records: 40_000,
            concurrency: 256,
            rounds: 3,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--bootstrap" => options.bootstrap = value.clone(),
                "--records" => options.records = number()?,
                "--concurrency" => options.concurrency = number()?.max(1),
                "--rounds" => options.rounds = number()?.max(1),
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        Ok(options)
    }
}

type Acknowledgement = oneshot::Sender<Result<i64, KafkaError>>;

/// Delivery callback of the `callback` variant: completes the waiting task's channel.
struct Notifier;

impl ClientContext for Notifier {}

impl ProducerContext for Notifier {
    type DeliveryOpaque = Box<Acknowledgement>;

    fn delivery(&self, result: &DeliveryResult<'_>, waiter: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(message) => Ok(message.offset()),
            Err((error, _)) => Err(error.clone()),
        };
        // The waiting task may be gone; then nobody needs the answer.
        let _ = waiter.send(outcome);
    }
}

/// Delivery callback of the `count` variant: nobody waits.
#[derive(Default)]
struct Counter {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counter {}

impl ProducerContext for Counter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let tally = if result.is_ok() {
            &self.delivered
        } else {
            &self.failed
        };
        tally.fetch_add(1, Ordering::Relaxed);
    }
}

enum Client {
    Future(FutureProducer<DefaultClientContext>),
    Callback(ThreadedProducer<Notifier>),
    Count(ThreadedProducer<Counter>),
}

/// The bridge's record shape: an envelope-sized JSON payload, a conversation key, and the
/// CloudEvents headers.
struct SampleRecord {
    key: String,
    payload: Arc<[u8]>,
}

impl SampleRecord {
    fn new(index: usize, payload: &Arc<[u8]>) -> Self {
        SampleRecord {
            key: format!("conv-{:08}", index % 5_000),
            payload: Arc::clone(payload),
        }
    }

    fn headers(&self) -> OwnedHeaders {
        [
            ("ce_specversion", "1.0"),
            ("ce_type", "com.telecmi.call.answered"),
            ("ce_source", "telecmi"),
            ("ce_id", self.key.as_str()),
            ("content-type", "application/json"),
        ]
        .into_iter()
        .fold(
            OwnedHeaders::new_with_capacity(5),
            |headers, (key, value)| {
                headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                })
            },
        )
    }
}

impl Client {
    fn new(config: &ClientConfig, variant: Variant) -> Result<Self, KafkaError> {
        Ok(match variant {
            Variant::Future => Client::Future(config.create()?),
            Variant::Callback => Client::Callback(config.create_with_context(Notifier)?),
            Variant::Count => Client::Count(config.create_with_context(Counter::default())?),
        })
    }

    /// Sends one record and, unless the variant only counts, waits for its delivery report.
    async fn send(&self, record: &SampleRecord) -> Result<(), String> {
        match self {
            Client::Future(producer) => {
                let future_record = FutureRecord::to(TOPIC)
                    .key(record.key.as_bytes())
                    .payload(record.payload.as_ref())
                    .headers(record.headers());
                let delivery = producer
                    .send_result(future_record)
                    .map_err(|(error, _)| error.to_string())?;
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(error.to_string()),
                    Err(_) => Err("delivery report dropped".to_owned()),
                }
            }
            Client::Callback(producer) => {
                let (waiter, acknowledged) = oneshot::channel();
                let base_record = BaseRecord::with_opaque_to(TOPIC, Box::new(waiter))
                    .key(record.key.as_bytes())
                    .payload(record.payload.as_ref())
                    .headers(record.headers());
                producer
                    .send(base_record)
                    .map_err(|(error, _)| error.to_string())?;
                match acknowledged.await {
                    Ok(Ok(_offset)) => Ok(()),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err("delivery report dropped".to_owned()),
                }
            }
            Client::Count(producer) => {
                let base_record = BaseRecord::to(TOPIC)
                    .key(record.key.as_bytes())
                    .payload(record.payload.as_ref())
                    .headers(record.headers());
                producer
                    .send(base_record)
                    .map_err(|(error, _)| error.to_string())
            }
        }
    }

    /// Records the `count` variant saw fail (the others fail their run on the first).
    fn failures(&self) -> u64 {
        match self {
            Client::Count(producer) => producer.context().failed.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    fn flush(&self) -> Result<(), KafkaError> {
        let timeout = Duration::from_secs(60);
        match self {
            Client::Future(producer) => producer.flush(timeout),
            Client::Callback(producer) => producer.flush(timeout),
            Client::Count(producer) => producer.flush(timeout),
        }
    }
}

struct Run {
    records: usize,
    seconds: f64,
    cpu_seconds: f64,
}

/// CPU time of this process (all threads: tokio workers and librdkafka's).
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

async fn run(
    config: &ClientConfig,
    variant: Variant,
    options: &Options,
    payload: &Arc<[u8]>,
) -> Result<Run, String> {
    let client = Arc::new(Client::new(config, variant).map_err(|e| e.to_string())?);
    // Warm up connections and metadata outside the measured window.
    client.send(&SampleRecord::new(0, payload)).await?;
    client.flush().map_err(|e| e.to_string())?;
    let per_task = options.records / options.concurrency;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let tasks: Vec<_> = (0..options.concurrency)
        .map(|task| {
            let client = Arc::clone(&client);
            let payload = Arc::clone(payload);
            tokio::spawn(async move {
                for index in 0..per_task {
                    let record = SampleRecord::new(task * per_task + index, &payload);
                    client.send(&record).await?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    // The counting variant never waited; its records are delivered once the flush returns.
    client.flush().map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    if client.failures() > 0 {
        return Err(format!("{} records failed", client.failures()));
    }
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    Ok(Run {
        records: per_task * options.concurrency,
        seconds,
        cpu_seconds,
    })
}

async fn ensure_topic(config: &ClientConfig) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| e.to_string())?;
    let topic = NewTopic::new(TOPIC, 6, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .map_err(|e| e.to_string())?;
    for result in results {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("creating {topic}: {code}")),
        }
    }
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let options = Options::parse()?;
    let settings = Settings::load(&Sources {
        config_dir: Settings::default_config_dir().to_path_buf(),
        profile: None,
        file: None,
    })
    .map_err(|e| e.to_string())?;
    let config = kafka_client_config(&settings.kafka, &options.bootstrap, &settings.delivery);
    ensure_topic(&config).await?;
    let payload: Arc<[u8]> = format!(
        r#"{{"specversion":"1.0","type":"com.telecmi.call.answered","data":"{}"}}"#,
        "x".repeat(1_100)
    )
    .into_bytes()
    .into();

    let mut runs: Vec<(Variant, Run)> = Vec::new();
    for round in 1..=options.rounds {
        for variant in VARIANTS {
            let result = run(&config, variant, &options, &payload).await?;
            eprintln!(
                "round {round} {:<8} {:>8.0} records/s  {:.3} CPU s / 1k records",
                variant.name(),
                result.records as f64 / result.seconds,
                result.cpu_seconds * 1_000.0 / result.records as f64,
            );
            runs.push((variant, result));
        }
    }

    println!(
        "linger.ms={} compression.type={} concurrency={} records={} rounds={}\n",
        config.get("linger.ms").unwrap_or("?"),
        config.get("compression.type").unwrap_or("?"),
        options.concurrency,
        options.records,
        options.rounds
    );
    println!("| API | records/s (median) | CPU s / 1k records (median) |");
    println!("|---|---:|---:|");
    for variant in VARIANTS {
        let of_variant = || runs.iter().filter(move |(v, _)| *v == variant);
        let rate = median(
            of_variant()
                .map(|(_, run)| run.records as f64 / run.seconds)
                .collect(),
        );
        let cpu = median(
            of_variant()
                .map(|(_, run)| run.cpu_seconds * 1_000.0 / run.records as f64)
                .collect(),
        );
        println!("| {} | {rate:.0} | {cpu:.3} |", variant.name());
    }
    Ok(())
}
