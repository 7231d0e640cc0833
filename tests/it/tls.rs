//! TLS on the webhook listener: events arrive over HTTPS, a renewed certificate is served
//! without a restart, a stalled handshake is cut off, and a broken pair stops start-up.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use telecmi_bridge::Application;
use telecmi_bridge::config::ServerTls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

use crate::helpers::{consume, spawn_app, test_settings};
use crate::limits::closed_by_the_bridge;

struct Certificate {
    pem: String,
    key_pem: String,
}

fn certificate_for_localhost() -> Certificate {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    Certificate {
        pem: generated.cert.pem(),
        key_pem: generated.signing_key.serialize_pem(),
    }
}

fn install(directory: &Path, certificate: &Certificate) -> ServerTls {
    let files = ServerTls {
        certificate_path: directory.join("tls.crt"),
        private_key_path: directory.join("tls.key"),
        reload_interval_seconds: Duration::from_secs(1),
    };
    std::fs::write(&files.certificate_path, &certificate.pem).expect("write certificate");
    std::fs::write(&files.private_key_path, &certificate.key_pem).expect("write key");
    files
}

/// One POST over a new TLS connection that trusts only `trusted`; the status code, or the
/// error that prevented an answer (a handshake refused, a connection closed).
async fn post_over_tls(
    address: SocketAddr,
    trusted: &Certificate,
    body: &str,
) -> std::io::Result<u16> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(trusted.pem.as_bytes()).expect("PEM certificate"))
        .expect("trusted root");
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(address).await?;
    let server = ServerName::try_from("localhost").expect("server name");
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(server, tcp)
        .await?;
    let request = format!(
        "POST /webhooks/telecmi HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    // A server closing without close_notify still sent its answer; what it sent is kept.
    if let Err(error) = tls.read_to_end(&mut answer).await
        && answer.is_empty()
    {
        return Err(error);
    }
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_arrive_over_tls_and_plain_http_is_not_served() {
    let directory = tempfile::tempdir().expect("tempdir");
    let certificate = certificate_for_localhost();
    let mut settings = test_settings();
    settings.server.tls = Some(install(directory.path(), &certificate));
    let app = spawn_app(settings).await;

    let status = post_over_tls(
        app.address,
        &certificate,
        r#"{"type":"event","status":"answered","cmiuuid":"over-tls"}"#,
    )
    .await
    .expect("an answer over TLS");
    assert_eq!(status, 200);
    let records = consume(
        &app.bootstrap_servers,
        &app.topics,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.as_deref(), Some("over-tls"));

    let plain = app
        .client
        .post(app.webhook_url())
        .header("content-type", "application/json")
        .body(r#"{"type":"event","status":"answered","cmiuuid":"in-clear"}"#)
        .send()
        .await;
    assert!(
        plain.as_ref().is_err(),
        "plain HTTP was answered on the TLS listener: {plain:?}"
    );
    // The admin listener stays plain HTTP.
    let health = reqwest::get(format!("http://{}/healthz", app.admin_address))
        .await
        .expect("admin over plain HTTP");
    assert!(health.status().is_success());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_to_new_connections_without_a_restart() {
    let directory = tempfile::tempdir().expect("tempdir");
    let first = certificate_for_localhost();
    let mut settings = test_settings();
    settings.server.tls = Some(install(directory.path(), &first));
    let app = spawn_app(settings).await;
    let body = r#"{"type":"event","status":"answered","cmiuuid":"renewed"}"#;

    let renewed = certificate_for_localhost();
    assert!(
        post_over_tls(app.address, &renewed, body).await.is_err(),
        "a client trusting only the renewed certificate was served before the renewal"
    );
    install(directory.path(), &renewed);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match post_over_tls(app.address, &renewed, body).await {
            Ok(status) => {
                assert_eq!(status, 200);
                break;
            }
            Err(_not_yet) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the renewed certificate was not served within 10 s: {error}"),
        }
    }
    assert!(
        post_over_tls(app.address, &first, body).await.is_err(),
        "the replaced certificate is still served"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_the_tls_handshake_is_cut_off() {
    let directory = tempfile::tempdir().expect("tempdir");
    let certificate = certificate_for_localhost();
    let mut settings = test_settings();
    settings.server.header_read_timeout_ms = Duration::from_millis(500);
    settings.server.tls = Some(install(directory.path(), &certificate));
    let app = spawn_app(settings).await;

    let mut stalled = TcpStream::connect(app.address).await.expect("connect");
    closed_by_the_bridge(&mut stalled, Duration::from_millis(400)).await;
    // Others are still served meanwhile and after.
    let status = post_over_tls(
        app.address,
        &certificate,
        r#"{"type":"event","status":"answered","cmiuuid":"after-stall"}"#,
    )
    .await
    .expect("an answer over TLS");
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_is_closed_before_any_tls_handshake() {
    let directory = tempfile::tempdir().expect("tempdir");
    let certificate = certificate_for_localhost();
    let mut settings = test_settings();
    settings.server.max_connections = NonZeroUsize::new(1).expect("not zero");
    settings.server.tls = Some(install(directory.path(), &certificate));
    let app = spawn_app(settings).await;

    // Admitted: its handshake waits for a ClientHello until the header-read deadline.
    let admitted = TcpStream::connect(app.address).await.expect("connect");
    // A TLS server answers a malformed ClientHello with an alert; a refused connection is
    // closed without a byte.
    let mut refused = TcpStream::connect(app.address).await.expect("connect");
    let _ = refused
        .write_all(b"\x16\x03\x01\x00\x04\x01\x00\x00\x00")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a connection over the cap was kept open");
    assert!(
        answer.is_empty(),
        "a connection over the cap got TLS bytes: {answer:?}"
    );

    drop(admitted);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = post_over_tls(
            app.address,
            &certificate,
            r#"{"type":"event","status":"answered","cmiuuid":"under-the-cap"}"#,
        )
        .await;
        if status.as_ref().is_ok_and(|status| *status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served once under the cap: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_stops_start_up() {
    let directory = tempfile::tempdir().expect("tempdir");
    let certificate = certificate_for_localhost();
    let other = certificate_for_localhost();
    let files = install(
        directory.path(),
        &Certificate {
            pem: certificate.pem,
            key_pem: other.key_pem,
        },
    );
    let mut settings = test_settings();
    settings.server.tls = Some(files);
    let error = match Application::build(settings).await {
        Ok(_) => panic!("the bridge started with a key that does not match its certificate"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("does not belong to certificate") && error.contains("tls.crt"),
        "{error}"
    );
}
