//! The product line: the webhook path (or `envelope.product`) decides `telecmiproduct`, and a
//! token in the path still authenticates.

use std::time::Duration;

use serde_json::json;
use telecmi_bridge::domain::Product;

use crate::golden::{schema_errors, schema_validator};
use crate::helpers::{consume, spawn_app, test_settings};
use crate::scenarios::accepted;

const TOKEN: &str = "0123456789abcdef-product-token";

fn payload(cmiuuid: &str) -> String {
    json!({"type": "event", "status": "answered", "cmiuuid": cmiuuid, "time": 1634724624830_u64})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_names_the_product_line_and_a_path_token_still_authenticates() {
    let mut settings = test_settings();
    settings.auth.required = true;
    settings.auth.tokens = serde_json::from_value(json!([TOKEN])).expect("tokens");
    let app = spawn_app(settings).await;
    let base = app.webhook_url();
    let sent = [
        (format!("{base}/{TOKEN}"), None, "by-token", "chub"),
        (base.clone(), Some(TOKEN), "default", "chub"),
        (format!("{base}/chub"), Some(TOKEN), "chub", "chub"),
        (
            format!("{base}/chub-india"),
            Some(TOKEN),
            "india",
            "chub_india",
        ),
        (
            format!("{base}/chub-india/{TOKEN}"),
            None,
            "india-token",
            "chub_india",
        ),
    ];
    for (url, header_token, cmiuuid, _) in &sent {
        let mut request = app.client.post(url).body(payload(cmiuuid));
        if let Some(token) = header_token {
            request = request.header("x-bridge-token", *token);
        }
        accepted(request.send().await.expect("request")).await;
    }
    for refused_url in [
        format!("{base}/chub-india"),
        format!("{base}/chub-india/0123456789abcdef-wrong"),
    ] {
        let refused = app
            .client
            .post(refused_url)
            .body(payload("refused"))
            .send()
            .await
            .expect("request");
        assert_eq!(refused.status(), 401);
    }
    let unknown = app
        .client
        .post(format!("{base}/chub-usa/{TOKEN}"))
        .body(payload("unknown"))
        .send()
        .await
        .expect("request");
    assert_eq!(unknown.status(), 404);

    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        sent.len(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), sent.len());
    let validator = schema_validator();
    for (_, _, cmiuuid, product) in &sent {
        let record = records
            .iter()
            .find(|record| record.envelope["data"]["fields"]["cmiuuid"] == *cmiuuid)
            .unwrap_or_else(|| panic!("no record of {cmiuuid}"));
        assert_eq!(record.envelope["telecmiproduct"], *product, "{cmiuuid}");
        assert_eq!(record.envelope["source"], "urn:telecmi-bridge");
        assert_eq!(
            schema_errors(&validator, &record.envelope),
            Vec::<String>::new()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setting_names_the_product_line_of_the_bare_path() {
    let mut settings = test_settings();
    settings.envelope.product = Product::ChubIndia;
    let app = spawn_app(settings).await;
    for url in [app.webhook_url(), format!("{}/chub", app.webhook_url())] {
        let cmiuuid = if url.ends_with("/chub") {
            "chub"
        } else {
            "bare"
        };
        accepted(
            app.client
                .post(url)
                .body(payload(cmiuuid))
                .send()
                .await
                .expect("request"),
        )
        .await;
    }
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        2,
        Duration::from_secs(10),
    )
    .await;
    for record in &records {
        let expected = match record.envelope["data"]["fields"]["cmiuuid"].as_str() {
            Some("bare") => "chub_india",
            _ => "chub",
        };
        assert_eq!(record.envelope["telecmiproduct"], expected);
    }
    assert_eq!(records.len(), 2);
}
