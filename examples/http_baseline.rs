//! The HTTP ceiling for `deploy/bench/bench.py`: the same stack as the bridge (tokio, hyper,
//! axum) answering the webhook route with a small JSON body after reading the request body,
//! and nothing else. The bridge's throughput is reported as a ratio to this one's, measured in
//! the same run, so results survive a noisy machine.
//!
//! `cargo run --release --example http_baseline -- 127.0.0.1:18081`

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::serve::ListenerExt;

async fn webhook(body: Bytes) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"status":"accepted","bytes":{}}}"#, body.len()),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    // No Nagle delay, as the bridge's own listener.
    let listener = tokio::net::TcpListener::bind(&address)
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    let router = Router::new().route("/webhooks/telecmi", post(webhook));
    axum::serve(listener, router).await
}
