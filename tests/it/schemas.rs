//! The admin listener serves the contract's schemas where `dataschema` points.

use serde_json::Value;

use crate::helpers::{spawn_app, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_serves_the_schemas_dataschema_names() {
    let app = spawn_app(test_settings()).await;
    let base = format!("http://{}/schemas/", app.admin_address);
    for file in ["data.v2.schema.json", "envelope.v2.schema.json"] {
        let response = app
            .client
            .get(format!("{base}{file}"))
            .send()
            .await
            .expect("admin answers");
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(
            response.headers()["content-type"],
            "application/schema+json"
        );
        let served = response.text().await.expect("text");
        let in_repository =
            std::fs::read_to_string(format!("{}/schema/{file}", env!("CARGO_MANIFEST_DIR")))
                .expect("schema file");
        assert_eq!(served, in_repository, "{file}");
    }
    let missing = app
        .client
        .get(format!("{base}envelope.v1.schema.json"))
        .send()
        .await
        .expect("admin answers");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "not_found");
}
