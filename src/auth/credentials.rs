//! AWS credentials for signing: the SDK's default chain, cached and refreshed ahead of expiry by
//! a tokio task, so librdkafka's token callback only ever reads memory.
//!
//! The chain is the AWS SDK's (environment, profile, web identity for EKS IRSA, ECS container
//! credentials and EKS Pod Identity, IMDS). For IRSA the SDK would put a timestamp in the STS
//! session name, which changes the principal at every refresh and breaks MSK
//! re-authentication ("Cannot change principals during re-authentication"); the sidecar uses
//! a fixed session name unless `AWS_ROLE_SESSION_NAME` says otherwise.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::web_identity_token::{StaticConfiguration, WebIdentityTokenCredentialsProvider};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// STS session name used for web identity (IRSA) when none is configured.
pub const SESSION_NAME: &str = "msk-sidecar";

/// Credentials closer to expiry than this (or than a quarter of their lifetime, for short-lived
/// ones) are refreshed before signing.
pub const MIN_REMAINING: Duration = Duration::from_secs(60);

/// Refresh this long before expiry (or at half the lifetime, whichever is later).
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// Credentials without expiry (environment, profile keys) are re-read this often.
const STATIC_RECHECK: Duration = Duration::from_secs(900);

/// The default credentials chain, with a fixed STS session name for web identity.
pub async fn default_provider(region: Option<String>) -> SharedCredentialsProvider {
    let region = region.map(aws_config::Region::new);
    let token_file = std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE");
    let role_arn = std::env::var("AWS_ROLE_ARN").ok();
    let session_name_set = std::env::var_os("AWS_ROLE_SESSION_NAME").is_some();
    if let (Some(token_file), Some(role_arn), false) = (token_file, role_arn, session_name_set) {
        let provider_config = aws_config::provider_config::ProviderConfig::default()
            .with_behavior_version(Some(BehaviorVersion::latest()))
            .with_region(region.clone())
            .load_default_region()
            .await;
        let provider = WebIdentityTokenCredentialsProvider::builder()
            .configure(&provider_config)
            .static_configuration(StaticConfiguration {
                web_identity_token_file: token_file.into(),
                role_arn,
                session_name: SESSION_NAME.to_string(),
            })
            .build();
        return SharedCredentialsProvider::new(provider);
    }
    let mut chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder();
    if let Some(region) = region {
        chain = chain.region(region);
    }
    SharedCredentialsProvider::new(chain.build().await)
}

/// The current credentials, shared by the refresher and the token callbacks.
#[derive(Debug, Default)]
pub struct CredentialCache {
    /// Latest credentials and when they were loaded (`None` until the first successful load).
    current: RwLock<Option<(Credentials, SystemTime)>>,
    /// Why the last load failed, for error messages.
    last_error: Mutex<Option<String>>,
    /// Wakes the refresher early (credentials about to expire).
    refresh: Notify,
}

impl CredentialCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache holding `credentials` (tests, `token` subcommand).
    pub fn with(credentials: Credentials) -> Self {
        let cache = Self::default();
        cache.store(credentials);
        cache
    }

    fn store(&self, credentials: Credentials) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((credentials, SystemTime::now()));
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn fail(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
    }

    /// Credentials usable for signing now: present and not about to expire. Otherwise asks the
    /// refresher to refresh and says why.
    pub fn usable(&self, now: SystemTime) -> Result<Credentials, String> {
        let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let last_error = || {
            self.last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_else(|| "not loaded yet".to_string())
        };
        match current {
            None => Err(format!("no AWS credentials: {}", last_error())),
            Some((credentials, loaded_at)) => match credentials.expiry() {
                Some(expiry) => {
                    let lifetime = expiry.duration_since(loaded_at).unwrap_or(Duration::ZERO);
                    let margin = MIN_REMAINING.min(lifetime / 4);
                    if expiry <= now + margin {
                        self.refresh.notify_one();
                        Err(format!(
                            "AWS credentials expire in less than {}s and are being refreshed",
                            margin.as_secs()
                        ))
                    } else {
                        Ok(credentials)
                    }
                }
                None => Ok(credentials),
            },
        }
    }

    /// Loads credentials once (used before the first token and by `msk-sidecar token`).
    pub async fn load(&self, provider: &SharedCredentialsProvider) -> Result<Credentials, String> {
        match provider.provide_credentials().await {
            Ok(credentials) => {
                self.store(credentials.clone());
                Ok(credentials)
            }
            Err(err) => {
                let message = describe(&err);
                self.fail(message.clone());
                Err(message)
            }
        }
    }
}

/// A provider error in one line (the SDK's messages nest their sources).
fn describe(err: &aws_credential_types::provider::error::CredentialsError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// When to refresh credentials that expire at `expiry`.
pub fn refresh_delay(now: SystemTime, expiry: Option<SystemTime>) -> Duration {
    match expiry {
        None => STATIC_RECHECK,
        Some(expiry) => {
            let remaining = expiry.duration_since(now).unwrap_or(Duration::ZERO);
            remaining.saturating_sub(REFRESH_AHEAD).max(remaining / 2).max(Duration::from_secs(1))
        }
    }
}

/// Observes the refresher (readiness and metrics are wired by the caller).
pub trait RefreshObserver: Send + Sync {
    /// Credentials were loaded.
    fn loaded(&self, credentials: &Credentials);
    /// Loading failed.
    fn failed(&self, error: &str);
}

/// Keeps the cache fresh until `cancel`: loads, sleeps until shortly before expiry (or until a
/// signer asks), loads again; retries failures with backoff up to 30 s.
pub async fn run_refresher(
    cache: std::sync::Arc<CredentialCache>,
    provider: SharedCredentialsProvider,
    observer: std::sync::Arc<dyn RefreshObserver>,
    cancel: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let delay = match cache.load(&provider).await {
            Ok(credentials) => {
                if failures > 0 {
                    tracing::info!("AWS credentials loaded again.");
                }
                failures = 0;
                observer.loaded(&credentials);
                refresh_delay(SystemTime::now(), credentials.expiry())
            }
            Err(error) => {
                failures += 1;
                observer.failed(&error);
                if failures == 1 || failures.is_power_of_two() {
                    tracing::error!(error = %error, failures, "Cannot load AWS credentials: IAM tokens cannot be signed.");
                }
                Duration::from_secs(1 << failures.min(5)).min(Duration::from_secs(30))
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cache.refresh.notified() => {}
            () = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_happens_well_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(refresh_delay(now, None), STATIC_RECHECK);
        assert_eq!(refresh_delay(now, Some(now + Duration::from_secs(3600))), Duration::from_secs(3300));
        assert_eq!(
            refresh_delay(now, Some(now + Duration::from_secs(120))),
            Duration::from_secs(60),
            "half the life"
        );
        assert_eq!(refresh_delay(now, Some(now - Duration::from_secs(5))), Duration::from_secs(1));
    }

    #[test]
    fn credentials_about_to_expire_are_refused() {
        let now = SystemTime::now();
        let hour = CredentialCache::with(Credentials::new(
            "A",
            "S",
            None,
            Some(now + Duration::from_secs(3600)),
            "t",
        ));
        assert!(hour.usable(now + Duration::from_secs(3000)).is_ok());
        let err = hour.usable(now + Duration::from_secs(3550)).expect_err("about to expire");
        assert!(err.contains("being refreshed"), "{err}");
        // Short-lived credentials keep a quarter of their life as margin, not a full minute.
        let short =
            CredentialCache::with(Credentials::new("A", "S", None, Some(now + Duration::from_secs(40)), "t"));
        assert!(short.usable(now + Duration::from_secs(20)).is_ok());
        assert!(short.usable(now + Duration::from_secs(31)).is_err());
        let static_keys = CredentialCache::with(Credentials::new("A", "S", None, None, "t"));
        assert!(static_keys.usable(now + Duration::from_secs(86_400)).is_ok());
        assert!(CredentialCache::new().usable(now).unwrap_err().contains("no AWS credentials"));
    }
}
