//! Kubernetes wiring: objects that reference each other, the network policy, the locked-down
//! pod and the reconcile CronJob.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::deployment::*;
use crate::support::*;

#[test]
fn kubernetes_objects_reference_each_other() {
    let deploy = deploy();
    let deployment = deploy.object("StatefulSet");
    let pod_labels = pointer(deployment, "/spec/template/metadata/labels", "pod template");
    let selects_pods = |selector: &Value, what: &str| {
        let selector = selector
            .as_object()
            .filter(|selector| !selector.is_empty())
            .unwrap_or_else(|| panic!("{what}: empty selector"));
        for (key, value) in selector {
            assert_eq!(
                &pod_labels[key], value,
                "{what} selects {key}={value}, which the pods lack"
            );
        }
    };
    selects_pods(
        pointer(deployment, "/spec/selector/matchLabels", "StatefulSet"),
        "StatefulSet",
    );
    for (file, service) in deploy.objects("Service") {
        selects_pods(pointer(service, "/spec/selector", file), file);
    }
    let governing = scalar(
        &deployment["spec"]["serviceName"],
        "StatefulSet serviceName",
    );
    assert_eq!(
        deploy.object_named("Service", &governing)["spec"]["clusterIP"],
        "None",
        "a StatefulSet's serviceName must name a headless Service"
    );
    let configmap = read("deploy/kubernetes/configmap.yaml");
    assert!(
        !configmap.to_lowercase().contains("deployment"),
        "configmap.yaml speaks of a Deployment; the workload is a StatefulSet"
    );
    for (file, budget) in deploy.objects("PodDisruptionBudget") {
        selects_pods(pointer(budget, "/spec/selector/matchLabels", file), file);
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
        let min_available = budget["spec"]["minAvailable"].as_u64().unwrap_or(0);
        assert!(
            min_available < replicas,
            "{file}: would block every eviction"
        );
    }
    assert!(
        deployment["spec"]["replicas"].as_u64().unwrap_or(1) >= 2,
        "at least two replicas"
    );

    // envFrom names the ConfigMap; the tokens come from the Secret the example describes.
    for source in array(deploy.container(), "envFrom") {
        if let Some(name) = source.pointer("/configMapRef/name") {
            deploy.object_named("ConfigMap", &scalar(name, "configMapRef"));
        }
    }
    let (secret_name, secret_key) = deploy.token_secret_ref();
    let example = deploy.example_secret();
    assert_eq!(
        example["metadata"]["name"],
        secret_name.as_str(),
        "secret.example.yaml name"
    );
    assert!(
        example
            .pointer(&format!("/stringData/{secret_key}"))
            .is_some()
            || example.pointer(&format!("/data/{secret_key}")).is_some(),
        "secret.example.yaml has no key {secret_key:?}"
    );

    // kustomization.yaml lists every manifest except the example Secret.
    let kustomization = single_yaml_document("deploy/kubernetes/kustomization.yaml");
    let listed: BTreeSet<String> = array(&kustomization, "resources")
        .iter()
        .map(|resource| scalar(resource, "resource"))
        .collect();
    let expected: BTreeSet<String> = yaml_files("deploy/kubernetes")
        .iter()
        .map(|file| file_name(file))
        .filter(|name| name != "kustomization.yaml" && name != "secret.example.yaml")
        .collect();
    assert_eq!(listed, expected, "kustomization.yaml resources");
    let image = scalar(&deploy.container()["image"], "image");
    for rewrite in array(&kustomization, "images") {
        assert_eq!(
            rewrite["name"],
            image.as_str(),
            "kustomization images should rewrite {image}"
        );
    }
}

/// The admin port binds every address in the pod, so a policy must keep it from everyone but
/// the scraper, while the webhook port stays open to the Ingress.
#[test]
fn a_network_policy_keeps_the_admin_port_from_the_rest_of_the_cluster() {
    let deploy = deploy();
    let policy = deploy.object("NetworkPolicy");
    let pod_labels = pointer(
        deploy.object("StatefulSet"),
        "/spec/template/metadata/labels",
        "pod template",
    );
    let selector = pointer(policy, "/spec/podSelector/matchLabels", "NetworkPolicy");
    for (key, value) in selector.as_object().expect("labels") {
        assert_eq!(&pod_labels[key], value, "the policy selects {key}={value}");
    }
    assert!(
        array(&policy["spec"], "policyTypes").contains(&Value::from("Ingress")),
        "the policy must govern ingress"
    );
    let named = container_ports(deploy.container());
    let rules = array(&policy["spec"], "ingress");
    let opens = |port: &str| -> Vec<&Value> {
        rules
            .iter()
            .filter(|rule| {
                array(rule, "ports").iter().any(|allowed| {
                    resolve_port(&allowed["port"], &named) == named.get(port).copied()
                })
            })
            .collect()
    };
    assert!(
        opens("http").iter().any(|rule| rule.get("from").is_none()),
        "the webhook port must stay reachable from the Ingress"
    );
    let admin = opens("admin");
    assert!(!admin.is_empty(), "Prometheus must reach the admin port");
    for rule in admin {
        let sources = array(rule, "from");
        assert!(
            !sources.is_empty()
                && sources
                    .iter()
                    .all(|source| source.get("podSelector").is_some()
                        || source.get("namespaceSelector").is_some()),
            "the admin port is open to every pod: {rule}"
        );
    }
    assert!(
        rules.iter().all(|rule| rule.get("ports").is_some()),
        "a rule without ports opens every port"
    );
}

#[test]
fn the_pod_runs_locked_down() {
    let deploy = deploy();
    let pod = deploy.pod_spec();
    let container = deploy.container();
    assert_eq!(
        pod.pointer("/securityContext/runAsNonRoot"),
        Some(&Value::Bool(true))
    );
    let context = pointer(container, "/securityContext", "container");
    assert_eq!(context["allowPrivilegeEscalation"], false);
    assert_eq!(context["readOnlyRootFilesystem"], true);
    assert_eq!(context["runAsNonRoot"], true);
    assert_eq!(context["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for field in [
        "requests/cpu",
        "requests/memory",
        "limits/cpu",
        "limits/memory",
    ] {
        assert!(
            container.pointer(&format!("/resources/{field}")).is_some(),
            "the container should set resources.{}",
            field.replace('/', ".")
        );
    }
}

#[test]
fn the_reconcile_cronjob_never_overlaps_and_its_environment_loads() {
    let deploy = deploy();
    let cronjob = deploy.object("CronJob");
    assert_eq!(
        cronjob["spec"]["suspend"], true,
        "off until the user turns it on"
    );
    assert_eq!(
        cronjob["spec"]["concurrencyPolicy"], "Forbid",
        "scheduled runs should not queue for the lease"
    );
    let pod = pointer(cronjob, "/spec/jobTemplate/spec/template/spec", "CronJob");
    assert_eq!(pod["restartPolicy"], "Never");
    let container = match pod["containers"].as_array().map(Vec::as_slice) {
        Some([container]) => container,
        _ => panic!("the CronJob should run exactly one container"),
    };
    assert_eq!(container["args"][0], "reconcile");
    assert_eq!(container["image"], deploy.container()["image"]);

    let env = deploy.container_env(container, &format!(r#"["{PLACEHOLDER_TOKEN}"]"#));
    let settings = load_settings(&env).unwrap_or_else(|error| {
        panic!("the CronJob's environment is not a valid configuration: {error}\n{env:#?}")
    });
    let reconcile = settings.reconcile;
    assert!(
        reconcile.app_id.is_some(),
        "the CronJob should set the app id"
    );
    let mount = array(container, "volumeMounts")
        .first()
        .map(|mount| scalar(&mount["mountPath"], "mountPath"))
        .expect("the secret's volume mount");
    let item = pointer(pod, "/volumes/0/secret/items/0/path", "CronJob volumes");
    assert_eq!(
        reconcile.secret_file,
        Some(Path::new(&mount).join(scalar(item, "path"))),
        "reconcile.secret_file should name the mounted Secret's file"
    );
}
