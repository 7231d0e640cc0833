//! The binary's command line: `check-config` prints the effective configuration with secrets
//! redacted, and fails naming the bad key.

use std::process::{Command, Output};

pub fn bridge(args: &[&str], env: &[(&str, &str)]) -> Output {
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

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_redacted() {
    let token = "0123456789abcdef-very-secret";
    let output = bridge(
        &["check-config"],
        &[
            ("TELECMI_BRIDGE_AUTH__TOKENS", &format!("[{token}]")),
            ("TELECMI_BRIDGE_AUTH__REQUIRED", "true"),
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

#[test]
fn serve_refuses_a_corrupt_spool_and_keeps_it_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool.redb");
    std::fs::write(&spool, b"not a spool").expect("write");
    let spool_path = spool.to_str().expect("path");
    let output = bridge(
        &["serve"],
        &[
            ("TELECMI_BRIDGE_DELIVERY__MODE", "spool"),
            ("TELECMI_BRIDGE_SPOOL__PATH", spool_path),
            ("TELECMI_BRIDGE_SERVER__LISTEN", "127.0.0.1:0"),
            ("TELECMI_BRIDGE_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    let stderr = text(&output.stderr) + &text(&output.stdout);
    assert!(
        !output.status.success(),
        "started on a corrupt spool: {stderr}"
    );
    assert!(stderr.contains(spool_path), "{stderr}");
    assert!(stderr.contains("start_empty"), "{stderr}");
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].to_string_lossy().contains("spool.redb.corrupt-"));
    assert_eq!(std::fs::read(&kept[0]).expect("kept"), b"not a spool");
}

#[test]
fn replay_names_each_bad_line_and_publishes_nothing_unless_told_to_skip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("capture.jsonl");
    std::fs::write(
        &file,
        "{\"type\":\"cdr\",\"status\":\"answered\",\"cmiuuid\":\"r-1\"}\n\n[1]\n{\"type\":\n",
    )
    .expect("file");
    let path = file.to_str().expect("path");
    // The embedded cluster would be refused for a publishing run: this one must stop earlier.
    let refused = bridge(&["replay", path], &[]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains(&format!("{path}:3: json_not_object")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{path}:4: malformed_json")),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was published"), "{stderr}");

    let checked = bridge(&["replay", "--dry-run", "--skip-bad-lines", path], &[]);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(
        text(&checked.stdout).contains("would publish 1 of 3 events; 2 bad line(s) skipped"),
        "{}",
        text(&checked.stdout)
    );

    let embedded = bridge(&["replay", "--skip-bad-lines", path], &[]);
    assert!(!embedded.status.success());
    assert!(
        text(&embedded.stderr).contains("TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS"),
        "{}",
        text(&embedded.stderr)
    );
}
