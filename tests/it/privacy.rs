//! Phone-number protection end to end: with `privacy.mode = "hmac"`, no number from any
//! fixture survives anywhere in the published record, and the same number hashes alike.

use std::time::Duration;

use serde_json::Value;
use telecmi_bridge::config::{PrivacyMode, SecretValue};

use crate::fixtures::{json_fixtures, raw_leading_zero_fixture};
use crate::helpers::{consume, spawn_app, test_settings};
use crate::scenarios::accepted;

const PHONE_FIELDS: [&str; 4] = ["from", "to", "callerid", "virtual_number"];

fn digits(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    text.chars().filter(char::is_ascii_digit).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_numbers_leave_no_trace_in_any_record() {
    let mut settings = test_settings();
    settings.privacy.mode = PrivacyMode::Hmac;
    settings.privacy.hmac_key = Some(SecretValue::from("data-platform-join-key-01"));
    let app = spawn_app(settings).await;

    let mut numbers = Vec::new();
    let mut sent = 0;
    for fixture in json_fixtures() {
        let object = fixture.object.as_ref().expect("object");
        numbers.extend(
            PHONE_FIELDS
                .iter()
                .filter_map(|field| object.get(*field))
                .map(digits)
                .filter(|number| number.len() >= 6),
        );
        accepted(app.post_json(&fixture.body).await).await;
        sent += 1;
    }
    let leading_zero = raw_leading_zero_fixture();
    accepted(app.post_json(&leading_zero.body).await).await;
    sent += 1;
    numbers.push("04471000000".to_owned());
    // Not an envelope: the dead letter keeps no body with privacy on.
    let dead = app.post_json(br#"{"from": 919876543210,"#).await;
    assert_eq!(dead.status(), 400);
    numbers.push("919876543210".to_owned());
    assert!(numbers.len() > 20, "the fixtures carry phone numbers");

    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        sent + 1,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(records.len(), sent + 1);
    for record in &records {
        let text = String::from_utf8_lossy(&record.payload);
        let headers = format!("{:?}", record.headers);
        for number in &numbers {
            assert!(
                !text.contains(number.as_str()) && !headers.contains(number.as_str()),
                "{number} survives in a record on {}: {text}",
                record.topic
            );
        }
    }
    let hashes: Vec<&str> = records
        .iter()
        .filter_map(|record| record.envelope["data"]["fields"]["from"].as_str())
        .collect();
    assert!(!hashes.is_empty());
    assert!(
        hashes.iter().all(|hash| hash.starts_with("hmac-sha256:")),
        "{hashes:?}"
    );
    let original_from = records
        .iter()
        .filter_map(|record| record.envelope["data"]["original"]["payload"]["from"].as_str())
        .next()
        .expect("an original with a from");
    assert!(original_from.starts_with("hmac-sha256:"));
    let dead_letter = records
        .iter()
        .find(|record| record.topic == "telecmi.deadletter")
        .expect("the dead letter");
    assert!(dead_letter.payload.is_empty());
    assert_eq!(
        dead_letter.header("telecmi-deadletter-body"),
        Some("omitted: privacy")
    );
}

/// Numbers under other spellings, nested, and inside the customer's own parameters: 15
/// numbers, by JSON and by form, none of whose digits may reach Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_under_any_spelling_nested_or_in_custom_parameters_are_protected() {
    let mut settings = test_settings();
    settings.privacy.mode = PrivacyMode::Hmac;
    settings.privacy.hmac_key = Some(SecretValue::from("data-platform-join-key-01"));
    settings
        .privacy
        .phone_fields
        .push("lead.contact.alt".to_owned());
    let app = spawn_app(settings).await;
    let numbers: Vec<String> = (1..=15).map(|n| format!("9198765{n:05}")).collect();
    let custom = serde_json::json!({"crm_phone": numbers[5], "mobile": {"home": numbers[6]}, "note": format!("call back on +{}", numbers[7])}).to_string();
    let payload = serde_json::json!({
        "type": "event", "status": "answered", "cmiuuid": "privacy-spellings",
        "From": numbers[0], "TO": numbers[1], "caller_id": numbers[2], "callerId": numbers[3],
        "did": numbers[4], "custom": custom,
        "extra_params": format!("click2call for {} and {}", numbers[8], numbers[9]),
        "agents": [{"Caller-ID": numbers[10]}], "transfer": {"to": numbers[11]},
        "lead": {"contact": {"alt": numbers[12]}},
    });
    accepted(app.post_json(payload.to_string().as_bytes()).await).await;
    let form = format!(
        "type=event&status=answered&cmiuuid=privacy-form&FROM={}&Virtual_Number={}",
        numbers[13], numbers[14]
    );
    accepted(app.post_form(&form).await).await;
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        2,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(records.len(), 2);
    for record in &records {
        let text = String::from_utf8_lossy(&record.payload);
        for number in &numbers {
            assert!(!text.contains(&number[4..]), "{number} survives: {text}");
        }
    }
    let event = records
        .iter()
        .find(|record| record.envelope["data"]["fields"]["cmiuuid"] == "privacy-spellings")
        .expect("the JSON event");
    let fields = &event.envelope["data"]["fields"];
    assert_eq!(
        fields["custom"]["note"]
            .as_str()
            .map(|note| note.starts_with("call back on hmac-sha256:")),
        Some(true),
        "{fields}"
    );
    assert_eq!(fields["status"], "answered", "other fields untouched");
}
