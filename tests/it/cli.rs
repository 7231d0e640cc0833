//! The binary's command line: `check-config` prints the effective configuration with secrets
//! redacted, and fails naming the bad key.

use std::process::{Command, Output};

fn bridge(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_telecmi-bridge"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TELECMI_BRIDGE_PROFILE");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run telecmi-bridge")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_redacted() {
    let token = "0123456789abcdef-very-secret";
    let output = bridge(
        &["check-config"],
        &[
            ("TELECMI_BRIDGE_AUTH__TOKENS", &format!("[{token}]")),
            ("TELECMI_BRIDGE_KAFKA__LINGER_MS", "7"),
        ],
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("bootstrap_servers = \"embedded\""),
        "{stdout}"
    );
    assert!(stdout.contains("linger_ms = 7"), "{stdout}");
    assert!(stdout.contains("[redacted]"), "{stdout}");
    assert!(!stdout.contains(token), "{stdout}");
}

#[test]
fn check_config_fails_naming_an_unknown_or_invalid_key() {
    let unknown = bridge(&["check-config"], &[("TELECMI_BRIDGE_KAFKA__LINGER", "7")]);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).to_lowercase().contains("linger"));

    let invalid = bridge(
        &["check-config"],
        &[("TELECMI_BRIDGE_DELIVERY__ACK_TIMEOUT_MS", "0")],
    );
    assert!(!invalid.status.success());
    assert!(text(&invalid.stderr).contains("delivery.ack_timeout_ms"));
}

#[test]
fn the_config_flag_layers_a_file_for_every_subcommand() {
    let dir = std::env::temp_dir().join(format!("telecmi-bridge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.toml");
    std::fs::write(&good, "[server]\nlisten = \"127.0.0.1:18099\"\n").expect("write");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[server]\nlissen = \"127.0.0.1:18099\"\n").expect("write");

    let layered = bridge(
        &["check-config", "--config", good.to_str().expect("path")],
        &[],
    );
    assert!(text(&layered.stdout).contains("listen = \"127.0.0.1:18099\""));
    let refused = bridge(
        &["--config", bad.to_str().expect("path"), "check-config"],
        &[],
    );
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("lissen"));
    let serve_refused = bridge(&["serve", "--config", bad.to_str().expect("path")], &[]);
    assert!(!serve_refused.status.success());
    assert!(text(&serve_refused.stderr).contains("lissen"));
    let missing = bridge(&["check-config", "--config", "/nonexistent.toml"], &[]);
    assert!(!missing.status.success());
    std::fs::remove_dir_all(dir).expect("clean up");
}

#[test]
fn the_production_profile_refuses_the_embedded_cluster() {
    let output = bridge(
        &["check-config"],
        &[("TELECMI_BRIDGE_PROFILE", "production")],
    );
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("kafka.bootstrap_servers"));
}
