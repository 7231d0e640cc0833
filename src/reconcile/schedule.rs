//! The reconciliation schedule inside the server (`reconcile.schedule_enabled`): a publishing
//! run over the trailing window at start (a deploy is when webhooks are lost) and then every
//! `schedule_interval_seconds`, under the lease like any publishing run, so that replicas with
//! the schedule on never publish a call twice.

use tokio_util::sync::CancellationToken;

use super::cli::{now_ms, trailing_window};
use super::report::RunReport;
use super::run::run;
use crate::config::Settings;

/// Runs until `stop`; each run exports its metrics and logs its summary.
pub async fn run_on_schedule(settings: Settings, stop: CancellationToken) {
    let interval = settings.reconcile.schedule_interval_seconds;
    loop {
        let window = trailing_window(&settings.reconcile, now_ms());
        tokio::select! {
            () = stop.cancelled() => return,
            report = run(&settings, window, false) => log_summary(&report),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

fn log_summary(report: &RunReport) {
    let totals = &report.totals;
    let (from, to) = (&report.window.from, &report.window.to);
    if report.complete {
        tracing::info!(
            from,
            to,
            telecmi = totals.telecmi_count,
            found = totals.found,
            missing = totals.missing,
            ambiguous = totals.ambiguous,
            skipped = totals.skipped,
            published = totals.published,
            "scheduled reconciliation complete"
        );
    } else {
        tracing::warn!(
            from, to,
            telecmi = totals.telecmi_count,
            missing = totals.missing,
            published = totals.published,
            errors = %report.errors.join("; "),
            "scheduled reconciliation could not finish; the next run covers its window again"
        );
    }
}
