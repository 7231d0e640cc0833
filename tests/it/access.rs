//! Who may call: the source-address allow-list (with trusted proxies) and HMAC signatures.
//! Nothing refused reaches Kafka.

use serde_json::Value;
use telecmi_bridge::Settings;
use telecmi_bridge::config::SignatureEncoding;
use telecmi_bridge::http::signature::sign;

use crate::helpers::{TestApp, spawn_app, test_settings};
use crate::scenarios::accepted;

const EVENT: &str = r#"{"type":"event","status":"answered","cmiuuid":"access-1"}"#;
const SECRET: &str = "signing-proxy-secret-0123";

fn networks(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|net| net.parse().expect("CIDR")).collect()
}

async fn post_from(app: &TestApp, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.webhook_url()).body(EVENT);
    if let Some(chain) = forwarded_for {
        request = request.header("x-forwarded-for", chain);
    }
    request.send().await.expect("request")
}

async fn refused(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], code, "{body}");
}

async fn app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    configure(&mut settings);
    spawn_app(settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_networks_may_call() {
    let closed =
        app_with(|s| s.auth.allowed_networks = networks(&["10.0.0.0/8", "2001:db8::/32"])).await;
    refused(post_from(&closed, None).await, 403, "forbidden_source").await;
    // Without a trusted proxy, a forged X-Forwarded-For changes nothing.
    refused(
        post_from(&closed, Some("10.1.2.3")).await,
        403,
        "forbidden_source",
    )
    .await;
    assert_eq!(
        closed.record_count(),
        0,
        "a refused caller published something"
    );

    let open = app_with(|s| s.auth.allowed_networks = networks(&["127.0.0.0/8"])).await;
    accepted(post_from(&open, None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_checked() {
    let app = app_with(|s| {
        s.auth.allowed_networks = networks(&["203.0.113.0/24"]);
        s.auth.trusted_proxies = networks(&["127.0.0.1/32"]);
    })
    .await;
    accepted(post_from(&app, Some("203.0.113.9")).await).await;
    // The client forged an allowed address in front of its own: the proxy's entry counts.
    refused(
        post_from(&app, Some("203.0.113.9, 198.51.100.4")).await,
        403,
        "forbidden_source",
    )
    .await;
    refused(post_from(&app, None).await, 403, "forbidden_source").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hmac_secrets_only_signed_requests_pass() {
    let app = app_with(|s| s.auth.hmac_secrets = vec![SECRET.into()]).await;
    refused(post_from(&app, None).await, 401, "bad_signature").await;

    let signed =
        |message: &[u8]| format!("sha256={}", sign(SECRET, message, SignatureEncoding::Hex));
    let good = app
        .client
        .post(app.webhook_url())
        .header("x-signature", signed(EVENT.as_bytes()))
        .body(EVENT)
        .send()
        .await
        .expect("request");
    accepted(good).await;

    let tampered = app
        .client
        .post(app.webhook_url())
        .header("x-signature", signed(EVENT.as_bytes()))
        .body(EVENT.replace("answered", "missed"))
        .send()
        .await
        .expect("request");
    refused(tampered, 401, "bad_signature").await;

    let query = "type=event&status=hangup&cmiuuid=access-2";
    let get = app
        .client
        .get(format!("{}?{query}", app.webhook_url()))
        .header("x-signature", signed(query.as_bytes()))
        .send()
        .await
        .expect("request");
    accepted(get).await;
    assert_eq!(
        app.record_count(),
        2,
        "only the two signed events are published"
    );
}
