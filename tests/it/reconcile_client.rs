//! The TeleCMI API client against the simulator: paging, both product lines, and one test per
//! fault mode.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use serde_json::Value;
use telecmi_bridge::config::SecretValue;
use telecmi_bridge::reconcile::telecmi::{ApiError, Endpoint, Listing, TelecmiClient, Window};
use telecmi_bridge::reconcile::{Credentials, Product, ReconcileSettings};

use crate::telecmi_sim::{
    CHUB_APP_ID, Fault, INDIA_APP_ID, SIMULATED_SECRET, Simulator, chub_record, india_record,
};

const START_MS: i64 = 1_700_000_000_000;
const WINDOW: Window = Window {
    start_ms: START_MS,
    end_ms: START_MS + 3_600_000,
};

fn settings(simulator: &Simulator, product: Product) -> ReconcileSettings {
    ReconcileSettings {
        product,
        base_url: Some(simulator.base_url()),
        request_timeout_ms: Duration::from_millis(2_000),
        max_attempts: NonZeroU32::new(3).expect("not zero"),
        retry_backoff_ms: Duration::from_millis(10),
        retry_backoff_max_ms: Duration::from_millis(2_000),
        page_size: 20,
        ..ReconcileSettings::default()
    }
}

fn client(settings: &ReconcileSettings, app_id: u64, secret: &str) -> TelecmiClient {
    let credentials = Credentials {
        app_id,
        secret: SecretValue::from(secret),
    };
    TelecmiClient::new(settings, credentials).expect("client")
}

async fn chub(records: u64) -> (Simulator, TelecmiClient) {
    let simulator = Simulator::start(Product::Chub).await;
    simulator.add_records(
        Endpoint::Answered,
        (0..records).map(|number| chub_record(number, START_MS + 60_000 * number as i64)),
    );
    let client = client(
        &settings(&simulator, Product::Chub),
        CHUB_APP_ID,
        SIMULATED_SECRET,
    );
    (simulator, client)
}

fn ids(listing: &Listing) -> HashSet<String> {
    listing
        .records
        .iter()
        .map(|record| record.id.clone())
        .collect()
}

fn expected_ids(records: std::ops::Range<u64>) -> HashSet<String> {
    records
        .map(|number| format!("00000000-0000-4000-8000-{number:012}"))
        .collect()
}

#[tokio::test]
async fn a_client_for_the_documented_https_bases_builds_with_the_system_trust_store() {
    for product in [Product::Chub, Product::ChubIndia] {
        let settings = ReconcileSettings {
            product,
            ..ReconcileSettings::default()
        };
        let credentials = Credentials {
            app_id: CHUB_APP_ID,
            secret: SecretValue::from(SIMULATED_SECRET),
        };
        assert!(
            TelecmiClient::new(&settings, credentials).is_ok(),
            "{product:?}"
        );
    }
}

#[tokio::test]
async fn chub_pages_until_the_count_with_the_documented_body() {
    let (simulator, client) = chub(45).await;
    simulator.add_records(Endpoint::Answered, [chub_record(99, START_MS - 1)]);
    let listing = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect("listing");
    assert_eq!(listing.reported_count, Some(45));
    assert_eq!(listing.records.len(), 45);
    assert_eq!(ids(&listing), expected_ids(0..45), "each record once");
    assert_eq!(listing.requests, 3, "pages of 20, 20 and 5");
    let requests = simulator.requests();
    let pages: Vec<u64> = requests
        .iter()
        .map(|(_, body)| body["page"].as_u64().expect("page"))
        .collect();
    assert_eq!(pages, [1, 2, 3]);
    let (endpoint, first) = &requests[0];
    assert_eq!(*endpoint, Endpoint::Answered);
    assert_eq!(first["appid"], CHUB_APP_ID);
    assert_eq!(first["secret"], SIMULATED_SECRET);
    assert_eq!(first["start_date"], WINDOW.start_ms);
    assert_eq!(first["end_date"], WINDOW.end_ms);
    assert_eq!(first["limit"], 20);
}

#[tokio::test]
async fn documented_answers_of_both_product_lines_become_typed_records() {
    let fixture = |name: &str| -> Vec<Value> {
        let path = format!(
            "{}/tests/fixtures/telecmi-api/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let answer: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
        answer["cdr"].as_array().expect("cdr").clone()
    };
    let window = Window {
        start_ms: 0,
        end_ms: 2_000_000_000_000,
    };

    let simulator = Simulator::start(Product::Chub).await;
    simulator.add_records(Endpoint::Answered, fixture("chub-answered.json"));
    let chub = client(
        &settings(&simulator, Product::Chub),
        CHUB_APP_ID,
        SIMULATED_SECRET,
    );
    let listing = chub
        .list(Endpoint::Answered, window)
        .await
        .expect("listing");
    let first = &listing.records[0];
    assert_eq!(first.id, "6b1a4c2e-93f1-4a55-8e0c-2f4d8b7a1c90");
    assert_eq!(first.time_ms, 1_654_508_000_000);
    assert_eq!(
        first.from.as_deref(),
        Some("914440000001"),
        "a number as text"
    );
    assert_eq!(first.to.as_deref(), Some("914440000002"));
    assert_eq!(first.agent.as_deref(), Some("201_1111112"));
    assert_eq!(first.fields["notes"][0]["msg"], "call back tomorrow");
    assert_eq!(listing.records[1].to.as_deref(), Some("914440000002"));

    let simulator = Simulator::start(Product::ChubIndia).await;
    simulator.add_records(
        Endpoint::OutAnswered,
        fixture("chub-india-outanswered.json"),
    );
    let india = client(
        &settings(&simulator, Product::ChubIndia),
        INDIA_APP_ID,
        SIMULATED_SECRET,
    );
    let listing = india
        .list(Endpoint::OutAnswered, window)
        .await
        .expect("listing");
    assert_eq!(listing.reported_count, Some(2), "India counts in `total`");
    assert_eq!(listing.records[0].id, "5d95e1c9a3b4c2001f8e4a10");
    assert_eq!(listing.records[0].from.as_deref(), Some("209_1111113"));
    assert_eq!(listing.records[0].fields["rate"], "0.49");
    let (_, body) = &simulator.requests()[0];
    assert_eq!(body["token"], SIMULATED_SECRET, "India's secret is `token`");
    assert!(body.get("secret").is_none());
}

#[tokio::test]
async fn india_pages_by_total() {
    let simulator = Simulator::start(Product::ChubIndia).await;
    simulator.add_records(
        Endpoint::Missed,
        (0..25).map(|number| india_record(number, START_MS + 1_000 * number as i64)),
    );
    let settings = ReconcileSettings {
        page_size: 10,
        ..settings(&simulator, Product::ChubIndia)
    };
    let listing = client(&settings, INDIA_APP_ID, SIMULATED_SECRET)
        .list(Endpoint::Missed, WINDOW)
        .await
        .expect("listing");
    assert_eq!(listing.records.len(), 25);
    assert_eq!(listing.requests, 3);
}

#[tokio::test]
async fn bad_credentials_name_the_settings_to_fix_and_are_not_retried() {
    let simulator = Simulator::start(Product::Chub).await;
    let wrong = client(
        &settings(&simulator, Product::Chub),
        CHUB_APP_ID,
        "not-the-secret",
    );
    let error = wrong.list(Endpoint::Missed, WINDOW).await.expect_err("404");
    assert!(matches!(error, ApiError::BadCredentials { .. }), "{error}");
    assert_eq!(error.cause(), "bad_credentials");
    let message = error.to_string();
    for setting in ["reconcile.app_id", "reconcile.secret", "reconcile.product"] {
        assert!(message.contains(setting), "{message}");
    }
    assert!(!message.contains("not-the-secret"), "{message}");
    assert_eq!(simulator.requests().len(), 1);
}

#[tokio::test]
async fn a_400_is_reported_and_not_retried() {
    let (simulator, client) = chub(5).await;
    simulator.push_faults([Fault::Status(400)]);
    let error = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect_err("400");
    assert!(
        matches!(error, ApiError::BadRequest { page: 1, .. }),
        "{error}"
    );
    assert_eq!(simulator.requests().len(), 1);
    let message = error.to_string();
    assert!(
        message.contains("simulated"),
        "TeleCMI's message: {message}"
    );
    assert!(
        !message.contains(SIMULATED_SECRET),
        "the echoed secret: {message}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_up_to_the_limit() {
    let (simulator, client) = chub(30).await;
    simulator.push_faults([Fault::Status(500), Fault::Status(502)]);
    let listing = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect("the third attempt succeeds");
    assert_eq!(ids(&listing), expected_ids(0..30));
    assert_eq!(listing.requests, 4, "two failures, then pages 1 and 2");

    let (simulator, client) = chub(30).await;
    simulator.push_faults([Fault::Status(503), Fault::Status(503), Fault::Status(503)]);
    let error = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect_err("three 503s exhaust three attempts");
    assert!(
        matches!(
            error,
            ApiError::GaveUp {
                attempts: 3,
                page: 1,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.cause(), "server_error");
    assert_eq!(simulator.requests().len(), 3);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let (simulator, _) = chub(5).await;
    let settings = ReconcileSettings {
        request_timeout_ms: Duration::from_millis(300),
        ..settings(&simulator, Product::Chub)
    };
    let client = client(&settings, CHUB_APP_ID, SIMULATED_SECRET);
    simulator.push_faults([Fault::Slow(Duration::from_secs(2))]);
    let listing = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect("the second attempt is quick");
    assert_eq!(listing.records.len(), 5);
    assert_eq!(listing.requests, 2);

    simulator.push_faults([
        Fault::Slow(Duration::from_secs(2)),
        Fault::Slow(Duration::from_secs(2)),
        Fault::Slow(Duration::from_secs(2)),
    ]);
    let error = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect_err("every attempt times out");
    assert_eq!(error.cause(), "timeout", "{error}");
}

#[tokio::test]
async fn malformed_and_truncated_answers_are_never_half_parsed() {
    for fault in [Fault::Malformed, Fault::Truncated] {
        let (simulator, client) = chub(30).await;
        simulator.push_faults([fault.clone(), fault.clone(), fault.clone()]);
        let error = client
            .list(Endpoint::Answered, WINDOW)
            .await
            .expect_err("no attempt parses");
        assert_eq!(error.cause(), "malformed", "{fault:?}: {error}");

        simulator.push_faults([fault.clone()]);
        let listing = client
            .list(Endpoint::Answered, WINDOW)
            .await
            .expect("a whole answer on the retry");
        assert_eq!(ids(&listing), expected_ids(0..30), "{fault:?}");
    }
}

#[tokio::test]
async fn a_429_is_retried_after_the_time_it_asks_for() {
    let (simulator, client) = chub(5).await;
    simulator.push_faults([Fault::RateLimited(1)]);
    let started = Instant::now();
    let listing = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect("listing");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}, not the Retry-After",
        started.elapsed()
    );
    assert_eq!(listing.records.len(), 5);
    assert_eq!(listing.requests, 2);
}

#[tokio::test]
async fn calls_arriving_while_paging_are_neither_lost_nor_counted_twice() {
    let (simulator, client) = chub(45).await;
    // Newer than everything: served first, they push every later page back by three.
    let newest = (100..103).map(|number| chub_record(number, START_MS + 3_000_000 + number as i64));
    simulator.arrive_after_page(Endpoint::Answered, 1, newest.collect());
    let listing = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect("listing");
    let mut expected = expected_ids(0..45);
    expected.extend(expected_ids(100..103));
    assert_eq!(listing.records.len(), 48, "no record twice");
    assert_eq!(ids(&listing), expected, "none lost");
    assert_eq!(listing.reported_count, Some(48));
}

#[tokio::test]
async fn a_call_arriving_inside_pages_already_read_is_found_by_paging_again() {
    let (simulator, client) = chub(45).await;
    // Second newest: it lands on page 1 after page 1 was read, and pushes one record of
    // page 1 onto page 2; only TeleCMI's count tells that one is still missing.
    let late = chub_record(200, START_MS + 60_000 * 44 - 1);
    simulator.arrive_after_page(Endpoint::Answered, 1, vec![late]);
    let listing = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect("listing");
    let mut expected = expected_ids(0..45);
    expected.extend(expected_ids(200..201));
    assert_eq!(ids(&listing), expected);
    assert_eq!(listing.records.len(), 46);
    assert_eq!(listing.requests, 6, "the window paged twice");
}

#[tokio::test]
async fn a_window_that_keeps_changing_fails_the_listing() {
    let (simulator, client) = chub(45).await;
    for number in 300..303 {
        let late = chub_record(number, START_MS + 60_000 * 44 - number as i64);
        simulator.arrive_after_page(Endpoint::Answered, 1, vec![late]);
    }
    let error = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect_err("every pass comes up short");
    assert!(
        matches!(error, ApiError::WindowChanged { passes: 3, .. }),
        "{error}"
    );
    assert_eq!(error.cause(), "window_changed");
}

#[tokio::test]
async fn records_without_an_id_are_skipped_and_counted() {
    let (simulator, client) = chub(3).await;
    let mut no_id = chub_record(7, START_MS + 5);
    no_id.as_object_mut().expect("object").remove("cmiuid");
    simulator.add_records(Endpoint::Answered, [no_id]);
    let listing = client
        .list(Endpoint::Answered, WINDOW)
        .await
        .expect("listing");
    assert_eq!(listing.records.len(), 3);
    assert_eq!(listing.skipped.len(), 1);
    assert!(
        listing.skipped[0].reason.contains("cmiuid"),
        "{:?}",
        listing.skipped
    );
}

#[tokio::test]
async fn connection_resets_are_retried_then_reported() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let accepted = tokio::spawn(async move {
        let mut connections = 0_u32;
        while let Ok((stream, _)) = listener.accept().await {
            connections += 1;
            // Closed before any answer: the client sees the connection end under it.
            drop(stream);
        }
        connections
    });
    let settings = ReconcileSettings {
        base_url: Some(format!("http://{address}")),
        max_attempts: NonZeroU32::new(3).expect("not zero"),
        retry_backoff_ms: Duration::from_millis(10),
        ..ReconcileSettings::default()
    };
    let error = client(&settings, CHUB_APP_ID, SIMULATED_SECRET)
        .list(Endpoint::OutMissed, WINDOW)
        .await
        .expect_err("every connection is reset");
    assert!(
        matches!(error, ApiError::GaveUp { attempts: 3, .. }),
        "{error}"
    );
    assert_eq!(error.cause(), "connection", "{error}");
    accepted.abort();
}
