//! The metrics of a reconciliation run (`src/metrics.rs` describes each). The figures of the
//! last run are gauges, so that they read the same in the server's `/metrics` (the schedule) and in the file a
//! one-shot run writes for node_exporter's textfile collector (`--metrics-file`), where a
//! counter would start again from zero with every run.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::report::RunReport;
use super::telecmi::Endpoint;

/// The per-endpoint gauges of the last run, each with the report's figure it shows.
const PER_ENDPOINT: [&str; 5] = [
    "telecmi_bridge_reconcile_telecmi_calls",
    "telecmi_bridge_reconcile_found_calls",
    "telecmi_bridge_reconcile_missing_calls",
    "telecmi_bridge_reconcile_ambiguous_calls",
    "telecmi_bridge_reconcile_published_calls",
];

/// Creates the reconcile metrics at 0, so that dashboards and alerts see them before the
/// first run.
pub fn register_at_start() {
    crate::metrics::CATALOGUE
        .iter()
        .filter(|metric| metric.name.contains("_reconcile_"))
        .for_each(crate::metrics::create_at_zero);
    for name in PER_ENDPOINT {
        for endpoint in Endpoint::ALL {
            metrics::gauge!(name, "endpoint" => endpoint.name()).set(0.0);
        }
    }
    metrics::gauge!("telecmi_bridge_reconcile_last_run_complete").set(0.0);
    metrics::gauge!("telecmi_bridge_reconcile_last_run_timestamp_seconds").set(0.0);
    metrics::gauge!("telecmi_bridge_reconcile_last_success_timestamp_seconds").set(0.0);
    metrics::gauge!("telecmi_bridge_reconcile_last_run_duration_seconds").set(0.0);
}

/// Exports a finished run: its figures per endpoint (an endpoint whose listing failed reads 0),
/// how long it took, and, when it completed, the time of the last success.
pub fn record_run(report: &RunReport, duration: Duration) {
    for endpoint in Endpoint::ALL {
        let row = report
            .endpoints
            .iter()
            .find(|row| row.endpoint == endpoint.name());
        let figures = row.map_or([0.0; 5], |row| {
            [
                row.telecmi_count.unwrap_or_default() as f64,
                row.found as f64,
                row.missing as f64,
                row.ambiguous as f64,
                row.published as f64,
            ]
        });
        for (name, figure) in PER_ENDPOINT.into_iter().zip(figures) {
            metrics::gauge!(name, "endpoint" => endpoint.name()).set(figure);
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    let result = if report.complete {
        "complete"
    } else {
        "incomplete"
    };
    metrics::counter!("telecmi_bridge_reconcile_runs_total", "result" => result).increment(1);
    metrics::gauge!("telecmi_bridge_reconcile_last_run_complete").set(if report.complete {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("telecmi_bridge_reconcile_last_run_timestamp_seconds").set(now);
    metrics::gauge!("telecmi_bridge_reconcile_last_run_duration_seconds")
        .set(duration.as_secs_f64());
    if report.complete {
        metrics::gauge!("telecmi_bridge_reconcile_last_success_timestamp_seconds").set(now);
    }
}

/// Writes the recorder's metrics, Prometheus text exposition, to `path` through a temporary
/// file renamed over it: node_exporter's textfile collector must never read a half-written file.
pub fn write_file(path: &Path, exposition: &str) -> std::io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut temporary = file_name.to_os_string();
    temporary.push(".tmp");
    let temporary = path.with_file_name(temporary);
    std::fs::write(&temporary, exposition)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::reconcile::Product;
    use crate::reconcile::matching::Outcome;
    use crate::reconcile::telecmi::{CallRecord, Listing, Window};

    fn record(id: &str) -> CallRecord {
        CallRecord {
            endpoint: Endpoint::Missed,
            id: id.to_owned(),
            time_ms: 1_700_000_000_000,
            from: None,
            to: None,
            agent: None,
            fields: Map::new(),
        }
    }

    /// The line of `name` with exactly these labels in the exposition, as its value.
    fn value(exposition: &str, series: &str) -> Option<f64> {
        exposition.lines().find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|value| value.parse().ok())
        })
    }

    #[test]
    fn a_run_exports_its_figures_per_endpoint_and_its_success() {
        let recorder = crate::metrics::recorder();
        register_at_start();
        let window = Window {
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_003_600_000,
        };
        let mut report = RunReport::new(Product::Chub, window, false);
        let listing = Listing {
            endpoint: Endpoint::Missed,
            reported_count: Some(3),
            records: vec![record("a"), record("b"), record("c")],
            skipped: Vec::new(),
            requests: 1,
        };
        let outcomes = [
            Outcome::Found {
                event_ids: vec!["e".to_owned()],
            },
            Outcome::Missing,
            Outcome::Missing,
        ];
        report.matched(Product::Chub, &listing, &outcomes);
        report.published(Endpoint::Missed);
        record_run(&report, Duration::from_millis(1_500));

        let exposition = recorder.render();
        let missed = |name: &str| value(&exposition, &format!("{name}{{endpoint=\"missed\"}}"));
        assert_eq!(missed("telecmi_bridge_reconcile_telecmi_calls"), Some(3.0));
        assert_eq!(missed("telecmi_bridge_reconcile_found_calls"), Some(1.0));
        assert_eq!(missed("telecmi_bridge_reconcile_missing_calls"), Some(2.0));
        assert_eq!(
            missed("telecmi_bridge_reconcile_ambiguous_calls"),
            Some(0.0)
        );
        assert_eq!(
            missed("telecmi_bridge_reconcile_published_calls"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &exposition,
                "telecmi_bridge_reconcile_missing_calls{endpoint=\"answered\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            value(&exposition, "telecmi_bridge_reconcile_last_run_complete"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &exposition,
                "telecmi_bridge_reconcile_last_run_duration_seconds"
            ),
            Some(1.5)
        );
        let success = value(
            &exposition,
            "telecmi_bridge_reconcile_last_success_timestamp_seconds",
        )
        .expect("last success");
        assert!(success > 1_700_000_000.0, "{exposition}");
    }

    #[test]
    fn the_metrics_file_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("reconcile.prom");
        write_file(&path, "old 1\n").expect("first");
        write_file(&path, "new 2\n").expect("second");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new 2\n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }
}
