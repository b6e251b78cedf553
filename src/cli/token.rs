//! `msk-sidecar token`: prints one MSK IAM auth token for the current AWS credentials (or, with
//! `--elasticache`/`--memorydb`, the Redis IAM token of a cache).
//!
//! `--signing-time` fixes the clock so the output can be compared with AWS's signer libraries;
//! `--decode` prints the presigned URL and the expiry instead of the token.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{EXIT_CONFIG, TokenArgs, output};
use crate::auth::cache_token::{CacheTarget, sign_cache_token};
use crate::auth::credentials::{self, CredentialCache};
use crate::auth::token::{self, sign_token};
use crate::config::{keys, parse};

/// The signing region: `--region`, else `AWS_REGION`, else the MSK broker host names.
fn region(args: &TokenArgs, env: &BTreeMap<String, String>) -> Result<String, String> {
    if let Some(region) = &args.region {
        return parse::region(region).map_err(|e| format!("--region={region:?}: {e}"));
    }
    if let Some(region) = env.get(keys::AWS_REGION).filter(|r| !r.is_empty()) {
        return parse::region(region).map_err(|e| format!("AWS_REGION={region:?}: {e}"));
    }
    env.get(keys::KAFKA_BROKERS)
        .and_then(|brokers| brokers.split(',').find_map(|b| parse::region_from_msk_host(b.trim())))
        .ok_or_else(|| {
            "no region: pass --region, or set AWS_REGION or KAFKA_BROKERS to MSK broker names".to_string()
        })
}

fn signing_time(args: &TokenArgs) -> Result<SystemTime, String> {
    match &args.signing_time {
        None => Ok(SystemTime::now()),
        Some(text) => OffsetDateTime::parse(text, &Rfc3339).map(SystemTime::from).map_err(|e| {
            format!("--signing-time={text:?}: expected RFC 3339 such as 2024-01-02T03:04:05Z ({e})")
        }),
    }
}

/// Runs `token`.
pub fn main(env: &BTreeMap<String, String>, args: &TokenArgs) -> ExitCode {
    let (region, time) = match (region(args, env), signing_time(args)) {
        (Ok(region), Ok(time)) => (region, time),
        (region, time) => {
            for problem in [region.err(), time.err()].into_iter().flatten() {
                eprintln!("msk-sidecar: invalid configuration: {problem}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("msk-sidecar: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let loaded = runtime.block_on(async {
        let provider = credentials::default_provider(Some(region.clone())).await;
        CredentialCache::new().load(&provider).await
    });
    let credentials = match loaded {
        Ok(credentials) => credentials,
        Err(err) => {
            eprintln!("msk-sidecar: cannot load AWS credentials: {err}");
            return ExitCode::FAILURE;
        }
    };
    let cache = args
        .elasticache
        .as_ref()
        .map(|name| ("elasticache", name))
        .or(args.memorydb.as_ref().map(|name| ("memorydb", name)));
    if let Some((service, name)) = cache {
        let target = CacheTarget {
            service,
            // AWS keeps cache names in lower case, and the token must name it so.
            name: name.to_ascii_lowercase(),
            user: args.user.clone().unwrap_or_default(),
            serverless: args.serverless,
            region,
        };
        return match sign_cache_token(&credentials, &target, time) {
            Ok(token) => {
                output::line(&token);
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("msk-sidecar: {err}");
                ExitCode::FAILURE
            }
        };
    }
    match sign_token(&credentials, &region, time, &token::user_agent()) {
        Ok(token) if args.decode => {
            let expiry = UNIX_EPOCH + Duration::from_millis(u64::try_from(token.expires_at_ms).unwrap_or(0));
            output::line(&token.url);
            output::line(&format!(
                "expires: {} ({} ms)",
                crate::dlq::letter::rfc3339(expiry),
                token.expires_at_ms
            ));
            ExitCode::SUCCESS
        }
        Ok(token) => {
            output::line(&token.value);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("msk-sidecar: {err}");
            ExitCode::FAILURE
        }
    }
}
