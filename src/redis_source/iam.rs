//! `REDIS_AUTH=iam`: the password of each new Redis connection is an ElastiCache / MemoryDB IAM
//! token ([`crate::auth::cache_token`]), signed from credentials a background refresher keeps
//! (the same chain and cache as the MSK token's). A token that cannot be signed (no credentials
//! yet) fails the connection, which the source retries and shows on `/ready`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use tokio_util::sync::CancellationToken;

use super::link::Password;
use crate::auth::cache_token::{CacheTarget, sign_cache_token};
use crate::auth::credentials::{self, CredentialCache, RefreshObserver};
use crate::config::RedisIamConfig;
use crate::health::{Component, Health, Problem};

/// Signs connection passwords for one cache.
pub struct IamPassword {
    cache: Arc<CredentialCache>,
    target: CacheTarget,
}

impl Password for IamPassword {
    fn password(&self) -> Result<String, String> {
        let credentials = self.cache.usable(SystemTime::now())?;
        sign_cache_token(&credentials, &self.target, SystemTime::now()).map_err(|err| err.to_string())
    }
}

/// Shows credential loads on `/ready` (`token (redis)`).
struct Observer(Problem);

impl RefreshObserver for Observer {
    fn loaded(&self, _credentials: &Credentials) {
        self.0.clear();
    }

    fn failed(&self, error: &str) {
        self.0.set(format!("cannot load AWS credentials for the Redis IAM token: {error}"));
    }
}

/// Starts the credential refresher and returns the signer; waits a few seconds for the first
/// credentials so the first connection does not fail needlessly.
pub async fn start(
    config: &RedisIamConfig,
    health: &Arc<Health>,
    stop: CancellationToken,
) -> Arc<IamPassword> {
    let provider = credentials::default_provider(Some(config.region.clone())).await;
    let cache = Arc::new(CredentialCache::new());
    let observer = Arc::new(Observer(Problem::new(health, Component::Token, "redis")));
    tokio::spawn(credentials::run_refresher(cache.clone(), provider, observer, stop));
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while cache.usable(SystemTime::now()).is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!("No AWS credentials yet for the Redis IAM token: connecting once they appear.");
    }
    let target = CacheTarget {
        service: config.service,
        name: config.name.clone(),
        user: config.user.clone(),
        serverless: config.serverless,
        region: config.region.clone(),
    };
    Arc::new(IamPassword { cache, target })
}
