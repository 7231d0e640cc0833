//! The client of TeleCMI's call-record pull APIs (docs/reconcile.md, "TeleCMI's APIs"): four
//! endpoints per product line, one window, every page. An endpoint's listing is complete or an
//! error: a page that cannot be had after the retries fails the listing, never skipped.
//!
//! This file holds the client and the paging of a listing; the records and what they are
//! listed by are in `records`, one page's request and its retries in `transport`, and why a
//! listing fails in `error`.

mod error;
mod records;
mod transport;

use std::collections::HashSet;
use std::time::Duration;

use axum::http::Uri;
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use indicatif::ProgressBar;
use serde_json::Value;

use error::count_api_error;
pub use error::{ApiError, Transient};
pub use records::{CallRecord, Endpoint, Listing, SkippedRecord, Window};

use super::settings::{Credentials, Product, ReconcileSettings};

/// Listings of an endpoint at most, when its count grows while it is paged.
const MAX_PASSES: u32 = 3;
/// Pages of one listing at most (a million records at CHUB's 20 a page): a bound against a
/// server that never answers a short page.
const MAX_PAGES: u64 = 50_000;

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
            request_timeout: settings.request_timeout_ms,
            product: settings.product,
            credentials,
            page_size: settings.page_size,
            max_attempts: settings.max_attempts.get(),
            backoff_first: settings.retry_backoff_ms,
            backoff_max: settings.retry_backoff_max_ms,
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

    fn url(&self, endpoint: Endpoint) -> Uri {
        self.urls
            .iter()
            .find(|(listed, _)| *listed == endpoint)
            .map(|(_, url)| url.clone())
            .unwrap_or_else(|| unreachable!("every endpoint has its URL"))
    }
}
