//! `telecmi-bridge reconcile`: the command line of a run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing_subscriber::EnvFilter;

use super::ReconcileSettings;
use super::run::run_showing;
use super::telecmi::Window;
use crate::config::Settings;

const PROGRESS_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// Start of the window: RFC 3339 or epoch milliseconds. Default: --to less
    /// reconcile.window_seconds.
    #[arg(long, value_parser = parse_instant)]
    pub from: Option<i64>,
    /// End of the window: RFC 3339 or epoch milliseconds. Default: reconcile.lag_seconds ago.
    #[arg(long, value_parser = parse_instant)]
    pub to: Option<i64>,
    /// Report only: publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Also write the run's reconcile metrics to this file, in Prometheus text
    /// exposition (for node_exporter's textfile collector), replacing it whole.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Exit codes: 0 the run finished (whatever it found), 1 it could not finish, 2 it could not
/// start (settings, arguments).
pub fn main(settings: Settings, args: &ReconcileArgs) -> ExitCode {
    // Logs go to stderr, so that stdout holds the report alone (`--output json | jq`).
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(&settings.logging.level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let window = match window(&settings, args, now_ms()) {
        Ok(window) => window,
        Err(error) => {
            eprintln!("telecmi-bridge reconcile: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("telecmi-bridge reconcile: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let recorder = args.metrics_file.as_ref().map(|_| {
        let recorder = crate::metrics::recorder();
        super::metrics::register_at_start();
        recorder
    });
    // A spinner on stderr with what the run is doing, for long windows; indicatif draws
    // nothing when stderr is not a terminal (a CronJob, a pipe).
    let progress = ProgressBar::new_spinner();
    progress.enable_steady_tick(PROGRESS_TICK);
    let report = runtime.block_on(run_showing(&settings, window, args.dry_run, progress));
    match args.output {
        Output::Text => print!("{}", report.to_text()),
        Output::Json => println!("{}", report.to_json()),
    }
    if let (Some(path), Some(recorder)) = (&args.metrics_file, recorder)
        && let Err(error) = super::metrics::write_file(path, &recorder.render())
    {
        eprintln!(
            "telecmi-bridge reconcile: cannot write --metrics-file {}: {error}",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    if report.complete {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "telecmi-bridge reconcile: the run could not finish: {}",
            report.errors.join("; ")
        );
        ExitCode::FAILURE
    }
}

/// The window of a run: the flags, or the trailing `window_seconds` ending `lag_seconds` ago.
pub fn window(settings: &Settings, args: &ReconcileArgs, now_ms: i64) -> Result<Window, String> {
    let reconcile = &settings.reconcile;
    let trailing = trailing_window(reconcile, now_ms);
    let end_ms = args.to.unwrap_or(trailing.end_ms);
    let start_ms = args
        .from
        .unwrap_or_else(|| end_ms.saturating_sub(seconds_ms(reconcile.window_seconds)));
    if start_ms >= end_ms {
        return Err(format!(
            "--from ({start_ms}) must be before --to ({end_ms})"
        ));
    }
    if end_ms > trailing.end_ms {
        tracing::warn!(
            "the window ends less than reconcile.lag_seconds ago: TeleCMI may not list its last \
             calls yet"
        );
    }
    Ok(Window { start_ms, end_ms })
}

/// The trailing `window_seconds` ending `lag_seconds` before `now_ms`: the window of a run
/// without flags, and of every scheduled run.
pub fn trailing_window(reconcile: &ReconcileSettings, now_ms: i64) -> Window {
    let end_ms = now_ms.saturating_sub(seconds_ms(reconcile.lag_seconds));
    Window {
        start_ms: end_ms.saturating_sub(seconds_ms(reconcile.window_seconds)),
        end_ms,
    }
}

fn seconds_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// RFC 3339 (`2026-11-30T18:00:00Z`) or epoch milliseconds.
fn parse_instant(text: &str) -> Result<i64, String> {
    if let Ok(epoch_ms) = text.trim().parse::<i64>() {
        return Ok(epoch_ms);
    }
    let time = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|_| format!("{text:?} is neither RFC 3339 nor epoch milliseconds"))?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(from: Option<&str>, to: Option<&str>) -> ReconcileArgs {
        let parse = |text: Option<&str>| text.map(|text| parse_instant(text).expect("instant"));
        ReconcileArgs {
            from: parse(from),
            to: parse(to),
            dry_run: true,
            output: Output::Text,
            metrics_file: None,
        }
    }

    #[test]
    fn instants_are_rfc3339_or_epoch_milliseconds() {
        assert_eq!(parse_instant("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_instant("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_instant("2023-11-15T03:43:20.5+05:30"),
            Ok(1_700_000_000_500)
        );
        assert!(parse_instant("yesterday").is_err());
    }

    #[test]
    fn the_default_window_is_the_trailing_window_ending_lag_ago() {
        let settings = Settings::default();
        let now = 1_700_000_000_000;
        let window = window(&settings, &args(None, None), now).expect("window");
        assert_eq!(window.end_ms, now - 600_000);
        assert_eq!(window.start_ms, now - 600_000 - 7_200_000);

        let window = window_of("2023-11-14T00:00:00Z", "2023-11-14T01:00:00Z", now);
        assert_eq!(window.end_ms - window.start_ms, 3_600_000);
        let error = super::window(
            &settings,
            &args(Some("2023-11-14T01:00:00Z"), Some("2023-11-14T00:00:00Z")),
            now,
        )
        .unwrap_err();
        assert!(error.contains("--from"), "{error}");
    }

    fn window_of(from: &str, to: &str, now: i64) -> Window {
        window(&Settings::default(), &args(Some(from), Some(to)), now).expect("window")
    }
}
