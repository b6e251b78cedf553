//! MSK IAM authentication: SigV4 OAUTHBEARER tokens for the consumer and the DLQ producer.
//!
//! [`token`] signs (pure), [`credentials`] keeps AWS credentials fresh in a tokio task, and
//! [`TokenProvider`] is what librdkafka's token callback calls: it only reads the cached
//! credentials and signs, so it never blocks the client thread or waits on STS or IMDS.
//! [`policy`] prints the least-privilege IAM policy a configuration needs.

pub mod cache_token;
pub mod credentials;
pub mod policy;
pub mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use rdkafka::client::OAuthToken;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, KafkaAuth};
use crate::health::{Component, Health, Problem};
use crate::telemetry::metrics::Metrics;
use credentials::{CredentialCache, RefreshObserver};
pub use token::{Token, sign_token};

/// Principal name handed to librdkafka with each token (MSK derives the principal from the
/// signature, not from this).
const PRINCIPAL: &str = "msk-sidecar";

/// Signs tokens from cached credentials; shared by every Kafka client of the process.
pub struct TokenProvider {
    /// Fresh credentials.
    cache: Arc<CredentialCache>,
    /// Signing region.
    region: String,
    /// Readiness: the token problem (shared with the credential refresher).
    problem: Arc<Problem>,
    /// Token expiry and failure metrics.
    metrics: Metrics,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenProvider(region={})", self.region)
    }
}

impl TokenProvider {
    /// A provider signing for `region` with `cache`.
    pub fn new(cache: Arc<CredentialCache>, region: String, problem: Arc<Problem>, metrics: Metrics) -> Self {
        TokenProvider { cache, region, problem, metrics }
    }

    /// Signs a token now. Fails (and records why) when credentials are missing or about to
    /// expire; librdkafka asks again later.
    pub fn token(&self) -> Result<Token, String> {
        let now = SystemTime::now();
        let result = self.cache.usable(now).and_then(|credentials| {
            sign_token(&credentials, &self.region, now, &token::user_agent()).map_err(|e| e.to_string())
        });
        match &result {
            Ok(token) => {
                self.metrics.set_token_expiry(token.expires_at_ms / 1000);
                if self.problem.clear() {
                    tracing::info!(region = %self.region, "MSK IAM token signed again.");
                }
            }
            Err(error) => {
                self.metrics.auth_failed();
                if self.problem.set(format!("cannot sign an MSK IAM token: {error}")) {
                    tracing::error!(region = %self.region, error = %error, "Cannot sign an MSK IAM token.");
                }
            }
        }
        result
    }

    /// The token in librdkafka's form (the body of the OAUTHBEARER refresh callback).
    pub fn oauth_token(&self) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let token = self.token()?;
        Ok(OAuthToken {
            token: token.value,
            principal_name: PRINCIPAL.to_string(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

/// Reports credential loads into readiness and metrics.
struct Observer {
    /// Readiness: the token problem.
    problem: Arc<Problem>,
    /// Metrics.
    metrics: Metrics,
}

impl RefreshObserver for Observer {
    fn loaded(&self, _credentials: &Credentials) {
        self.problem.clear();
    }

    fn failed(&self, error: &str) {
        self.metrics.auth_failed();
        self.problem.set(format!("cannot load AWS credentials: {error}"));
    }
}

/// Starts credential refreshing when IAM auth is on; `None` for `KAFKA_AUTH=none`. Waits up to a
/// few seconds for the first credentials so the first token does not fail needlessly; without
/// them the sidecar still starts (not ready) and recovers when they appear.
pub async fn start(
    config: &Config,
    health: &Arc<Health>,
    metrics: &Metrics,
    cancel: CancellationToken,
) -> Option<Arc<TokenProvider>> {
    let kafka = config.kafka.as_ref().filter(|k| k.auth == KafkaAuth::MskIam)?;
    // Validation guarantees a region with msk-iam.
    let region = kafka.region.clone().unwrap_or_default();
    let provider = credentials::default_provider(Some(region.clone())).await;
    let cache = Arc::new(CredentialCache::new());
    let problem = Arc::new(Problem::new(health, Component::Token, ""));
    let observer = Arc::new(Observer { problem: problem.clone(), metrics: metrics.clone() });
    tokio::spawn(credentials::run_refresher(cache.clone(), provider, observer, cancel));
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while cache.usable(SystemTime::now()).is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!(
            "No AWS credentials after 5 s: starting anyway; the consumer connects once they load."
        );
    }
    Some(Arc::new(TokenProvider::new(cache, region, problem, metrics.clone())))
}
