//! The integration test binary: the bridge over HTTP against the in-process mock cluster, and
//! the envelope contract (golden files, JSON Schema) over every fixture.

mod access;
mod asyncapi;
mod cli;
mod cloudevents_sdk;
mod correlation;
mod event_logs;
mod golden;
mod ingest;
mod kafka_message_size;
mod limits;
mod listener;
mod monitoring;
mod original_modes;
mod outage_logs;
mod privacy;
mod product;
mod reconcile_cli;
mod reconcile_client;
mod record_time;
mod redaction;
mod rejections;
mod schemas;
mod shutdown;
mod spool;
mod spool_tools;
mod tls;
mod trust;

// The shared kit's modules, under the names this suite's files use (`crate::helpers`, ...).
use testkit::{fixtures, helpers, process, scenarios, telecmi_sim};
