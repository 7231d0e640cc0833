//! Variable names and values, and the profile: every variable the deploy files set names a
//! configuration key, and the environments they build load.

use serde_json::Value;
use telecmi_bridge::config::{ENV_PREFIX, Settings};

use crate::deployment::*;
use crate::support::*;

// ---------------------------------------------------------------------------------------------
// (a) Variable names and values.

#[test]
fn deploy_yaml_files_parse_and_name_their_objects() {
    let mut files = yaml_files("deploy");
    files.extend(yaml_files("deploy/kubernetes"));
    assert!(
        files.len() >= 2,
        "expected compose and Kubernetes YAML files"
    );
    for file in files {
        for doc in yaml_documents(&relative(&file)) {
            assert!(doc.is_object(), "{}: not a mapping", file.display());
        }
    }
    assert!(
        deploy().manifests.len() >= 5,
        "expected the Kubernetes manifests"
    );
    for (file, doc) in &deploy().manifests {
        for field in ["/apiVersion", "/kind", "/metadata/name"] {
            assert!(
                doc.pointer(field).is_some_and(Value::is_string),
                "deploy/kubernetes/{file}: no {field}"
            );
        }
    }
    assert!(
        deploy().compose["services"].is_object(),
        "compose.yaml has no services"
    );
}

#[test]
fn every_bridge_variable_names_a_configuration_key() {
    let defaults = serde_json::to_value(Settings::default()).expect("the defaults serialise");
    for table in TABLE_KEYS {
        let key: Vec<String> = table.split('.').map(str::to_owned).collect();
        let node = key.iter().try_fold(&defaults, |node, part| node.get(part));
        assert!(
            node.is_some_and(Value::is_object),
            "{table} is no longer a table of Settings; update TABLE_KEYS"
        );
    }
    let deploy = deploy();
    let mut names: Vec<(String, &str)> = Vec::new();
    for stage in &deploy.dockerfile.stages {
        for (name, _) in stage.env() {
            names.push((name, "deploy/Dockerfile ENV"));
        }
    }
    for (name, _) in deploy.compose_environment() {
        names.push((name, "deploy/compose.yaml"));
    }
    for variable in array(deploy.container(), "env") {
        names.push((
            scalar(&variable["name"], "env name"),
            "statefulset.yaml env",
        ));
    }
    for (_, config_map) in deploy.objects("ConfigMap") {
        for name in config_map["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            names.push((name.clone(), "configmap.yaml"));
        }
    }
    assert!(
        names
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .count()
            >= 8,
        "expected the deploy files to set bridge variables: {names:?}"
    );
    for (name, place) in names {
        if !name.starts_with(ENV_PREFIX) {
            assert!(
                !name.to_uppercase().starts_with("TELECMI"),
                "{place}: {name} looks like a misspelt {ENV_PREFIX}* variable; the bridge ignores it"
            );
            continue;
        }
        if let Some(key) = variable_key(&name) {
            assert!(
                key_exists(&defaults, &key),
                "{place}: {name} sets {}, which is not a configuration key (see config/default.toml)",
                key.join(".")
            );
        }
    }
}

#[test]
fn the_deployed_configurations_load() {
    // Through the library, as the jail shows the environment to `Settings::load`.
    let compose = compose_settings();
    let kubernetes = kubernetes_settings();
    assert!(compose.auth.required && kubernetes.auth.required);
    assert_eq!(
        compose.auth.tokens.first().map(|token| token.expose()),
        Some(PLACEHOLDER_TOKEN),
        "compose should hand TELECMI_BRIDGE_TOKEN to the bridge as its token"
    );

    // Compose refuses to start without the token instead of passing an empty one.
    let error = deploy()
        .compose_container_env(&[], false)
        .expect_err("compose should require TELECMI_BRIDGE_TOKEN (`${VAR:?message}`)");
    assert!(error.contains("TELECMI_BRIDGE_TOKEN"), "{error}");

    // The example Secret has the right shape, and its placeholder is refused, so it cannot be
    // deployed as it is.
    let example = scalar(
        pointer(
            deploy().example_secret(),
            "/stringData/tokens",
            "secret.example.yaml",
        ),
        "tokens",
    );
    let error = load_settings(&deploy().kubernetes_container_env(&example))
        .expect_err("the example token must not be accepted");
    assert!(error.contains("auth.tokens"), "{error}");
    let usable = example.replace("CHANGE-ME", PLACEHOLDER_TOKEN);
    assert_ne!(
        usable, example,
        "secret.example.yaml should use the CHANGE-ME placeholder"
    );
    load_settings(&deploy().kubernetes_container_env(&usable))
        .unwrap_or_else(|error| panic!("secret.example.yaml's shape is not accepted: {error}"));

    // Through the binary's own command line (the config dir and profile variables included).
    let compose_env = deploy()
        .compose_container_env(&COMPOSE_VARIABLES, true)
        .expect("interpolates");
    let kubernetes_env = deploy().kubernetes_container_env(&format!(r#"["{PLACEHOLDER_TOKEN}"]"#));
    for (what, env, expected) in [
        ("compose", compose_env, &compose),
        ("Kubernetes", kubernetes_env, &kubernetes),
    ] {
        let output = run_binary(&["check-config"], &env);
        assert!(
            output.status.success(),
            "{what}: `telecmi-bridge check-config` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed: toml::Value = toml::from_str(&String::from_utf8_lossy(&output.stdout))
            .expect("check-config prints TOML");
        assert_eq!(
            printed["server"]["admin_listen"].as_str(),
            Some(expected.server.admin_listen.to_string().as_str()),
            "{what}: the binary and the library disagree"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Profile.

#[test]
fn the_profile_is_production_everywhere() {
    let deploy = deploy();
    assert!(
        repo()
            .join("config")
            .join(format!("{PROFILE}.toml"))
            .is_file(),
        "config/{PROFILE}.toml is missing"
    );
    let image = deploy.dockerfile.runtime_env();
    assert_eq!(
        image.get("TELECMI_BRIDGE_PROFILE").map(String::as_str),
        Some(PROFILE),
        "the Dockerfile's ENV"
    );
    let compose = deploy
        .compose_container_env(&COMPOSE_VARIABLES, true)
        .expect("interpolates");
    assert_eq!(
        compose.get("TELECMI_BRIDGE_PROFILE").map(String::as_str),
        Some(PROFILE),
        "compose"
    );
    let kubernetes = deploy.kubernetes_container_env(PLACEHOLDER_TOKEN);
    assert_eq!(
        kubernetes.get("TELECMI_BRIDGE_PROFILE").map(String::as_str),
        Some(PROFILE),
        "Kubernetes"
    );
    // And it took effect: production refuses the embedded cluster.
    for settings in [compose_settings(), kubernetes_settings()] {
        assert!(
            !settings.kafka.allow_embedded,
            "the production profile was not applied"
        );
    }
}
