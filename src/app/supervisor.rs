//! The supervisor of a running application: every task it starts (listeners and their
//! connections, the spool forwarder, the background loops, blocking calls) runs on one
//! [`TaskTracker`], and shutdown goes in explicit phases, all within
//! `server.shutdown_timeout_ms`: stop accepting, drain HTTP, drain the forwarder, flush Kafka,
//! close the spool, end the background tasks. A phase that overruns the deadline is logged by
//! name, and what it left is cut and waited for: nothing of the application runs once
//! [`Supervisor::shut_down`] returns.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::StartError;
use crate::http::server::{self, ConnectionLimits, ConnectionTasks};
use crate::publish::kafka::KafkaClient;
use crate::publish::spool::{Forwarder, ForwarderControl, Spool};

/// The application's tasks seen from outside (an embedding program, a test): once
/// `run_until_stopped` has returned, the set is closed and none is running.
#[derive(Clone)]
pub struct Tasks(TaskTracker);

impl Tasks {
    pub fn running(&self) -> usize {
        self.0.len()
    }

    /// Whether the application stopped taking new tasks: it is shutting down or stopped.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

#[derive(Default)]
pub(super) struct Supervisor {
    tracker: TaskTracker,
    /// Stops accepting connections and ends the background loops.
    stop: CancellationToken,
    /// Ends where they are the connections and background tasks still running when the
    /// deadline passed.
    cut: CancellationToken,
}

/// What runs until shutdown and must be drained in order.
#[derive(Default)]
pub(super) struct Running {
    pub servers: Vec<JoinHandle<()>>,
    pub forwarder: Option<(JoinHandle<bool>, ForwarderControl)>,
}

/// The phases past "stop accepting", named in the log when one overruns the deadline.
#[derive(Debug, Clone, Copy)]
enum Phase {
    DrainHttp,
    DrainForwarder,
    FlushKafka,
    CloseSpool,
    EndBackgroundTasks,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::DrainHttp => "drain_http",
            Self::DrainForwarder => "drain_forwarder",
            Self::FlushKafka => "flush_kafka",
            Self::CloseSpool => "close_spool",
            Self::EndBackgroundTasks => "end_background_tasks",
        }
    }

    fn overran(self, consequence: &str) {
        tracing::warn!(
            phase = self.name(),
            "shutdown deadline reached in phase {}: {consequence}",
            self.name()
        );
    }
}

impl Supervisor {
    pub(super) fn tasks(&self) -> Tasks {
        Tasks(self.tracker.clone())
    }

    /// Cancelled when shutdown begins: what background loops stop on.
    pub(super) fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub(super) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// A background task: it ends by itself once shutdown begins, or is cut.
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker
            .spawn(self.cut.clone().run_until_cancelled_owned(task));
    }

    /// Serves a listener until shutdown; its connections run on the supervisor's tracker.
    pub(super) fn serve(
        &self,
        name: &'static str,
        listener: TcpListener,
        router: axum::Router,
        limits: ConnectionLimits,
        tls: Option<TlsAcceptor>,
    ) -> JoinHandle<()> {
        let connections = ConnectionTasks {
            tracker: self.tracker.clone(),
            stop: self.stop.clone(),
            cut: self.cut.clone(),
        };
        self.tracker.spawn(server::serve(
            name,
            listener,
            router,
            limits,
            tls,
            connections,
        ))
    }

    pub(super) fn forward(&self, forwarder: Forwarder) -> (JoinHandle<bool>, ForwarderControl) {
        let control = ForwarderControl::default();
        (self.tracker.spawn(forwarder.run(control.clone())), control)
    }

    /// Runs the shutdown phases within `timeout`, and returns once no task is left.
    pub(super) async fn shut_down(
        self,
        running: Running,
        kafka: &KafkaClient,
        spool: Option<Spool>,
        timeout: Duration,
    ) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        self.stop.cancel();
        self.tracker.close();

        let servers = async {
            for server in running.servers {
                let _ = server.await;
            }
        };
        let mut servers = std::pin::pin!(servers);
        if tokio::time::timeout_at(deadline, &mut servers)
            .await
            .is_err()
        {
            Phase::DrainHttp.overran("requests still in flight are cut off");
            self.cut.cancel();
            servers.await;
        }

        if let Some((mut forwarder, control)) = running.forwarder {
            control.drain.cancel();
            let emptied = match tokio::time::timeout_at(deadline, &mut forwarder).await {
                Ok(emptied) => emptied.unwrap_or(false),
                Err(_deadline) => {
                    Phase::DrainForwarder.overran("forwarding stops");
                    control.stop.cancel();
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

        let remaining = deadline.saturating_duration_since(Instant::now());
        let flushing = kafka.clone();
        let flushed = self
            .tracker
            .spawn_blocking(move || flushing.flush(remaining))
            .await
            .map_err(std::io::Error::other)?;
        match flushed {
            Ok(()) => {}
            // What the forwarder had in flight is still in the spool.
            Err(_) if spool.is_some() => Phase::FlushKafka
                .overran("records in flight stay in the spool and are forwarded at the next start"),
            Err(error) => {
                Phase::FlushKafka.overran("records still in flight are abandoned");
                tracing::error!(
                    %error,
                    in_flight = kafka.in_flight(),
                    "producer flush did not finish before the deadline"
                );
            }
        }

        if let Some(spool) = spool {
            let path = spool.path().clone();
            let left = self
                .tracker
                .spawn_blocking(move || spool.close())
                .await
                .map_err(std::io::Error::other)?;
            tracing::info!(spooled = left, path = %path.display(), "spool closed");
            if Instant::now() > deadline {
                Phase::CloseSpool.overran("the spool closed late");
            }
        }

        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            Phase::EndBackgroundTasks.overran("the tasks left are cut off");
            self.cut.cancel();
            self.tracker.wait().await;
        }
        Ok(())
    }
}
