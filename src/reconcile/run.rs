//! One reconciliation run: list every endpoint of the window at TeleCMI, read the CDRs in
//! Kafka, match, publish what is missing (unless a dry run), report.

use std::time::Instant;

use indicatif::ProgressBar;

use super::kafka::read_published_cdrs;
use super::lease::Lease;
use super::matching::{CdrIndex, Outcome, match_records};
use super::metrics::record_run;
use super::recover::Recovery;
use super::report::{KafkaReport, RunReport, time_text};
use super::settings::Product;
use super::telecmi::{Endpoint, TelecmiClient, Window};
use crate::config::{PrivacyMode, Settings};

/// Runs over `window`, reports and exports the run's metrics; a run that could not finish says
/// why in the report (`complete` false) rather than failing half-way without one.
pub async fn run(settings: &Settings, window: Window, dry_run: bool) -> RunReport {
    run_showing(settings, window, dry_run, ProgressBar::hidden()).await
}

/// [`run`], saying on `progress` what it is doing: the page being listed, the Kafka reading,
/// the CDRs being published.
pub async fn run_showing(
    settings: &Settings,
    window: Window,
    dry_run: bool,
    progress: ProgressBar,
) -> RunReport {
    let started = Instant::now();
    let report = run_unmeasured(settings, window, dry_run, progress.clone()).await;
    progress.finish_and_clear();
    record_run(&report, started.elapsed());
    report
}

async fn run_unmeasured(
    settings: &Settings,
    window: Window,
    dry_run: bool,
    progress: ProgressBar,
) -> RunReport {
    let reconcile = &settings.reconcile;
    let product = reconcile.product;
    let mut report = RunReport::new(product, window, dry_run);
    if product == Product::ChubIndia && settings.privacy.mode != PrivacyMode::Off {
        // India matches by phone numbers, which Kafka then holds redacted or hashed: every call
        // would look missing, and be published again by every run.
        report.fail(
            "reconcile.product chub_india matches calls by their phone numbers, and \
             privacy.mode hides them in Kafka: not supported"
                .to_owned(),
        );
        return report;
    }
    let started = reconcile.credentials().and_then(|credentials| {
        let recovery = if dry_run {
            None
        } else {
            Some(Recovery::new(settings, credentials.app_id)?)
        };
        let client = TelecmiClient::new(reconcile, credentials)?.showing(progress.clone());
        Ok((client, recovery))
    });
    let (client, recovery) = match started {
        Ok(started) => started,
        Err(error) => {
            report.fail(error);
            return report;
        }
    };

    // Publishing runs hold the lease from before they read Kafka until their last CDR is
    // published, so that no two runs publish the same missing call.
    let lease = match &recovery {
        None => None,
        Some(_) => match Lease::acquire(settings).await {
            Ok(lease) => Some(lease),
            Err(error) => {
                report.fail(error);
                return report;
            }
        },
    };
    let publishing = recovery.as_ref().zip(lease.as_ref());
    let report = reconcile_window(settings, window, &client, publishing, &progress, report).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    report
}

/// List, read, match and, with a recovery and its lease, publish what is missing.
async fn reconcile_window(
    settings: &Settings,
    window: Window,
    client: &TelecmiClient,
    publishing: Option<(&Recovery, &Lease)>,
    progress: &ProgressBar,
    mut report: RunReport,
) -> RunReport {
    let reconcile = &settings.reconcile;
    let product = reconcile.product;
    // TeleCMI first: its answers are what the run is about, and a credential error should not
    // wait for a long read of Kafka.
    let mut listings = Vec::new();
    for endpoint in Endpoint::ALL {
        match client.list(endpoint, window).await {
            Ok(listing) => listings.push(listing),
            Err(error) => report.listing_failed(product, endpoint, &error),
        }
    }

    let margin_ms = i64::try_from(reconcile.kafka_margin_seconds.as_millis()).unwrap_or(i64::MAX);
    let since_ms = window.start_ms.saturating_sub(margin_ms);
    progress.set_message(format!(
        "Kafka: reading the CDR topics since {}",
        time_text(since_ms)
    ));
    let for_reader = settings.clone();
    let timeout = reconcile.kafka_read_timeout_ms;
    let read =
        tokio::task::spawn_blocking(move || read_published_cdrs(&for_reader, since_ms, timeout))
            .await;
    let published = match read {
        Ok(Ok(published)) => published,
        Ok(Err(error)) => {
            let reason = error.to_string();
            for listing in &listings {
                report.not_matched(product, listing, &reason);
            }
            report.fail(reason);
            return report;
        }
        Err(error) => {
            report.fail(format!("the Kafka reader stopped: {error}"));
            return report;
        }
    };
    report.kafka = Some(KafkaReport {
        since: time_text(since_ms),
        records_read: published.records_read,
        cdrs: published.cdrs.len(),
    });
    let index = CdrIndex::new(published.cdrs);
    for listing in &listings {
        let outcomes = match_records(
            product,
            &listing.records,
            &index,
            reconcile.match_tolerance_seconds,
        );
        report.matched(product, listing, &outcomes);
        let Some((recovery, lease)) = publishing else {
            continue;
        };
        let missing: Vec<_> = listing
            .records
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| **outcome == Outcome::Missing)
            .collect();
        for (done, (record, _)) in missing.iter().enumerate() {
            progress.set_message(format!(
                "publishing {}: {done} of {} missing CDRs",
                listing.endpoint,
                missing.len()
            ));
            if !lease.held() {
                report.fail(
                    "the reconcile lease was lost (this run stopped heartbeating to Kafka): \
                     stopped publishing; the next run publishes what is still missing"
                        .to_owned(),
                );
                return report;
            }
            match recovery.publish(record).await {
                Ok(event_id) => {
                    tracing::info!(endpoint = %listing.endpoint, call = %record.id, %event_id, "missing CDR published");
                    report.published(listing.endpoint);
                }
                // Kafka refusing one record refuses the next as well: stop, say so, and leave
                // the rest to the next run, which will find them missing again.
                Err(error) => {
                    report.fail(format!(
                        "{} {}: the missing CDR could not be published: {error}",
                        listing.endpoint, record.id
                    ));
                    return report;
                }
            }
        }
    }
    report
}
