//! The listeners: addresses, limits, timeouts and TLS of the webhook server.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::forms::{milliseconds, seconds};
use super::{Problems, require_positive};

/// hyper refuses a read buffer below 8 KiB. Above 64 KiB a long URI would get hyper's 414
/// before the buffer fills, and the listener counts every too-large head as 431.
const MIN_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub body_limit_bytes: usize,
    #[serde(with = "milliseconds")]
    pub request_timeout_ms: Duration,
    #[serde(with = "milliseconds")]
    pub shutdown_timeout_ms: Duration,
    /// A client must send a request's headers within this time (slow-loris protection).
    #[serde(with = "milliseconds")]
    pub header_read_timeout_ms: Duration,
    /// Requests handled at once on the public listener; beyond it, 503 `overloaded`.
    pub max_in_flight_requests: NonZeroUsize,
    /// hyper's read buffer per connection, which must hold a request's line and headers;
    /// beyond it, 431. Bounds what a connection that never finishes its headers costs.
    pub max_header_bytes: usize,
    /// Open connections per listener; further ones are closed as soon as they are accepted.
    pub max_connections: NonZeroUsize,
    /// Open connections per peer address (the TCP peer, so a proxy in front counts as one).
    pub max_connections_per_address: NonZeroUsize,
    /// Webhooks per second per caller address (after trusted proxies); 0 turns it off.
    pub rate_limit_per_second: u32,
    /// Webhooks a caller may send at once before the rate applies.
    pub rate_limit_burst: NonZeroU32,
    /// TLS on the webhook listener, for deployments without a terminating proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTls>,
    /// Refuse to start without `tls` unless `tls_terminated_by_proxy` (the production profile).
    pub require_tls: bool,
    /// The operator's statement that a proxy in front terminates TLS.
    pub tls_terminated_by_proxy: bool,
}

/// PEM files of the webhook listener's certificate chain and private key. They are read again
/// when they change, so a renewed certificate (cert-manager, certbot) needs no restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub certificate_path: PathBuf,
    pub private_key_path: PathBuf,
    /// How often the files are checked for a change; 0 reads them only at start-up.
    #[serde(
        default = "ServerTls::default_reload_interval_seconds",
        with = "seconds"
    )]
    pub reload_interval_seconds: Duration,
}

impl ServerTls {
    fn default_reload_interval_seconds() -> Duration {
        Duration::from_secs(60)
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            body_limit_bytes: 64 * 1024,
            request_timeout_ms: Duration::from_millis(15_000),
            shutdown_timeout_ms: Duration::from_millis(20_000),
            header_read_timeout_ms: Duration::from_millis(10_000),
            max_in_flight_requests: NonZeroUsize::new(1_024).expect("not zero"),
            max_header_bytes: 16 * 1024,
            max_connections: NonZeroUsize::new(2_048).expect("not zero"),
            max_connections_per_address: NonZeroUsize::new(256).expect("not zero"),
            rate_limit_per_second: 0,
            rate_limit_burst: NonZeroU32::new(100).expect("not zero"),
            tls: None,
            require_tls: false,
            tls_terminated_by_proxy: false,
        }
    }
}

impl ServerSettings {
    pub(super) fn validate(&self, problems: &mut Problems) {
        require_positive(
            problems,
            &[
                ("server.request_timeout_ms", self.request_timeout_ms),
                ("server.shutdown_timeout_ms", self.shutdown_timeout_ms),
                ("server.header_read_timeout_ms", self.header_read_timeout_ms),
            ],
        );
        require_positive(
            problems,
            &[("server.body_limit_bytes", self.body_limit_bytes)],
        );
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            problems.add(
                "server.max_header_bytes",
                format!(
                    "must be between {MIN_HEADER_BYTES} and \
                 {MAX_HEADER_BYTES}"
                ),
            );
        }
        if self.require_tls && self.tls.is_none() && !self.tls_terminated_by_proxy {
            problems.add(
                "server.require_tls",
                "the webhook token travels in the URL, so this profile needs \
                 TLS: configure [server.tls], or set server.tls_terminated_by_proxy = true when a \
                 proxy in front terminates it"
                    .to_owned(),
            );
        }
    }
}
