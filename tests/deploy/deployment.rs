//! The deploy files, parsed once.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::dockerfile::*;
use crate::dockerignore::*;
use crate::interpolation::*;
use crate::support::*;

pub(crate) struct Deploy {
    pub(crate) dockerfile: Dockerfile,
    pub(crate) dockerignore: Vec<IgnoreRule>,
    pub(crate) compose: Value,
    /// Every document of every `deploy/kubernetes/*.yaml` but the kustomization, with its
    /// file name.
    pub(crate) manifests: Vec<(String, Value)>,
}

pub(crate) fn deploy() -> &'static Deploy {
    static DEPLOY: OnceLock<Deploy> = OnceLock::new();
    DEPLOY.get_or_init(|| Deploy {
        dockerfile: Dockerfile::parse(&read("deploy/Dockerfile")),
        dockerignore: parse_dockerignore(&read("deploy/Dockerfile.dockerignore")),
        compose: single_yaml_document("deploy/compose.yaml"),
        manifests: yaml_files("deploy/kubernetes")
            .into_iter()
            .filter(|file| file_name(file) != "kustomization.yaml")
            .flat_map(|file| {
                let name = file_name(&file);
                yaml_documents(&relative(&file))
                    .into_iter()
                    .map(move |doc| (name.clone(), doc))
            })
            .collect(),
    })
}

impl Deploy {
    pub(crate) fn compose_service(&self, name: &str) -> &Value {
        self.compose
            .pointer(&format!("/services/{name}"))
            .unwrap_or_else(|| panic!("deploy/compose.yaml: no service {name:?}"))
    }

    /// The bridge service's `environment`, before interpolation.
    pub(crate) fn compose_environment(&self) -> Vec<(String, String)> {
        match self.compose_service(BRIDGE_SERVICE).get("environment") {
            None => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(name, value)| (name.clone(), scalar(value, name)))
                .collect(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|item| {
                    let item = scalar(item, "environment entry");
                    let (name, value) = item.split_once('=').unwrap_or_else(|| {
                        panic!("compose environment entry {item:?} has no value")
                    });
                    (name.to_owned(), value.to_owned())
                })
                .collect(),
            Some(other) => panic!("compose environment is neither a map nor a list: {other}"),
        }
    }

    /// What the bridge container sees under compose, with `${...}` resolved from `variables`
    /// (see `interpolate` for `strict`).
    pub(crate) fn compose_container_env(
        &self,
        variables: &[(&str, &str)],
        strict: bool,
    ) -> Result<BTreeMap<String, String>, String> {
        let service = self.compose_service(BRIDGE_SERVICE);
        assert!(
            service.get("env_file").is_none(),
            "compose env_file is not modelled by this test; extend it"
        );
        let mut env = self.dockerfile.runtime_env();
        for (name, value) in self.compose_environment() {
            env.insert(name, interpolate(&value, variables, strict)?);
        }
        Ok(env)
    }

    pub(crate) fn objects(&self, kind: &str) -> Vec<&(String, Value)> {
        self.manifests
            .iter()
            .filter(|(_, doc)| doc["kind"] == kind)
            .collect()
    }

    pub(crate) fn object(&self, kind: &str) -> &Value {
        match self.objects(kind).as_slice() {
            [(_, doc)] => doc,
            found => panic!(
                "deploy/kubernetes: expected one {kind}, found {}",
                found.len()
            ),
        }
    }

    pub(crate) fn object_named(&self, kind: &str, name: &str) -> &Value {
        self.objects(kind)
            .into_iter()
            .map(|(_, doc)| doc)
            .find(|doc| doc["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("deploy/kubernetes: no {kind} named {name:?}"))
    }

    pub(crate) fn pod_spec(&self) -> &Value {
        pointer(
            self.object("StatefulSet"),
            "/spec/template/spec",
            "StatefulSet",
        )
    }

    pub(crate) fn container(&self) -> &Value {
        let containers = pointer(self.pod_spec(), "/containers", "StatefulSet pod spec");
        match containers.as_array().map(Vec::as_slice) {
            Some([container]) => container,
            _ => panic!("the StatefulSet should run exactly one container: {containers}"),
        }
    }

    /// What the bridge container sees in Kubernetes: the image's `ENV`, then `envFrom`, then
    /// `env` (which wins). Secret references resolve to `secret_value`.
    pub(crate) fn kubernetes_container_env(&self, secret_value: &str) -> BTreeMap<String, String> {
        self.container_env(self.container(), secret_value)
    }

    /// The same for any container of the manifests.
    pub(crate) fn container_env(
        &self,
        container: &Value,
        secret_value: &str,
    ) -> BTreeMap<String, String> {
        let mut env = self.dockerfile.runtime_env();
        for source in array(container, "envFrom") {
            let prefix = source
                .get("prefix")
                .map_or(String::new(), |p| scalar(p, "prefix"));
            let name = source
                .pointer("/configMapRef/name")
                .unwrap_or_else(|| panic!("only configMapRef envFrom is modelled: {source}"));
            let config_map = self.object_named("ConfigMap", &scalar(name, "configMapRef"));
            for (key, value) in config_map["data"].as_object().into_iter().flatten() {
                env.insert(format!("{prefix}{key}"), scalar(value, key));
            }
        }
        for variable in array(container, "env") {
            let name = scalar(&variable["name"], "env name");
            let value = if let Some(value) = variable.get("value") {
                let value = scalar(value, &name);
                assert!(
                    !value.contains("$("),
                    "{name}: $(VAR) expansion is not modelled"
                );
                value
            } else if variable.pointer("/valueFrom/secretKeyRef").is_some() {
                secret_value.to_owned()
            } else if let Some(reference) = variable.pointer("/valueFrom/configMapKeyRef") {
                let config_map =
                    self.object_named("ConfigMap", &scalar(&reference["name"], "configMapKeyRef"));
                let key = scalar(&reference["key"], "configMapKeyRef key");
                scalar(&config_map["data"][&key], &key)
            } else {
                panic!("{name}: only value, secretKeyRef and configMapKeyRef are modelled")
            };
            env.insert(name, value);
        }
        env
    }

    pub(crate) fn example_secret(&self) -> &Value {
        self.manifests
            .iter()
            .find(|(file, doc)| file == "secret.example.yaml" && doc["kind"] == "Secret")
            .map(|(_, doc)| doc)
            .expect("deploy/kubernetes/secret.example.yaml should hold a Secret")
    }

    /// The only place the webhook tokens come from in Kubernetes.
    pub(crate) fn token_secret_ref(&self) -> (String, String) {
        let references: Vec<&Value> = array(self.container(), "env")
            .iter()
            .filter(|variable| variable["name"] == "TELECMI_BRIDGE_AUTH__TOKENS")
            .filter_map(|variable| variable.pointer("/valueFrom/secretKeyRef"))
            .collect();
        let [reference] = references.as_slice() else {
            panic!("TELECMI_BRIDGE_AUTH__TOKENS should come from one secretKeyRef")
        };
        (
            scalar(&reference["name"], "secretKeyRef name"),
            scalar(&reference["key"], "secretKeyRef key"),
        )
    }
}
