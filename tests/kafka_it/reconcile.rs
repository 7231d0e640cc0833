//! Reconciliation against the real broker: the CDRs published since a point in time, read by
//! record timestamp from the CDR topics only; and whole runs over calls whose webhooks partly
//! reached the bridge: a dry run, a run publishing the missing CDRs, and a second run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use telecmi_bridge::Settings;
use telecmi_bridge::config::SecretValue;
use telecmi_bridge::domain::TopicName;
use telecmi_bridge::pipeline::normalise;
use telecmi_bridge::reconcile::kafka::{PublishedCdrs, cdr_topics, read_published_cdrs};
use telecmi_bridge::reconcile::lease::Lease;
use telecmi_bridge::reconcile::recover::{ORIGIN_HEADER, ORIGIN_RECONCILE};
use telecmi_bridge::reconcile::report::RunReport;
use telecmi_bridge::reconcile::run::run;
use telecmi_bridge::reconcile::telecmi::{Endpoint, Window};
use telecmi_bridge::reconcile::{Product, ReconcileSettings};

use crate::broker::{real_settings, unique_prefix};
use crate::helpers::{TestApp, consume_all, spawn_app};
use crate::telecmi_sim::{
    CHUB_APP_ID, INDIA_APP_ID, SIMULATED_SECRET, Simulator, chub_record, india_record,
};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/telecmi/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds")
}

/// Posts `payload` and returns the event id the bridge answered with.
async fn publish(app: &TestApp, payload: &Value) -> String {
    let response = app.post_json(payload.to_string().as_bytes()).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON answer");
    answer["id"].as_str().expect("event id").to_owned()
}

async fn read(settings: &Settings, since_ms: i64) -> PublishedCdrs {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        read_published_cdrs(&settings, since_ms, Duration::from_secs(30))
    })
    .await
    .expect("reader thread")
    .expect("CDRs read")
}

fn event_ids(published: &PublishedCdrs) -> BTreeSet<String> {
    published
        .cdrs
        .iter()
        .map(|cdr| cdr.event_id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cdrs_published_since_a_time_are_read_from_the_cdr_topics_only() {
    let prefix = unique_prefix();
    let settings = real_settings(&prefix);
    let app = spawn_app(settings.clone()).await;

    let earlier = publish(&app, &fixture("chub-inbound-answered-cdr.json")).await;
    let since = now_ms() + 1;
    // Record timestamps have millisecond resolution: the next records must be stamped later.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while now_ms() <= since {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stands still"
        );
        tokio::task::yield_now().await;
    }
    let missed = publish(&app, &fixture("chub-outbound-missed-cdr-leg-a.json")).await;
    let mut unusual = fixture("chub-india-inbound-answered-cdr.json");
    unusual["status"] = Value::from("busy");
    let on_fallback = publish(&app, &unusual).await;
    publish(&app, &fixture("chub-inbound-answered-leg-a.json")).await;

    let since_then = read(&settings, since).await;
    assert_eq!(
        event_ids(&since_then),
        BTreeSet::from([missed.clone(), on_fallback.clone()]),
        "the CDRs after `since`, the fallback topic's included; no live event"
    );
    assert_eq!(since_then.records_read, 2);
    assert_eq!(since_then.not_cdrs, 0);
    let fallback = since_then
        .cdrs
        .iter()
        .find(|cdr| cdr.event_id == on_fallback)
        .expect("the fallback CDR");
    assert_eq!(fallback.status.as_deref(), Some("busy"));
    assert_eq!(fallback.from.as_deref(), Some("9200000000"));

    let everything = read(&settings, 0).await;
    assert_eq!(
        event_ids(&everything),
        BTreeSet::from([earlier, missed, on_fallback])
    );

    let future = read(&settings, now_ms() + 3_600_000).await;
    assert_eq!(future.records_read, 0);
    app.stop().await;
}

/// A webhook CDR of a simulated call: the same numbers and time as TeleCMI's record; on CHUB
/// the record's `cmiuid` is the webhook's `cmiuuid`, on CHUB India the webhook's own call id.
fn webhook_cdr(endpoint: Endpoint, record: &Value, call_leg_id: &str) -> Value {
    json!({
        "type": "cdr",
        "appid": 1_111_112,
        "cmiuuid": call_leg_id,
        "conversation_uuid": call_leg_id,
        "direction": endpoint.direction(),
        "status": endpoint.status(),
        "from": record["from"],
        "to": record["to"],
        "time": record["time"],
    })
}

fn reconcile_settings(settings: &Settings, simulator: &Simulator, product: Product) -> Settings {
    let mut settings = settings.clone();
    settings.reconcile = ReconcileSettings {
        product,
        base_url: Some(simulator.base_url()),
        app_id: Some(match product {
            Product::Chub => CHUB_APP_ID,
            Product::ChubIndia => INDIA_APP_ID,
        }),
        secret: Some(SecretValue::from(SIMULATED_SECRET)),
        retry_backoff_ms: Duration::from_millis(10),
        kafka_read_timeout_ms: Duration::from_millis(30_000),
        ..ReconcileSettings::default()
    };
    // Each test its own lease (group and topic), named after its prefixed topics.
    let unique = settings.routing.cdr_fallback_topic.to_string();
    settings.reconcile.lease_topic =
        TopicName::try_from(format!("{unique}.lease")).expect("a topic name");
    settings.kafka.client_id = unique;
    settings
}

/// A run over the hour from `start_ms`, which must finish.
async fn run_over_the_hour(
    settings: &Settings,
    simulator: &Simulator,
    product: Product,
    start_ms: i64,
    dry_run: bool,
) -> RunReport {
    let window = Window {
        start_ms,
        end_ms: start_ms + 3_600_000,
    };
    let settings = reconcile_settings(settings, simulator, product);
    let report = run(&settings, window, dry_run).await;
    assert!(report.complete, "{}", report.to_text());
    report
}

/// TeleCMI's count, found, missing, ambiguous, published.
fn totals(report: &RunReport) -> [u64; 5] {
    let totals = &report.totals;
    [
        totals.telecmi_count,
        totals.found as u64,
        totals.missing as u64,
        totals.ambiguous as u64,
        totals.published as u64,
    ]
}

/// The CDR envelopes on the CDR topics, with the records' `telecmi-origin` header.
async fn cdrs_in_kafka(app: &TestApp, settings: &Settings) -> Vec<(Value, Option<String>)> {
    let topics = cdr_topics(&settings.routing);
    consume_all(&app.bootstrap_servers, &topics)
        .await
        .into_iter()
        .map(|consumed| {
            let origin = consumed.header(ORIGIN_HEADER).map(str::to_owned);
            (consumed.envelope, origin)
        })
        .collect()
}

fn missing_ids(report: &RunReport) -> BTreeSet<String> {
    report
        .endpoints
        .iter()
        .flat_map(|row| row.missing_calls.iter().map(|call| call.id.clone()))
        .collect()
}

/// A small deterministic generator (xorshift64*), so that a failing scenario can be replayed
/// from the seed its assertion messages print.
struct Seeded(u64);

impl Seeded {
    fn from_clock() -> Self {
        let seed = u64::try_from(now_ms()).expect("a time after 1970") | 1;
        Self(seed)
    }

    fn percent(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % 100
    }
}

/// What the webhooks of a scenario's calls did: TeleCMI sends each CDR once, to a bridge that
/// is stopped for the calls in `down` (the sends are refused: the bridge is not there), and a
/// random tenth of the others never arrive. Returns the bridge, running again, and the calls
/// whose CDR did not reach it.
async fn deliver_cdr_webhooks(
    settings: &Settings,
    calls: &[(Endpoint, Value, String)],
    down: std::ops::Range<usize>,
    seed: &mut Seeded,
) -> (TestApp, BTreeSet<usize>) {
    let mut app = Some(spawn_app(settings.clone()).await);
    let mut stopped_url = None;
    let mut missing = BTreeSet::new();
    let client = reqwest::Client::new();
    for (number, (endpoint, record, call_leg_id)) in calls.iter().enumerate() {
        if number == down.start
            && let Some(running) = app.take()
        {
            stopped_url = Some(running.webhook_url());
            running.stop().await;
        }
        if number == down.end {
            app = Some(spawn_app(settings.clone()).await);
        }
        let cdr = webhook_cdr(*endpoint, record, call_leg_id);
        match &app {
            None => {
                let url = stopped_url.as_deref().expect("the stopped bridge's URL");
                let refused = client.post(url).json(&cdr).send().await;
                assert!(refused.is_err(), "the bridge is stopped: {refused:?}");
                missing.insert(number);
            }
            Some(_) if seed.percent() < 10 => {
                missing.insert(number);
            }
            Some(running) => {
                publish(running, &cdr).await;
            }
        }
    }
    let app = match app {
        Some(app) => app,
        None => spawn_app(settings.clone()).await,
    };
    (app, missing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chub_run_publishes_the_cdrs_whose_webhook_never_arrived_once() {
    let prefix = unique_prefix();
    let settings = real_settings(&prefix);
    let simulator = Simulator::start(Product::Chub).await;
    let start_ms = now_ms() - 7_200_000;
    let mut seed = Seeded::from_clock();
    let seed_used = seed.0;
    // 500 calls over an hour, in both directions, answered and missed. The bridge is stopped
    // for calls 300 to 359 (their webhooks are refused), and a random tenth of the other
    // webhooks never arrive: about 80% of the CDRs reach Kafka by webhook.
    const CALLS: u64 = 500;
    let calls: Vec<(Endpoint, Value, String)> = (0..CALLS)
        .map(|number| {
            let record = chub_record(number, start_ms + 7_200 * number as i64);
            let call_id = record["cmiuid"].as_str().expect("cmiuid").to_owned();
            (Endpoint::ALL[(number % 4) as usize], record, call_id)
        })
        .collect();
    for (endpoint, record, _) in &calls {
        simulator.add_records(*endpoint, [record.clone()]);
    }
    let (app, lost) = deliver_cdr_webhooks(&settings, &calls, 300..360, &mut seed).await;
    let expected_missing: BTreeMap<String, (Endpoint, Value)> = lost
        .iter()
        .map(|number| {
            let (endpoint, record, call_id) = &calls[*number];
            (call_id.clone(), (*endpoint, record.clone()))
        })
        .collect();
    let missing = expected_missing.len() as u64;
    let delivered = CALLS - missing;
    assert!(
        (80..=140).contains(&missing),
        "{missing} of {CALLS} missing (seed {seed_used})"
    );
    eprintln!(
        "reconcile scenario (CHUB, seed {seed_used}): {CALLS} calls, {delivered} webhooks \
         delivered, {missing} missing"
    );

    let dry = run_over_the_hour(&settings, &simulator, Product::Chub, start_ms, true).await;
    assert_eq!(
        totals(&dry),
        [CALLS, delivered, missing, 0, 0],
        "{}",
        dry.to_text()
    );
    assert_eq!(
        missing_ids(&dry),
        expected_missing.keys().cloned().collect()
    );
    assert_eq!(
        dry.kafka.as_ref().map(|kafka| kafka.cdrs as u64),
        Some(delivered)
    );

    let first = run_over_the_hour(&settings, &simulator, Product::Chub, start_ms, false).await;
    assert_eq!(
        totals(&first),
        [CALLS, delivered, missing, 0, missing],
        "{}",
        first.to_text()
    );
    let second = run_over_the_hour(&settings, &simulator, Product::Chub, start_ms, false).await;
    assert_eq!(
        totals(&second),
        [CALLS, CALLS, 0, 0, 0],
        "a second run publishes nothing:\n{}",
        second.to_text()
    );

    let cdrs = cdrs_in_kafka(&app, &settings).await;
    let call_id = |envelope: &Value| envelope["data"]["call_leg_id"].as_str().map(str::to_owned);
    let calls: BTreeSet<Option<String>> =
        cdrs.iter().map(|(envelope, _)| call_id(envelope)).collect();
    assert_eq!(
        (cdrs.len() as u64, calls.len() as u64),
        (CALLS, CALLS),
        "every call exactly one CDR"
    );
    let recovered: Vec<&Value> = cdrs
        .iter()
        .filter(|(_, origin)| origin.as_deref() == Some(ORIGIN_RECONCILE))
        .map(|(envelope, _)| envelope)
        .collect();
    assert_eq!(
        recovered.len() as u64,
        missing,
        "only the missing ones are marked recovered"
    );
    for envelope in recovered {
        let id = call_id(envelope).expect("a call id");
        let (endpoint, record) = &expected_missing[&id];
        let webhook = normalise(object(webhook_cdr(*endpoint, record, &id)));
        assert_eq!(
            envelope["id"].as_str(),
            Some(webhook.id.to_string().as_str()),
            "the event id its webhook CDR would have had"
        );
        assert_eq!(envelope["data"]["original"]["payload"], *record);
    }
    app.stop().await;
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chub_india_run_matches_by_fingerprint_and_never_publishes_ambiguous_calls() {
    let prefix = unique_prefix();
    let settings = real_settings(&prefix);
    let simulator = Simulator::start(Product::ChubIndia).await;
    let start_ms = now_ms() - 7_200_000;
    let mut seed = Seeded::from_clock();
    let seed_used = seed.0;
    // 500 calls over an hour in both directions, answered and missed, as for CHUB; India's
    // records carry no call id, so the webhook CDRs have ids of their own and only the
    // fingerprint (direction, status, numbers, time) can match them.
    const CALLS: u64 = 500;
    let calls: Vec<(Endpoint, Value, String)> = (0..CALLS)
        .map(|number| {
            let record = india_record(number, start_ms + 7_200 * number as i64);
            (
                Endpoint::ALL[(number % 4) as usize],
                record,
                uuid::Uuid::new_v4().to_string(),
            )
        })
        .collect();
    for (endpoint, record, _) in &calls {
        simulator.add_records(*endpoint, [record.clone()]);
    }
    let (app, lost) = deliver_cdr_webhooks(&settings, &calls, 300..360, &mut seed).await;
    let expected_missing: BTreeSet<String> = lost
        .iter()
        .map(|number| calls[*number].1["_id"].as_str().expect("_id").to_owned())
        .collect();
    let missing = expected_missing.len() as u64;
    // Three pairs of calls between the same numbers 2 s apart, one webhook delivered for each
    // pair: which call it belongs to cannot be told, so all six are reported ambiguous.
    const PAIRS: u64 = 3;
    for pair in 0..PAIRS {
        let twin_time = start_ms + 3_000_000 + 100_000 * pair as i64;
        let mut first = india_record(1_000 + 2 * pair, twin_time);
        let mut second = india_record(1_001 + 2 * pair, twin_time + 2_000);
        second["from"] = first["from"].clone();
        first["to"] = second["to"].clone();
        let call_leg_id = uuid::Uuid::new_v4().to_string();
        publish(&app, &webhook_cdr(Endpoint::Answered, &first, &call_leg_id)).await;
        simulator.add_records(Endpoint::Answered, [first, second]);
    }
    let listed = CALLS + 2 * PAIRS;
    let found = CALLS - missing;
    let ambiguous = 2 * PAIRS;
    eprintln!(
        "reconcile scenario (CHUB India, seed {seed_used}): {listed} calls, {} webhooks \
         delivered, {missing} missing, {ambiguous} ambiguous",
        found + PAIRS
    );

    let dry = run_over_the_hour(&settings, &simulator, Product::ChubIndia, start_ms, true).await;
    assert_eq!(
        totals(&dry),
        [listed, found, missing, ambiguous, 0],
        "seed {seed_used}: {}",
        dry.to_text()
    );
    assert_eq!(missing_ids(&dry), expected_missing, "seed {seed_used}");
    let first = run_over_the_hour(&settings, &simulator, Product::ChubIndia, start_ms, false).await;
    assert_eq!(
        totals(&first),
        [listed, found, missing, ambiguous, missing],
        "the ambiguous pairs are not published (seed {seed_used}):\n{}",
        first.to_text()
    );
    let second =
        run_over_the_hour(&settings, &simulator, Product::ChubIndia, start_ms, false).await;
    assert_eq!(
        totals(&second),
        [listed, CALLS, 0, ambiguous, 0],
        "a second run publishes nothing (seed {seed_used}):\n{}",
        second.to_text()
    );
    let cdrs = cdrs_in_kafka(&app, &settings).await;
    assert_eq!(
        cdrs.len() as u64,
        CALLS + PAIRS,
        "every call one CDR, each pair the one its webhook gave"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_publish_each_missing_call_once() {
    let prefix = unique_prefix();
    let settings = real_settings(&prefix);
    let app = spawn_app(settings.clone()).await;
    let simulator = Simulator::start(Product::Chub).await;
    let start_ms = now_ms() - 7_200_000;
    let mut missing = 0;
    for number in 0..40_u64 {
        let endpoint = Endpoint::ALL[(number % 4) as usize];
        let record = chub_record(number, start_ms + 60_000 * number as i64);
        if number % 5 == 2 {
            missing += 1;
        } else {
            let call_id = record["cmiuid"].as_str().expect("cmiuid").to_owned();
            publish(&app, &webhook_cdr(endpoint, &record, &call_id)).await;
        }
        simulator.add_records(endpoint, [record]);
    }
    let run_settings = reconcile_settings(&settings, &simulator, Product::Chub);
    let window = Window {
        start_ms,
        end_ms: start_ms + 3_600_000,
    };
    let (first, second) = tokio::join!(
        run(&run_settings, window, false),
        run(&run_settings, window, false)
    );
    for report in [&first, &second] {
        assert!(report.complete, "{}", report.to_text());
    }
    assert_eq!(
        [first.totals.published, second.totals.published]
            .iter()
            .sum::<usize>(),
        missing,
        "each missing call published once:\n{}\n{}",
        first.to_text(),
        second.to_text()
    );
    assert!(
        first.totals.published == 0 || second.totals.published == 0,
        "the run that waited found the other's CDRs"
    );
    assert_eq!(cdrs_in_kafka(&app, &settings).await.len(), 40);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_gives_up_while_another_holds_the_lease_and_says_so() {
    let prefix = unique_prefix();
    let settings = real_settings(&prefix);
    // Creates the CDR topics the runs read.
    let app = spawn_app(settings.clone()).await;
    let simulator = Simulator::start(Product::Chub).await;
    let mut run_settings = reconcile_settings(&settings, &simulator, Product::Chub);
    run_settings.reconcile.lease_wait_seconds = Duration::from_secs(1);
    let window = Window {
        start_ms: now_ms() - 7_200_000,
        end_ms: now_ms() - 3_600_000,
    };
    let holder = Lease::acquire(&run_settings).await.expect("the lease");
    let waiting = run(&run_settings, window, false).await;
    assert!(!waiting.complete);
    assert!(
        waiting
            .errors
            .iter()
            .any(|error| error.contains("holds the lease")),
        "{:?}",
        waiting.errors
    );
    assert!(
        run(&run_settings, window, true).await.complete,
        "a dry run needs no lease"
    );
    holder.release().await;
    let after = run(&run_settings, window, false).await;
    assert!(after.complete, "{}", after.to_text());
    app.stop().await;
}

/// Settings of a server running the schedule every second over the last hour.
fn scheduled_settings(settings: &Settings, simulator: &Simulator) -> Settings {
    let mut scheduled = reconcile_settings(settings, simulator, Product::Chub);
    scheduled.reconcile.schedule_enabled = true;
    scheduled.reconcile.schedule_interval_seconds = Duration::from_secs(1);
    scheduled.reconcile.lag_seconds = Duration::from_secs(0);
    scheduled.reconcile.window_seconds = Duration::from_secs(3_600);
    scheduled
}

/// Waits until the CDR topics hold `expected` records, then until the simulator has answered
/// `later_requests` more requests: with every endpoint listed in one request, 8 more mean
/// that the run after the one that published has finished, whoever ran it.
async fn wait_for_cdrs_and_later_runs(
    app: &TestApp,
    settings: &Settings,
    simulator: &Simulator,
    expected: i64,
    later_requests: usize,
) {
    let topics = cdr_topics(&settings.routing);
    let mut published = None;
    for _ in 0..240 {
        let in_kafka = crate::helpers::record_count(&app.bootstrap_servers, &topics);
        assert!(in_kafka <= expected, "{in_kafka} CDRs for {expected} calls");
        let requests = simulator.requests().len();
        match published {
            None if in_kafka == expected => published = Some(requests),
            Some(at) if requests >= at + later_requests => return,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no {expected} CDRs followed by {later_requests} more requests within 60 s");
}

/// The call ids of the CDRs in Kafka, each with how many CDRs carry it.
async fn cdrs_per_call(app: &TestApp, settings: &Settings) -> BTreeMap<String, usize> {
    let mut per_call = BTreeMap::new();
    for (envelope, _) in cdrs_in_kafka(app, settings).await {
        let call = envelope["data"]["call_leg_id"].as_str().expect("call id");
        *per_call.entry(call.to_owned()).or_insert(0) += 1;
    }
    per_call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_inside_the_server_publishes_a_missing_cdr_and_then_nothing() {
    let prefix = unique_prefix();
    let settings = real_settings(&prefix);
    let receiver = spawn_app(settings.clone()).await;
    let simulator = Simulator::start(Product::Chub).await;
    let start_ms = now_ms() - 3_000_000;
    for number in 0..8_u64 {
        let endpoint = Endpoint::ALL[(number % 4) as usize];
        let record = chub_record(number, start_ms + 60_000 * number as i64);
        if number != 5 {
            let call_id = record["cmiuid"].as_str().expect("cmiuid").to_owned();
            publish(&receiver, &webhook_cdr(endpoint, &record, &call_id)).await;
        }
        simulator.add_records(endpoint, [record]);
    }
    let scheduled = spawn_app(scheduled_settings(&settings, &simulator)).await;
    wait_for_cdrs_and_later_runs(&scheduled, &settings, &simulator, 8, 8).await;
    let per_call = cdrs_per_call(&scheduled, &settings).await;
    assert_eq!(per_call.len(), 8, "{per_call:?}");
    assert!(per_call.values().all(|cdrs| *cdrs == 1), "{per_call:?}");
    let recovered: Vec<_> = cdrs_in_kafka(&scheduled, &settings)
        .await
        .into_iter()
        .filter(|(_, origin)| origin.as_deref() == Some(ORIGIN_RECONCILE))
        .map(|(envelope, _)| envelope["data"]["call_leg_id"].clone())
        .collect();
    assert_eq!(recovered, [chub_record(5, start_ms)["cmiuid"].clone()]);
    scheduled.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_with_the_schedule_on_publish_each_call_once() {
    let prefix = unique_prefix();
    let settings = real_settings(&prefix);
    // Creates the CDR topics, so that they have their leaders before the servers start.
    let creator = spawn_app(settings.clone()).await;
    let simulator = Simulator::start(Product::Chub).await;
    let start_ms = now_ms() - 3_000_000;
    for number in 0..20_u64 {
        let endpoint = Endpoint::ALL[(number % 4) as usize];
        simulator.add_records(
            endpoint,
            [chub_record(number, start_ms + 60_000 * number as i64)],
        );
    }
    let (first, second) = tokio::join!(
        spawn_app(scheduled_settings(&settings, &simulator)),
        spawn_app(scheduled_settings(&settings, &simulator))
    );
    wait_for_cdrs_and_later_runs(&first, &settings, &simulator, 20, 16).await;
    let per_call = cdrs_per_call(&first, &settings).await;
    assert_eq!(per_call.len(), 20, "{per_call:?}");
    assert!(per_call.values().all(|cdrs| *cdrs == 1), "{per_call:?}");
    first.stop().await;
    second.stop().await;
    creator.stop().await;
}
