//! The HTTP/1.1 accept loop. `axum::serve` has no header-read deadline, so a client sending
//! its headers a byte at a time (slow loris) would hold a connection for ever; hyper's own
//! connection builder has one, given a timer. Each connection's peer address is handed to the
//! router as `ConnectInfo`, and shutdown is graceful: no new connections, in-flight requests
//! finish. With TLS, the handshake runs in the connection's own task under the same deadline,
//! so a client that stalls it holds neither the accept loop nor its connection for long.
//!
//! Memory is bounded per connection (hyper's read buffer, which must hold the request head)
//! and in connections: beyond the caps, in total and per peer address, a connection is closed
//! as soon as it is accepted, before any TLS or HTTP work.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
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
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What one listener lets a connection cost.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A client must send a request's headers within this time.
    pub header_read_timeout: Duration,
    /// hyper's read buffer: a request head that does not fit gets 431.
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
}

/// Where a listener's connections run and how they end: `stop` ends accepting and lets open
/// connections finish; `cut` ends them where they are (the shutdown deadline passed). Whoever
/// holds `tracker` can wait until no connection is left.
#[derive(Clone)]
pub struct ConnectionTasks {
    pub tracker: TaskTracker,
    pub stop: CancellationToken,
    pub cut: CancellationToken,
}

/// Serves `router` on `listener` (over TLS when given an acceptor) until `tasks.stop`, then
/// waits for open connections to finish, or to be cut. `name` labels the listener's connection
/// metrics.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    tasks: ConnectionTasks,
) {
    let header_read_timeout = limits.header_read_timeout;
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    let open = Arc::new(OpenConnections::new(name, limits));
    loop {
        let (stream, peer) = tokio::select! {
            () = tasks.stop.cancelled() => break,
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
        // Refused by dropping the socket: no handshake, no buffer, no task.
        let Some(admitted) = open.admit(peer.ip()) else {
            continue;
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
        let connection = async move {
            let _admitted = admitted;
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
                count_refusal_by_hyper(name, &error);
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        };
        tasks
            .tracker
            .spawn(tasks.cut.clone().run_until_cancelled_owned(connection));
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

/// hyper answers a request it cannot parse itself (400, or 431 for a head beyond
/// `max_header_bytes`; its 414 needs a URI longer than the buffer allows) and never calls the
/// service, so the request metrics would not see it; it is counted here instead. A header-read
/// timeout gets no answer: hyper closes the connection.
fn count_refusal_by_hyper(listener: &'static str, error: &BoxError) {
    let Some(error) = error.downcast_ref::<hyper::Error>() else {
        return;
    };
    if error.is_timeout() {
        metrics::counter!(
            "telecmi_bridge_connections_closed_total",
            "listener" => listener,
            "reason" => "header_read_timeout"
        )
        .increment(1);
        return;
    }
    if !error.is_parse() || error.is_parse_version_h2() || error.is_parse_status() {
        return;
    }
    let (outcome, status) = if error.is_parse_too_large() {
        ("header_too_large", "431")
    } else {
        ("malformed_request", "400")
    };
    metrics::counter!(
        "telecmi_bridge_http_requests_total",
        "route" => "unmatched",
        "outcome" => outcome,
        "status" => status
    )
    .increment(1);
}

/// The open connections of one listener, in total and per peer address.
struct OpenConnections {
    name: &'static str,
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl OpenConnections {
    fn new(name: &'static str, limits: ConnectionLimits) -> Self {
        Self {
            name,
            limits,
            counts: Mutex::default(),
        }
    }

    /// Counts a new connection from `address` in, or refuses it (counted) when a cap is reached.
    fn admit(self: &Arc<Self>, address: IpAddr) -> Option<Admitted> {
        let address = address.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let from_address = counts.by_address.get(&address).copied().unwrap_or(0);
        let refused = if counts.total >= self.limits.max_connections {
            Some("max_connections")
        } else if from_address >= self.limits.max_connections_per_address {
            Some("max_connections_per_address")
        } else {
            None
        };
        if let Some(reason) = refused {
            metrics::counter!(
                "telecmi_bridge_connections_refused_total",
                "listener" => self.name,
                "reason" => reason
            )
            .increment(1);
            return None;
        }
        counts.total += 1;
        counts.by_address.insert(address, from_address + 1);
        self.publish(counts.total);
        Some(Admitted {
            open: Arc::clone(self),
            address,
        })
    }

    fn release(&self, address: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(from_address) = counts.by_address.get_mut(&address) {
            *from_address -= 1;
            if *from_address == 0 {
                counts.by_address.remove(&address);
            }
        }
        self.publish(counts.total);
    }

    fn publish(&self, total: usize) {
        metrics::gauge!("telecmi_bridge_connections_open", "listener" => self.name)
            .set(total as f64);
    }
}

/// An admitted connection; counted out when its task ends.
struct Admitted {
    open: Arc<OpenConnections>,
    address: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.release(self.address);
    }
}
