//! The bridge as a real process (the binary Cargo built), so that it can be killed with
//! SIGKILL or stopped with SIGTERM, and the broker as `deploy/kafka/local-kafka.sh` runs it.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use telecmi_bridge::Settings;

/// Runs `deploy/kafka/local-kafka.sh <action>`, which returns once the broker has stopped, or
/// once it answers metadata requests again.
pub fn local_kafka(action: &str) {
    // The script manages the broker on `KAFKA_PORT`; pointed at another one, it would stop
    // nothing and start a second broker, and the outage under test would never happen.
    let managed_port = std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".to_owned());
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_default();
    assert!(
        bootstrap
            .split(',')
            .any(|server| server.trim().rsplit(':').next() == Some(managed_port.as_str())),
        "KAFKA_BOOTSTRAP_SERVERS={bootstrap} is not the broker local-kafka.sh manages (port \
         {managed_port}): set KAFKA_PORT and KAFKA_DATA_DIR to that broker's"
    );
    let script = repo().join("deploy/kafka/local-kafka.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(action)
        .status()
        .expect("run local-kafka.sh");
    assert!(status.success(), "local-kafka.sh {action} failed");
}

fn repo() -> PathBuf {
    crate::repository().to_path_buf()
}

/// The bridge binary Cargo built for the suite that is running: a suite runs from
/// `target/<profile>/deps/`, and Cargo puts the package's binaries one level up.
fn bridge_binary() -> PathBuf {
    let suite = std::env::current_exe().expect("the test binary's path");
    let binary = suite
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join(format!("telecmi-bridge{}", std::env::consts::EXE_SUFFIX)))
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps/", suite.display()));
    assert!(
        binary.is_file(),
        "{} is missing: run the suite with `cargo test`",
        binary.display()
    );
    binary
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// One bridge configuration, started and restarted on the same ports and spool.
pub struct Bridge {
    pub address: SocketAddr,
    pub admin_address: SocketAddr,
    config_file: PathBuf,
    log_file: PathBuf,
    /// Variables set for the process, e.g. secrets that must not be written to a file.
    env: Vec<(String, String)>,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Bridge {
    /// Writes `settings` (listeners replaced by free ports) into `dir` and starts the bridge.
    pub async fn start(settings: Settings, dir: &Path) -> Self {
        Self::start_with_env(settings, dir, &[]).await
    }

    /// As `start`, with environment variables on top of the written settings.
    pub async fn start_with_env(mut settings: Settings, dir: &Path, env: &[(&str, &str)]) -> Self {
        settings.server.listen = free_port();
        settings.server.admin_listen = free_port();
        let config_file = dir.join("bridge.toml");
        std::fs::write(&config_file, settings.to_redacted_toml()).expect("write config");
        let mut bridge = Self {
            address: settings.server.listen,
            admin_address: settings.server.admin_listen,
            config_file,
            log_file: dir.join("bridge.log"),
            env: env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            child: None,
            http: reqwest::Client::new(),
        };
        bridge.restart().await;
        bridge
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/telecmi", self.address)
    }

    pub fn log_path(&self) -> &Path {
        &self.log_file
    }

    /// Starts the process again (same ports, same spool) and waits for `/healthz`.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the bridge is still running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .expect("log file");
        let child = Command::new(bridge_binary())
            .arg("--config-dir")
            .arg(repo().join("config"))
            .arg("--config")
            .arg(&self.config_file)
            .env_remove("TELECMI_BRIDGE_PROFILE")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start the bridge");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self
                .http
                .get(format!("http://{}/healthz", self.admin_address))
                .send()
                .await;
            if health.is_ok_and(|response| response.status() == 200) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok()?) {
                panic!(
                    "the bridge exited with {status}; log: {}",
                    self.log_file.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the bridge did not come up; log: {}",
                self.log_file.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no drain, no flush, no clean close of the spool.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("a running bridge");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// SIGTERM, then waits for the process to exit by itself.
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("a running bridge");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the bridge did not exit within {within:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The admin `/readyz`: status and body, or `None` while the process is not answering.
    pub async fn readiness(&self) -> Option<(u16, Value)> {
        let response = self
            .http
            .get(format!("http://{}/readyz", self.admin_address))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.ok()?))
    }

    /// Waits (up to 60 s) until the admin `/readyz` satisfies `condition`; returns how long.
    pub async fn wait_for_readiness(
        &self,
        what: &str,
        condition: impl Fn(u16, &Value) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let readiness = self.readiness().await;
            if readiness
                .as_ref()
                .is_some_and(|(status, body)| condition(*status, body))
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what}: not within 60 s; /readyz: {readiness:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test removes its temporary directory: show the bridge's last words first.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            // Under load the tail is all per-request lines; what the bridge said about Kafka,
            // the spool and itself is in the others.
            let own: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|line| !line.contains("\"request_id\""))
                .collect();
            eprintln!("--- bridge log outside requests, last 80 lines ---");
            for line in &own[own.len().saturating_sub(80)..] {
                eprintln!("{line}");
            }
            eprintln!("--- bridge log, last 20 lines ---");
            for line in &lines[lines.len().saturating_sub(20)..] {
                eprintln!("{line}");
            }
        }
    }
}
