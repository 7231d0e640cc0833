//! Fault tests against the real broker, with the bridge as a real process: SIGKILL mid-load,
//! a 20+ second broker outage, a full spool, SIGTERM under load. Each prints a row of the
//! fault table in docs/testing.md (appended to `$FAULT_REPORT` when set). They stop the shared
//! broker, so run them one at a time:
//! `cargo test --features kafka-it --test kafka_faults -- --test-threads=1 --nocapture`.

mod load;

// The shared kit's modules, under the names this suite's files use (`crate::helpers`, ...).
use std::num::NonZeroU64;
use testkit::{broker, helpers, process};

use std::time::{Duration, Instant};

use telecmi_bridge::Settings;
use telecmi_bridge::config::{DeliveryMode, LogFormat};
use telecmi_bridge::domain::TopicName;

use broker::{real_settings, unique_prefix};
use load::{Load, SenderLedger, Verdict, verify};
use process::{Bridge, local_kafka};

const SENDERS: usize = 8;
/// How long the broker stays down in the outage scenarios (the issue asks for at least 20 s).
const OUTAGE: Duration = Duration::from_secs(22);

fn settings(mode: DeliveryMode, dir: &tempfile::TempDir) -> Settings {
    let mut settings = real_settings(&unique_prefix());
    settings.delivery.mode = mode;
    settings.spool.path = dir.path().join("spool.redb");
    settings.routing.combined_topic_enabled = false;
    settings.logging.level = "info".to_owned();
    settings.logging.format = LogFormat::Json;
    settings
}

/// The moments of the kills, drawn from `FAULT_SEED` (or the clock), which is printed so that
/// a failing run can be replayed.
fn kill_delays(count: usize) -> Vec<Duration> {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| elapsed.as_nanos() as u64)
        });
    eprintln!("fault seed: {seed} (replay with FAULT_SEED={seed})");
    // splitmix64: enough to spread kill moments; the seed is what makes a run reproducible.
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            Duration::from_millis(500 + z % 2_500)
        })
        .collect()
}

async fn crash_repeatedly(mode: DeliveryMode, kills: usize, scenario: &str) {
    let mut running = start(mode, |_| {}).await;
    let load = Load::start(running.bridge.webhook_url(), SENDERS, &unique_prefix());
    for delay in kill_delays(kills) {
        tokio::time::sleep(delay).await;
        running.bridge.kill();
        running.bridge.restart().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ledgers = load.stop().await;
    running.stop_and_verify(&ledgers, scenario).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_mode_sigkill_mid_load_loses_nothing_acknowledged() {
    crash_repeatedly(DeliveryMode::Spool, 4, "SIGKILL ×4 mid-load, spool mode").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mode_sigkill_mid_load_loses_nothing_acknowledged() {
    crash_repeatedly(DeliveryMode::Kafka, 3, "SIGKILL ×3 mid-load, kafka mode").await;
}

/// What `/readyz` said while the broker was down.
#[derive(Debug, Default)]
struct ReadinessSeen {
    ready: usize,
    not_ready: usize,
    kafka_unavailable: usize,
}

async fn watch_readiness(bridge: &Bridge, for_how_long: Duration) -> ReadinessSeen {
    let mut seen = ReadinessSeen::default();
    let until = Instant::now() + for_how_long;
    while Instant::now() < until {
        if let Some((status, body)) = bridge.readiness().await {
            if status == 200 {
                seen.ready += 1;
            } else {
                seen.not_ready += 1;
            }
            if body["kafka"]["status"] == "unavailable" {
                seen.kafka_unavailable += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen
}

/// Runs load, stops the broker for [`OUTAGE`], brings it back, and returns what readiness
/// showed during the outage, and the ledgers.
async fn outage(bridge: &Bridge) -> (ReadinessSeen, Vec<load::SenderLedger>) {
    let load = Load::start(bridge.webhook_url(), SENDERS, &unique_prefix());
    tokio::time::sleep(Duration::from_secs(3)).await;
    local_kafka("stop");
    let seen = watch_readiness(bridge, OUTAGE).await;
    local_kafka("start");
    tokio::time::sleep(Duration::from_secs(5)).await;
    (seen, load.stop().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_mode_answers_2xx_throughout_a_broker_outage_and_loses_nothing() {
    let running = start(DeliveryMode::Spool, |_| {}).await;
    let (seen, ledgers) = outage(&running.bridge).await;
    running.wait_until_spool_is_empty().await;
    let verdict = running
        .stop_and_verify(&ledgers, "broker down 22 s under load, spool mode")
        .await;
    assert_eq!(
        verdict.refused_503, 0,
        "spool mode refused events during the outage"
    );
    assert_eq!(verdict.connection_errors, 0);
    assert_eq!(
        seen.not_ready, 0,
        "spool mode left the load balancer: {seen:?}"
    );
    assert!(
        seen.kafka_unavailable > 0,
        "the outage never showed in /readyz: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mode_answers_503_with_retry_after_during_a_broker_outage_and_loses_nothing() {
    let running = start(DeliveryMode::Kafka, |_| {}).await;
    let (seen, ledgers) = outage(&running.bridge).await;
    let back_after = running
        .bridge
        .wait_for_readiness("/readyz back to 200", |status, _| status == 200)
        .await;
    eprintln!("kafka mode: /readyz 200 again {back_after:?} after the load stopped");
    let verdict = running
        .stop_and_verify(&ledgers, "broker down 22 s under load, kafka mode")
        .await;
    assert!(
        verdict.refused_503 > 0,
        "kafka mode answered 2xx with the broker down"
    );
    assert!(
        seen.not_ready > 0,
        "/readyz never turned 503 during the outage: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_with_the_broker_down_answers_503_and_loses_nothing() {
    let running = start(DeliveryMode::Spool, |settings| {
        settings.spool.max_events = NonZeroU64::new(300).expect("not zero")
    })
    .await;
    let load = Load::start(running.bridge.webhook_url(), SENDERS, &unique_prefix());
    tokio::time::sleep(Duration::from_secs(1)).await;
    local_kafka("stop");
    running
        .bridge
        .wait_for_readiness("spool full", |status, body| {
            status == 503
                && body["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("spool full"))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    local_kafka("start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ledgers = load.stop().await;
    running.wait_until_spool_is_empty().await;
    let verdict = running
        .stop_and_verify(&ledgers, "spool full (300 events), broker down")
        .await;
    assert!(verdict.refused_503 > 0, "a full spool must refuse");
}

async fn terminate_under_load(mode: DeliveryMode, scenario: &str) {
    let mut running = start(mode, |_| {}).await;
    let load = Load::start(running.bridge.webhook_url(), SENDERS, &unique_prefix());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = running.bridge.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit after SIGTERM under load: {status}");
    let ledgers = load.stop().await;
    // No restart: what was 2xx'd must already be in Kafka.
    running.verify(&ledgers, scenario).await;
    if mode == DeliveryMode::Spool {
        let log = std::fs::read_to_string(running.bridge.log_path()).expect("log");
        assert!(
            log.contains("\"spooled\":0"),
            "the spool was not empty at exit; log: {}",
            running.bridge.log_path().display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_flushes_in_spool_mode() {
    terminate_under_load(DeliveryMode::Spool, "SIGTERM under load, spool mode").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_flushes_in_kafka_mode() {
    terminate_under_load(DeliveryMode::Kafka, "SIGTERM under load, kafka mode").await;
}

/// A bridge process on its own topics and spool; the directory lives as long as it does.
/// Fields drop in order: the bridge first, so that a failing test can still show its log.
struct Running {
    bridge: Bridge,
    topics: Vec<TopicName>,
    _dir: tempfile::TempDir,
}

async fn start(mode: DeliveryMode, configure: impl FnOnce(&mut Settings)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings(mode, &dir);
    configure(&mut settings);
    let topics = settings.routing.all_topics();
    let bridge = Bridge::start(settings, dir.path()).await;
    Running {
        bridge,
        topics,
        _dir: dir,
    }
}

impl Running {
    /// Waits until everything spooled is in Kafka. The spool gauge is read once a second, so
    /// it first waits out a reading that may predate the last 2xx.
    async fn wait_until_spool_is_empty(&self) {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        self.bridge
            .wait_for_readiness("spool drained", |_, body| body["spool"]["events"] == 0)
            .await;
    }

    /// SIGTERM (which must end in exit 0), then every 2xx'd id must be in Kafka.
    async fn stop_and_verify(mut self, ledgers: &[SenderLedger], scenario: &str) -> Verdict {
        let status = self.bridge.terminate(Duration::from_secs(30)).await;
        assert!(status.success(), "{scenario}: exit after SIGTERM: {status}");
        self.verify(ledgers, scenario).await
    }

    async fn verify(&self, ledgers: &[SenderLedger], scenario: &str) -> Verdict {
        let bootstrap = broker::bootstrap_servers();
        let verdict = verify(&bootstrap, &self.topics, ledgers, Duration::from_secs(60)).await;
        verdict.report_and_check(scenario);
        verdict
    }
}
