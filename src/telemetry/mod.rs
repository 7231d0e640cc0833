//! Logging: human-readable by default, JSON by configuration; `RUST_LOG` overrides the level.

pub mod repeats;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingSettings};

pub fn init(settings: &LoggingSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second initialisation (tests building several applications) keeps the first.
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
