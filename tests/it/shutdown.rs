//! Shutdown leaves nothing running: once `run_until_stopped` returns, also when a request held
//! open made it overrun `server.shutdown_timeout_ms`, both listeners are closed, the held
//! connection is cut, and no task of the application is left.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use telecmi_bridge::config::DeliveryMode;
use telecmi_bridge::{Application, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::helpers::test_settings;

/// Polls `condition` every 50 ms for up to 10 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn refuses_connections(address: SocketAddr) -> bool {
    TcpStream::connect(address).await.is_err()
}

/// Starts the bridge, holds a webhook request open (its body never completes) until it is
/// surely being served, stops the bridge, and checks that nothing of it is left.
async fn stop_with_a_request_held_open(mut settings: Settings) {
    settings.server.shutdown_timeout_ms = Duration::from_millis(300);
    // With one request allowed in flight, a 503 for another shows the held one is being served.
    settings.server.max_in_flight_requests = NonZeroUsize::new(1).expect("not zero");
    let application = Application::build(settings).await.expect("builds");
    let (address, admin_address) = (application.local_addr(), application.admin_addr());
    let tasks = application.tasks();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let webhook = format!("http://{address}/webhooks/telecmi");

    let mut held = TcpStream::connect(address).await.expect("connect");
    held.write_all(
        b"POST /webhooks/telecmi HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{",
    )
    .await
    .expect("a partial request");
    eventually("the held request in flight", || async {
        client
            .post(&webhook)
            .header("content-type", "application/xml")
            .body("<refused/>")
            .send()
            .await
            .is_ok_and(|response| response.status() == 503)
    })
    .await;
    assert!(tasks.running() > 0, "the application runs tasks");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run_until_stopped returns after the deadline")
        .expect("the application task")
        .expect("the application stops cleanly");

    assert!(tasks.is_closed(), "the application still takes new tasks");
    assert_eq!(tasks.running(), 0, "tasks of the application still run");
    assert!(
        refuses_connections(address).await,
        "the webhook listener still takes connections after run_until_stopped returned"
    );
    assert!(
        refuses_connections(admin_address).await,
        "the admin listener still takes connections after run_until_stopped returned"
    );
    let mut answer = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(1), held.read_to_end(&mut answer)).await;
    assert!(
        cut.is_ok(),
        "the held connection is still open after run_until_stopped returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_left_running_when_a_held_request_overruns_the_shutdown_deadline() {
    stop_with_a_request_held_open(test_settings()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_left_running_in_spool_mode_either() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = test_settings();
    settings.delivery.mode = DeliveryMode::Spool;
    settings.spool.path = dir.path().join("spool.redb");
    stop_with_a_request_held_open(settings).await;
}
