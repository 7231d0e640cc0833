//! `telecmi-bridge reconcile` as a process: its flags, exit codes and summaries. The runs that
//! finish need a real broker: tests/kafka_it/reconcile.rs.

use std::time::Duration;

use serde_json::Value;
use telecmi_bridge::reconcile::Product;
use telecmi_bridge::reconcile::telecmi::Endpoint;
use tokio::process::Command;

use crate::telecmi_sim::{CHUB_APP_ID, Fault, SIMULATED_SECRET, Simulator, chub_record};

async fn reconcile(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_telecmi-bridge"));
    command
        .arg("reconcile")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TELECMI_BRIDGE_PROFILE");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().await.expect("run telecmi-bridge");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

fn simulator_env(simulator: &Simulator, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TELECMI_BRIDGE_RECONCILE__BASE_URL", simulator.base_url()),
        ("TELECMI_BRIDGE_RECONCILE__APP_ID", CHUB_APP_ID.to_string()),
        ("TELECMI_BRIDGE_RECONCILE__SECRET", secret.to_owned()),
        ("TELECMI_BRIDGE_RECONCILE__MAX_ATTEMPTS", "1".to_owned()),
    ]
}

#[tokio::test]
async fn a_window_that_ends_before_it_starts_is_refused() {
    let (code, _, stderr) = reconcile(
        &[
            "--dry-run",
            "--from",
            "2026-11-30T12:00:00Z",
            "--to",
            "1700000000000",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--from"), "{stderr}");
    let (code, _, stderr) = reconcile(&["--dry-run", "--from", "noon"], &[]).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}

#[tokio::test]
async fn missing_credentials_fail_the_run_naming_the_setting() {
    let (code, stdout, stderr) = reconcile(&["--dry-run"], &[]).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("reconcile.app_id"), "{stderr}");
    assert!(stdout.contains("INCOMPLETE"), "{stdout}");
}

#[tokio::test]
async fn bad_credentials_exit_non_zero_with_a_json_report_on_stdout() {
    let simulator = Simulator::start(Product::Chub).await;
    let (code, stdout, stderr) = reconcile(
        &["--dry-run", "--output", "json"],
        &simulator_env(&simulator, "a-wrong-secret"),
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("only the JSON report on stdout");
    assert_eq!(report["complete"], false);
    assert_eq!(report["endpoints"].as_array().map(Vec::len), Some(4));
    assert_eq!(report["endpoints"][0]["error"]["cause"], "bad_credentials");
    assert!(stderr.contains("reconcile.secret"), "{stderr}");
    assert!(!stdout.contains("a-wrong-secret") && !stderr.contains("a-wrong-secret"));
}

#[tokio::test]
async fn the_embedded_cluster_cannot_be_reconciled_against() {
    let simulator = Simulator::start(Product::Chub).await;
    let (code, stdout, stderr) =
        reconcile(&["--dry-run"], &simulator_env(&simulator, SIMULATED_SECRET)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("embedded"), "{stderr}");
    assert!(
        stdout.contains("INCOMPLETE") && stdout.contains("embedded"),
        "{stdout}"
    );
    let answered = stdout
        .lines()
        .find(|line| line.starts_with("answered"))
        .expect("the answered row");
    assert!(
        answered.contains('-'),
        "no verdicts without Kafka: {answered}"
    );
}

#[tokio::test]
async fn chub_india_refuses_to_match_numbers_that_privacy_hides() {
    let (code, _, stderr) = reconcile(
        &["--dry-run"],
        &[
            ("TELECMI_BRIDGE_RECONCILE__PRODUCT", "chub_india".to_owned()),
            ("TELECMI_BRIDGE_PRIVACY__MODE", "redact".to_owned()),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("privacy.mode"), "{stderr}");
}

#[tokio::test]
async fn a_run_that_could_not_finish_writes_its_metrics_file_for_the_textfile_collector() {
    let simulator = Simulator::start(Product::Chub).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reconcile.prom");
    let path_text = path.to_str().expect("utf-8 path");
    let (code, _, stderr) = reconcile(
        &["--dry-run", "--metrics-file", path_text],
        &simulator_env(&simulator, "a-wrong-secret"),
    )
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    let exposition = std::fs::read_to_string(&path).expect("the metrics file");
    for line in [
        "telecmi_bridge_reconcile_api_errors_total{cause=\"bad_credentials\"} 4",
        "telecmi_bridge_reconcile_api_errors_total{cause=\"server_error\"} 0",
        "telecmi_bridge_reconcile_runs_total{result=\"incomplete\"} 1",
        "telecmi_bridge_reconcile_runs_total{result=\"complete\"} 0",
        "telecmi_bridge_reconcile_last_run_complete 0",
        "telecmi_bridge_reconcile_last_success_timestamp_seconds 0",
        "telecmi_bridge_reconcile_missing_calls{endpoint=\"out_missed\"} 0",
    ] {
        assert!(
            exposition.lines().any(|got| got == line),
            "no {line:?} in\n{exposition}"
        );
    }
    assert!(
        exposition.contains("# HELP telecmi_bridge_reconcile_last_run_complete"),
        "{exposition}"
    );
    assert!(
        !exposition.contains("telecmi_bridge_http_requests_total"),
        "only the reconcile metrics: {exposition}"
    );
}

/// A slow TeleCMI: the listing of `answered` takes a second, long enough for the spinner to draw.
async fn slow_simulator() -> Simulator {
    let simulator = Simulator::start(Product::Chub).await;
    simulator.add_records(
        Endpoint::Answered,
        [
            chub_record(1, 1_700_000_100_000),
            chub_record(2, 1_700_000_200_000),
        ],
    );
    simulator.push_faults([Fault::Slow(Duration::from_millis(1_000))]);
    simulator
}

const WINDOW: [&str; 5] = [
    "--dry-run",
    "--from",
    "1700000000000",
    "--to",
    "1700003600000",
];

#[tokio::test]
async fn progress_shows_on_a_terminal_and_nowhere_else() {
    let simulator = slow_simulator().await;
    let (_, _, stderr) = reconcile(&WINDOW, &simulator_env(&simulator, SIMULATED_SECRET)).await;
    assert!(!stderr.contains("TeleCMI answered: page"), "{stderr}");

    // `script` gives the command a terminal and copies what it drew to stdout.
    let simulator = slow_simulator().await;
    let command = format!(
        "{} reconcile {}",
        env!("CARGO_BIN_EXE_telecmi-bridge"),
        WINDOW.join(" ")
    );
    let mut script = Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TELECMI_BRIDGE_PROFILE");
    for (name, value) in simulator_env(&simulator, SIMULATED_SECRET) {
        script.env(name, value);
    }
    let output = script.output().await.expect("run script");
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(
        terminal.contains("TeleCMI answered: page 1, 0 of ? records listed"),
        "{terminal}"
    );
}
