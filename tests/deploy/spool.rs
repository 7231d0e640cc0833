//! The spool: with spool delivery mode the production default, every deployment must keep the
//! spool's directory on storage that outlives the container, writable by the image's user.

use std::path::Path;

use serde_json::Value;
use telecmi_bridge::config::Settings;

use crate::deployment::*;
use crate::support::*;

/// The directory that must persist: where the deployed configuration puts the spool.
fn spool_directory(settings: &Settings, deployment: &str) -> String {
    assert_eq!(
        settings.delivery.mode,
        telecmi_bridge::config::DeliveryMode::Spool,
        "{deployment}: the production deployment should run in spool mode"
    );
    settings
        .spool
        .path
        .parent()
        .and_then(Path::to_str)
        .unwrap_or_else(|| panic!("{deployment}: spool.path has no directory"))
        .to_owned()
}

#[test]
fn the_spool_lives_on_a_persistent_volume_everywhere() {
    let deploy = deploy();

    // Kubernetes: a claim template per replica, mounted at the spool's directory, writable.
    let directory = spool_directory(&kubernetes_settings(), "kubernetes");
    let statefulset = deploy.object("StatefulSet");
    let claims: Vec<String> = pointer(statefulset, "/spec/volumeClaimTemplates", "StatefulSet")
        .as_array()
        .expect("volumeClaimTemplates is a list")
        .iter()
        .map(|claim| scalar(&claim["metadata"]["name"], "claim name"))
        .collect();
    let mounts = deploy.container()["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mount = mounts
        .iter()
        .find(|mount| mount["mountPath"] == directory.as_str())
        .unwrap_or_else(|| panic!("kubernetes: nothing is mounted at the spool's {directory}"));
    assert!(
        claims.contains(&scalar(&mount["name"], "mount name")),
        "kubernetes: {directory} is mounted from {}, not from a volumeClaimTemplate {claims:?}",
        mount["name"]
    );
    assert_ne!(
        mount["readOnly"], true,
        "kubernetes: the spool mount is read-only"
    );
    assert_eq!(
        deploy.pod_spec()["securityContext"]["fsGroup"],
        10001,
        "kubernetes: fsGroup should make the claim writable for the image's user"
    );
    let retention = &statefulset["spec"]["persistentVolumeClaimRetentionPolicy"];
    assert_eq!(
        retention["whenScaled"], "Retain",
        "a scale-down must not delete a spool"
    );
    assert_eq!(retention["whenDeleted"], "Retain");

    // compose: a named volume at the spool's directory.
    let directory = spool_directory(&compose_settings(), "compose");
    let volumes = deploy.compose_service(BRIDGE_SERVICE)["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let named = volumes
        .iter()
        .filter_map(Value::as_str)
        .find_map(|volume| {
            let (source, target) = volume.split_once(':')?;
            (target.trim_end_matches(":rw") == directory).then(|| source.to_owned())
        })
        .unwrap_or_else(|| panic!("compose: no volume at the spool's {directory}"));
    assert!(
        !named.starts_with('/') && !named.starts_with('.'),
        "compose: the spool should be a named volume, not a bind mount: {named}"
    );
    assert!(
        deploy.compose["volumes"].get(&named).is_some(),
        "compose: volume {named} is not declared at the top level"
    );

    // The image: the directory exists, owned by the service user, and is declared a volume.
    let dockerfile = &deploy.dockerfile;
    let runs: Vec<&str> = dockerfile.runtime().all("RUN").collect();
    assert!(
        runs.iter()
            .any(|run| run.contains("install -d -o 10001 -g 10001")
                && run.contains(directory.as_str())),
        "the image should create {directory} for uid 10001"
    );
    assert!(
        dockerfile
            .runtime_value("VOLUME")
            .is_some_and(|volume| volume.contains(directory.as_str())),
        "the image should declare {directory} a VOLUME"
    );
}
