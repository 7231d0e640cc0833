//! The deployment files under `deploy/` checked against the code: no container engine or
//! cluster is needed, so a renamed configuration key, a moved port, a shortened grace period or
//! a forgotten `COPY` fails here rather than at deploy time.
//!
//! What the container would see is rebuilt from the files: the image's `ENV` overlaid by the
//! compose service's `environment`, or by the ConfigMap (`envFrom`) and the container's `env`
//! in Kubernetes. That environment is then loaded with the bridge's own `Settings::load` (and
//! once through the binary's `check-config`), and the other files are compared with the
//! settings it produces.

// `figment::Jail` closures return figment's own (large) error type.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use figment::Jail;
use serde::Deserialize;
use serde_json::Value;
use telecmi_bridge::config::{ENV_PREFIX, Settings, Sources};

/// Stands in for secrets and `${...}` interpolations: 32 characters, like a real token.
const PLACEHOLDER_TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// The variables compose interpolates into `deploy/compose.yaml`, as a user would export them.
const COMPOSE_VARIABLES: [(&str, &str); 1] = [("TELECMI_BRIDGE_TOKEN", PLACEHOLDER_TOKEN)];
/// Variables with the prefix that select files instead of setting keys (see `config.rs`).
const NOT_KEYS: [&str; 2] = ["PROFILE", "CONFIG_DIR"];
/// Free-form tables: their keys are not in the defaults, so any key below them is accepted
/// here (`Settings::load` in `the_deployed_configurations_load` still checks the values).
const TABLE_KEYS: [&str; 3] = [
    "kafka.properties",
    "routing.event_topics",
    "routing.cdr_topics",
];
const PROFILE: &str = "production";
const BRIDGE_SERVICE: &str = "telecmi-bridge";
const KAFKA_SERVICE: &str = "kafka";

// ---------------------------------------------------------------------------------------------
// The deploy files, parsed once.

struct Deploy {
    dockerfile: Dockerfile,
    dockerignore: Vec<IgnoreRule>,
    compose: Value,
    /// Every document of every `deploy/kubernetes/*.yaml` but the kustomization, with its
    /// file name.
    manifests: Vec<(String, Value)>,
}

fn deploy() -> &'static Deploy {
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
    fn compose_service(&self, name: &str) -> &Value {
        self.compose
            .pointer(&format!("/services/{name}"))
            .unwrap_or_else(|| panic!("deploy/compose.yaml: no service {name:?}"))
    }

    /// The bridge service's `environment`, before interpolation.
    fn compose_environment(&self) -> Vec<(String, String)> {
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
    fn compose_container_env(
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

    fn objects(&self, kind: &str) -> Vec<&(String, Value)> {
        self.manifests
            .iter()
            .filter(|(_, doc)| doc["kind"] == kind)
            .collect()
    }

    fn object(&self, kind: &str) -> &Value {
        match self.objects(kind).as_slice() {
            [(_, doc)] => doc,
            found => panic!(
                "deploy/kubernetes: expected one {kind}, found {}",
                found.len()
            ),
        }
    }

    fn object_named(&self, kind: &str, name: &str) -> &Value {
        self.objects(kind)
            .into_iter()
            .map(|(_, doc)| doc)
            .find(|doc| doc["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("deploy/kubernetes: no {kind} named {name:?}"))
    }

    fn pod_spec(&self) -> &Value {
        pointer(
            self.object("StatefulSet"),
            "/spec/template/spec",
            "StatefulSet",
        )
    }

    fn container(&self) -> &Value {
        let containers = pointer(self.pod_spec(), "/containers", "StatefulSet pod spec");
        match containers.as_array().map(Vec::as_slice) {
            Some([container]) => container,
            _ => panic!("the StatefulSet should run exactly one container: {containers}"),
        }
    }

    /// What the bridge container sees in Kubernetes: the image's `ENV`, then `envFrom`, then
    /// `env` (which wins). Secret references resolve to `secret_value`.
    fn kubernetes_container_env(&self, secret_value: &str) -> BTreeMap<String, String> {
        self.container_env(self.container(), secret_value)
    }

    /// The same for any container of the manifests.
    fn container_env(&self, container: &Value, secret_value: &str) -> BTreeMap<String, String> {
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

    fn example_secret(&self) -> &Value {
        self.manifests
            .iter()
            .find(|(file, doc)| file == "secret.example.yaml" && doc["kind"] == "Secret")
            .map(|(_, doc)| doc)
            .expect("deploy/kubernetes/secret.example.yaml should hold a Secret")
    }

    /// The only place the webhook tokens come from in Kubernetes.
    fn token_secret_ref(&self) -> (String, String) {
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

// ---------------------------------------------------------------------------------------------
// Loading the environment the way the binary does.

/// `Settings::load` as the container would run it: only `env` in the environment, and the
/// configuration directory the image installs (`/app/config`) mapped to the repository's
/// `config/` (`the_image_installs_the_configuration_where_the_binary_looks` checks that they
/// are the same files).
fn load_settings(env: &BTreeMap<String, String>) -> Result<Settings, String> {
    let mut outcome = None;
    Jail::expect_with(|jail| {
        jail.clear_env();
        for (name, value) in env {
            jail.set_env(name, value);
        }
        let sources = Sources {
            config_dir: repo().join("config"),
            profile: env.get("TELECMI_BRIDGE_PROFILE").cloned(),
            file: None,
        };
        outcome = Some(Settings::load(&sources).map_err(|error| error.to_string()));
        Ok(())
    });
    outcome.expect("the jail ran")
}

fn compose_settings() -> Settings {
    let env = deploy()
        .compose_container_env(&COMPOSE_VARIABLES, true)
        .unwrap_or_else(|error| panic!("deploy/compose.yaml: {error}"));
    load_settings(&env).unwrap_or_else(|error| {
        panic!("the compose environment is not a valid configuration: {error}\n{env:#?}")
    })
}

fn kubernetes_settings() -> Settings {
    let env = deploy().kubernetes_container_env(&format!(r#"["{PLACEHOLDER_TOKEN}"]"#));
    load_settings(&env).unwrap_or_else(|error| {
        panic!("the Kubernetes environment is not a valid configuration: {error}\n{env:#?}")
    })
}

/// `TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS` → `["kafka", "bootstrap_servers"]`, as figment's
/// `Env::prefixed(..).split("__")` reads it; `None` for names that are not keys.
fn variable_key(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if NOT_KEYS.contains(&rest) {
        return None;
    }
    Some(rest.to_lowercase().split("__").map(str::to_owned).collect())
}

fn key_exists(defaults: &Value, key: &[String]) -> bool {
    let mut node = defaults;
    for (depth, segment) in key.iter().enumerate() {
        if TABLE_KEYS.contains(&key[..depth].join(".").as_str()) {
            return true;
        }
        match node.get(segment) {
            Some(child) => node = child,
            None => return false,
        }
    }
    true
}

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
// (b) Ports and probes.

#[test]
fn ports_agree_with_the_listeners() {
    let deploy = deploy();
    for (what, settings) in [
        ("compose", compose_settings()),
        ("Kubernetes", kubernetes_settings()),
    ] {
        let (listen, admin) = (settings.server.listen, settings.server.admin_listen);
        assert!(
            admin.ip().is_unspecified(),
            "{what}: server.admin_listen is {admin}; probes and Prometheus cannot reach it \
             from outside the container"
        );
        assert_eq!(
            deploy.dockerfile.exposed_ports(),
            BTreeSet::from([listen.port(), admin.port()]),
            "{what}: the Dockerfile's EXPOSE should be the two listeners"
        );
    }

    // compose: both listeners published, the admin one on loopback only.
    let settings = compose_settings();
    let published = compose_ports(deploy.compose_service(BRIDGE_SERVICE));
    let targets: BTreeSet<u16> = published.iter().map(|port| port.target).collect();
    assert_eq!(
        targets,
        BTreeSet::from([
            settings.server.listen.port(),
            settings.server.admin_listen.port()
        ]),
        "compose should publish exactly the two listeners"
    );
    for port in &published {
        if port.target == settings.server.admin_listen.port() {
            assert!(
                matches!(
                    port.host_ip.as_deref(),
                    Some("127.0.0.1" | "::1" | "localhost")
                ),
                "compose publishes the admin port {} beyond this host: {port:?}",
                port.target
            );
        }
    }

    // Kubernetes: the named container ports are the listeners, and the Service exposes only
    // the webhook one.
    let settings = kubernetes_settings();
    let ports = container_ports(deploy.container());
    assert_eq!(ports.get("http"), Some(&settings.server.listen.port()));
    assert_eq!(
        ports.get("admin"),
        Some(&settings.server.admin_listen.port())
    );
    assert_eq!(ports.len(), 2, "only the two listeners: {ports:?}");
    for (file, service) in deploy.objects("Service") {
        let service_ports = array(pointer(service, "/spec", file), "ports");
        assert!(!service_ports.is_empty(), "{file}: a Service has no ports");
        for port in service_ports {
            let target = resolve_port(&port["targetPort"], &ports).unwrap_or_else(|| {
                panic!(
                    "Service targetPort {} is no container port",
                    port["targetPort"]
                )
            });
            assert_eq!(
                target,
                settings.server.listen.port(),
                "the Service must expose only the webhook listener, not {port}"
            );
        }
    }
    let annotations = pointer(
        deploy.object("StatefulSet"),
        "/spec/template/metadata/annotations",
        "pod template",
    );
    assert_eq!(
        annotations["prometheus.io/port"],
        settings.server.admin_listen.port().to_string(),
        "Prometheus should scrape the admin listener"
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
}

#[test]
fn probes_and_health_checks_use_the_admin_endpoints() {
    let deploy = deploy();
    let settings = kubernetes_settings();
    let ports = container_ports(deploy.container());
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = pointer(deploy.container(), &format!("/{probe}/httpGet"), probe);
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            resolve_port(&get["port"], &ports),
            Some(settings.server.admin_listen.port()),
            "{probe} should target the admin listener"
        );
    }

    // The image's health check asks the admin listener for /healthz; it follows the variable
    // that moves the listener (`the_image_health_check_works` runs it).
    let check = deploy.dockerfile.healthcheck_command().join(" ");
    assert!(
        check.contains("/healthz"),
        "HEALTHCHECK should ask /healthz: {check}"
    );
    assert!(
        check.contains("TELECMI_BRIDGE_SERVER__ADMIN_LISTEN")
            || check.contains(&format!(":{}", settings.server.admin_listen.port()))
            || check.contains(&format!("/{}", settings.server.admin_listen.port())),
        "HEALTHCHECK should target the admin port: {check}"
    );
}

/// Runs the Dockerfile's HEALTHCHECK command against the real admin router on a free port.
#[cfg(unix)]
#[test]
fn the_image_health_check_works() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let serve = |router: axum::Router| {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind a free port");
        let address = listener.local_addr().expect("local address");
        runtime.spawn(async move { axum::serve(listener, router).await });
        address
    };
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let admin = serve(telecmi_bridge::http::admin_router(
        telecmi_bridge::http::Readiness::new(None),
        metrics,
    ));
    let failing = serve(
        axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "nope") }),
    );
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local address")
    };

    assert!(
        run_healthcheck(admin),
        "HEALTHCHECK fails against a live admin listener"
    );
    assert!(!run_healthcheck(failing), "HEALTHCHECK passes on a 503");
    assert!(
        !run_healthcheck(closed),
        "HEALTHCHECK passes with nothing listening"
    );
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

// ---------------------------------------------------------------------------------------------
// (d) Shutdown.

#[test]
fn shutdown_grace_exceeds_the_drain_budget() {
    let deploy = deploy();
    let dockerfile = &deploy.dockerfile;
    assert_eq!(
        dockerfile.runtime_value("STOPSIGNAL").as_deref(),
        Some("SIGTERM"),
        "the bridge drains on SIGTERM"
    );
    let entrypoint = dockerfile.runtime_value("ENTRYPOINT").unwrap_or_default();
    assert!(
        entrypoint.trim_start().starts_with('['),
        "ENTRYPOINT must use the exec form, or a shell as PID 1 swallows SIGTERM: {entrypoint}"
    );

    let compose_drain = compose_settings().server.shutdown_timeout_ms;
    let service = deploy.compose_service(BRIDGE_SERVICE);
    let grace = parse_go_duration(&scalar(
        service
            .get("stop_grace_period")
            .expect("compose: set stop_grace_period (the default 10 s is shorter than the drain)"),
        "stop_grace_period",
    ));
    assert!(
        grace > Duration::from_millis(compose_drain),
        "compose stop_grace_period {grace:?} must exceed server.shutdown_timeout_ms {compose_drain} ms"
    );
    if let Some(signal) = service.get("stop_signal") {
        assert_eq!(scalar(signal, "stop_signal"), "SIGTERM");
    }

    let drain = Duration::from_millis(kubernetes_settings().server.shutdown_timeout_ms);
    let pre_stop = pre_stop_sleep(deploy.container());
    let grace = Duration::from_secs(
        deploy.pod_spec()["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("the StatefulSet should set terminationGracePeriodSeconds"),
    );
    assert!(
        grace > drain + pre_stop,
        "terminationGracePeriodSeconds {grace:?} must exceed the preStop sleep {pre_stop:?} \
         plus server.shutdown_timeout_ms {drain:?}"
    );
    assert!(
        pre_stop >= Duration::from_secs(1),
        "a preStop sleep keeps traffic away while endpoints are removed"
    );
}

// ---------------------------------------------------------------------------------------------
// (e) The image.

#[test]
fn the_image_installs_the_configuration_where_the_binary_looks() {
    let dockerfile = &deploy().dockerfile;
    let workdir = dockerfile
        .runtime_workdir()
        .expect("the runtime stage should set WORKDIR");
    let env = dockerfile.runtime_env();
    let config_dir = match env.get("TELECMI_BRIDGE_CONFIG_DIR") {
        Some(dir) => workdir.join(dir),
        None => workdir.join(Settings::default_config_dir()),
    };
    let copies: Vec<Copy> = dockerfile
        .runtime_copies()
        .into_iter()
        .filter(|copy| {
            copy.from.is_none() && copy.sources.iter().any(|s| clean(s) == Path::new("config"))
        })
        .collect();
    let [copy] = copies.as_slice() else {
        panic!("the runtime stage should COPY config/ once: {copies:?}")
    };
    assert_eq!(copy.sources.len(), 1, "COPY config/ alone: {copy:?}");
    assert_eq!(
        clean(copy.destination(&workdir)),
        clean(&config_dir),
        "config/ must land where the binary reads it (WORKDIR/config or TELECMI_BRIDGE_CONFIG_DIR)"
    );
}

#[test]
fn the_image_runs_as_a_fixed_non_root_user() {
    let deploy = deploy();
    let user = deploy
        .dockerfile
        .runtime_value("USER")
        .expect("the runtime stage should set USER");
    let uid = user.split(':').next().unwrap_or_default();
    let uid: u64 = uid.parse().unwrap_or_else(|_| {
        panic!("USER {user:?}: use a numeric uid so runAsNonRoot can check it")
    });
    assert_ne!(uid, 0, "USER must not be root");
    let pod_user = deploy.pod_spec().pointer("/securityContext/runAsUser");
    if let Some(pod_user) = pod_user {
        assert_eq!(
            pod_user.as_u64(),
            Some(uid),
            "runAsUser should be the image's user"
        );
    }
}

#[test]
fn the_image_runs_the_binary_it_builds() {
    let dockerfile = &deploy().dockerfile;
    let builder = dockerfile
        .stages
        .iter()
        .find(|stage| stage.runs("cargo build --release --locked"))
        .expect("a stage should run `cargo build --release --locked`");
    let builder_workdir = builder.workdir().expect("the builder should set WORKDIR");
    let binary_copies: Vec<Copy> = dockerfile
        .runtime_copies()
        .into_iter()
        .filter(|copy| copy.from.as_deref() == builder.name.as_deref())
        .collect();
    let [binary] = binary_copies.as_slice() else {
        panic!("the runtime stage should copy the binary from the builder: {binary_copies:?}")
    };
    assert_eq!(
        clean(builder_workdir.join(&binary.sources[0])),
        clean(builder_workdir.join("target/release/telecmi-bridge")),
        "the copied binary should be the release build"
    );
    let installed = binary.destination(&dockerfile.runtime_workdir().unwrap_or_default());

    let entrypoint = dockerfile.exec_form("ENTRYPOINT");
    let command = dockerfile.exec_form("CMD");
    let program = entrypoint.first().expect("ENTRYPOINT names the program");
    let program_path = Path::new(program);
    let on_path = program_path.is_absolute() && program_path == installed
        || !program.contains('/')
            && installed.file_name() == Some(program_path.as_os_str())
            && installed.parent() == Some(Path::new("/usr/local/bin"));
    assert!(
        on_path,
        "ENTRYPOINT {program:?} does not run the installed {installed:?}"
    );

    // The arguments form a valid command line of this binary.
    let mut arguments: Vec<&str> = entrypoint[1..]
        .iter()
        .chain(&command)
        .map(String::as_str)
        .collect();
    arguments.push("--help");
    let output = run_binary(&arguments, &BTreeMap::new());
    assert!(
        output.status.success(),
        "`telecmi-bridge {}` is not a valid command line: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_image_build_context_has_everything_the_build_reads() {
    let deploy = deploy();
    let dockerfile = &deploy.dockerfile;
    let context_sources: Vec<PathBuf> = dockerfile
        .stages
        .iter()
        .flat_map(|stage| stage.copies())
        .filter(|copy| copy.from.is_none())
        .flat_map(|copy| copy.sources.iter().map(clean).collect::<Vec<_>>())
        .collect();
    for required in ["Cargo.toml", "Cargo.lock", "src", "config"] {
        assert!(
            context_sources
                .iter()
                .any(|source| source == Path::new(required)),
            "the Dockerfile should COPY {required}"
        );
    }
    if repo().join("build.rs").exists() {
        assert!(
            context_sources
                .iter()
                .any(|source| source == Path::new("build.rs")),
            "build.rs exists but the Dockerfile does not copy it"
        );
    }
    // Files the sources embed at compile time must be in the image's build too.
    for embedded in embedded_files(&repo().join("src")) {
        assert!(
            context_sources
                .iter()
                .any(|source| embedded.starts_with(source)),
            "src embeds {} but the Dockerfile does not copy it",
            embedded.display()
        );
    }
    // And .dockerignore lets every copied file through, and keeps the heavy stuff out.
    for source in &context_sources {
        let path = repo().join(source);
        assert!(
            path.exists(),
            "COPY {}: no such path in the repository",
            source.display()
        );
        for file in walk(&path) {
            let relative = file.strip_prefix(repo()).expect("inside the repository");
            assert!(
                !is_ignored(&deploy.dockerignore, relative),
                "Dockerfile.dockerignore drops {}, which the Dockerfile copies",
                relative.display()
            );
        }
    }
    for heavy in [
        "target/release/telecmi-bridge",
        ".git/HEAD",
        "tests/it/main.rs",
    ] {
        assert!(
            is_ignored(&deploy.dockerignore, Path::new(heavy)),
            "Dockerfile.dockerignore should leave {heavy} out of the build context"
        );
    }
    // The binary links the builder's glibc: both stages must be the same Debian release.
    let releases: Vec<Option<&str>> = [dockerfile.stages.first(), dockerfile.stages.last()]
        .into_iter()
        .flatten()
        .map(|stage| debian_release(&dockerfile.resolve_args(&stage.image)))
        .collect();
    assert!(
        releases.len() == 2 && releases[0].is_some() && releases[0] == releases[1],
        "builder and runtime should be the same Debian release: {releases:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Kubernetes and compose wiring.

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

/// The operator's PrometheusRule carries exactly the rules that promtool checks and tests in
/// CI (deploy/prometheus/alerts.yaml), and every alert links its runbook section.
#[test]
fn the_prometheus_rule_is_the_tested_rules_file() {
    let rules = single_yaml_document("deploy/prometheus/alerts.yaml");
    let operator = single_yaml_document("deploy/prometheus/prometheusrule.yaml");
    assert_eq!(operator["kind"], "PrometheusRule");
    assert_eq!(
        operator["spec"]["groups"], rules["groups"],
        "deploy/prometheus/prometheusrule.yaml differs from alerts.yaml"
    );
    let runbook = read("docs/operations.md").to_lowercase();
    for group in array(&rules, "groups") {
        for rule in array(group, "rules") {
            let alert = scalar(&rule["alert"], "alert");
            let anchor = format!("#{}", alert.to_lowercase());
            assert_eq!(
                rule["annotations"]["runbook"],
                format!("docs/operations.md{anchor}").as_str(),
                "{alert}: runbook link"
            );
            assert!(
                runbook.contains(&format!("### {}", alert.to_lowercase())),
                "docs/operations.md has no section for {alert}"
            );
        }
    }
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
fn compose_kafka_can_serve_the_bridge() {
    let deploy = deploy();
    let settings = compose_settings();
    let kafka = deploy.compose_service(KAFKA_SERVICE);
    let kafka_env: BTreeMap<String, String> = kafka["environment"]
        .as_object()
        .expect("the kafka service's environment should be a map")
        .iter()
        .map(|(name, value)| (name.clone(), scalar(value, name)))
        .collect();
    let advertised = kafka_env
        .get("KAFKA_ADVERTISED_LISTENERS")
        .expect("kafka: KAFKA_ADVERTISED_LISTENERS");
    let tested = read("deploy/kafka/local-kafka.sh")
        .lines()
        .find_map(|line| line.strip_prefix("KAFKA_VERSION=\"${KAFKA_VERSION:-"))
        .and_then(|rest| rest.split('}').next())
        .map(str::to_owned)
        .expect("local-kafka.sh sets KAFKA_VERSION");
    assert_eq!(
        scalar(&kafka["image"], "kafka image"),
        format!("apache/kafka:{tested}"),
        "compose should run the Kafka version the suites test against"
    );
    let telecmi_bridge::config::Bootstrap::Brokers(brokers) = &settings.kafka.bootstrap_servers
    else {
        panic!("compose should point the bridge at the kafka service")
    };
    for broker in brokers.split(',') {
        assert!(
            advertised.contains(&format!("://{}", broker.trim())),
            "bridge bootstrap {broker} is not an advertised listener of the kafka service ({advertised})"
        );
    }
    // One broker, topics never auto-created: the bridge creates them, with one replica.
    assert_eq!(
        kafka_env
            .get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")
            .map(String::as_str),
        Some("false")
    );
    assert!(
        settings.kafka.create_topics,
        "nobody else creates the topics in compose"
    );
    assert_eq!(
        settings.kafka.topic_replication_factor, 1,
        "a single broker holds one replica"
    );
    // The bridge waits for a healthy broker, and the broker has a health check.
    assert_eq!(
        deploy
            .compose_service(BRIDGE_SERVICE)
            .pointer(&format!("/depends_on/{KAFKA_SERVICE}/condition")),
        Some(&Value::from("service_healthy"))
    );
    assert!(
        kafka.pointer("/healthcheck/test").is_some(),
        "kafka has no healthcheck"
    );
    // The build section points at this Dockerfile.
    let build = pointer(
        deploy.compose_service(BRIDGE_SERVICE),
        "/build",
        "telecmi-bridge",
    );
    let context = repo()
        .join("deploy")
        .join(scalar(&build["context"], "build.context"));
    let dockerfile = context.join(scalar(&build["dockerfile"], "build.dockerfile"));
    assert_eq!(
        clean(&context),
        clean(repo()),
        "the build context is the repository root"
    );
    assert_eq!(clean(&dockerfile), clean(repo().join("deploy/Dockerfile")));
}

// ---------------------------------------------------------------------------------------------
// A small Dockerfile reader: instructions per stage, continuation lines joined, comments
// dropped. Enough for the files here; it panics on forms it does not model.

#[derive(Debug)]
struct Dockerfile {
    /// `ARG`s before the first `FROM`, with their defaults.
    global_args: BTreeMap<String, String>,
    stages: Vec<Stage>,
}

#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<(String, String)>,
}

#[derive(Debug)]
struct Copy {
    from: Option<String>,
    sources: Vec<String>,
    destination: String,
}

impl Copy {
    fn destination(&self, workdir: &Path) -> PathBuf {
        workdir.join(&self.destination)
    }
}

impl Dockerfile {
    fn parse(text: &str) -> Self {
        let mut instructions = Vec::new();
        let mut logical = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            match line.trim_end().strip_suffix('\\') {
                Some(body) => {
                    logical.push_str(body);
                    logical.push(' ');
                }
                None => {
                    logical.push_str(line);
                    let (keyword, args) = logical
                        .trim()
                        .split_once(char::is_whitespace)
                        .unwrap_or((logical.trim(), ""));
                    instructions.push((keyword.to_uppercase(), args.trim().to_owned()));
                    logical.clear();
                }
            }
        }
        assert!(
            logical.is_empty(),
            "deploy/Dockerfile ends inside a continuation"
        );

        let mut dockerfile = Dockerfile {
            global_args: BTreeMap::new(),
            stages: Vec::new(),
        };
        for (keyword, args) in instructions {
            if keyword == "FROM" {
                let words: Vec<&str> = args
                    .split_whitespace()
                    .filter(|word| !word.starts_with("--"))
                    .collect();
                let name = match words.as_slice() {
                    [_] => None,
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                    _ => panic!("FROM {args}: not understood"),
                };
                dockerfile.stages.push(Stage {
                    image: words[0].to_owned(),
                    name,
                    instructions: Vec::new(),
                });
            } else if let Some(stage) = dockerfile.stages.last_mut() {
                stage.instructions.push((keyword, args));
            } else if keyword == "ARG" {
                let (name, value) = args.split_once('=').unwrap_or((&args, ""));
                dockerfile
                    .global_args
                    .insert(name.to_owned(), value.to_owned());
            }
        }
        assert!(
            dockerfile.stages.len() >= 2,
            "deploy/Dockerfile should be multi-stage"
        );
        dockerfile
    }

    fn runtime(&self) -> &Stage {
        self.stages.last().expect("at least one stage")
    }

    fn runtime_env(&self) -> BTreeMap<String, String> {
        self.runtime().env().into_iter().collect()
    }

    fn runtime_value(&self, keyword: &str) -> Option<String> {
        self.runtime().last(keyword).map(str::to_owned)
    }

    fn runtime_workdir(&self) -> Option<PathBuf> {
        self.runtime().workdir()
    }

    fn runtime_copies(&self) -> Vec<Copy> {
        self.runtime().copies()
    }

    fn exposed_ports(&self) -> BTreeSet<u16> {
        self.runtime()
            .all("EXPOSE")
            .flat_map(str::split_whitespace)
            .map(|port| {
                let number = port.split('/').next().unwrap_or(port);
                number
                    .parse()
                    .unwrap_or_else(|_| panic!("EXPOSE {port}: not a port number"))
            })
            .collect()
    }

    /// An exec-form (`["a", "b"]`) instruction of the runtime stage.
    fn exec_form(&self, keyword: &str) -> Vec<String> {
        let args = self
            .runtime_value(keyword)
            .unwrap_or_else(|| panic!("the runtime stage has no {keyword}"));
        serde_json::from_str(&args)
            .unwrap_or_else(|error| panic!("{keyword} {args}: not exec form ({error})"))
    }

    /// The HEALTHCHECK's command as an argument vector.
    fn healthcheck_command(&self) -> Vec<String> {
        let args = self
            .runtime_value("HEALTHCHECK")
            .expect("the runtime stage should have a HEALTHCHECK");
        let (_, command) = args
            .split_once("CMD ")
            .unwrap_or_else(|| panic!("HEALTHCHECK {args}: no CMD"));
        let command = command.trim();
        if command.starts_with('[') {
            serde_json::from_str(command)
                .unwrap_or_else(|error| panic!("HEALTHCHECK CMD {command}: {error}"))
        } else {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), command.to_owned()]
        }
    }

    /// `${NAME}` replaced by the default of a global `ARG NAME=...`.
    fn resolve_args(&self, text: &str) -> String {
        self.global_args
            .iter()
            .fold(text.to_owned(), |text, (name, value)| {
                text.replace(&format!("${{{name}}}"), value)
                    .replace(&format!("${name}"), value)
            })
    }
}

impl Stage {
    fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
    }

    fn last(&self, keyword: &str) -> Option<&str> {
        self.instructions
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
    }

    fn runs(&self, command: &str) -> bool {
        self.all("RUN").any(|run| run.contains(command))
    }

    fn workdir(&self) -> Option<PathBuf> {
        self.all("WORKDIR")
            .fold(None, |current: Option<PathBuf>, dir| {
                Some(current.unwrap_or_else(|| PathBuf::from("/")).join(dir))
            })
    }

    /// `ENV` pairs in order; both `ENV A=1 B=2` and `ENV A 1`.
    fn env(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for args in self.all("ENV") {
            let words = shell_words(args);
            if !words[0].contains('=') {
                pairs.push((words[0].clone(), words[1..].join(" ")));
                continue;
            }
            for word in words {
                let (name, value) = word
                    .split_once('=')
                    .unwrap_or_else(|| panic!("ENV {args}: {word:?} has no value"));
                assert!(
                    !value.contains('$'),
                    "ENV {name}: variable expansion is not modelled"
                );
                pairs.push((name.to_owned(), value.to_owned()));
            }
        }
        pairs
    }

    fn copies(&self) -> Vec<Copy> {
        self.all("COPY")
            .map(|args| {
                let words = shell_words(args);
                let (flags, paths): (Vec<String>, Vec<String>) =
                    words.into_iter().partition(|word| word.starts_with("--"));
                assert!(
                    paths.len() >= 2,
                    "COPY {args}: needs a source and a destination"
                );
                let from = flags
                    .iter()
                    .find_map(|flag| flag.strip_prefix("--from="))
                    .map(str::to_owned);
                Copy {
                    from,
                    sources: paths[..paths.len() - 1].to_vec(),
                    destination: paths[paths.len() - 1].clone(),
                }
            })
            .collect()
    }
}

/// Splits on whitespace, honouring double and single quotes.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

fn debian_release(image: &str) -> Option<&'static str> {
    ["bullseye", "bookworm", "trixie", "forky"]
        .into_iter()
        .find(|release| image.contains(release))
}

// ---------------------------------------------------------------------------------------------
// .dockerignore: Docker's rules (last match wins, `!` re-includes, a pattern also covers
// everything below a matching directory), with `*`, `?` and `**` globs.

#[derive(Debug)]
struct IgnoreRule {
    include: bool,
    segments: Vec<String>,
}

fn parse_dockerignore(text: &str) -> Vec<IgnoreRule> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (include, pattern) = match line.strip_prefix('!') {
                Some(pattern) => (true, pattern),
                None => (false, line),
            };
            IgnoreRule {
                include,
                segments: pattern
                    .trim_start_matches('/')
                    .split('/')
                    .filter(|segment| !segment.is_empty() && *segment != ".")
                    .map(str::to_owned)
                    .collect(),
            }
        })
        .collect()
}

fn is_ignored(rules: &[IgnoreRule], path: &Path) -> bool {
    let segments: Vec<String> = path
        .components()
        .map(|component| component.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut ignored = false;
    for rule in rules {
        let matches = (1..=segments.len()).any(|end| glob_path(&rule.segments, &segments[..end]));
        if matches {
            ignored = !rule.include;
        }
    }
    ignored
}

fn glob_path(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| glob_path(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                glob_segment(first.as_bytes(), segment.as_bytes()) && glob_path(rest, path_rest)
            }
            None => false,
        },
    }
}

fn glob_segment(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob_segment(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob_segment(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_segment(rest, &text[1..]),
    }
}

// ---------------------------------------------------------------------------------------------
// Compose and Kubernetes helpers.

/// Compose's `${VAR}`, `${VAR:?err}`, `${VAR?err}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:+alt}`, `${VAR+alt}`, `$VAR` and `$$`. A plain `${VAR}` without a value becomes an
/// empty string, as in compose, unless `strict`, where it is an error so that every variable
/// the file uses has a placeholder in `COMPOSE_VARIABLES`.
fn interpolate(text: &str, variables: &[(&str, &str)], strict: bool) -> Result<String, String> {
    let lookup = |name: &str| {
        variables
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| *value)
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (body, tail) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        rest = tail;
        let name_end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let (name, operator) = body.split_at(name_end);
        let value = lookup(name);
        let set_nonempty = value.filter(|value| !value.is_empty());
        let resolved = if let Some(message) = operator.strip_prefix(":?") {
            set_nonempty
                .ok_or_else(|| format!("{name}: {message}"))?
                .to_owned()
        } else if let Some(message) = operator.strip_prefix('?') {
            value
                .ok_or_else(|| format!("{name}: {message}"))?
                .to_owned()
        } else if let Some(default) = operator.strip_prefix(":-") {
            set_nonempty.unwrap_or(default).to_owned()
        } else if let Some(default) = operator.strip_prefix('-') {
            value.unwrap_or(default).to_owned()
        } else if let Some(alternative) = operator.strip_prefix(":+") {
            set_nonempty.map_or("", |_| alternative).to_owned()
        } else if let Some(alternative) = operator.strip_prefix('+') {
            value.map_or("", |_| alternative).to_owned()
        } else if operator.is_empty() {
            match value {
                Some(value) => value.to_owned(),
                None if strict => {
                    return Err(format!(
                        "{name} has no value; add a placeholder to COMPOSE_VARIABLES"
                    ));
                }
                None => String::new(),
            }
        } else {
            return Err(format!("${{{body}}}: not understood"));
        };
        out.push_str(&resolved);
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug)]
struct PublishedPort {
    host_ip: Option<String>,
    target: u16,
}

fn compose_ports(service: &Value) -> Vec<PublishedPort> {
    array(service, "ports")
        .iter()
        .map(|port| match port {
            Value::Object(long) => PublishedPort {
                host_ip: long.get("host_ip").map(|ip| scalar(ip, "host_ip")),
                target: parse_port(&scalar(&long["target"], "target")),
            },
            short => {
                let short = scalar(short, "port");
                let without_protocol = short.split('/').next().unwrap_or(&short);
                let parts: Vec<&str> = without_protocol.rsplitn(3, ':').collect();
                PublishedPort {
                    host_ip: parts.get(2).map(|ip| (*ip).to_owned()),
                    target: parse_port(parts[0]),
                }
            }
        })
        .collect()
}

fn parse_port(text: &str) -> u16 {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a single port number"))
}

/// Container port names to numbers.
fn container_ports(container: &Value) -> BTreeMap<String, u16> {
    array(container, "ports")
        .iter()
        .map(|port| {
            let number = port["containerPort"]
                .as_u64()
                .and_then(|number| u16::try_from(number).ok())
                .unwrap_or_else(|| panic!("containerPort of {port}"));
            (scalar(&port["name"], "container port name"), number)
        })
        .collect()
}

/// A probe's or Service's port: a number, or the name of a container port.
fn resolve_port(port: &Value, named: &BTreeMap<String, u16>) -> Option<u16> {
    match port {
        Value::Number(number) => number.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => named.get(name).copied().or_else(|| name.parse().ok()),
        _ => None,
    }
}

fn pre_stop_sleep(container: &Value) -> Duration {
    let Some(pre_stop) = container.pointer("/lifecycle/preStop") else {
        return Duration::ZERO;
    };
    if let Some(seconds) = pre_stop.pointer("/sleep/seconds") {
        return Duration::from_secs(seconds.as_u64().expect("preStop sleep seconds"));
    }
    let command: Vec<String> = array(pointer(pre_stop, "/exec", "preStop"), "command")
        .iter()
        .map(|word| scalar(word, "preStop command"))
        .collect();
    match command.as_slice() {
        [program, seconds] if program.rsplit('/').next() == Some("sleep") => Duration::from_secs(
            seconds
                .trim_end_matches('s')
                .parse()
                .unwrap_or_else(|_| panic!("preStop sleep {seconds:?}")),
        ),
        _ => panic!("preStop {command:?}: only `sleep N` is modelled"),
    }
}

/// Go durations as compose writes them: `30s`, `1m30s`, `1500ms`.
fn parse_go_duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    assert!(!rest.is_empty(), "empty duration");
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or_else(|| panic!("duration {text:?} lacks a unit"));
        let number: f64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("duration {text:?}"));
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            unit => panic!("duration {text:?}: unit {unit:?}"),
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = &rest[unit_end..];
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Running things.

/// The bridge binary with only `env` in its environment, the repository root standing in for
/// the image's WORKDIR and the repository's `config/` for the image's configuration directory.
fn run_binary(arguments: &[&str], env: &BTreeMap<String, String>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_telecmi-bridge"));
    command.args(arguments).env_clear().current_dir(repo());
    for (name, value) in env {
        command.env(name, value);
    }
    if env.contains_key("TELECMI_BRIDGE_CONFIG_DIR") {
        command.env("TELECMI_BRIDGE_CONFIG_DIR", repo().join("config"));
    }
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run telecmi-bridge: {error}"))
}

/// The image's HEALTHCHECK, with the image's environment except that the admin listener is
/// moved to `admin` (the port 9090 may be taken on this machine).
#[cfg(unix)]
fn run_healthcheck(admin: SocketAddr) -> bool {
    let dockerfile = &deploy().dockerfile;
    let mut env = dockerfile.runtime_env();
    let configured = env
        .get("TELECMI_BRIDGE_SERVER__ADMIN_LISTEN")
        .cloned()
        .unwrap_or_else(|| Settings::default().server.admin_listen.to_string());
    let configured: SocketAddr = configured.parse().expect("the image's admin address");
    env.insert(
        "TELECMI_BRIDGE_SERVER__ADMIN_LISTEN".to_owned(),
        SocketAddr::new(configured.ip(), admin.port()).to_string(),
    );
    let argv = dockerfile.healthcheck_command();
    let check = argv.join(" ");
    assert!(
        env.contains_key("TELECMI_BRIDGE_SERVER__ADMIN_LISTEN")
            && (check.contains("TELECMI_BRIDGE_SERVER__ADMIN_LISTEN")
                || check.contains(&configured.port().to_string())),
        "HEALTHCHECK does not follow the admin listener: {check}"
    );
    // A check that hard-codes the port fails here: the test listener is not on 9090.
    // Inside a jail, which holds figment's lock, because other tests' jails empty the process
    // environment for a moment, and `bash` is looked up on PATH.
    let mut succeeded = None;
    Jail::expect_with(|_| {
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .envs(&env)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run the HEALTHCHECK ({}): {error}", argv[0]));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut timed_out = false;
        while child.try_wait().expect("poll the HEALTHCHECK").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                timed_out = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = child.wait().expect("wait for the HEALTHCHECK");
        assert!(!timed_out, "the HEALTHCHECK did not finish within 10 s");
        succeeded = Some(status.success());
        Ok(())
    });
    succeeded.expect("the jail ran")
}

// ---------------------------------------------------------------------------------------------
// Files and values.

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("{} has no file name", path.display()))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The `*.yaml` / `*.yml` files directly in a directory of the repository, sorted.
fn yaml_files(relative: &str) -> Vec<PathBuf> {
    let dir = repo().join(relative);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|extension| extension == "yaml" || extension == "yml")
        })
        .collect();
    files.sort();
    files
}

fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{relative}: invalid YAML: {error}"))
        })
        .filter(|document| !document.is_null())
        .collect()
}

fn single_yaml_document(relative: &str) -> Value {
    let mut documents = yaml_documents(relative);
    assert_eq!(documents.len(), 1, "{relative}: expected one YAML document");
    documents.remove(0)
}

fn pointer<'a>(value: &'a Value, path: &str, what: &str) -> &'a Value {
    value
        .pointer(path)
        .unwrap_or_else(|| panic!("{what}: no {path}"))
}

/// An optional list field: absent is empty, anything but a list is an error.
fn array<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    match value.get(field) {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(other) => panic!("{field} should be a list: {other}"),
    }
}

/// A YAML scalar as the string a container would see.
fn scalar(value: &Value, what: &str) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("{what}: expected a scalar, found {other}"),
    }
}

/// Lexically normalised: `.` dropped, `..` applied, trailing slashes gone.
fn clean(path: impl AsRef<Path>) -> PathBuf {
    let mut cleaned = PathBuf::new();
    for component in path.as_ref().components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                cleaned.pop();
            }
            other => cleaned.push(other),
        }
    }
    cleaned
}

fn walk(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", path.display()))
    {
        files.extend(walk(&entry.expect("a directory entry").path()));
    }
    files
}

/// Repository-relative paths named by `include_str!` / `include_bytes!` under `dir`.
fn embedded_files(dir: &Path) -> Vec<PathBuf> {
    let mut embedded = Vec::new();
    for file in walk(dir)
        .into_iter()
        .filter(|file| file.extension().is_some_and(|e| e == "rs"))
    {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", file.display()));
        for macro_name in ["include_str!(\"", "include_bytes!(\""] {
            for (position, _) in text.match_indices(macro_name) {
                let start = position + macro_name.len();
                let Some(length) = text[start..].find('"') else {
                    continue;
                };
                let target = file
                    .parent()
                    .expect("a source file has a directory")
                    .join(&text[start..start + length]);
                let target = clean(target);
                if let Ok(relative) = target.strip_prefix(repo()) {
                    embedded.push(relative.to_owned());
                }
            }
        }
    }
    embedded
}

// ---------------------------------------------------------------------------------------------
// The spool: with spool delivery mode the production default, every deployment must keep the
// spool's directory on storage that outlives the container, writable by the image's user.

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
