//! End to end over HTTP: every fixture in, every record read back from Kafka and checked.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures::raw_leading_zero_fixture;
use crate::helpers::{Consumed, consume, on_controlled_cluster, spawn_app, test_settings};
use crate::scenarios::{self, accepted};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_by_json_form_and_query_is_published_and_reconstructable() {
    let app = spawn_app(test_settings()).await;
    scenarios::fixtures_round_trip(&app, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_call_lifecycles_keep_their_order_per_conversation() {
    let mut settings = test_settings();
    settings.routing.combined_topic_enabled = true;
    let app = spawn_app(settings).await;
    scenarios::lifecycles_keep_order(&app, 40, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_land_on_the_partition_a_java_client_would_choose() {
    let app = spawn_app(test_settings()).await;
    scenarios::keys_land_where_java_clients_put_them(&app, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leading_zero_sample_is_accepted_and_kept_digit_for_digit() {
    let app = spawn_app(test_settings()).await;
    let fixture = raw_leading_zero_fixture();
    let (id, topic) = accepted(app.post_json(&fixture.body).await).await;
    assert_eq!(topic, "telecmi.event.started");
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        1,
        Duration::from_secs(10),
    )
    .await;
    let data = &records[0].envelope["data"];
    assert_eq!(records[0].id(), id);
    assert_eq!(data["fields"]["callerid"], "04471000000");
    assert_eq!(
        data["original"]["raw"].as_str().map(str::as_bytes),
        Some(fixture.body.as_slice())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_missing_statuses_and_types_are_still_published() {
    let mut settings = test_settings();
    settings.routing.combined_topic_enabled = true;
    let app = spawn_app(settings).await;
    let cases = [
        (
            json!({"type": "event", "status": "RINGING", "cmiuuid": "u1"}),
            "telecmi.event.other",
        ),
        (
            json!({"type": "cdr", "status": "Busy", "cmiuuid": "u2"}),
            "telecmi.cdr.other",
        ),
        (
            json!({"status": "missed", "waitedsec": 4, "cmiuuid": "u3"}),
            "telecmi.cdr.missed",
        ),
        (
            json!({"cmiuuid": "u4", "note": "no status"}),
            "telecmi.unrouted",
        ),
    ];
    for (payload, topic) in &cases {
        let (_, answered_topic) =
            accepted(app.post_json(payload.to_string().as_bytes()).await).await;
        assert_eq!(answered_topic, *topic, "{payload}");
    }
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        cases.len() * 2,
        Duration::from_secs(10),
    )
    .await;
    for (payload, topic) in &cases {
        let key = payload["cmiuuid"].as_str();
        let copies: Vec<&Consumed> = records
            .iter()
            .filter(|record| record.key.as_deref() == key)
            .collect();
        let mut topics: Vec<&str> = copies.iter().map(|record| record.topic.as_str()).collect();
        topics.sort_unstable();
        let mut expected = vec!["telecmi.calls", *topic];
        expected.sort_unstable();
        assert_eq!(topics, expected, "{payload}");
        assert_eq!(
            copies[0].envelope["data"]["fields"]["cmiuuid"],
            payload["cmiuuid"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_configured_and_never_kept() {
    let token = "0123456789abcdef-rotating-secret";
    let mut settings = test_settings();
    settings.auth.required = true;
    settings.auth.tokens = serde_json::from_value(json!([token])).expect("tokens");
    let app = spawn_app(settings).await;
    let payload = r#"{"type":"event","status":"answered","cmiuuid":"t1","time":1634724624830}"#;

    let refused = app.post_json(payload.as_bytes()).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = app
        .get_query("type=event&status=answered&bridge_token=0123456789abcdef-wrong")
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        app.record_count(),
        0,
        "nothing unauthenticated reaches Kafka"
    );

    let by_path = app
        .client
        .post(format!("{}/{token}", app.webhook_url()))
        .body(payload)
        .send()
        .await
        .expect("request");
    accepted(by_path).await;
    let by_header = app
        .client
        .post(app.webhook_url())
        .header("x-bridge-token", token)
        .body(payload)
        .send()
        .await
        .expect("request");
    accepted(by_header).await;
    let by_query = app
        .get_query(&format!(
            "type=event&status=answered&cmiuuid=t2&bridge_token={token}"
        ))
        .await;
    accepted(by_query).await;

    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        3,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), 3);
    for record in &records {
        assert!(
            !record.envelope.to_string().contains(token),
            "token kept in {}",
            record.envelope
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_gives_503_with_retry_after_and_nothing_acknowledged_is_lost() {
    let settings = test_settings();
    let (mut settings, cluster, topics) = on_controlled_cluster(settings);
    settings.delivery.ack_timeout_ms = Duration::from_millis(1_500);
    let app = spawn_app(settings).await;
    let event = |n: u32| {
        format!(r#"{{"type":"event","status":"answered","cmiuuid":"c{n}","time":1634724624830}}"#)
    };

    let mut acknowledged = Vec::new();
    for n in 0..5 {
        acknowledged.push(accepted(app.post_json(event(n).as_bytes()).await).await.0);
    }

    cluster.broker_down(1).expect("broker down");
    let mut refused = 0;
    for n in 5..8 {
        let response = app.post_json(event(n).as_bytes()).await;
        if response.status() == 200 {
            acknowledged.push(accepted(response).await.0);
            continue;
        }
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
        let body: Value = response.json().await.expect("JSON error");
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            ["kafka_timeout", "kafka_unavailable"].contains(&code.as_str()),
            "{body}"
        );
        refused += 1;
    }
    assert!(
        refused > 0,
        "a down broker must not yield 2xx for every event"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app.ready_status(true).await != 503 {
        assert!(
            std::time::Instant::now() < deadline,
            "readyz did not turn 503"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    cluster.broker_up(1).expect("broker up");
    app.wait_until_ready().await;
    // As a sender would: retry on 503 until the producer has reconnected.
    for n in 8..10 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let response = app.post_json(event(n).as_bytes()).await;
            if response.status() == 200 {
                acknowledged.push(accepted(response).await.0);
                break;
            }
            assert_eq!(response.status(), 503);
            assert!(
                std::time::Instant::now() < deadline,
                "no recovery after the outage"
            );
        }
    }
    app.stop().await;

    let records = consume(
        &cluster.bootstrap_servers(),
        &topics,
        acknowledged.len() + refused,
        Duration::from_secs(10),
    )
    .await;
    for id in &acknowledged {
        assert!(
            records.iter().any(|record| record.id() == id),
            "acknowledged event {id} missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_acknowledged_under_concurrency_survives_a_stop() {
    let settings = test_settings();
    let (settings, cluster, topics) = on_controlled_cluster(settings);
    let app = spawn_app(settings).await;
    let url = app.webhook_url();
    let sends = (0..200).map(|n| {
        let client = app.client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let body = format!(r#"{{"type":"cdr","status":"missed","cmiuuid":"g{n}"}}"#);
            let response = client.post(url).body(body).send().await.expect("request");
            (
                response.status().as_u16(),
                response.json::<Value>().await.expect("JSON"),
            )
        })
    });
    let mut acknowledged = Vec::new();
    for send in sends.collect::<Vec<_>>() {
        let (status, body) = send.await.expect("task");
        assert_eq!(status, 200, "{body}");
        acknowledged.push(body["id"].as_str().expect("id").to_owned());
    }
    app.stop().await;
    let records = consume(
        &cluster.bootstrap_servers(),
        &topics,
        200,
        Duration::from_secs(10),
    )
    .await;
    let found: std::collections::HashSet<&str> = records.iter().map(Consumed::id).collect();
    assert_eq!(found.len(), 200);
    assert!(acknowledged.iter().all(|id| found.contains(id.as_str())));
}

/// `curl -d @payload.json` labels a JSON file as a form: it is read as JSON, routed by its
/// status, and the envelope says what was assumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_sent_as_a_form_is_read_as_json_and_routed() {
    let app = spawn_app(test_settings()).await;
    let payload =
        json!({"type": "cdr", "status": "answered", "cmiuid": "curl-1", "from": "9100000000"});
    let (id, topic) = accepted(app.post_form(&payload.to_string()).await).await;
    assert_eq!(topic, "telecmi.cdr.answered");
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records[0].id(), id);
    let data = &records[0].envelope["data"];
    assert_eq!(data["original"]["encoding"], "json");
    assert_eq!(data["original"]["payload"], payload);
    assert_eq!(data["warnings"][0]["code"], "json_labelled_as_form");
    assert_eq!(
        data["warnings"][0]["message"],
        telecmi_bridge::pipeline::decode::JSON_LABELLED_AS_FORM
    );
}
