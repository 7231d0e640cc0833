//! Scenarios shared by the mock-cluster suite and the real-broker suite.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::fixtures::{as_text_pairs, form_encoded, json_fixtures};
use crate::helpers::{Consumed, TestApp, consume};

/// The topic a documented fixture must land on, from its own `type` and `status`.
fn expected_topic(prefix: &str, object: &Map<String, Value>) -> String {
    format!(
        "{prefix}telecmi.{}.{}",
        object["type"].as_str().expect("type"),
        object["status"].as_str().expect("status")
    )
}

/// The conversation key rule, written out independently of the bridge.
fn expected_key(object: &Map<String, Value>) -> String {
    let text = |key: &str| {
        object.get(key).map(|value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    };
    let leg = text("leg");
    text("conversation_uuid")
        .or_else(|| text("cmiuuid").filter(|_| leg.as_deref() != Some("b")))
        .or_else(|| text("call_id"))
        .or_else(|| text("cmiuuid"))
        .expect("every fixture identifies its call")
}

pub async fn accepted(response: reqwest::Response) -> (String, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    (
        body["id"].as_str().expect("id").to_owned(),
        body["topic"].as_str().expect("topic").to_owned(),
    )
}

fn object_of_text_pairs(pairs: Vec<(String, String)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect(),
    )
}

/// Every fixture by POST JSON, POST form and GET; every record read back and checked: topic,
/// key, headers, envelope, and the original payload exactly as sent. `prefix` is the prefix of
/// the app's topic names.
pub async fn fixtures_round_trip(app: &TestApp, prefix: &str) {
    let fixtures = json_fixtures();
    let mut sent = Vec::new();
    for fixture in &fixtures {
        let object = fixture.object.as_ref().expect("object");
        let form = form_encoded(object);
        let by_json = accepted(app.post_json(&fixture.body).await).await;
        let by_form = accepted(app.post_form(&form).await).await;
        let by_query = accepted(app.get_query(&form).await).await;
        assert_eq!(by_json, by_form, "{}: JSON and form differ", fixture.name);
        assert_eq!(by_json, by_query, "{}: JSON and query differ", fixture.name);
        assert_eq!(
            by_json.1,
            expected_topic(prefix, object),
            "{}",
            fixture.name
        );
        sent.push((fixture, by_json.0));
    }

    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        fixtures.len() * 3,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(records.len(), fixtures.len() * 3);
    let mut by_id: HashMap<&str, Vec<&Consumed>> = HashMap::new();
    for record in &records {
        by_id.entry(record.id()).or_default().push(record);
    }

    for (fixture, id) in &sent {
        let object = fixture.object.as_ref().expect("object");
        let json_payload = Value::Object(object.clone()).to_string();
        let text_payload = object_of_text_pairs(as_text_pairs(object));
        // Two fixtures may be versions of one event (same identity, so the same id): pick
        // this fixture's records by their original payload. Fixtures that differ only in a
        // value's JSON type are the same text in a form, so those match twice.
        let copies: Vec<&Consumed> = by_id[id.as_str()]
            .iter()
            .copied()
            .filter(|record| {
                let payload = &record.envelope["data"]["original"]["payload"];
                serde_json::to_string(payload).ok().as_ref() == Some(&json_payload)
                    || *payload == text_payload
            })
            .collect();
        assert!(copies.len() >= 3, "{}: a record per encoding", fixture.name);
        let mut encodings: Vec<&str> = Vec::new();
        for record in &copies {
            let envelope = &record.envelope;
            let data = &envelope["data"];
            assert_eq!(
                record.topic,
                expected_topic(prefix, object),
                "{}",
                fixture.name
            );
            assert_eq!(record.key.as_deref(), Some(expected_key(object).as_str()));
            assert_eq!(envelope["subject"], expected_key(object).as_str());
            assert_eq!(
                record.header("content-type"),
                Some("application/cloudevents+json; charset=utf-8")
            );
            assert_eq!(record.header("telecmi-event-id"), Some(id.as_str()));
            assert_eq!(record.header("telecmi-kind"), object["type"].as_str());
            assert_eq!(record.header("telecmi-status"), object["status"].as_str());
            assert_eq!(record.header("telecmi-envelope-version"), Some("2"));
            assert_eq!(envelope["specversion"], "1.0");
            assert_eq!(data["kind"], object["type"]);
            assert_eq!(data["status"], object["status"]);
            assert_eq!(data["call_leg_id"], object["cmiuuid"]);
            let encoding = data["original"]["encoding"].as_str().expect("encoding");
            let payload = &data["original"]["payload"];
            match encoding {
                // Same keys, order, values and JSON types as sent.
                "json" => assert_eq!(payload.to_string(), json_payload, "{}", fixture.name),
                "form" | "query" => assert_eq!(*payload, text_payload, "{}", fixture.name),
                other => panic!("unexpected encoding {other}"),
            }
            encodings.push(encoding);
        }
        encodings.sort_unstable();
        encodings.dedup();
        assert_eq!(encodings, ["form", "json", "query"]);
        let without_original = |record: &Consumed| {
            let mut envelope = record.envelope.clone();
            envelope["data"]
                .as_object_mut()
                .expect("data")
                .retain(|key, _| key != "original" && key != "received_at");
            envelope
        };
        for copy in &copies[1..] {
            assert_eq!(
                without_original(copies[0]),
                without_original(copy),
                "{}",
                fixture.name
            );
        }
    }
}

/// The steps of one inbound call, leg A and leg B, as TeleCMI reports them.
fn lifecycle(conversation: &str, leg_b: &str, start_ms: u64) -> Vec<Value> {
    let step = |n: u64, kind: &str, status: &str, leg: Option<&str>, cmiuuid: &str| {
        let mut payload = json!({
            "type": kind, "status": status, "direction": "inbound",
            "conversation_uuid": conversation, "cmiuuid": cmiuuid,
            "from": "440000000000", "app_id": 2222223, "time": start_ms + n * 1000,
        });
        if let Some(leg) = leg {
            payload["leg"] = json!(leg);
        }
        payload
    };
    vec![
        step(0, "event", "waiting", None, conversation),
        step(1, "event", "started", Some("b"), leg_b),
        step(2, "event", "answered", Some("b"), leg_b),
        step(3, "event", "answered", None, conversation),
        step(4, "event", "hangup", Some("b"), leg_b),
        step(5, "event", "hangup", None, conversation),
        step(6, "cdr", "answered", None, conversation),
    ]
}

/// Many call lifecycles sent at once from `clients` tasks, each conversation's steps one after
/// another; read back, every (topic, key) holds its events in send order, and so does the
/// combined topic when the app has it on.
pub async fn lifecycles_keep_order(app: &TestApp, conversations: usize, clients: usize) {
    let calls: Vec<Vec<Value>> = (0..conversations)
        .map(|n| {
            let conversation = format!("{}-{n:04}", uuid::Uuid::new_v4());
            lifecycle(
                &conversation,
                &format!("{conversation}-b"),
                1_700_000_000_000 + n as u64,
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mine: Vec<Vec<Value>> = calls
            .iter()
            .skip(client)
            .step_by(clients)
            .cloned()
            .collect();
        let http = app.client.clone();
        let url = app.webhook_url();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            // Interleave this client's conversations step by step.
            for step in 0..mine.first().map_or(0, Vec::len) {
                for call in &mine {
                    let response = http
                        .post(&url)
                        .json(&call[step])
                        .send()
                        .await
                        .expect("request");
                    let (id, topic) = accepted(response).await;
                    let key = call[step]["conversation_uuid"]
                        .as_str()
                        .expect("key")
                        .to_owned();
                    sent.push((topic, key, id));
                }
            }
            sent
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.expect("client task"));
    }
    let combined = app
        .topics
        .iter()
        .find(|topic| topic.as_str().ends_with("telecmi.calls"))
        .map(|topic| topic.as_str().to_owned());
    let expected_records = sent.len() * if combined.is_some() { 2 } else { 1 };
    let mut records = consume(
        &app.bootstrap_servers,
        &app.topics,
        expected_records,
        Duration::from_secs(30),
    )
    .await;
    if records.len() < expected_records {
        // Seen once on a just-formatted broker: a consumer stalled on some partitions. A second
        // consumer tells a stalled reader (all records there) from lost records (still missing).
        eprintln!(
            "read {} of {expected_records} records; reading again with a new consumer",
            records.len()
        );
        records = consume(
            &app.bootstrap_servers,
            &app.topics,
            expected_records,
            Duration::from_secs(30),
        )
        .await;
    }
    let missing: Vec<&String> = sent
        .iter()
        .map(|(_, _, id)| id)
        .filter(|id| !records.iter().any(|record| record.id() == id.as_str()))
        .collect();
    assert!(missing.is_empty(), "accepted but not in Kafka: {missing:?}");
    assert_eq!(records.len(), expected_records);

    // Records of one partition arrive in offset order, so arrival order per (topic, key) is
    // the log's order.
    let mut logged: HashMap<(String, String), Vec<String>> = HashMap::new();
    for record in &records {
        let key = record.key.clone().expect("every record has a key");
        logged
            .entry((record.topic.clone(), key))
            .or_default()
            .push(record.id().to_owned());
    }
    let mut expected: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (topic, key, id) in &sent {
        expected
            .entry((topic.clone(), key.clone()))
            .or_default()
            .push(id.clone());
        if let Some(combined) = &combined {
            expected
                .entry((combined.clone(), key.clone()))
                .or_default()
                .push(id.clone());
        }
    }
    assert_eq!(logged.len(), expected.len());
    for (topic_and_key, ids) in &expected {
        assert_eq!(
            logged.get(topic_and_key),
            Some(ids),
            "order of {topic_and_key:?}"
        );
    }
}

/// Java's murmur2 as Kafka's default partitioner uses it, written out from its definition.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut hash = SEED ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        hash ^= u32::from(tail[0]);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    ((hash & 0x7fff_ffff) % partitions as u32) as i32
}

/// Keys land on the partition Java clients and Kafka Streams would choose (murmur2), so
/// topics keyed by conversation are co-partitioned. `partitions` is the app's partition count.
pub async fn keys_land_where_java_clients_put_them(app: &TestApp, partitions: i32) {
    let keys: Vec<String> = (0..40)
        .map(|n| format!("conversation-{n}-{}", uuid::Uuid::new_v4()))
        .collect();
    for key in &keys {
        let body = format!(r#"{{"type":"event","status":"hangup","conversation_uuid":"{key}"}}"#);
        assert_eq!(app.post_json(body.as_bytes()).await.status(), 200);
    }
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        keys.len(),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(records.len(), keys.len());
    for record in &records {
        let key = record.key.as_deref().expect("key");
        assert_eq!(
            record.partition,
            java_partition(key.as_bytes(), partitions),
            "{key}"
        );
    }
}
