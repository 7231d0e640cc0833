//! What the checks share: placeholders, loading settings the way the binary does, running
//! the binary, and reading the repository's files and YAML values.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use figment::Jail;
use serde::Deserialize;
use serde_json::Value;
use telecmi_bridge::config::{ENV_PREFIX, Settings, Sources};

use crate::deployment::*;

/// Stands in for secrets and `${...}` interpolations: 32 characters, like a real token.
pub(crate) const PLACEHOLDER_TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// The variables compose interpolates into `deploy/compose.yaml`, as a user would export them.
pub(crate) const COMPOSE_VARIABLES: [(&str, &str); 1] =
    [("TELECMI_BRIDGE_TOKEN", PLACEHOLDER_TOKEN)];
/// Variables with the prefix that select files instead of setting keys (see `src/config/load.rs`).
pub(crate) const NOT_KEYS: [&str; 2] = ["PROFILE", "CONFIG_DIR"];
/// Free-form tables: their keys are not in the defaults, so any key below them is accepted
/// here (`Settings::load` in `the_deployed_configurations_load` still checks the values).
pub(crate) const TABLE_KEYS: [&str; 3] = [
    "kafka.properties",
    "routing.event_topics",
    "routing.cdr_topics",
];
pub(crate) const PROFILE: &str = "production";
pub(crate) const BRIDGE_SERVICE: &str = "telecmi-bridge";
pub(crate) const KAFKA_SERVICE: &str = "kafka";

// ---------------------------------------------------------------------------------------------
// Loading the environment the way the binary does.

/// `Settings::load` as the container would run it: only `env` in the environment, and the
/// configuration directory the image installs (`/app/config`) mapped to the repository's
/// `config/` (`the_image_installs_the_configuration_where_the_binary_looks` checks that they
/// are the same files).
pub(crate) fn load_settings(env: &BTreeMap<String, String>) -> Result<Settings, String> {
    let mut outcome = None;
    let _environment = environment_lock();
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

pub(crate) fn compose_settings() -> Settings {
    let env = deploy()
        .compose_container_env(&COMPOSE_VARIABLES, true)
        .unwrap_or_else(|error| panic!("deploy/compose.yaml: {error}"));
    load_settings(&env).unwrap_or_else(|error| {
        panic!("the compose environment is not a valid configuration: {error}\n{env:#?}")
    })
}

pub(crate) fn kubernetes_settings() -> Settings {
    let env = deploy().kubernetes_container_env(&format!(r#"["{PLACEHOLDER_TOKEN}"]"#));
    load_settings(&env).unwrap_or_else(|error| {
        panic!("the Kubernetes environment is not a valid configuration: {error}\n{env:#?}")
    })
}

/// `TELECMI_BRIDGE_KAFKA__BOOTSTRAP_SERVERS` → `["kafka", "bootstrap_servers"]`, as figment's
/// `Env::prefixed(..).split("__")` reads it; `None` for names that are not keys.
pub(crate) fn variable_key(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if NOT_KEYS.contains(&rest) {
        return None;
    }
    Some(rest.to_lowercase().split("__").map(str::to_owned).collect())
}

pub(crate) fn key_exists(defaults: &Value, key: &[String]) -> bool {
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

#[derive(Debug)]
pub(crate) struct PublishedPort {
    pub(crate) host_ip: Option<String>,
    pub(crate) target: u16,
}

pub(crate) fn compose_ports(service: &Value) -> Vec<PublishedPort> {
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

pub(crate) fn parse_port(text: &str) -> u16 {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a single port number"))
}

/// Container port names to numbers.
pub(crate) fn container_ports(container: &Value) -> BTreeMap<String, u16> {
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
pub(crate) fn resolve_port(port: &Value, named: &BTreeMap<String, u16>) -> Option<u16> {
    match port {
        Value::Number(number) => number.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => named.get(name).copied().or_else(|| name.parse().ok()),
        _ => None,
    }
}

pub(crate) fn pre_stop_sleep(container: &Value) -> Duration {
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

/// Go durations as compose writes them (`30s`, `1m30s`, `1.5h`), by Go's own rules.
pub(crate) fn parse_go_duration(text: &str) -> Duration {
    let nanoseconds = go_parse_duration::parse_duration(text)
        .unwrap_or_else(|error| panic!("duration {text:?}: {error:?}"));
    let nanoseconds =
        u64::try_from(nanoseconds).unwrap_or_else(|_| panic!("duration {text:?} is negative"));
    Duration::from_nanos(nanoseconds)
}

// ---------------------------------------------------------------------------------------------
// Running things.

/// The bridge binary with only `env` in its environment, the repository root standing in for
/// the image's WORKDIR and the repository's `config/` for the image's configuration directory.
pub(crate) fn run_binary(
    arguments: &[&str],
    env: &BTreeMap<String, String>,
) -> std::process::Output {
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
pub(crate) fn run_healthcheck(admin: SocketAddr) -> bool {
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
    // `bash` is looked up on PATH, read while no jail has emptied the process environment.
    let path = {
        let _environment = environment_lock();
        std::env::var_os("PATH").unwrap_or_default()
    };
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(&env)
        .env("PATH", path)
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
    status.success()
}

/// Held while a test replaces the process environment (a figment jail in `load_settings`) or
/// reads it, since the tests run on threads of one process.
fn environment_lock() -> MutexGuard<'static, ()> {
    static ENVIRONMENT: Mutex<()> = Mutex::new(());
    ENVIRONMENT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Files and values.

pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn relative(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("{} has no file name", path.display()))
}

pub(crate) fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The `*.yaml` / `*.yml` files directly in a directory of the repository, sorted.
pub(crate) fn yaml_files(relative: &str) -> Vec<PathBuf> {
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

pub(crate) fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{relative}: invalid YAML: {error}"))
        })
        .filter(|document| !document.is_null())
        .collect()
}

pub(crate) fn single_yaml_document(relative: &str) -> Value {
    let mut documents = yaml_documents(relative);
    assert_eq!(documents.len(), 1, "{relative}: expected one YAML document");
    documents.remove(0)
}

pub(crate) fn pointer<'a>(value: &'a Value, path: &str, what: &str) -> &'a Value {
    value
        .pointer(path)
        .unwrap_or_else(|| panic!("{what}: no {path}"))
}

/// An optional list field: absent is empty, anything but a list is an error.
pub(crate) fn array<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    match value.get(field) {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(other) => panic!("{field} should be a list: {other}"),
    }
}

/// A YAML scalar as the string a container would see.
pub(crate) fn scalar(value: &Value, what: &str) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("{what}: expected a scalar, found {other}"),
    }
}

/// The manifests, relative to the repository, of the workspace members and path dependencies
/// that the root `Cargo.toml` names.
pub(crate) fn local_manifests() -> Vec<PathBuf> {
    let manifest: toml::Table = read("Cargo.toml")
        .parse()
        .unwrap_or_else(|error| panic!("Cargo.toml: {error}"));
    let members = manifest
        .get("workspace")
        .and_then(|workspace| workspace.get("members"))
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_str);
    let paths = ["dependencies", "dev-dependencies", "build-dependencies"]
        .into_iter()
        .filter_map(|table| manifest.get(table).and_then(toml::Value::as_table))
        .flat_map(|table| table.values())
        .filter_map(|dependency| dependency.get("path").and_then(toml::Value::as_str));
    let directories: BTreeSet<PathBuf> = members.chain(paths).map(clean).collect();
    directories
        .into_iter()
        .map(|directory| directory.join("Cargo.toml"))
        .collect()
}

/// Lexically normalised: `.` dropped, `..` applied, trailing slashes gone.
pub(crate) fn clean(path: impl AsRef<Path>) -> PathBuf {
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

pub(crate) fn walk(path: &Path) -> Vec<PathBuf> {
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
pub(crate) fn embedded_files(dir: &Path) -> Vec<PathBuf> {
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

mod tests {
    use std::time::Duration;

    use super::parse_go_duration;

    #[test]
    fn go_durations_as_go_parses_them() {
        assert_eq!(parse_go_duration("30s"), Duration::from_secs(30));
        assert_eq!(parse_go_duration("1m30s"), Duration::from_secs(90));
        assert_eq!(parse_go_duration("300ms"), Duration::from_millis(300));
        assert_eq!(parse_go_duration("1.5h"), Duration::from_secs(5_400));
        assert_eq!(parse_go_duration("2h45m"), Duration::from_secs(9_900));
    }

    #[test]
    #[should_panic(expected = "missing unit")]
    fn a_duration_without_a_unit_is_refused() {
        parse_go_duration("30");
    }
}
