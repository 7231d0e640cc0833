//! `spool` delivery mode and the de-duplication window, against the in-process mock cluster.

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::time::Duration;

use rdkafka::types::RDKafkaRespErr;
use serde_json::Value;
use telecmi_bridge::config::DeliveryMode;
use telecmi_bridge::publish::spool::{Spool, SpooledEvent};
use telecmi_bridge::{Application, Settings};
use time::OffsetDateTime;

use crate::helpers::{
    TestApp, consume, consume_all, on_controlled_cluster, run_app, spawn_app, test_settings,
};
use crate::record_time::received_at_ms;
use crate::scenarios::{self, accepted};

fn spool_settings(dir: &tempfile::TempDir) -> Settings {
    let mut settings = test_settings();
    settings.delivery.mode = DeliveryMode::Spool;
    settings.spool.path = dir.path().join("spool.redb");
    settings
}

fn event(conversation: &str, n: u32) -> String {
    event_with_status("answered", conversation, n)
}

fn event_with_status(status: &str, conversation: &str, n: u32) -> String {
    format!(
        r#"{{"type":"event","status":"{status}","cmiuuid":"{conversation}-{n}","conversation_uuid":"{conversation}","time":{}}}"#,
        1_700_000_000_000_u64 + u64::from(n)
    )
}

async fn wait_until_spool_is_empty(app: &TestApp) {
    app.wait_for_readiness("spool drained", |_, body| body["spool"]["events"] == 0)
        .await;
}

/// The ids on `key`, in partition order, each at its first copy only (a re-sent copy of an
/// event already forwarded is a duplicate, not a reordering).
fn first_copies(records: &[crate::helpers::Consumed], key: &str) -> Vec<String> {
    let mut first: Vec<String> = Vec::new();
    for record in records {
        if record.key.as_deref() == Some(key) && !first.iter().any(|id| id == record.id()) {
            first.push(record.id().to_owned());
        }
    }
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_mode_publishes_every_fixture_by_json_form_and_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(spool_settings(&dir)).await;
    scenarios::fixtures_round_trip(&app, "").await;
    let response = app.post_json(event("stored", 1).as_bytes()).await;
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["stored"], "spool");
    wait_until_spool_is_empty(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_in_spool_mode_keeps_answering_200_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = spool_settings(&dir);
    let (settings, cluster, topics) = on_controlled_cluster(settings);
    let app = spawn_app(settings).await;

    let mut acknowledged = Vec::new();
    for n in 0..5 {
        acknowledged.push(
            accepted(app.post_json(event("outage", n).as_bytes()).await)
                .await
                .0,
        );
    }
    cluster.broker_down(1).expect("broker down");
    app.wait_for_readiness("Kafka seen unavailable, still ready", |status, body| {
        status == 200 && body["kafka"]["status"] == "unavailable"
    })
    .await;
    for n in 5..25 {
        acknowledged.push(
            accepted(app.post_json(event("outage", n).as_bytes()).await)
                .await
                .0,
        );
    }
    assert_eq!(
        app.ready_status(false).await,
        200,
        "public /readyz during the outage"
    );
    app.wait_for_readiness("events held in the spool", |_, body| {
        body["spool"]["events"].as_u64().unwrap_or(0) > 0
    })
    .await;

    cluster.broker_up(1).expect("broker up");
    wait_until_spool_is_empty(&app).await;
    app.stop().await;

    let records = consume(
        &cluster.bootstrap_servers(),
        &topics,
        25,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        first_copies(&records, "outage"),
        acknowledged,
        "spooled events out of order or missing"
    );
}

/// A backlog larger than what the forwarder takes in flight plus what the writer hands it in
/// memory: the rest is read back from the file, and every event arrives in order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_in_memory_hand_off_is_forwarded_from_the_file_in_order() {
    const SENDERS: u32 = 16;
    const EVENTS_EACH: u32 = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = spool_settings(&dir);
    settings.spool.forward_window = NonZeroUsize::new(100).expect("not zero");
    let (settings, cluster, topics) = on_controlled_cluster(settings);
    let app = spawn_app(settings).await;
    cluster.broker_down(1).expect("broker down");

    let sender = |sender: u32| {
        let app = &app;
        async move {
            let conversation = format!("backlog-{sender}");
            let mut acknowledged = Vec::new();
            for n in 0..EVENTS_EACH {
                let response = app.post_json(event(&conversation, n).as_bytes()).await;
                acknowledged.push(accepted(response).await.0);
            }
            (conversation, acknowledged)
        }
    };
    let acknowledged = futures_util::future::join_all((0..SENDERS).map(sender)).await;
    cluster.broker_up(1).expect("broker up");
    wait_until_spool_is_empty(&app).await;
    app.stop().await;

    let records = consume_all(&cluster.bootstrap_servers(), &topics).await;
    assert!(
        records.len() >= (SENDERS * EVENTS_EACH) as usize,
        "{} records",
        records.len()
    );
    for (conversation, acknowledged) in acknowledged {
        assert_eq!(
            first_copies(&records, &conversation),
            acknowledged,
            "{conversation}: spooled events out of order or missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_with_retry_after_and_recovers_once_forwarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = spool_settings(&dir);
    settings.spool.max_events = NonZeroU64::new(3).expect("not zero");
    let (settings, cluster, topics) = on_controlled_cluster(settings);
    let app = spawn_app(settings).await;
    cluster.broker_down(1).expect("broker down");

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for n in 0..6 {
        let response = app.post_json(event("full", n).as_bytes()).await;
        if response.status() == 200 {
            acknowledged.push(accepted(response).await.0);
            continue;
        }
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(body["error"]["code"], "spool_full", "{body}");
        refused += 1;
    }
    assert_eq!((acknowledged.len(), refused), (3, 3));
    app.wait_for_readiness("not ready while full", |status, body| {
        status == 503
            && body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("spool full"))
    })
    .await;

    cluster.broker_up(1).expect("broker up");
    wait_until_spool_is_empty(&app).await;
    app.wait_until_ready().await;
    acknowledged.push(
        accepted(app.post_json(event("full", 9).as_bytes()).await)
            .await
            .0,
    );
    app.stop().await;
    let records = consume(
        &cluster.bootstrap_servers(),
        &topics,
        4,
        Duration::from_secs(10),
    )
    .await;
    for id in &acknowledged {
        assert!(records.iter().any(|record| record.id() == id), "{id} lost");
    }
}

/// Forwarded by the next instance, the records keep the time the first one received them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_spooled_before_a_stop_are_forwarded_after_the_restart_with_their_accept_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = spool_settings(&dir);
    settings.server.shutdown_timeout_ms = Duration::from_millis(500);
    let (settings, cluster, topics) = on_controlled_cluster(settings);

    let first = spawn_app(settings.clone()).await;
    cluster.broker_down(1).expect("broker down");
    let mut acknowledged = Vec::new();
    for n in 0..10 {
        acknowledged.push(
            accepted(first.post_json(event("restart", n).as_bytes()).await)
                .await
                .0,
        );
    }
    first.stop().await;

    let restarted_at_ms =
        i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
            .expect("millis");
    cluster.broker_up(1).expect("broker up");
    let second = spawn_app(settings).await;
    wait_until_spool_is_empty(&second).await;
    second.stop().await;
    let records = consume(
        &cluster.bootstrap_servers(),
        &topics,
        10,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(first_copies(&records, "restart"), acknowledged);
    for record in &records {
        let stamped = record.timestamp_ms.expect("a timestamp");
        assert_eq!(stamped, received_at_ms(record), "{record:?}");
        assert!(
            stamped < restarted_at_ms,
            "stamped {stamped}, after the restart at {restarted_at_ms}"
        );
    }
}

/// Stopped while senders are posting: every event answered 2xx is in Kafka once the stop has
/// returned, with no restart; the forwarder empties the spool before the bridge ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_under_load_forwards_every_answered_event_before_it_returns() {
    const SENDERS: u32 = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = spool_settings(&dir);
    // One event in flight: forwarding falls behind the senders, so the stop finds a backlog.
    settings.spool.forward_window = NonZeroUsize::new(1).expect("not zero");
    let (settings, cluster, topics) = on_controlled_cluster(settings);
    let app = spawn_app(settings).await;
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let client = app.client.clone();
            let url = app.webhook_url();
            tokio::spawn(async move {
                let conversation = format!("stop-{sender}");
                let mut acknowledged = Vec::new();
                for n in 0.. {
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(event(&conversation, n))
                        .send()
                        .await;
                    let Ok(response) = sent.and_then(reqwest::Response::error_for_status) else {
                        break;
                    };
                    let Ok(body) = response.json::<Value>().await else {
                        break;
                    };
                    acknowledged.push(body["id"].as_str().expect("id").to_owned());
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.stop().await;
    let mut acknowledged = Vec::new();
    for sender in senders {
        acknowledged.extend(sender.await.expect("sender"));
    }
    assert!(
        acknowledged.len() >= 50,
        "only {} events answered",
        acknowledged.len()
    );

    let records = consume_all(&cluster.bootstrap_servers(), &topics).await;
    for id in &acknowledged {
        assert!(
            records.iter().any(|record| record.id() == id),
            "{id} was answered 2xx but is not in Kafka after the stop"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dedup_window_answers_a_resend_without_publishing_it_again() {
    let mut settings = test_settings();
    settings.dedup.enabled = true;
    let app = spawn_app(settings).await;
    let body = event("dedup", 1);
    let (id, _) = accepted(app.post_json(body.as_bytes()).await).await;
    let resend = app.post_json(body.as_bytes()).await;
    assert_eq!(resend.status(), 200);
    let resend: Value = resend.json().await.expect("JSON");
    assert_eq!(resend["status"], "duplicate");
    assert_eq!(resend["id"], id.as_str());
    // The same event by form is the same event.
    let form = serde_urlencoded::to_string(
        serde_json::from_str::<HashMap<String, Value>>(&body)
            .expect("object")
            .into_iter()
            .map(|(key, value)| (key, value.as_str().map_or(value.to_string(), str::to_owned)))
            .collect::<Vec<_>>(),
    )
    .expect("form");
    let by_form: Value = app.post_form(&form).await.json().await.expect("JSON");
    assert_eq!(by_form["status"], "duplicate", "{by_form}");
    let other = accepted(app.post_json(event("dedup", 2).as_bytes()).await).await;
    assert_ne!(other.0, id);

    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        3,
        Duration::from_secs(3),
    )
    .await;
    let copies = records.iter().filter(|record| record.id() == id).count();
    assert_eq!(copies, 1, "a duplicate was published");
    assert_eq!(records.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_window_a_resend_is_published_again_under_the_same_id() {
    let app = spawn_app(test_settings()).await;
    let body = event("resend", 1);
    let (first, _) = accepted(app.post_json(body.as_bytes()).await).await;
    let (second, _) = accepted(app.post_json(body.as_bytes()).await).await;
    assert_eq!(first, second);
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        2,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        records.iter().filter(|record| record.id() == first).count(),
        2
    );
}

/// A topic the bridge may not write to (the mock cluster answers its metadata with
/// TOPIC_AUTHORIZATION_FAILED): its event is retried while later events of its key wait and
/// other keys flow, then quarantined, and its key goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kafka_refuses_for_good_is_quarantined_and_only_its_key_waits_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = spool_settings(&dir);
    settings.spool.quarantine_after_attempts = NonZeroU32::new(5).expect("not zero");
    settings.spool.retry_backoff_max_ms = Duration::from_millis(3_000);
    let forbidden = settings.routing.event_topics["answered"].clone();
    let (settings, cluster, topics) = on_controlled_cluster(settings);
    let spool_settings = settings.spool.clone();
    let application = Application::build(settings).await.expect("builds");
    // Set once the start-up check passed, before the readiness probe first asks for metadata:
    // the mock cluster reports the error only in metadata, and the producer the probe shares
    // would otherwise send to the leader it already knows.
    cluster
        .topic_error(
            forbidden.as_str(),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .expect("topic error");
    let app = run_app(application, topics.clone()).await;

    let post = |status: &'static str, conversation: &'static str, n: u32| {
        let app = &app;
        async move {
            let response = app
                .post_json(event_with_status(status, conversation, n).as_bytes())
                .await;
            accepted(response).await.0
        }
    };
    let first = post("started", "blocked", 0).await;
    let refused = post("answered", "blocked", 1).await;
    app.wait_for_readiness("the event refused and retried", |_, body| {
        body["spool"]["kafka_refused"] == 1
    })
    .await;
    let after = post("started", "blocked", 2).await;
    let other = post("started", "other", 3).await;
    app.wait_for_readiness(
        "the other key forwarded, the refused key waiting",
        |_, body| body["spool"]["events"] == 2 && body["spool"]["kafka_refused"] == 1,
    )
    .await;
    let allowed: Vec<_> = topics
        .iter()
        .filter(|topic| **topic != forbidden)
        .cloned()
        .collect();
    let records = consume_all(&cluster.bootstrap_servers(), &allowed).await;
    assert_eq!(first_copies(&records, "other"), vec![other.clone()]);
    assert_eq!(
        first_copies(&records, "blocked"),
        vec![first.clone()],
        "a later event of the key overtook the refused one while it was retried"
    );
    assert_eq!(
        app.readiness().await.1["spool"]["quarantined"],
        0,
        "looked while the event was still retried"
    );

    app.wait_for_readiness("quarantined, and the key went on", |_, body| {
        body["spool"]["quarantined"] == 1 && body["spool"]["events"] == 0
    })
    .await;
    app.stop().await;

    cluster
        .topic_error(
            forbidden.as_str(),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
        )
        .expect("topic error cleared");
    let records = consume_all(&cluster.bootstrap_servers(), &topics).await;
    assert_eq!(first_copies(&records, "blocked"), vec![first, after]);
    assert_eq!(first_copies(&records, "other"), vec![other]);
    let spool = Spool::open(&spool_settings).expect("reopen");
    let quarantined = spool.quarantined().expect("quarantine");
    spool.close();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].1.attempts, 5);
    assert!(
        quarantined[0].1.error.contains("uthoriz"),
        "{}",
        quarantined[0].1.error
    );
    let kept = SpooledEvent::decode(&quarantined[0].1.event).expect("kept whole");
    let envelope: Value = serde_json::from_slice(&kept.records[0].payload).expect("envelope");
    assert_eq!(envelope["id"], refused.as_str());
}
