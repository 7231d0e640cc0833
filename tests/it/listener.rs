//! The connection layer of the public listener: header buffer and connection caps, one
//! in-flight limit for the whole listener, every answer counted, HEAD refused, request ids
//! kept only when plain, and `connection: close` said whenever the bridge will close.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{TestApp, spawn_app, test_settings};
use crate::scenarios::accepted;

const EVENT: &str = r#"{"type":"event","status":"answered","cmiuuid":"listener"}"#;

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A TCP connection to `address` from `source` (loopback has the whole 127/8).
async fn connect_from(source: IpAddr, address: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind a loopback source");
    socket.connect(address).await.expect("connect")
}

/// A client whose connections come from `source`.
fn client_from(source: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source)
        .build()
        .expect("client")
}

/// Whether the bridge closes `connection` (EOF or reset) within 5 s, without answering.
async fn closed_without_an_answer(connection: &mut TcpStream) -> bool {
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), connection.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => answer.is_empty(),
        Ok(Err(_reset)) => true,
        Err(_still_open) => false,
    }
}

/// Whether `connection` is still open: a plain request on it is answered.
async fn still_served(connection: &mut TcpStream) -> bool {
    let request = b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n";
    if connection.write_all(request).await.is_err() {
        return false;
    }
    read_response(connection)
        .await
        .is_some_and(|response| response.status == 200)
}

struct RawResponse {
    status: u16,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }
}

/// One HTTP/1.1 response (head, then a `content-length` body) read within 5 s; `None` when the
/// connection ends or fails first.
async fn read_response(connection: &mut TcpStream) -> Option<RawResponse> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        let read = tokio::time::timeout_at(deadline, connection.read(&mut chunk)).await;
        match read {
            Ok(Ok(read)) if read > 0 => received.extend_from_slice(&chunk[..read]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = received.split_off(head_end);
    while body.len() < length {
        let read = tokio::time::timeout_at(deadline, connection.read(&mut chunk)).await;
        match read {
            Ok(Ok(read)) if read > 0 => body.extend_from_slice(&chunk[..read]),
            _ => return None,
        }
    }
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// The sum of `name`'s samples on the admin listener whose labels include every one of
/// `labels` (`key="value"`).
async fn metric(app: &TestApp, name: &str, labels: &[&str]) -> f64 {
    // A new connection each time: tests here shorten the header-read deadline, which also
    // ends idle keep-alive connections.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let text = client
        .get(format!("http://{}/metrics", app.admin_address))
        .send()
        .await
        .expect("admin /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|line| line.split_once('}'))
        .filter(|(found, _)| labels.iter().all(|label| found.contains(label)))
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum()
}

/// Polls `condition` every 50 ms for up to 5 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_beyond_max_header_bytes_gets_431_and_hypers_refusals_are_counted() {
    let mut settings = test_settings();
    settings.server.max_header_bytes = 8_192;
    let app = spawn_app(settings).await;
    let counted = ["outcome=\"header_too_large\"", "status=\"431\""];
    let before = metric(&app, "telecmi_bridge_http_requests_total", &counted).await;

    // Exactly the buffer, never finished: the bridge has read all of it when it answers, so
    // it closes without a reset that could swallow the answer.
    let mut head = b"POST /webhooks/telecmi HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.resize(8_192, b'a');
    let mut connection = TcpStream::connect(app.address).await.expect("connect");
    connection.write_all(&head).await.expect("head");
    let response = read_response(&mut connection).await.expect("an answer");
    assert_eq!(response.status, 431);

    eventually("the 431 counted", || async {
        metric(&app, "telecmi_bridge_http_requests_total", &counted).await > before
    })
    .await;

    // hyper's other refusal, of a head it cannot parse, is counted too.
    let counted = ["outcome=\"malformed_request\"", "status=\"400\""];
    let before = metric(&app, "telecmi_bridge_http_requests_total", &counted).await;
    let mut connection = TcpStream::connect(app.address).await.expect("connect");
    connection
        .write_all(b"NOT HTTP\r\n\r\n")
        .await
        .expect("head");
    let response = read_response(&mut connection).await.expect("an answer");
    assert_eq!(response.status, 400);
    eventually("the 400 counted", || async {
        metric(&app, "telecmi_bridge_http_requests_total", &counted).await > before
    })
    .await;
    accepted(app.post_json(EVENT.as_bytes()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_off_by_the_header_read_deadline_is_counted() {
    let mut settings = test_settings();
    settings.server.header_read_timeout_ms = Duration::from_millis(300);
    let app = spawn_app(settings).await;
    let counted = ["listener=\"public\"", "reason=\"header_read_timeout\""];
    let before = metric(&app, "telecmi_bridge_connections_closed_total", &counted).await;

    let mut slow = TcpStream::connect(app.address).await.expect("connect");
    slow.write_all(b"POST /webhooks/telecmi HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial head");
    assert!(closed_without_an_answer(&mut slow).await);
    eventually("the cut-off counted", || async {
        metric(&app, "telecmi_bridge_connections_closed_total", &counted).await > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_cap_are_closed_while_other_addresses_are_served() {
    let mut settings = test_settings();
    settings.server.max_connections_per_address = NonZeroUsize::new(2).expect("not zero");
    let app = spawn_app(settings).await;
    let refused = [
        "listener=\"public\"",
        "reason=\"max_connections_per_address\"",
    ];
    let before = metric(&app, "telecmi_bridge_connections_refused_total", &refused).await;

    let mut first = connect_from(loopback(1), app.address).await;
    let _second = connect_from(loopback(1), app.address).await;
    let mut third = connect_from(loopback(1), app.address).await;
    assert!(
        closed_without_an_answer(&mut third).await,
        "a third connection from one address was kept open"
    );
    assert!(
        metric(&app, "telecmi_bridge_connections_refused_total", &refused).await > before,
        "the refusal was not counted"
    );
    accepted(
        client_from(loopback(2))
            .post(app.webhook_url())
            .body(EVENT)
            .send()
            .await
            .expect("a request from another address"),
    )
    .await;
    assert!(still_served(&mut first).await, "an admitted connection");

    drop(first);
    eventually("a connection from the first address again", || async {
        let mut again = connect_from(loopback(1), app.address).await;
        still_served(&mut again).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_total_cap_are_closed() {
    let mut settings = test_settings();
    settings.server.max_connections = NonZeroUsize::new(2).expect("not zero");
    let app = spawn_app(settings).await;
    let refused = ["listener=\"public\"", "reason=\"max_connections\""];
    let before = metric(&app, "telecmi_bridge_connections_refused_total", &refused).await;

    let mut first = connect_from(loopback(1), app.address).await;
    let mut second = connect_from(loopback(2), app.address).await;
    let mut third = connect_from(loopback(3), app.address).await;
    assert!(
        closed_without_an_answer(&mut third).await,
        "a connection beyond the total was kept open"
    );
    assert!(metric(&app, "telecmi_bridge_connections_refused_total", &refused).await > before);
    assert!(still_served(&mut first).await && still_served(&mut second).await);

    drop(first);
    eventually("a connection once one closed", || async {
        let mut again = connect_from(loopback(3), app.address).await;
        still_served(&mut again).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_refused_with_405_and_nothing_reaches_kafka() {
    let app = spawn_app(test_settings()).await;
    for target in [
        "/webhooks/telecmi?type=event&status=answered&cmiuuid=head",
        "/webhooks/telecmi/some-token",
    ] {
        let response = app
            .client
            .head(format!("http://{}{target}", app.address))
            .send()
            .await
            .expect("HEAD");
        assert_eq!(response.status(), 405, "{target}");
        assert_eq!(response.headers()["allow"], "GET, POST", "{target}");
    }
    // A 200 or a 4xx is answered only once its record is in Kafka: none now means none ever.
    assert_eq!(app.record_count(), 0, "a HEAD reached Kafka");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_short_plain_client_request_id_is_kept() {
    let app = spawn_app(test_settings()).await;
    let echoed = |id: String| {
        let request = app
            .client
            .post(app.webhook_url())
            .header("x-request-id", id)
            .body(EVENT);
        async move {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 200);
            response.headers()["x-request-id"]
                .to_str()
                .expect("a text id")
                .to_owned()
        }
    };
    let plain = format!("TeleCMI-1.2:3_{}", "x".repeat(114));
    assert_eq!(plain.len(), 128);
    assert_eq!(echoed(plain.clone()).await, plain);
    for hostile in [
        "y".repeat(129),
        "{\"log\":\"injected\"}".to_owned(),
        "a b".to_owned(),
        "../../etc".replace('.', "%"),
    ] {
        let replaced = echoed(hostile.clone()).await;
        assert_ne!(replaced, hostile);
        assert!(
            uuid::Uuid::parse_str(&replaced).is_ok(),
            "{hostile} became {replaced}, not a generated id"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_limit_holds_for_the_whole_listener() {
    let mut settings = test_settings();
    settings.server.max_in_flight_requests = NonZeroUsize::new(1).expect("not zero");
    let app = spawn_app(settings).await;

    // In flight until its body arrives, which it never does.
    let mut held = TcpStream::connect(app.address).await.expect("connect");
    held.write_all(
        b"POST /webhooks/telecmi HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{",
    )
    .await
    .expect("a partial request");
    let post = || {
        app.client
            .post(app.webhook_url())
            .header("content-type", "application/xml")
            .body("<refused/>")
    };
    eventually("the held request in flight", || async {
        post().send().await.expect("request").status() == 503
    })
    .await;

    let others = [
        ("POST", app.client.post(app.webhook_url()).body(EVENT)),
        (
            "GET",
            app.client
                .get(format!("{}?type=event&cmiuuid=g", app.webhook_url())),
        ),
        (
            "POST /{token}",
            app.client
                .post(format!("{}/0123456789abcdef", app.webhook_url()))
                .body(EVENT),
        ),
        (
            "GET /healthz",
            app.client.get(format!("http://{}/healthz", app.address)),
        ),
    ];
    for (name, request) in others {
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 503, "{name}");
        let body: Value = response.json().await.expect("JSON error");
        assert_eq!(body["error"]["code"], "overloaded", "{name}");
    }

    drop(held);
    eventually("served again once the held request ended", || async {
        post().send().await.expect("request").status() == 415
    })
    .await;
    assert_eq!(app.record_count(), 0, "a refused request reached Kafka");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_times_out_gets_a_counted_json_408() {
    let mut settings = test_settings();
    settings.delivery.ack_timeout_ms = Duration::from_millis(200);
    settings.server.request_timeout_ms = Duration::from_millis(400);
    let app = spawn_app(settings).await;
    let counted = [
        "route=\"/webhooks/telecmi\"",
        "outcome=\"request_timeout\"",
        "status=\"408\"",
    ];
    let before = metric(&app, "telecmi_bridge_http_requests_total", &counted).await;

    let mut connection = TcpStream::connect(app.address).await.expect("connect");
    connection
        .write_all(
            b"POST /webhooks/telecmi HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{",
        )
        .await
        .expect("a partial request");
    let response = read_response(&mut connection).await.expect("an answer");
    assert_eq!(response.status, 408);
    let body: Value = serde_json::from_slice(&response.body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "request_timeout");
    assert!(response.says_close(), "the unread body ends the connection");

    eventually("the 408 counted", || async {
        metric(&app, "telecmi_bridge_http_requests_total", &counted).await > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_body_is_read_says_connection_close() {
    let app = spawn_app(test_settings()).await;
    let refusals: [(&str, &[u8]); 2] = [
        (
            "413 by the declared length",
            b"POST /webhooks/telecmi HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 70000\r\n\r\n{\"pad\":\"",
        ),
        (
            "405 with a body",
            b"PUT /webhooks/telecmi HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\n\r\n{}",
        ),
    ];
    for (name, request) in refusals {
        let mut connection = TcpStream::connect(app.address).await.expect("connect");
        connection.write_all(request).await.expect("request");
        let response = read_response(&mut connection).await.expect("an answer");
        assert!(
            [405, 413].contains(&response.status),
            "{name}: {}",
            response.status
        );
        // Either the bridge says it closes (and does), or the connection stays usable.
        if response.says_close() {
            assert!(closed_without_an_answer(&mut connection).await, "{name}");
        } else {
            assert!(
                still_served(&mut connection).await,
                "{name}: closed without `connection: close`"
            );
        }
    }

    // Read to its end, a refused body leaves the connection open.
    let mut connection = TcpStream::connect(app.address).await.expect("connect");
    connection
        .write_all(
            b"POST /webhooks/telecmi HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n\
              Content-Length: 4\r\n\r\n<x/>",
        )
        .await
        .expect("request");
    let response = read_response(&mut connection).await.expect("an answer");
    assert_eq!(response.status, 415);
    assert!(!response.says_close());
    assert!(still_served(&mut connection).await);
}
