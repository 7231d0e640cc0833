//! Why a listing could not be had, with the stable cause labels that reports and metrics
//! use. Separate from the transport: callers match on these, and the labels are a contract of
//! the report and the metrics.

use super::{Endpoint, MAX_PAGES};

/// Why a listing could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "{endpoint}: TeleCMI refused the credentials (404): check reconcile.app_id and \
         reconcile.secret (or reconcile.secret_file), and that reconcile.product ({product}) \
         is the product line of app {app_id}"
    )]
    BadCredentials {
        endpoint: Endpoint,
        product: &'static str,
        app_id: u64,
    },
    #[error(
        "{endpoint} page {page}: TeleCMI answered 400 (a parameter missing or out of range): {detail}"
    )]
    BadRequest {
        endpoint: Endpoint,
        page: u64,
        detail: String,
    },
    #[error("{endpoint} page {page}: TeleCMI answered {status}, which is not retried")]
    UnexpectedStatus {
        endpoint: Endpoint,
        page: u64,
        status: u16,
    },
    #[error("{endpoint} page {page}: gave up after {attempts} attempts; the last: {last}")]
    GaveUp {
        endpoint: Endpoint,
        page: u64,
        attempts: u32,
        last: Transient,
    },
    #[error(
        "{endpoint}: the window kept changing while it was paged ({found} records found, \
         TeleCMI counts {reported}) after {passes} passes"
    )]
    WindowChanged {
        endpoint: Endpoint,
        found: u64,
        reported: u64,
        passes: u32,
    },
    #[error("{endpoint}: more than {MAX_PAGES} pages without a short one; narrow the window")]
    TooManyPages { endpoint: Endpoint },
}

/// A failed attempt that another attempt may cure.
#[derive(Debug, thiserror::Error)]
pub enum Transient {
    #[error("TeleCMI answered {0}")]
    ServerError(u16),
    #[error("TeleCMI answered 429 (rate limited)")]
    RateLimited,
    #[error("no complete answer within reconcile.request_timeout_ms")]
    Timeout,
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("malformed answer: {0}")]
    Malformed(String),
}

impl ApiError {
    /// A stable label for reports and metrics.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::BadCredentials { .. } => "bad_credentials",
            Self::BadRequest { .. } => "bad_request",
            Self::UnexpectedStatus { .. } => "unexpected_status",
            Self::GaveUp { last, .. } => last.cause(),
            Self::WindowChanged { .. } => "window_changed",
            Self::TooManyPages { .. } => "too_many_pages",
        }
    }
}

impl Transient {
    pub fn cause(&self) -> &'static str {
        match self {
            Self::ServerError(_) => "server_error",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Connection(_) => "connection",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// Every failed request (retried or not) and every listing given up, by cause.
pub(super) fn count_api_error(cause: &'static str) {
    metrics::counter!("telecmi_bridge_reconcile_api_errors_total", "cause" => cause).increment(1);
}
