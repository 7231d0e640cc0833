//! Leg-B CDRs keep their call's key: the conversation an earlier event of the leg named.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{consume, spawn_app, test_settings};
use crate::scenarios::accepted;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_b_cdr_is_keyed_by_the_conversation_its_events_named() {
    let app = spawn_app(test_settings()).await;
    let payloads = [
        json!({"type": "event", "status": "started", "leg": "b", "cmiuuid": "leg-b-1",
               "conversation_uuid": "conv-1", "time": 1634724624830_u64}),
        json!({"type": "cdr", "status": "answered", "leg": "b", "cmiuuid": "leg-b-1",
               "time": 1634724684830_u64}),
        json!({"type": "cdr", "status": "missed", "leg": "b", "cmiuuid": "leg-b-unseen",
               "time": 1634724684830_u64}),
    ];
    for payload in &payloads {
        accepted(app.post_json(payload.to_string().as_bytes()).await).await;
    }
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        payloads.len(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), payloads.len());
    let cdr_of = |cmiuuid: &str| {
        records
            .iter()
            .find(|record| {
                record.envelope["data"]["kind"] == "cdr"
                    && record.envelope["data"]["fields"]["cmiuuid"] == cmiuuid
            })
            .unwrap_or_else(|| panic!("no CDR of {cmiuuid}"))
    };
    let learned = cdr_of("leg-b-1");
    assert_eq!(learned.key.as_deref(), Some("conv-1"));
    assert_eq!(
        learned.envelope["data"]["conversation_id_source"],
        "learned"
    );
    assert_eq!(learned.envelope["data"]["warnings"], json!([]));

    let unseen = cdr_of("leg-b-unseen");
    assert_eq!(unseen.key.as_deref(), Some("leg-b-unseen"));
    assert_eq!(
        unseen.envelope["data"]["warnings"][0]["code"],
        "conversation_not_learned"
    );
}
