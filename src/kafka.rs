//! librdkafka client settings and the client context shared by the consumer and the DLQ producer.
//!
//! One place decides the security protocol, applies the `SIDECAR_LIBRDKAFKA_*` pass-through and
//! routes librdkafka's own log lines into `tracing` with their severity.

use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::auth::TokenProvider;
use crate::config::{KafkaAuth, KafkaConfig};
use crate::health::{Component, Health, Problem};
use crate::telemetry::metrics::Metrics;

/// Base settings for every client: brokers, security, pass-through properties (last, so a user
/// can tune anything the sidecar does not own).
pub fn client_config(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.brokers.join(","));
    config.set("client.id", client_id);
    let protocol = match (kafka.auth, kafka.tls) {
        (KafkaAuth::MskIam, _) => "SASL_SSL",
        (KafkaAuth::None, true) => "SSL",
        (KafkaAuth::None, false) => "PLAINTEXT",
    };
    config.set("security.protocol", protocol);
    if kafka.auth == KafkaAuth::MskIam {
        config.set("sasl.mechanism", "OAUTHBEARER");
    }
    config.set_log_level(RDKafkaLogLevel::Info);
    config
}

/// Applies the user's pass-through properties.
pub fn apply_passthrough(config: &mut ClientConfig, kafka: &KafkaConfig) {
    for property in &kafka.librdkafka {
        config.set(&property.name, &property.value);
    }
}

/// Settings of the dead-letter producer: every replica acknowledges before a dead letter counts
/// as written, and the producer is idempotent (a retried send is not written twice, and dead
/// letters of one partition stay in order).
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = client_config(kafka, "msk-sidecar-dlq");
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // A dead letter holds its partition until acknowledged: send at once.
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .set("message.max.bytes", MESSAGE_MAX_BYTES.to_string());
    apply_passthrough(&mut config, kafka);
    config
}

/// The producer's `message.max.bytes` (librdkafka's default; brokers default to about the same).
pub const MESSAGE_MAX_BYTES: usize = 1_000_000;

/// What every client context shares: token signing, readiness, metrics, the fatal stop.
#[derive(Clone)]
pub struct Shared {
    /// Signs MSK IAM tokens (`None` without IAM auth).
    pub auth: Option<Arc<TokenProvider>>,
    /// Readiness: the brokers rejected our authentication (cleared when records arrive).
    pub authentication: Arc<Problem>,
    /// Whether that problem is that no token could be made (no credentials yet): then a token
    /// made later clears it, since an idle client may have nothing else to prove it fixed.
    pub token_failed: Arc<std::sync::atomic::AtomicBool>,
    /// A fatal client error: the process must stop and be restarted.
    pub fatal: Arc<Fatal>,
    /// Metrics (authentication failures).
    pub metrics: Metrics,
}

/// A fatal librdkafka error (a fenced static member, a broken idempotent producer): the client
/// cannot go on. The sidecar turns unready, stops (as on SIGTERM, as far as a broken client can)
/// and exits non-zero so that the orchestrator restarts it.
#[derive(Debug)]
pub struct Fatal {
    /// The first fatal error.
    reason: std::sync::OnceLock<String>,
    /// Stops the sidecar.
    stop: tokio_util::sync::CancellationToken,
    /// Readiness while it stops.
    problem: Problem,
}

impl Fatal {
    /// A fatal stop that cancels `stop`.
    pub fn new(health: &Arc<Health>, stop: tokio_util::sync::CancellationToken) -> Self {
        Fatal {
            reason: std::sync::OnceLock::new(),
            stop,
            problem: Problem::new(health, Component::Consumer, ""),
        }
    }

    /// Records a fatal error and stops the sidecar (once).
    pub fn raise(&self, reason: String) {
        if self.reason.set(reason.clone()).is_ok() {
            self.problem.set(format!("fatal Kafka client error, stopping: {reason}"));
            tracing::error!(error = %reason, "Fatal Kafka client error: stopping; the orchestrator should restart the sidecar.");
            self.stop.cancel();
        }
    }

    /// The fatal error, if one happened.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }
}

impl Shared {
    /// The OAUTHBEARER token for librdkafka.
    pub fn oauth_token(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let token = match &self.auth {
            Some(auth) => auth.oauth_token(),
            None => Err("OAUTHBEARER requested but KAFKA_AUTH is not msk-iam".into()),
        };
        if token.is_ok() && self.token_failed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.authentication.clear();
        }
        token
    }

    /// Routes a client error, recording authentication failures for readiness and stopping
    /// on a fatal error.
    pub fn error(&self, error: &KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(rdkafka::types::RDKafkaErrorCode::Authentication) => {
                self.metrics.auth_failed();
                // librdkafka reports a token it could not get as an authentication failure.
                let ours = reason.contains("Failed to acquire SASL OAUTHBEARER token");
                self.token_failed.store(ours, std::sync::atomic::Ordering::SeqCst);
                if self.authentication.set(format!("the brokers rejected authentication: {reason}")) {
                    tracing::error!(error = %error, reason, "Kafka authentication failed.");
                }
            }
            Some(rdkafka::types::RDKafkaErrorCode::Fatal) => self.fatal.raise(format!("{error}: {reason}")),
            _ => route_error(error, reason),
        }
    }
}

/// Client context of the dead-letter producer: logs, errors and tokens. The consumer has its
/// own context with rebalance handling on top of the same [`Shared`] parts.
#[derive(Clone)]
pub struct KafkaContext {
    /// Token signing, readiness, metrics.
    pub shared: Shared,
}

/// Routes one librdkafka log line into `tracing`.
pub fn route_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    // The shared pass-through settings reach the producer too, which notes consumer-only ones.
    let level = if facility == "CONFWARN" && message.contains("will be ignored by this") {
        RDKafkaLogLevel::Debug
    } else {
        level
    };
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, message, "librdkafka error.");
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", facility, message, "librdkafka warning.")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, message, "librdkafka notice.");
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", facility, message, "librdkafka debug.")
        }
    }
}

/// Routes a client error into `tracing`. Transport errors recover by themselves, so they are
/// warnings; the rest are errors.
pub fn route_error(error: &KafkaError, reason: &str) {
    let transient = matches!(error.rdkafka_error_code(), Some(code) if matches!(
        code,
        rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
            | rdkafka::types::RDKafkaErrorCode::AllBrokersDown
            | rdkafka::types::RDKafkaErrorCode::Resolve
    ));
    if transient {
        tracing::warn!(target: "librdkafka", error = %error, reason, "Kafka connection problem.");
    } else {
        tracing::error!(target: "librdkafka", error = %error, reason, "Kafka client error.");
    }
}

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        route_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.error(&error, reason);
    }

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.shared.oauth_token()
    }
}

/// The context also serves the group tools' consumer (`offsets`), which never subscribes.
impl rdkafka::consumer::ConsumerContext for KafkaContext {}
