//! The application: [`Application::build`] puts it together from settings (spool opened, the
//! Kafka client created, topics checked, listeners bound); [`Application::run_until_stopped`]
//! starts its tasks under a supervisor and, once the shutdown future resolves, has the
//! supervisor drain them in order.
//!
//! The topic check stays in `build`, although it is broker I/O: a topic known to be missing
//! and credentials Kafka refuses stop start-up there, before anything listens.

mod background;
mod services;
mod supervisor;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::config::{Bootstrap, DeliveryMode, Settings};
use crate::domain::TopicName;
use crate::http::tls::{CertificateStore, TlsError};
use crate::http::{self, Readiness};
use crate::publish::embedded::{EmbeddedCluster, EmbeddedError};
use crate::publish::kafka::{KafkaClient, TopicError, kafka_client_config};
use crate::publish::spool::{Spool, SpoolError};
use crate::publish::{KafkaPublisher, Publisher};
use background::Probe;
pub use supervisor::Tasks;
use supervisor::{Running, Supervisor};

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
    #[error(transparent)]
    Embedded(#[from] EmbeddedError),
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
    listeners: Listeners,
    kafka: Kafka,
    spool: Option<Spool>,
    readiness: Readiness,
    metrics: PrometheusHandle,
    supervisor: Supervisor,
}

struct Listeners {
    public: TcpListener,
    admin: TcpListener,
    /// The webhook listener's certificate, when it terminates TLS itself.
    tls: Option<Arc<CertificateStore>>,
}

/// The process's one Kafka client and what it found at start-up.
struct Kafka {
    client: KafkaClient,
    bootstrap_servers: String,
    topics: Vec<TopicName>,
    topics_ready: bool,
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
        let kafka = connect_kafka(&settings).await?;
        let listeners = bind_listeners(&settings).await?;
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
            listeners,
            kafka,
            spool,
            metrics,
            settings,
            supervisor: Supervisor::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listeners
            .public
            .local_addr()
            .unwrap_or(self.settings.server.listen)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners
            .admin
            .local_addr()
            .unwrap_or(self.settings.server.admin_listen)
    }

    /// The brokers the bridge publishes to: the embedded cluster's address when embedded.
    pub fn bootstrap_servers(&self) -> &str {
        &self.kafka.bootstrap_servers
    }

    /// The application's tasks: none is running once `run_until_stopped` has returned.
    pub fn tasks(&self) -> Tasks {
        self.supervisor.tasks()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish,
    /// and flushes: the producer in `kafka` mode; in `spool` mode the forwarder keeps
    /// forwarding until the spool is empty. All within `server.shutdown_timeout_ms`; what is
    /// still spooled then stays on disk for the next start, and what still runs is cut off.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Self {
            settings,
            listeners,
            kafka,
            spool,
            readiness,
            metrics,
            supervisor,
        } = self;
        let public_address = listeners.public.local_addr()?;
        let admin_address = listeners.admin.local_addr()?;
        let mut running = Running::default();
        let publisher: Arc<dyn Publisher> = match &spool {
            Some(spool) => {
                let forwarder = spool.forwarder(kafka.client.clone());
                running.forwarder = Some(supervisor.forward(forwarder));
                supervisor.spawn(background::monitor_spool(
                    spool.monitor(),
                    readiness.clone(),
                    supervisor.tracker().clone(),
                    supervisor.stopping(),
                ));
                Arc::new(spool.publisher(settings.ack_timeout()))
            }
            None => Arc::new(KafkaPublisher::on(
                kafka.client.clone(),
                settings.ack_timeout(),
            )),
        };
        let services = services::wire(&settings, publisher, &readiness, &metrics);
        if let Some(limit) = services.rate_limit.clone() {
            supervisor.spawn(background::every(
                RATE_LIMIT_CLEANUP_INTERVAL,
                supervisor.stopping(),
                move || limit.forget_idle_callers(),
            ));
        }
        let upkeep = metrics.clone();
        supervisor.spawn(background::every(
            METRICS_UPKEEP_INTERVAL,
            supervisor.stopping(),
            move || upkeep.run_upkeep(),
        ));
        // The schedule reaches Kafka where the bridge does: the embedded cluster's address
        // when embedded.
        if settings.reconcile.schedule_enabled {
            let mut scheduled = settings.clone();
            scheduled.kafka.bootstrap_servers = Bootstrap::Brokers(kafka.bootstrap_servers.clone());
            supervisor.spawn(crate::reconcile::schedule::run_on_schedule(
                scheduled,
                supervisor.stopping(),
            ));
        }
        supervisor.spawn(background::probe_kafka(
            Probe {
                kafka: kafka.client.clone(),
                readiness: readiness.clone(),
                settings: settings.clone(),
                topics: kafka.topics.clone(),
                topics_ready: kafka.topics_ready,
            },
            supervisor.tracker().clone(),
            supervisor.stopping(),
        ));
        let acceptor = listeners
            .tls
            .as_ref()
            .map(CertificateStore::acceptor)
            .transpose()?;
        let scheme = if listeners.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(
            listen = %public_address,
            admin_listen = %admin_address,
            tls = listeners.tls.is_some(),
            delivery_mode = ?settings.delivery.mode,
            "telecmi-bridge serving: webhook {scheme}://{public_address}{}, metrics \
             http://{admin_address}/metrics",
            http::WEBHOOK_PATH,
        );
        if let Some(store) = listeners.tls {
            supervisor.spawn(store.watch(supervisor.stopping()));
        }
        running.servers = vec![
            supervisor.serve(
                "public",
                listeners.public,
                services.public,
                services.public_limits,
                acceptor,
            ),
            supervisor.serve(
                "admin",
                listeners.admin,
                services.admin,
                services.admin_limits,
                None,
            ),
        ];

        shutdown.await;
        tracing::info!("shutting down: no new connections, draining in-flight requests");
        readiness.set_shutting_down();
        let timeout = settings.server.shutdown_timeout_ms;
        supervisor
            .shut_down(running, &kafka.client, spool, timeout)
            .await?;
        tracing::info!("stopped");
        drop(kafka.client);
        drop(kafka.embedded);
        Ok(())
    }
}

/// The embedded cluster when configured, the client, and the topics checked. Unreachable is
/// not fatal (the readiness probe retries), but a topic known to be missing is, and so are
/// refused credentials.
async fn connect_kafka(settings: &Settings) -> Result<Kafka, StartError> {
    let topics = settings.routing.all_topics();
    let (embedded, bootstrap_servers) = match &settings.kafka.bootstrap_servers {
        Bootstrap::Embedded => {
            let cluster = EmbeddedCluster::start(&topics, settings.kafka.topic_partitions)?;
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
    let client = KafkaClient::new(kafka_client_config(
        &settings.kafka,
        &bootstrap_servers,
        &settings.delivery,
    ))?;
    // The mock cluster has its topics already.
    let topics_ready = match embedded {
        Some(_) => true,
        None => match background::check_topics(settings, &client, &topics).await {
            Ok(()) => true,
            // librdkafka reports refused credentials and failed TLS handshakes only to the
            // client's error callback; the admin request itself just times out.
            Err(TopicError::Unreachable(reason)) => match client.refusal() {
                Some(refused) => return Err(TopicError::from(refused).into()),
                None => {
                    tracing::warn!(reason, "Kafka unreachable at start-up; will keep trying");
                    false
                }
            },
            Err(error) => return Err(error.into()),
        },
    };
    Ok(Kafka {
        client,
        bootstrap_servers,
        topics,
        topics_ready,
        embedded,
    })
}

async fn bind_listeners(settings: &Settings) -> Result<Listeners, StartError> {
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
    let public = bind(
        settings.server.listen,
        "server.listen",
        "TELECMI_BRIDGE_SERVER__LISTEN",
    )
    .await?;
    let admin = bind(
        settings.server.admin_listen,
        "server.admin_listen",
        "TELECMI_BRIDGE_SERVER__ADMIN_LISTEN",
    )
    .await?;
    Ok(Listeners { public, admin, tls })
}
