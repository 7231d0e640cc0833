//! The embedded cluster: librdkafka's in-process mock cluster, so that `cargo run` does the
//! whole job on a machine with no Kafka. Nothing in it is durable.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;

use crate::domain::TopicName;

/// Why the embedded cluster did not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("could not start the embedded cluster thread: {0}")]
    Thread(std::io::Error),
    #[error("the embedded cluster thread exited")]
    Exited,
    #[error("could not start the embedded cluster: {0}")]
    Cluster(KafkaError),
    #[error("could not create embedded topic {topic}: {source}")]
    Topic {
        topic: TopicName,
        source: KafkaError,
    },
}

/// Owns the mock cluster on a thread of its own (the handle is not `Send`); dropping this
/// stops the cluster.
pub struct EmbeddedCluster {
    bootstrap_servers: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedCluster {
    /// Starts a one-broker cluster with `topics` already created (the mock cluster does not
    /// implement the CreateTopics request).
    pub fn start(topics: &[TopicName], partitions: i32) -> Result<Self, EmbeddedError> {
        let (ready_sender, ready) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let topics = topics.to_vec();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".to_owned())
            .spawn(move || {
                let cluster = match create(&topics, partitions) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        let _ = ready_sender.send(Err(error));
                        return;
                    }
                };
                let _ = ready_sender.send(Ok(cluster.bootstrap_servers()));
                // Blocks until the owner drops its sender.
                let _ = stopped.recv();
            })
            .map_err(EmbeddedError::Thread)?;
        let bootstrap_servers = ready.recv().map_err(|_| EmbeddedError::Exited)??;
        Ok(Self {
            bootstrap_servers,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }
}

fn create(
    topics: &[TopicName],
    partitions: i32,
) -> Result<MockCluster<'static, rdkafka::producer::DefaultProducerContext>, EmbeddedError> {
    let cluster = MockCluster::new(1).map_err(EmbeddedError::Cluster)?;
    for topic in topics {
        cluster
            .create_topic(topic.as_str(), partitions, 1)
            .map_err(|source| EmbeddedError::Topic {
                topic: topic.clone(),
                source,
            })?;
    }
    Ok(cluster)
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
