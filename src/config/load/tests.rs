use figment::Jail;

use super::*;
use crate::config::test_sources as sources;
use crate::config::*;

#[test]
fn layers_apply_in_order_and_environment_wins() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file(
            "config/default.toml",
            "[kafka]\nclient_id = \"from-default\"\nlinger_ms = 1\n",
        )?;
        jail.create_file(
            "config/staging.toml",
            "[kafka]\nclient_id = \"from-profile\"\nlinger_ms = 2\n",
        )?;
        jail.create_file("extra.toml", "[kafka]\nlinger_ms = 3\n")?;
        jail.set_env("TELECMI_BRIDGE_PROFILE", "staging");
        jail.set_env("TELECMI_BRIDGE_SERVER__LISTEN", "127.0.0.1:18080");
        jail.set_env("TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS", "broker-1:9092");
        let settings = Settings::load(&Sources {
            file: Some(PathBuf::from("extra.toml")),
            ..sources()
        })
        .expect("valid");
        assert_eq!(settings.kafka.client_id, "from-profile");
        assert_eq!(settings.kafka.linger_ms, Duration::from_millis(3));
        assert_eq!(settings.server.listen, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(
            settings.kafka.bootstrap_servers,
            Bootstrap::Brokers("broker-1:9092".to_owned())
        );
        Ok(())
    });
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file("config/default.toml", "[kafka]\nbootstrap_server = \"x\"\n")?;
        let error = Settings::load(&sources()).unwrap_err().to_string();
        assert!(error.contains("bootstrap_server"), "{error}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("TELECMI_BRIDGE_KAFKA__NOPE", "1");
        let error = Settings::load(&sources()).unwrap_err().to_string();
        assert!(error.contains("nope"), "{error}");
        Ok(())
    });
}

#[test]
fn a_missing_profile_file_is_an_error() {
    Jail::expect_with(|jail| {
        jail.set_env("TELECMI_BRIDGE_PROFILE", "nope");
        let error = Settings::load(&sources()).unwrap_err();
        assert!(
            matches!(error, ConfigError::MissingProfile { .. }),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn secret_files_are_read_once_at_start_up() {
    Jail::expect_with(|jail| {
        jail.create_file("tokens", "token-one-0123456789\n\ntoken-two-0123456789\r\n")?;
        jail.create_file("hmac", "signing-secret-0123456789\n")?;
        jail.create_file("privacy-key", "0001112223334445556\n\n")?;
        jail.set_env("TELECMI_BRIDGE_AUTH__REQUIRED", "true");
        jail.set_env("TELECMI_BRIDGE_AUTH__TOKENS_FILE", "tokens");
        jail.set_env("TELECMI_BRIDGE_AUTH__HMAC_SECRETS_FILE", "hmac");
        jail.set_env("TELECMI_BRIDGE_PRIVACY__MODE", "hmac");
        jail.set_env("TELECMI_BRIDGE_PRIVACY__HMAC_KEY_FILE", "privacy-key");
        let settings = Settings::load(&sources()).expect("valid");
        let tokens: Vec<&str> = settings.auth.tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(tokens, ["token-one-0123456789", "token-two-0123456789"]);
        let secrets: Vec<&str> = settings
            .auth
            .hmac_secrets
            .iter()
            .map(|t| t.expose())
            .collect();
        assert_eq!(secrets, ["signing-secret-0123456789"]);
        let key = settings.privacy.hmac_key.as_ref().map(SecretValue::expose);
        assert_eq!(key, Some("0001112223334445556"), "leading zeros kept");
        let shown = settings.to_redacted_toml();
        assert!(
            !shown.contains("0123456789") && !shown.contains("000111"),
            "{shown}"
        );

        std::fs::remove_file("tokens").expect("remove");
        assert_eq!(settings.auth.tokens.len(), 2, "read once, kept");
        let error = Settings::load(&sources()).unwrap_err().to_string();
        assert!(
            error.contains("auth.tokens_file") && error.contains("tokens"),
            "{error}"
        );

        jail.create_file("tokens", "token-one-0123456789\n")?;
        jail.set_env(
            "TELECMI_BRIDGE_AUTH__TOKENS",
            "[\"token-inline-0123456789\"]",
        );
        let error = Settings::load(&sources()).unwrap_err().to_string();
        assert!(error.contains("not both"), "{error}");
        assert!(!error.contains("token-"), "{error}");
        Ok(())
    });
    for (variable, key) in [
        (
            "TELECMI_BRIDGE_AUTH__HMAC_SECRETS_FILE",
            "auth.hmac_secrets_file",
        ),
        (
            "TELECMI_BRIDGE_PRIVACY__HMAC_KEY_FILE",
            "privacy.hmac_key_file",
        ),
        (
            "TELECMI_BRIDGE_KAFKA__SECURITY__SASL_PASSWORD_FILE",
            "kafka.security.sasl_password_file",
        ),
    ] {
        Jail::expect_with(|jail| {
            jail.set_env(variable, "no-such-secret-file");
            let error = Settings::load(&sources()).unwrap_err();
            assert!(
                matches!(
                    &error,
                    ConfigError::Invalid(problems) if matches!(
                        problems.as_slice(),
                        [Problem::Unreadable { key: unreadable, source, .. }]
                            if unreadable == key
                                && source.kind() == std::io::ErrorKind::NotFound
                    )
                ),
                "{error:?}"
            );
            let error = error.to_string();
            assert!(
                error.contains(key) && error.contains("no-such-secret-file"),
                "{error}"
            );
            Ok(())
        });
    }
}

#[test]
fn a_toml_syntax_error_does_not_quote_the_line() {
    Jail::expect_with(|jail| {
        jail.create_dir("config")?;
        jail.create_file(
            "config/default.toml",
            "[auth]\nrequired = true\ntokens = [\"SecretInBrokenToml\n",
        )?;
        let error = Settings::load(&sources()).unwrap_err().to_string();
        assert!(!error.contains("SecretInBrokenToml"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        Ok(())
    });
}
