//! One page: the request, its deadline, the reading of the answer and the retries with
//! backoff on what another attempt may cure. Separate from the paging in `telecmi.rs`, which
//! sees only a page or a final error.

use std::time::Duration;

use axum::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::Deserialize;
use serde_json::{Value, json};

use super::records::integer;
use super::{ApiError, Endpoint, Listing, TelecmiClient, Transient, Window, count_api_error};
use crate::reconcile::settings::Product;

/// One answer's body at most; a page of records is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 4 << 20;

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

impl TelecmiClient {
    /// One page, retried with backoff on what another attempt may cure.
    pub(super) async fn page(
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

pub(super) struct Page {
    pub(super) records: Vec<Value>,
    pub(super) count: Option<u64>,
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
