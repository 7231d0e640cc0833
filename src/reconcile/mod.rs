//! Reconciliation (issue 14): compare TeleCMI's own call records, pulled from its REST APIs,
//! with the CDRs published to Kafka, so that calls whose webhook never reached the bridge are
//! counted and, later, published. See `docs/reconcile.md` for what is built so far.

pub mod cli;
pub mod kafka;
pub mod lease;
pub mod matching;
pub mod metrics;
pub mod recover;
pub mod report;
pub mod run;
pub mod schedule;
pub mod settings;
pub mod telecmi;

pub use cli::ReconcileArgs;
pub use settings::{Credentials, Product, ReconcileSettings};
