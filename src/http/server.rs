//! The HTTP/1.1 accept loop. `axum::serve` has no header-read deadline, so a client sending
//! its headers a byte at a time (slow loris) would hold a connection for ever; hyper's own
//! connection builder has one, given a timer. Each connection's peer address is handed to the
//! router as `ConnectInfo`, and shutdown is graceful: no new connections, in-flight requests
//! finish. With TLS, the handshake runs in the connection's own task under the same deadline,
//! so a client that stalls it holds neither the accept loop nor its connection for long.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serves `router` on `listener` (over TLS when given an acceptor) until `stop`, then waits for
/// open connections to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(Body::new)
            });
        let service = TowerToHyperService::new(service);
        let (http, watcher, tls) = (http.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            let served = match tls {
                None => serve_connection(&http, stream, service, watcher).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => serve_connection(&http, stream, service, watcher).await,
                        Ok(Err(error)) => Err(handshake_failed(&error.to_string())),
                        Err(_elapsed) => Err(handshake_failed("timed out")),
                    }
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve_connection<Io, Service>(
    http: &hyper::server::conn::http1::Builder,
    stream: Io,
    service: Service,
    watcher: Watcher,
) -> Result<(), BoxError>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Service: hyper::service::HttpService<Incoming> + Send + 'static,
    Service::Future: Send + 'static,
    Service::ResBody: Send + 'static,
    <Service::ResBody as hyper::body::Body>::Data: Send,
    <Service::ResBody as hyper::body::Body>::Error: Into<BoxError>,
    Service::Error: Into<BoxError>,
{
    let connection = http.serve_connection(TokioIo::new(stream), service);
    Ok(watcher.watch(connection).await?)
}

/// Counted because failing handshakes are the first sign of a client trusting another
/// certificate, or of a scanner.
fn handshake_failed(reason: &str) -> BoxError {
    metrics::counter!("telecmi_bridge_tls_handshake_failures_total").increment(1);
    format!("TLS handshake failed: {reason}").into()
}
