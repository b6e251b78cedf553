//! Starting the real sidecar (`app::start`) in-process against the test bed.

use std::collections::BTreeMap;
use std::time::Duration;

use msk_sidecar::app::{self, Running};
use msk_sidecar::config::Config;
use tokio_util::sync::CancellationToken;

use super::bootstrap;

/// A sidecar running in this process.
pub struct Sidecar {
    /// Its handle (metrics, health, admin address).
    pub running: Option<Running>,
    /// Cancels it.
    pub shutdown: CancellationToken,
}

/// The environment of a test sidecar: the test bed's broker without auth, a short session
/// timeout (tansu joins take about half of it), fast retries, a delivery timeout that fits the
/// shortest drain, an ephemeral admin port.
pub fn env(topics: &str, group: &str, url: &str) -> BTreeMap<String, String> {
    [
        ("KAFKA_BROKERS", bootstrap()),
        ("KAFKA_TOPICS", topics.to_string()),
        ("KAFKA_CONSUMER_GROUP", group.to_string()),
        ("KAFKA_AUTH", "none".to_string()),
        ("SIDECAR_DELIVERY_URL", url.to_string()),
        ("SIDECAR_ADMIN_ADDR", "127.0.0.1:0".to_string()),
        ("SIDECAR_RETRY_INITIAL_BACKOFF", "50ms".to_string()),
        ("SIDECAR_RETRY_MAX_BACKOFF", "500ms".to_string()),
        ("SIDECAR_SHUTDOWN_GRACE", "10s".to_string()),
        // Shorter than the drain of the shortest grace a test uses (5 s: 3 s).
        ("SIDECAR_DELIVERY_TIMEOUT", "2500ms".to_string()),
        ("SIDECAR_LOG_FORMAT", "text".to_string()),
        ("SIDECAR_LIBRDKAFKA_SESSION_TIMEOUT_MS", "2000".to_string()),
        ("SIDECAR_LIBRDKAFKA_HEARTBEAT_INTERVAL_MS", "500".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Sidecar {
    /// Starts a sidecar with `env`.
    pub async fn start(env: &BTreeMap<String, String>) -> Sidecar {
        Self::start_with_file(env, None).await
    }

    /// Starts a sidecar with `env` and a TOML configuration file's text.
    pub async fn start_with_file(env: &BTreeMap<String, String>, toml: Option<&str>) -> Sidecar {
        msk_sidecar::telemetry::init_logging_with(
            msk_sidecar::config::LogFormat::Text,
            "warn,opentelemetry_sdk=off,opentelemetry_otlp=off",
        );
        let file = toml.map(|text| (std::path::Path::new("test.toml"), text));
        let config = Config::from_sources(env, file).unwrap_or_else(|err| panic!("test config: {err}"));
        let shutdown = CancellationToken::new();
        let running = app::start(config, shutdown.clone()).await.expect("sidecar starts");
        Sidecar { running: Some(running), shutdown }
    }

    /// The running handle.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// The admin base URL.
    pub fn admin(&self) -> String {
        format!("http://{}", self.running().admin_addr)
    }

    /// Shuts down gracefully and waits (bounded).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let running = self.running.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), running.wait())
            .await
            .expect("sidecar stops within 30s")
            .expect("sidecar stops cleanly");
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
