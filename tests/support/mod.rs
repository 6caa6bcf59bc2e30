//! Black-box test support: start the proxy on port 0 from a YAML configuration, with a fake
//! Amplitude or Flagsmith upstream (zero2prod's `spawn_app` pattern).
#![allow(dead_code)]

pub mod fake_amplitude;
pub mod fake_analytics;
pub mod fake_flagsmith;
pub mod redis_server;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evaluation_proxy::app::{self, RunningApp};
use evaluation_proxy::config::Config;

/// A running proxy and the temporary directory holding its configuration and flag files.
pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub running: Option<RunningApp>,
}

impl TestApp {
    /// Writes `files` (name, content) and `config.yaml` into a fresh directory and starts the
    /// proxy from it. Ports in the YAML should be 0.
    pub async fn spawn(config_yaml: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config_yaml).unwrap();
        let loaded = Config::load_from(Some(&path), &HashMap::new()).expect("valid test config");
        let running = app::start(loaded.config).await.expect("proxy starts");
        Self {
            addr: running.addr,
            metrics_addr: running.metrics_addr,
            client: reqwest::Client::builder().no_gzip().build().unwrap(),
            dir,
            running: Some(running),
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A path inside the app's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// GET with the deployment key.
    pub fn get(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .header("Authorization", format!("Api-Key {key}"))
    }

    /// POST with the deployment key.
    pub fn post(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("Authorization", format!("Api-Key {key}"))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let client = self.client.clone();
        let url = self.url("/readyz");
        eventually(Duration::from_secs(10), || {
            let client = client.clone();
            let url = url.clone();
            async move {
                client
                    .get(&url)
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            }
        })
        .await;
    }

    /// Shuts down and waits for the proxy to stop.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown();
            running.stopped().await;
        }
    }
}

/// Polls `check` every 20 ms until it returns true; panics after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within {timeout:?}");
}

/// The example flags of the quick start.
pub fn example_flags() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flags.json"))
        .unwrap()
}
