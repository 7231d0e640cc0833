//! The application: built from settings (listeners bound, Kafka connected, topics checked),
//! then run until a shutdown signal, then drained.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Bootstrap, DeliveryMode, Settings, TopicName};
use crate::http::rate_limit::RateLimit;
use crate::http::signature::Signature;
use crate::http::source::SourcePolicy;
use crate::http::tls::{CertificateStore, TlsError};
use crate::http::{self, IngestState, Readiness, auth::Auth};
use crate::pipeline::{Correlation, EnvelopeAttributes, Privacy, Router};
use crate::publish::dedup::Dedup;
use crate::publish::embedded::EmbeddedCluster;
use crate::publish::kafka::kafka_client_config;
use crate::publish::kafka::{TopicError, ensure_topics};
use crate::publish::spool::{ForwarderControl, Spool, SpoolError, SpoolMonitor};
use crate::publish::{KafkaPublisher, Publisher};

/// How often the spool's depth, size and oldest age are read into readiness and metrics.
const SPOOL_MONITOR_INTERVAL: Duration = Duration::from_secs(1);
/// Open connections on the admin listener, from any addresses: probes and scrapes need a few,
/// and caps tuned for the webhook listener (per address behind a proxy, or small in tests)
/// must not lock them out.
const ADMIN_MAX_CONNECTIONS: usize = 64;
/// How often the rate limiter forgets callers whose allowance is full again.
const RATE_LIMIT_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// How often histogram samples are folded into the Prometheus recorder's summaries. The
/// recorder otherwise keeps every sample until `/metrics` is scraped: unscraped, RSS grew by
/// about 20 bytes per event (27 -> 61 MB over a 5-minute soak at 7,000 events/s).
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "could not listen on {address} ({setting}): {source}; choose another address with \
         {variable}=host:port or `{setting} = \"host:port\"` in a --config file"
    )]
    Bind {
        setting: &'static str,
        variable: &'static str,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Embedded(String),
    #[error("could not create the Kafka producer: {0}")]
    Producer(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

pub struct Application {
    settings: Settings,
    listener: TcpListener,
    admin_listener: TcpListener,
    /// The webhook listener's certificate, when it terminates TLS itself.
    tls: Option<Arc<CertificateStore>>,
    /// The `kafka`-mode publisher; in `spool` mode only the readiness probe uses it.
    publisher: KafkaPublisher,
    spool: Option<Spool>,
    readiness: Readiness,
    bootstrap_servers: String,
    topics: Vec<TopicName>,
    topics_ready: bool,
    metrics: PrometheusHandle,
    // Dropped last, after the producer has flushed into it.
    embedded: Option<EmbeddedCluster>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let metrics = crate::metrics::recorder();
        crate::metrics::register_at_start(&settings);
        let spool = match settings.delivery.mode {
            DeliveryMode::Kafka => None,
            DeliveryMode::Spool => {
                let spool_settings = settings.spool.clone();
                let spool = tokio::task::spawn_blocking(move || Spool::open(&spool_settings))
                    .await
                    .map_err(|error| StartError::Serve(std::io::Error::other(error)))??;
                Some(spool)
            }
        };
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let topics = settings.routing.all_topics();
        let (embedded, bootstrap_servers) = match &settings.kafka.bootstrap_servers {
            Bootstrap::Embedded => {
                let cluster = EmbeddedCluster::start(&topics, settings.kafka.topic_partitions)
                    .map_err(StartError::Embedded)?;
                let bootstrap = cluster.bootstrap_servers().to_owned();
                tracing::warn!(
                    bootstrap_servers = %bootstrap,
                    "EMBEDDED KAFKA: using librdkafka's in-process mock cluster at {bootstrap}. \
                     Any Kafka client can read the topics there while the bridge runs; NOTHING IS \
                     DURABLE: every event is lost when the bridge stops."
                );
                (Some(cluster), bootstrap)
            }
            Bootstrap::Brokers(list) => (None, list.clone()),
        };
        let client_config =
            kafka_client_config(&settings.kafka, &bootstrap_servers, &settings.delivery);
        let publisher = KafkaPublisher::new(&client_config, settings.ack_timeout())?;

        // The mock cluster has its topics already; a real one is checked now. Unreachable is not
        // fatal (the readiness probe retries), but a topic known to be missing is.
        let topics_ready = match embedded {
            Some(_) => true,
            None => match check_topics(&settings, &bootstrap_servers, &topics).await {
                Ok(()) => true,
                // librdkafka reports refused credentials and failed TLS handshakes only to the
                // client's error callback; the admin request itself just times out.
                Err(TopicError::Unreachable(reason)) => match publisher.refusal() {
                    Some(refused) => return Err(TopicError::from(refused).into()),
                    None => {
                        tracing::warn!(reason, "Kafka unreachable at start-up; will keep trying");
                        false
                    }
                },
                Err(error) => return Err(error.into()),
            },
        };

        let tls = settings
            .server
            .tls
            .as_ref()
            .map(CertificateStore::open)
            .transpose()?;
        let bind = |address: SocketAddr, setting, variable| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind {
                    setting,
                    variable,
                    address,
                    source,
                })
        };
        let listener = bind(
            settings.server.listen,
            "server.listen",
            "TELECMI_BRIDGE_SERVER__LISTEN",
        )
        .await?;
        let admin_listener = bind(
            settings.server.admin_listen,
            "server.admin_listen",
            "TELECMI_BRIDGE_SERVER__ADMIN_LISTEN",
        )
        .await?;
        let spool_status = match &spool {
            Some(spool) => {
                let monitor = spool.monitor();
                Some(
                    tokio::task::spawn_blocking(move || monitor.status())
                        .await
                        .map_err(|error| StartError::Serve(std::io::Error::other(error)))?,
                )
            }
            None => None,
        };
        Ok(Self {
            readiness: Readiness::new(spool_status),
            listener,
            admin_listener,
            tls,
            publisher,
            spool,
            bootstrap_servers,
            topics,
            topics_ready,
            metrics,
            embedded,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.settings.server.listen)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.settings.server.admin_listen)
    }

    /// The brokers the bridge publishes to: the embedded cluster's address when embedded.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
    /// and flushes: the producer in `kafka` mode; in `spool` mode the forwarder keeps
    /// forwarding until the spool is empty. All within `server.shutdown_timeout_ms`; what is
    /// still spooled then stays on disk for the next start.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let settings = &self.settings;
        let stop = CancellationToken::new();
        let forwarding = ForwarderControl::default();
        let (publisher, forwarder, monitor): (Arc<dyn Publisher>, _, _) = match &self.spool {
            Some(spool) => {
                let client_config = kafka_client_config(
                    &settings.kafka,
                    &self.bootstrap_servers,
                    &settings.delivery,
                );
                let forwarder = spool.forwarder(client_config)?;
                let monitor = tokio::spawn(monitor_spool(
                    spool.monitor(),
                    self.readiness.clone(),
                    stop.clone(),
                ));
                (
                    Arc::new(spool.publisher(settings.ack_timeout())),
                    Some(tokio::spawn(forwarder.run(forwarding.clone()))),
                    Some(monitor),
                )
            }
            None => (Arc::new(self.publisher.clone()), None, None),
        };
        let rate_limit = RateLimit::new(
            settings.server.rate_limit_per_second,
            settings.server.rate_limit_burst,
        )
        .map(Arc::new);
        let forgetting = rate_limit.clone().map(|limit| {
            spawn_periodic(RATE_LIMIT_CLEANUP_INTERVAL, stop.clone(), move || {
                limit.forget_idle_callers();
            })
        });
        let metrics = self.metrics.clone();
        let upkeep = spawn_periodic(METRICS_UPKEEP_INTERVAL, stop.clone(), move || {
            metrics.run_upkeep();
        });
        let state = IngestState {
            publisher,
            dedup: settings
                .dedup
                .enabled
                .then(|| Arc::new(Dedup::new(&settings.dedup))),
            router: Arc::new(Router::new(&settings.routing)),
            auth: Arc::new(Auth::new(&settings.auth)),
            callers: Arc::new(SourcePolicy::new(
                &settings.auth.allowed_networks,
                &settings.auth.trusted_proxies,
                settings.auth.forwarded_header,
            )),
            signature: Signature::new(&settings.auth).map(Arc::new),
            rate_limit: rate_limit.clone(),
            privacy: Privacy::new(&settings.privacy).map(Arc::new),
            attributes: Arc::new(EnvelopeAttributes::new(&settings.envelope)),
            correlation: Arc::new(Correlation::new(
                settings.routing.correlation_max_entries,
                Duration::from_secs(settings.routing.correlation_ttl_seconds),
            )),
            body_limit: settings.server.body_limit_bytes,
            max_record_bytes: settings.kafka.message_max_bytes().unwrap_or(usize::MAX),
            retry_after_seconds: settings.delivery.retry_after_seconds,
        };
        let limits = http::RequestLimits {
            timeout: Duration::from_millis(settings.server.request_timeout_ms),
            max_in_flight: settings.server.max_in_flight_requests,
            retry_after_seconds: settings.delivery.retry_after_seconds,
        };
        let public = http::router(state, self.readiness.clone(), limits);
        let admin = http::admin_router(self.readiness.clone(), self.metrics.clone());

        // The schedule reaches Kafka where the bridge does: the embedded cluster's address
        // when embedded.
        let reconciling = settings.reconcile.schedule_enabled.then(|| {
            let mut scheduled = settings.clone();
            scheduled.kafka.bootstrap_servers = Bootstrap::Brokers(self.bootstrap_servers.clone());
            tokio::spawn(crate::reconcile::schedule::run_on_schedule(
                scheduled,
                stop.clone(),
            ))
        });
        let probe = tokio::spawn(probe_kafka(
            self.publisher.clone(),
            self.readiness.clone(),
            ProbeSettings {
                settings: settings.clone(),
                bootstrap_servers: self.bootstrap_servers.clone(),
                topics: self.topics.clone(),
                topics_ready: self.topics_ready,
            },
            stop.clone(),
        ));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(
            listen = %self.local_addr(),
            admin_listen = %self.admin_addr(),
            tls = self.tls.is_some(),
            delivery_mode = ?settings.delivery.mode,
            "telecmi-bridge serving: webhook {scheme}://{}{}, metrics http://{}/metrics",
            self.local_addr(),
            http::WEBHOOK_PATH,
            self.admin_addr()
        );
        let connection_limits = http::server::ConnectionLimits {
            header_read_timeout: Duration::from_millis(settings.server.header_read_timeout_ms),
            max_header_bytes: settings.server.max_header_bytes,
            max_connections: settings.server.max_connections,
            max_connections_per_address: settings.server.max_connections_per_address,
        };
        let admin_connection_limits = http::server::ConnectionLimits {
            max_connections: ADMIN_MAX_CONNECTIONS,
            max_connections_per_address: ADMIN_MAX_CONNECTIONS,
            ..connection_limits
        };
        let serve = |name, listener: TcpListener, router: axum::Router, limits, tls| {
            tokio::spawn(http::server::serve(
                name,
                listener,
                router,
                limits,
                tls,
                stop.clone(),
            ))
        };
        let acceptor = self
            .tls
            .as_ref()
            .map(CertificateStore::acceptor)
            .transpose()?;
        let reloading = self
            .tls
            .map(|store| tokio::spawn(store.watch(stop.clone())));
        let public_server = serve("public", self.listener, public, connection_limits, acceptor);
        let admin_server = serve(
            "admin",
            self.admin_listener,
            admin,
            admin_connection_limits,
            None,
        );

        shutdown.await;
        let deadline = Instant::now() + Duration::from_millis(settings.server.shutdown_timeout_ms);
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        self.readiness.set_shutting_down();
        stop.cancel();
        probe.abort();
        let drained = tokio::time::timeout_at(deadline.into(), async {
            let _ = public_server.await;
            let _ = admin_server.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown deadline reached with requests still in flight");
        }
        if let Some(mut forwarder) = forwarder {
            forwarding.drain.cancel();
            let emptied = match tokio::time::timeout_at(deadline.into(), &mut forwarder).await {
                Ok(emptied) => emptied.unwrap_or(false),
                Err(_deadline) => {
                    forwarding.stop.cancel();
                    let _ = forwarder.await;
                    false
                }
            };
            if !emptied {
                tracing::warn!(
                    "shutdown deadline reached before the spool was empty; the rest is \
                     forwarded at the next start"
                );
            }
        }
        for task in [monitor, forgetting, reloading, reconciling, Some(upkeep)]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let publisher = self.publisher.clone();
        let flushed = tokio::task::spawn_blocking(move || publisher.flush(remaining))
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        if let Err(error) = flushed {
            tracing::error!(
                %error,
                in_flight = self.publisher.in_flight(),
                "producer flush did not finish before the deadline"
            );
        }
        if let Some(spool) = self.spool {
            let path = spool.path().clone();
            let left = tokio::task::spawn_blocking(move || spool.close())
                .await
                .map_err(|error| std::io::Error::other(error.to_string()))?;
            tracing::info!(spooled = left, path = %path.display(), "spool closed");
        }
        tracing::info!("stopped");
        drop(self.publisher);
        drop(self.embedded);
        Ok(())
    }
}

/// Reads the spool's state into readiness and metrics until `stop`.
async fn monitor_spool(monitor: SpoolMonitor, readiness: Readiness, stop: CancellationToken) {
    loop {
        let reading = monitor.clone();
        if let Ok(status) = tokio::task::spawn_blocking(move || reading.status()).await {
            metrics::gauge!("telecmi_bridge_spool_events").set(status.events as f64);
            metrics::gauge!("telecmi_bridge_spool_bytes").set(status.bytes as f64);
            metrics::gauge!("telecmi_bridge_spool_oldest_age_seconds")
                .set(status.oldest_age_seconds);
            metrics::gauge!("telecmi_bridge_spool_kafka_refused_events")
                .set(status.kafka_refused as f64);
            metrics::gauge!("telecmi_bridge_spool_quarantined_events")
                .set(status.quarantined as f64);
            readiness.set_spool(status);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SPOOL_MONITOR_INTERVAL) => {}
        }
    }
}

async fn check_topics(
    settings: &Settings,
    bootstrap_servers: &str,
    topics: &[TopicName],
) -> Result<(), TopicError> {
    let config = kafka_client_config(&settings.kafka, bootstrap_servers, &settings.delivery);
    ensure_topics(
        &config,
        topics,
        settings.kafka.create_topics,
        settings.kafka.topic_partitions,
        settings.kafka.topic_replication_factor,
        Duration::from_millis(settings.kafka.metadata_timeout_ms),
    )
    .await
}

struct ProbeSettings {
    settings: Settings,
    bootstrap_servers: String,
    topics: Vec<TopicName>,
    topics_ready: bool,
}

/// Kafka is reachable when it answers metadata requests and every topic is in place. Runs
/// until `stop`.
async fn probe_kafka(
    publisher: KafkaPublisher,
    readiness: Readiness,
    mut probe: ProbeSettings,
    stop: CancellationToken,
) {
    let interval = Duration::from_millis(probe.settings.kafka.readiness_interval_ms);
    let timeout = Duration::from_millis(probe.settings.kafka.metadata_timeout_ms);
    loop {
        let reachable = {
            let publisher = publisher.clone();
            tokio::task::spawn_blocking(move || publisher.probe(timeout))
                .await
                .unwrap_or_else(|error| Err(error.to_string()))
        };
        let state = match reachable {
            Ok(()) if !probe.topics_ready => {
                match check_topics(&probe.settings, &probe.bootstrap_servers, &probe.topics).await {
                    Ok(()) => {
                        probe.topics_ready = true;
                        Ok(())
                    }
                    Err(error) => Err(error.to_string()),
                }
            }
            other => other,
        };
        readiness.set_kafka(state);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Runs `task` every `interval` until `stop` is cancelled.
fn spawn_periodic(
    interval: Duration,
    stop: CancellationToken,
    mut task: impl FnMut() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            task();
        }
    })
}
