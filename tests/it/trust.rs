//! Whom the bridge believes: the one forwarding header the trusted proxy sets, signed
//! timestamps against replay; and secrets in the configuration, never printed.

use axum::http::HeaderName;
use serde_json::Value;
use std::num::NonZeroU32;
use std::time::Duration;
use telecmi_bridge::Settings;
use telecmi_bridge::config::SignatureEncoding;
use telecmi_bridge::http::signature::{sign, sign_with_timestamp};

use crate::cli::{bridge, text};
use crate::helpers::{TestApp, spawn_app, test_settings};
use crate::scenarios::accepted;

const EVENT: &str = r#"{"type":"event","status":"answered","cmiuuid":"trust-1"}"#;

fn networks(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|net| net.parse().expect("CIDR")).collect()
}

async fn app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    configure(&mut settings);
    spawn_app(settings).await
}

async fn post_with(app: &TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.post(app.webhook_url()).body(EVENT);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

async fn refused(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], code, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_forwarded_header_does_not_beat_the_proxys_x_forwarded_for() {
    let app = app_with(|s| {
        s.auth.trusted_proxies = networks(&["127.0.0.0/8"]);
        s.auth.allowed_networks = networks(&["203.0.113.0/24"]);
    })
    .await;
    refused(
        post_with(&app, &[("x-forwarded-for", "198.51.100.9")]).await,
        403,
        "forbidden_source",
    )
    .await;
    refused(
        post_with(
            &app,
            &[
                ("x-forwarded-for", "198.51.100.9"),
                ("forwarded", "for=203.0.113.5"),
            ],
        )
        .await,
        403,
        "forbidden_source",
    )
    .await;
    assert_eq!(
        app.record_count(),
        0,
        "a refused caller published something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_forwarded_for_does_not_escape_the_rate_limit() {
    let app = app_with(|s| {
        s.auth.trusted_proxies = networks(&["127.0.0.0/8"]);
        s.server.rate_limit_per_second = 1;
        s.server.rate_limit_burst = NonZeroU32::new(1).expect("not zero");
    })
    .await;
    let mut statuses = Vec::new();
    for n in 1..=3 {
        let forged = format!("for=203.0.113.{n}");
        let response = post_with(
            &app,
            &[("x-forwarded-for", "198.51.100.9"), ("forwarded", &forged)],
        )
        .await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(
        statuses.contains(&429),
        "one caller (by X-Forwarded-For) sent 3 webhooks at 1/s: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_sets_forwarded_is_believed_when_configured() {
    let app = app_with(|s| {
        s.auth.trusted_proxies = networks(&["127.0.0.0/8"]);
        s.auth.allowed_networks = networks(&["203.0.113.0/24"]);
        s.auth.forwarded_header = telecmi_bridge::config::ForwardedHeader::Forwarded;
    })
    .await;
    accepted(post_with(&app, &[("forwarded", "for=203.0.113.5")]).await).await;
    refused(
        post_with(&app, &[("x-forwarded-for", "203.0.113.5")]).await,
        403,
        "forbidden_source",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_request_replayed_outside_the_window_is_refused() {
    const SECRET: &str = "signing-proxy-secret-0123";
    let app = app_with(|s| {
        s.auth.hmac_secrets = vec![SECRET.into()];
        s.auth.hmac_timestamp_header = Some(HeaderName::from_static("x-signature-timestamp"));
        s.auth.hmac_timestamp_tolerance_seconds = Duration::from_secs(300);
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let signed_at = |timestamp: u64| {
        let signature =
            sign_with_timestamp(SECRET, timestamp, EVENT.as_bytes(), SignatureEncoding::Hex);
        (format!("sha256={signature}"), timestamp.to_string())
    };
    let (fresh, fresh_at) = signed_at(now);
    accepted(
        post_with(
            &app,
            &[
                ("x-signature", &fresh),
                ("x-signature-timestamp", &fresh_at),
            ],
        )
        .await,
    )
    .await;
    let (captured, captured_at) = signed_at(now - 600);
    refused(
        post_with(
            &app,
            &[
                ("x-signature", &captured),
                ("x-signature-timestamp", &captured_at),
            ],
        )
        .await,
        401,
        "bad_signature",
    )
    .await;
    // The old signature with a fresh timestamp: the timestamp is signed.
    refused(
        post_with(
            &app,
            &[
                ("x-signature", &captured),
                ("x-signature-timestamp", &fresh_at),
            ],
        )
        .await,
        401,
        "bad_signature",
    )
    .await;
    let untimed = format!(
        "sha256={}",
        sign(SECRET, EVENT.as_bytes(), SignatureEncoding::Hex)
    );
    refused(
        post_with(&app, &[("x-signature", &untimed)]).await,
        401,
        "bad_signature",
    )
    .await;
    assert_eq!(app.record_count(), 1, "only the fresh request is published");
}

/// The start-up error of a secret that cannot be used never shows it (container logs keep
/// stderr), and says what is accepted.
#[test]
fn a_refused_secret_is_never_printed() {
    let secret = "SomeTokenWithoutBrackets";
    let cases = [
        vec![("TELECMI_BRIDGE_AUTH__TOKENS", secret)],
        vec![
            ("TELECMI_BRIDGE_AUTH__TOKENS", "[SomeTokenWithoutBrackets"),
            ("TELECMI_BRIDGE_AUTH__REQUIRED", "true"),
        ],
        vec![(
            "TELECMI_BRIDGE_PRIVACY__HMAC_KEY",
            "{SomeTokenWithoutBrackets=1}",
        )],
        vec![(
            "TELECMI_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD",
            "[\"SomeTokenWithoutBrackets\"]",
        )],
    ];
    for env in cases {
        let output = bridge(&["check-config"], &env);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{env:?} was accepted");
        assert!(!stderr.contains(secret), "{env:?}: {stderr}");
        assert!(
            stderr.contains("auth.") || stderr.contains("secret"),
            "{env:?}: {stderr}"
        );
    }
    // Once required, the same bare value is one token, and check-config redacts it.
    let output = bridge(
        &["check-config"],
        &[
            ("TELECMI_BRIDGE_AUTH__TOKENS", secret),
            ("TELECMI_BRIDGE_AUTH__REQUIRED", "true"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!text(&output.stdout).contains(secret));
}

#[test]
fn check_config_warns_about_kafka_tls_without_verification() {
    let property = (
        "TELECMI_BRIDGE_KAFKA__PROPERTIES",
        "{\"ssl.endpoint.identification.algorithm\"=\"none\"}",
    );
    let refused = bridge(&["check-config"], &[property]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("kafka.security.allow_insecure_tls"));
    let allowed = bridge(
        &["check-config"],
        &[
            property,
            ("TELECMI_BRIDGE_KAFKA__SECURITY__ALLOW_INSECURE_TLS", "true"),
        ],
    );
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    assert!(
        text(&allowed.stderr).contains("warning"),
        "{}",
        text(&allowed.stderr)
    );
    assert!(
        text(&allowed.stdout).contains("\"ssl.endpoint.identification.algorithm\" = \"none\""),
        "{}",
        text(&allowed.stdout)
    );
}
