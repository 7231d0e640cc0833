//! The integration test binary: the bridge over HTTP against the in-process mock cluster, and
//! the envelope contract (golden files, JSON Schema) over every fixture.

mod access;
mod asyncapi;
mod cli;
mod cloudevents_sdk;
mod fixtures;
mod golden;
mod helpers;
mod ingest;
mod kafka_message_size;
mod limits;
mod listener;
mod monitoring;
mod original_modes;
mod outage_logs;
mod privacy;
mod reconcile_cli;
mod reconcile_client;
// The bridge as a process, shared with the fault suite, which uses the parts this one does not.
#[allow(dead_code)]
#[path = "../kafka_faults/process.rs"]
mod process;
mod record_time;
mod redaction;
mod rejections;
mod scenarios;
mod schemas;
mod spool;
mod spool_tools;
mod telecmi_sim;
mod tls;
mod trust;
