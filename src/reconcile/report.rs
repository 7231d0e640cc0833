//! A run's report: per endpoint, TeleCMI's count and what matching made of each record, as
//! text for people and JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;
use time::OffsetDateTime;

use super::matching::Outcome;
use super::settings::Product;
use super::telecmi::{ApiError, Endpoint, Listing, Window};
use crate::pipeline::envelope::rfc3339;

/// Missing and ambiguous calls listed one by one in the text report, at most; JSON lists all.
const TEXT_LIST_LIMIT: usize = 20;

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub product: &'static str,
    pub window: WindowReport,
    pub dry_run: bool,
    /// Every endpoint was listed whole and matched against Kafka.
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaReport>,
    pub endpoints: Vec<EndpointReport>,
    pub totals: Totals,
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct WindowReport {
    pub from: String,
    pub to: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct KafkaReport {
    /// CDR records were read from this record timestamp on.
    pub since: String,
    pub records_read: u64,
    pub cdrs: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub telecmi_count: u64,
    pub found: usize,
    pub missing: usize,
    pub ambiguous: usize,
    pub skipped: usize,
    pub published: usize,
}

#[derive(Debug, Serialize)]
pub struct EndpointReport {
    pub endpoint: &'static str,
    pub path: &'static str,
    /// TeleCMI's own count of the window; absent when the listing failed.
    pub telecmi_count: Option<u64>,
    pub found: usize,
    pub missing: usize,
    pub ambiguous: usize,
    pub skipped: usize,
    /// Missing CDRs published by this run.
    pub published: usize,
    pub requests: u32,
    /// The TeleCMI ids (`cmiuid`, or `_id` on CHUB India) of the calls with no CDR in Kafka.
    pub missing_calls: Vec<CallReport>,
    pub ambiguous_calls: Vec<AmbiguousCall>,
    pub skipped_records: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

#[derive(Debug, Serialize)]
pub struct CallReport {
    pub id: String,
    pub time: String,
}

#[derive(Debug, Serialize)]
pub struct AmbiguousCall {
    pub id: String,
    pub time: String,
    /// Event ids of the CDRs that could each be this call's.
    pub candidates: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub cause: &'static str,
    pub message: String,
}

impl RunReport {
    pub fn new(product: Product, window: Window, dry_run: bool) -> Self {
        Self {
            product: product.as_str(),
            window: WindowReport {
                from: time_text(window.start_ms),
                to: time_text(window.end_ms),
                from_ms: window.start_ms,
                to_ms: window.end_ms,
            },
            dry_run,
            complete: true,
            kafka: None,
            endpoints: Vec::new(),
            totals: Totals::default(),
            errors: Vec::new(),
        }
    }

    /// The run could not finish; the reason goes into the summary.
    pub fn fail(&mut self, message: String) {
        self.complete = false;
        self.errors.push(message);
    }

    pub fn listing_failed(&mut self, product: Product, endpoint: Endpoint, error: &ApiError) {
        let mut row = EndpointReport::empty(product, endpoint);
        row.error = Some(ErrorReport {
            cause: error.cause(),
            message: error.to_string(),
        });
        self.endpoints.push(row);
        self.fail(error.to_string());
    }

    /// A listing that could not be matched because Kafka could not be read.
    pub fn not_matched(&mut self, product: Product, listing: &Listing, reason: &str) {
        let mut row = EndpointReport::empty(product, listing.endpoint);
        row.telecmi_count = listing.reported_count;
        row.requests = listing.requests;
        row.skipped = listing.skipped.len();
        row.error = Some(ErrorReport {
            cause: "kafka",
            message: format!("not matched: {reason}"),
        });
        self.endpoints.push(row);
    }

    pub fn matched(&mut self, product: Product, listing: &Listing, outcomes: &[Outcome]) {
        let mut row = EndpointReport::empty(product, listing.endpoint);
        row.telecmi_count = listing.reported_count;
        row.requests = listing.requests;
        row.skipped = listing.skipped.len();
        row.skipped_records = listing
            .skipped
            .iter()
            .map(|skipped| skipped.reason.clone())
            .collect();
        for (record, outcome) in listing.records.iter().zip(outcomes) {
            match outcome {
                Outcome::Found { .. } => row.found += 1,
                Outcome::Missing => row.missing_calls.push(CallReport {
                    id: record.id.clone(),
                    time: time_text(record.time_ms),
                }),
                Outcome::Ambiguous { event_ids } => row.ambiguous_calls.push(AmbiguousCall {
                    id: record.id.clone(),
                    time: time_text(record.time_ms),
                    candidates: event_ids.clone(),
                }),
            }
        }
        row.missing = row.missing_calls.len();
        row.ambiguous = row.ambiguous_calls.len();
        let totals = &mut self.totals;
        totals.telecmi_count += row.telecmi_count.unwrap_or_default();
        totals.found += row.found;
        totals.missing += row.missing;
        totals.ambiguous += row.ambiguous;
        totals.skipped += row.skipped;
        self.endpoints.push(row);
    }

    /// One missing CDR of `endpoint` was published.
    pub fn published(&mut self, endpoint: Endpoint) {
        if let Some(row) = self
            .endpoints
            .iter_mut()
            .find(|row| row.endpoint == endpoint.name())
        {
            row.published += 1;
            self.totals.published += 1;
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|error| {
            format!("{{\"error\":{{\"code\":\"report\",\"message\":\"{error}\"}}}}")
        })
    }

    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let mode = if self.dry_run {
            " (dry run: nothing published)"
        } else {
            ""
        };
        let _ = writeln!(
            text,
            "reconcile {} from {} to {}{mode}",
            self.product, self.window.from, self.window.to
        );
        if let Some(kafka) = &self.kafka {
            let _ = writeln!(
                text,
                "kafka: {} CDRs in {} records on the CDR topics since {}",
                kafka.cdrs, kafka.records_read, kafka.since
            );
        }
        let _ = writeln!(
            text,
            "{:<14}{:>9}{:>9}{:>9}{:>11}{:>9}{:>11}",
            "endpoint", "telecmi", "found", "missing", "ambiguous", "skipped", "published"
        );
        for row in &self.endpoints {
            let count = row
                .telecmi_count
                .map_or_else(|| "-".to_owned(), |count| count.to_string());
            // A row that failed has no verdicts: "-" rather than zeros that read as "none".
            let verdict = |number: usize| {
                if row.error.is_some() {
                    "-".to_owned()
                } else {
                    number.to_string()
                }
            };
            let _ = writeln!(
                text,
                "{:<14}{count:>9}{:>9}{:>9}{:>11}{:>9}{:>11}",
                row.endpoint,
                verdict(row.found),
                verdict(row.missing),
                verdict(row.ambiguous),
                row.skipped,
                row.published
            );
        }
        let totals = &self.totals;
        let _ = writeln!(
            text,
            "{:<14}{:>9}{:>9}{:>9}{:>11}{:>9}{:>11}",
            "total",
            totals.telecmi_count,
            totals.found,
            totals.missing,
            totals.ambiguous,
            totals.skipped,
            totals.published
        );
        let missing = self.endpoints.iter().flat_map(|row| {
            row.missing_calls
                .iter()
                .map(move |call| (row.endpoint, call))
        });
        for (endpoint, call) in missing.take(TEXT_LIST_LIMIT) {
            let _ = writeln!(text, "missing   {endpoint} {} at {}", call.id, call.time);
        }
        let ambiguous = self.endpoints.iter().flat_map(|row| {
            row.ambiguous_calls
                .iter()
                .map(move |call| (row.endpoint, call))
        });
        for (endpoint, call) in ambiguous.take(TEXT_LIST_LIMIT) {
            let _ = writeln!(
                text,
                "ambiguous {endpoint} {} at {}: candidates {}",
                call.id,
                call.time,
                call.candidates.join(", ")
            );
        }
        if totals.missing + totals.ambiguous > 2 * TEXT_LIST_LIMIT {
            let _ = writeln!(text, "(lists cut short; --output json lists every call)");
        }
        if self.complete {
            let _ = writeln!(text, "result: complete");
        } else {
            let _ = writeln!(text, "result: INCOMPLETE, the run could not finish:");
            for error in &self.errors {
                let _ = writeln!(text, "  - {error}");
            }
        }
        text
    }
}

impl EndpointReport {
    fn empty(product: Product, endpoint: Endpoint) -> Self {
        Self {
            endpoint: endpoint.name(),
            path: endpoint.path(product),
            telecmi_count: None,
            found: 0,
            missing: 0,
            ambiguous: 0,
            skipped: 0,
            published: 0,
            requests: 0,
            missing_calls: Vec::new(),
            ambiguous_calls: Vec::new(),
            skipped_records: Vec::new(),
            error: None,
        }
    }
}

/// Epoch milliseconds as RFC 3339, or the number itself when it is out of range.
pub fn time_text(epoch_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(epoch_ms) * 1_000_000)
        .map_or_else(|_| epoch_ms.to_string(), rfc3339)
}
