//! telecmi-bridge: TeleCMI call webhooks in, versioned CloudEvents envelopes out on Kafka topics
//! by status.

pub mod app;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod publish;
pub mod reconcile;
pub mod replay;
pub mod shutdown;
pub mod telemetry;

pub use app::Application;
pub use config::Settings;
