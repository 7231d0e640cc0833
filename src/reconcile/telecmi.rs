//! The client of TeleCMI's call-record pull APIs (docs/reconcile.md, "TeleCMI's APIs"): four
//! endpoints per product line, one window, every page. An endpoint's listing is complete or an
//! error: a page that cannot be had after the retries fails the listing, never skipped.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use indicatif::ProgressBar;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::settings::{Credentials, Product, ReconcileSettings};

/// One answer's body at most; a page of records is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Listings of an endpoint at most, when its count grows while it is paged.
const MAX_PASSES: u32 = 3;
/// Pages of one listing at most (a million records at CHUB's 20 a page): a bound against a
/// server that never answers a short page.
const MAX_PAGES: u64 = 50_000;

/// What each endpoint lists; direction and status are not in the records, only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Answered,
    Missed,
    OutAnswered,
    OutMissed,
}

impl Endpoint {
    pub const ALL: [Self; 4] = [
        Self::Answered,
        Self::Missed,
        Self::OutAnswered,
        Self::OutMissed,
    ];

    pub fn path(self, product: Product) -> &'static str {
        match (product, self) {
            (Product::Chub, Self::Answered) => "/v2/answered",
            (Product::Chub, Self::Missed) => "/v2/missed",
            (Product::Chub, Self::OutAnswered) => "/v2/out_answered",
            (Product::Chub, Self::OutMissed) => "/v2/out_missed",
            (Product::ChubIndia, Self::Answered) => "/v1/answered",
            (Product::ChubIndia, Self::Missed) => "/v1/missed",
            (Product::ChubIndia, Self::OutAnswered) => "/v1/outanswered",
            (Product::ChubIndia, Self::OutMissed) => "/v1/outmissed",
        }
    }

    /// As the webhook CDRs spell it in `direction`.
    pub fn direction(self) -> &'static str {
        match self {
            Self::Answered | Self::Missed => "inbound",
            Self::OutAnswered | Self::OutMissed => "outbound",
        }
    }

    /// As the webhook CDRs spell it in `status`.
    pub fn status(self) -> &'static str {
        match self {
            Self::Answered | Self::OutAnswered => "answered",
            Self::Missed | Self::OutMissed => "missed",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Missed => "missed",
            Self::OutAnswered => "out_answered",
            Self::OutMissed => "out_missed",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A time window in epoch milliseconds, as TeleCMI's `start_date` and `end_date` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One pulled call record, typed; `fields` keeps it as TeleCMI sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub endpoint: Endpoint,
    /// CHUB's call id `cmiuid`, or CHUB India's database `_id`.
    pub id: String,
    pub time_ms: i64,
    /// Numbers as text whether TeleCMI sent a number or a string, so no zero is lost.
    pub from: Option<String>,
    pub to: Option<String>,
    pub agent: Option<String>,
    pub fields: Map<String, Value>,
}

/// A record without the id or time that matching needs: counted and reported, not used.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedRecord {
    pub endpoint: Endpoint,
    pub reason: String,
    pub fields: Map<String, Value>,
}

/// An endpoint's records in a window, each once.
#[derive(Debug, Clone)]
pub struct Listing {
    pub endpoint: Endpoint,
    /// TeleCMI's own count (`count`/`total`) in the last answer, when it gave one.
    pub reported_count: Option<u64>,
    pub records: Vec<CallRecord>,
    pub skipped: Vec<SkippedRecord>,
    /// HTTP requests made, retries included.
    pub requests: u32,
}

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

/// How one attempt ended when it brought no page.
enum Failure {
    Final(ApiError),
    Retry {
        cause: Transient,
        retry_after: Option<Duration>,
    },
}

/// An answer's body as documented: CHUB counts in `count`, CHUB India in `total`.
#[derive(Deserialize)]
struct Answer {
    count: Option<Value>,
    total: Option<Value>,
    cdr: Option<Vec<Value>>,
    code: Option<Value>,
}

pub struct TelecmiClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    urls: Vec<(Endpoint, Uri)>,
    request_timeout: Duration,
    product: Product,
    credentials: Credentials,
    page_size: u32,
    max_attempts: u32,
    backoff_first: Duration,
    backoff_max: Duration,
    /// Says which page is being fetched; hidden unless set by [`TelecmiClient::showing`].
    progress: ProgressBar,
}

impl TelecmiClient {
    pub fn new(settings: &ReconcileSettings, credentials: Credentials) -> Result<Self, String> {
        let base = settings.base_url()?;
        let urls = Endpoint::ALL
            .into_iter()
            .map(|endpoint| {
                let scheme = base.scheme_str().unwrap_or("https");
                let authority = base.authority().map_or("", |authority| authority.as_str());
                format!("{scheme}://{authority}{}", endpoint.path(settings.product))
                    .parse()
                    .map(|url| (endpoint, url))
                    .map_err(|error| format!("reconcile.base_url: {error}"))
            })
            .collect::<Result<_, _>>()?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(tokio_rustls::rustls::crypto::ring::default_provider())
            .map_err(|error| {
                format!("cannot load the system's trusted CA certificates for TeleCMI: {error}")
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            urls,
            request_timeout: settings.request_timeout(),
            product: settings.product,
            credentials,
            page_size: settings.page_size,
            max_attempts: settings.max_attempts,
            backoff_first: Duration::from_millis(settings.retry_backoff_ms),
            backoff_max: Duration::from_millis(settings.retry_backoff_max_ms),
            progress: ProgressBar::hidden(),
        })
    }

    /// Reports each page fetched on `progress`.
    pub fn showing(self, progress: ProgressBar) -> Self {
        Self { progress, ..self }
    }

    /// Every record of `endpoint` in `window`, each once. Records arriving while the window is
    /// paged shift later pages: ids seen on an earlier page are not counted again, and when
    /// fewer distinct records than TeleCMI's count were found the window is paged again.
    pub async fn list(&self, endpoint: Endpoint, window: Window) -> Result<Listing, ApiError> {
        let mut listing = Listing {
            endpoint,
            reported_count: None,
            records: Vec::new(),
            skipped: Vec::new(),
            requests: 0,
        };
        let mut seen_ids = HashSet::new();
        let mut seen_skipped = HashSet::new();
        for pass in 1..=MAX_PASSES {
            let mut page = 1;
            loop {
                self.progress.set_message(format!(
                    "TeleCMI {endpoint}: page {page}, {} of {} records listed",
                    listing.records.len() + listing.skipped.len(),
                    listing
                        .reported_count
                        .map_or_else(|| "?".to_owned(), |count| count.to_string())
                ));
                let answer = self.page(endpoint, window, page, &mut listing).await?;
                let full = answer.records.len() >= self.page_size as usize;
                for element in answer.records {
                    match CallRecord::parse(self.product, endpoint, element) {
                        Ok(record) => {
                            if seen_ids.insert(record.id.clone()) {
                                listing.records.push(record);
                            }
                        }
                        Err(skipped) => {
                            if seen_skipped
                                .insert(Value::Object(skipped.fields.clone()).to_string())
                            {
                                listing.skipped.push(skipped);
                            }
                        }
                    }
                }
                listing.reported_count = answer.count.or(listing.reported_count);
                let counted_through = answer
                    .count
                    .is_some_and(|count| page * u64::from(self.page_size) >= count);
                if !full || counted_through {
                    break;
                }
                if page == MAX_PAGES {
                    count_api_error("too_many_pages");
                    return Err(ApiError::TooManyPages { endpoint });
                }
                page += 1;
            }
            let found = (listing.records.len() + listing.skipped.len()) as u64;
            match listing.reported_count {
                Some(reported) if found < reported => {
                    if pass == MAX_PASSES {
                        count_api_error("window_changed");
                        return Err(ApiError::WindowChanged {
                            endpoint,
                            found,
                            reported,
                            passes: pass,
                        });
                    }
                    tracing::info!(%endpoint, found, reported, "fewer records than counted; paging the window again");
                }
                _ => break,
            }
        }
        Ok(listing)
    }

    /// One page, retried with backoff on what another attempt may cure.
    async fn page(
        &self,
        endpoint: Endpoint,
        window: Window,
        page: u64,
        listing: &mut Listing,
    ) -> Result<Page, ApiError> {
        let mut backoff = self.backoff_first;
        let mut attempt = 1;
        loop {
            listing.requests += 1;
            let (cause, retry_after) = match self.attempt(endpoint, window, page).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Final(error)) => {
                    count_api_error(error.cause());
                    return Err(error);
                }
                Err(Failure::Retry { cause, retry_after }) => (cause, retry_after),
            };
            count_api_error(cause.cause());
            if attempt >= self.max_attempts {
                return Err(ApiError::GaveUp {
                    endpoint,
                    page,
                    attempts: attempt,
                    last: cause,
                });
            }
            let pause = retry_after.unwrap_or(backoff).min(self.backoff_max);
            tracing::warn!(%endpoint, page, attempt, cause = %cause, pause_ms = pause.as_millis() as u64, "TeleCMI API attempt failed; retrying");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(self.backoff_max);
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        endpoint: Endpoint,
        window: Window,
        page: u64,
    ) -> Result<Page, Failure> {
        let secret_key = match self.product {
            Product::Chub => "secret",
            Product::ChubIndia => "token",
        };
        let body = json!({
            "appid": self.credentials.app_id,
            secret_key: self.credentials.secret.expose(),
            "start_date": window.start_ms,
            "end_date": window.end_ms,
            "page": page,
            "limit": self.page_size,
        });
        let mut request = Request::new(Full::new(Bytes::from(body.to_string())));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.url(endpoint);
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("telecmi-bridge/", env!("CARGO_PKG_VERSION"))),
        );
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|error| Transient::Connection(error_chain(&error)))?;
            let (parts, body) = response.into_parts();
            // A body cut short by the connection is a transport failure, retried, never parsed.
            let bytes = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<LengthLimitError>() {
                        Transient::Malformed(format!("answer larger than {MAX_ANSWER_BYTES} bytes"))
                    } else {
                        Transient::Connection(error.to_string())
                    }
                })?
                .to_bytes();
            Ok((parts.status, parts.headers, bytes))
        };
        let (status, headers, bytes) =
            match tokio::time::timeout(self.request_timeout, exchange).await {
                Err(_) => return Err(retry(Transient::Timeout, None)),
                Ok(Err(cause)) => return Err(retry(cause, None)),
                Ok(Ok(answer)) => answer,
            };
        let retry_after = retry_after(&headers);
        match status {
            StatusCode::OK => self.parse(endpoint, page, &bytes),
            StatusCode::NOT_FOUND => Err(self.bad_credentials(endpoint)),
            StatusCode::BAD_REQUEST => Err(Failure::Final(ApiError::BadRequest {
                endpoint,
                page,
                detail: self.excerpt(&bytes),
            })),
            StatusCode::TOO_MANY_REQUESTS => Err(retry(Transient::RateLimited, retry_after)),
            status if status.is_server_error() => {
                Err(retry(Transient::ServerError(status.as_u16()), retry_after))
            }
            status => Err(Failure::Final(ApiError::UnexpectedStatus {
                endpoint,
                page,
                status: status.as_u16(),
            })),
        }
    }

    /// The whole answer parses or the page is refused: a record is never taken from a body that
    /// is cut short or otherwise broken.
    fn parse(&self, endpoint: Endpoint, page: u64, bytes: &[u8]) -> Result<Page, Failure> {
        let answer: Answer = serde_json::from_slice(bytes)
            .map_err(|error| retry(Transient::Malformed(error.to_string()), None))?;
        match answer.code.as_ref().and_then(integer) {
            Some(404) => return Err(self.bad_credentials(endpoint)),
            Some(400) => {
                return Err(Failure::Final(ApiError::BadRequest {
                    endpoint,
                    page,
                    detail: self.excerpt(bytes),
                }));
            }
            _ => {}
        }
        let Some(records) = answer.cdr else {
            return Err(retry(
                Transient::Malformed("the answer has no `cdr` list".to_owned()),
                None,
            ));
        };
        let counted = match self.product {
            Product::Chub => answer.count,
            Product::ChubIndia => answer.total,
        };
        let count = match counted {
            None => None,
            Some(value) => Some(
                integer(&value)
                    .and_then(|count| u64::try_from(count).ok())
                    .ok_or_else(|| {
                        retry(
                            Transient::Malformed(format!(
                                "the record count {value} is not a number"
                            )),
                            None,
                        )
                    })?,
            ),
        };
        Ok(Page { records, count })
    }

    fn url(&self, endpoint: Endpoint) -> Uri {
        self.urls
            .iter()
            .find(|(listed, _)| *listed == endpoint)
            .map(|(_, url)| url.clone())
            .unwrap_or_else(|| unreachable!("every endpoint has its URL"))
    }

    /// The start of an error answer, for the report; TeleCMI's error bodies are short
    /// messages, and one that echoes the request must not carry the secret into the report.
    fn excerpt(&self, bytes: &[u8]) -> String {
        // Redacted before it is cut, so that no part of the secret survives the cut.
        String::from_utf8_lossy(bytes)
            .replace(self.credentials.secret.expose(), "[redacted]")
            .chars()
            .take(200)
            .collect()
    }

    fn bad_credentials(&self, endpoint: Endpoint) -> Failure {
        Failure::Final(ApiError::BadCredentials {
            endpoint,
            product: self.product.as_str(),
            app_id: self.credentials.app_id,
        })
    }
}

struct Page {
    records: Vec<Value>,
    count: Option<u64>,
}

impl CallRecord {
    fn parse(product: Product, endpoint: Endpoint, element: Value) -> Result<Self, SkippedRecord> {
        let Value::Object(fields) = element else {
            return Err(SkippedRecord {
                endpoint,
                reason: format!("not an object: {element}"),
                fields: Map::new(),
            });
        };
        let id_key = match product {
            Product::Chub => "cmiuid",
            Product::ChubIndia => "_id",
        };
        let skip = |reason: String| SkippedRecord {
            endpoint,
            reason,
            fields: fields.clone(),
        };
        let Some(id) = fields.get(id_key).and_then(text) else {
            return Err(skip(format!("no `{id_key}`")));
        };
        let Some(time_ms) = fields.get("time").and_then(integer) else {
            return Err(skip("no `time` in epoch milliseconds".to_owned()));
        };
        Ok(Self {
            endpoint,
            id,
            time_ms,
            from: fields.get("from").and_then(text),
            to: fields.get("to").and_then(text),
            agent: fields.get("agent").and_then(text),
            fields,
        })
    }
}

/// A string or a number as trimmed text; numbers keep their digits as sent.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.trim().to_owned()).filter(|text| !text.is_empty()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// An integer sent as a number or as a string of digits.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Every failed request (retried or not) and every listing given up, by cause.
fn count_api_error(cause: &'static str) {
    metrics::counter!("telecmi_bridge_reconcile_api_errors_total", "cause" => cause).increment(1);
}

fn retry(cause: Transient, retry_after: Option<Duration>) -> Failure {
    Failure::Retry { cause, retry_after }
}

/// The client's own message is "client error (Connect)"; the cause (refused, reset) is below it.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` in seconds (the form an API uses); an HTTP date is ignored for the backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}
