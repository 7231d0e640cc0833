//! The operator kit stays true to the bridge: every metric the Grafana dashboard and the alert
//! rules name is exported by a running bridge, described, and listed in the catalogue; every
//! metric the sources emit is in the catalogue.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use telecmi_bridge::config::DeliveryMode;
use telecmi_bridge::metrics::CATALOGUE;

use crate::helpers::{spawn_app, test_settings};
use crate::scenarios::accepted;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `telecmi_bridge_*` name in `text`, histogram series suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("telecmi_bridge_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

fn catalogued() -> BTreeSet<String> {
    CATALOGUE
        .iter()
        .map(|metric| metric.name.to_owned())
        .collect()
}

fn rust_sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_metric_the_sources_emit_is_catalogued() {
    let mut files = Vec::new();
    rust_sources(&repo("src"), &mut files);
    let mut emitted = BTreeSet::new();
    for file in files {
        emitted.extend(metric_names(
            &std::fs::read_to_string(&file).expect("source"),
        ));
    }
    assert!(emitted.len() > 10, "{emitted:?}");
    let catalogue = catalogued();
    let missing: Vec<_> = emitted.difference(&catalogue).collect();
    assert!(
        missing.is_empty(),
        "emitted but not in src/metrics.rs: {missing:?}"
    );
    for metric in CATALOGUE {
        assert!(!metric.help.is_empty(), "{} has no help", metric.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_name_is_exported_and_described() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool_settings = test_settings();
    spool_settings.delivery.mode = DeliveryMode::Spool;
    spool_settings.spool.path = dir.path().join("spool.redb");
    let spool = spawn_app(spool_settings).await;
    let kafka = spawn_app(test_settings()).await;
    let event = br#"{"type":"cdr","status":"answered","cmiuuid":"monitoring-1"}"#;
    for app in [&spool, &kafka] {
        accepted(app.post_json(event).await).await;
    }
    // The spool's gauges are read every second; its forwarder counts once Kafka has the event.
    let mut exported = String::new();
    for _ in 0..50 {
        exported = spool
            .client
            .get(format!("http://{}/metrics", spool.admin_address))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        if exported.contains("telecmi_bridge_spool_oldest_age_seconds") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let exported_names = metric_names(&exported);
    let described: BTreeSet<String> = exported
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let dashboard =
        std::fs::read_to_string(repo("deploy/grafana/telecmi-bridge.json")).expect("dashboard");
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let alerts = std::fs::read_to_string(repo("deploy/prometheus/alerts.yaml")).expect("alerts");
    for (file, text) in [("dashboard", &dashboard), ("alerts", &alerts)] {
        let named = metric_names(text);
        assert!(named.len() >= 5, "{file} names {named:?}");
        for name in named {
            assert!(
                catalogued().contains(&name),
                "{file} names {name}, which src/metrics.rs does not list"
            );
            assert!(
                exported_names.contains(&name),
                "{file} names {name}, which a running bridge does not export:\n{exported}"
            );
            assert!(described.contains(&name), "{name} has no # HELP line");
        }
    }
    spool.stop().await;
    kafka.stop().await;
}
