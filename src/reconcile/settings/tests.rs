//! The reconcile settings' unit tests, beside the module so that `settings.rs` reads as the code alone.

use super::*;
use crate::config::{Settings, Sources};

#[test]
// `figment::Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
fn environment_variables_set_it_and_the_secret_is_redacted() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("TELECMI_BRIDGE_RECONCILE__PRODUCT", "chub_india");
        jail.set_env("TELECMI_BRIDGE_RECONCILE__APP_ID", "1111113");
        jail.set_env("TELECMI_BRIDGE_RECONCILE__SECRET", "india-app-token-value");
        jail.set_env("TELECMI_BRIDGE_RECONCILE__LAG_SECONDS", "900");
        let sources = Sources {
            config_dir: PathBuf::from("config"),
            ..Sources::default()
        };
        let settings = Settings::load(&sources).expect("valid").reconcile;
        assert_eq!(settings.product, Product::ChubIndia);
        assert_eq!(settings.lag_seconds, Duration::from_secs(900));
        let credentials = settings.credentials().expect("complete");
        assert_eq!(credentials.app_id, 1_111_113);
        assert_eq!(credentials.secret.expose(), "india-app-token-value");
        let whole = Settings::load(&sources).expect("valid");
        assert!(!whole.to_redacted_toml().contains("india-app-token-value"));
        assert!(!format!("{whole:?} {credentials:?}").contains("india-app-token-value"));

        jail.set_env("TELECMI_BRIDGE_RECONCILE__PAGE_SIZE", "0");
        let error = Settings::load(&sources).unwrap_err().to_string();
        assert!(error.contains("reconcile.page_size"), "{error}");
        Ok(())
    });
}

#[test]
fn the_base_defaults_to_the_products_documented_base() {
    let chub = ReconcileSettings::default();
    assert_eq!(
        chub.base_url().expect("valid").to_string(),
        "https://rest.telecmi.com/"
    );
    let india = ReconcileSettings {
        product: Product::ChubIndia,
        ..ReconcileSettings::default()
    };
    assert_eq!(
        india.base_url().expect("valid").to_string(),
        "https://piopiy.telecmi.com/"
    );
}

#[test]
fn plain_http_is_refused_except_to_a_loopback_simulator() {
    let with_base = |base: &str| ReconcileSettings {
        base_url: Some(base.to_owned()),
        ..ReconcileSettings::default()
    };
    assert!(with_base("http://127.0.0.1:4000").validate().is_ok());
    assert!(with_base("http://localhost:4000").validate().is_ok());
    let error = with_base("http://rest.telecmi.com").validate().unwrap_err();
    assert!(error.contains("reconcile.base_url"), "{error}");
    let error = with_base("not a url").validate().unwrap_err();
    assert!(error.contains("reconcile.base_url"), "{error}");
}

#[test]
// `figment::Jail` closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
fn the_lease_topic_must_be_a_topic_name() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("TELECMI_BRIDGE_RECONCILE__LEASE_TOPIC", "no spaces allowed");
        let sources = Sources {
            config_dir: PathBuf::from("config"),
            ..Sources::default()
        };
        let error = Settings::load(&sources).unwrap_err().to_string();
        assert!(error.contains("reconcile.lease_topic"), "{error}");
        Ok(())
    });
}

#[test]
fn chub_pages_hold_at_most_twenty_records() {
    let settings = ReconcileSettings {
        page_size: 21,
        ..ReconcileSettings::default()
    };
    let error = settings.validate().unwrap_err();
    assert!(error.contains("reconcile.page_size"), "{error}");
    let india = ReconcileSettings {
        product: Product::ChubIndia,
        ..settings
    };
    assert!(india.validate().is_ok());
}

#[test]
fn credentials_name_the_missing_setting_and_read_the_file_once_asked() {
    let none = ReconcileSettings::default();
    assert!(none.credentials().unwrap_err().contains("reconcile.app_id"));
    let no_secret = ReconcileSettings {
        app_id: Some(1_111_112),
        ..ReconcileSettings::default()
    };
    assert!(
        no_secret
            .credentials()
            .unwrap_err()
            .contains("reconcile.secret")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("secret");
    std::fs::write(&file, "from-a-file\n").expect("write");
    let from_file = ReconcileSettings {
        secret_file: Some(file),
        ..no_secret.clone()
    };
    let credentials = from_file.credentials().expect("valid");
    assert_eq!(credentials.secret.expose(), "from-a-file");
    assert_eq!(credentials.app_id, 1_111_112);
    let missing = ReconcileSettings {
        secret_file: Some(dir.path().join("absent")),
        ..no_secret
    };
    assert!(
        missing
            .credentials()
            .unwrap_err()
            .contains("reconcile.secret_file")
    );
}

#[test]
fn the_schedule_needs_credentials_and_an_interval() {
    let scheduled = ReconcileSettings {
        schedule_enabled: true,
        ..ReconcileSettings::default()
    };
    let error = scheduled.validate().unwrap_err();
    assert!(error.contains("reconcile.app_id"), "{error}");
    let with_credentials = ReconcileSettings {
        app_id: Some(1_111_112),
        secret_file: Some(PathBuf::from("/run/secrets/telecmi")),
        ..scheduled
    };
    assert_eq!(with_credentials.validate(), Ok(()));
    let error = ReconcileSettings {
        schedule_interval_seconds: Duration::ZERO,
        ..with_credentials
    }
    .validate()
    .unwrap_err();
    assert!(error.contains("schedule_interval_seconds"), "{error}");
}
