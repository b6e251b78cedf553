//! The ElastiCache / MemoryDB IAM auth token: the password of a Redis `AUTH <user> <token>`, a
//! SigV4-presigned `connect` request for the cache, valid 15 minutes for new connections.
//!
//! Pure: credentials, cache, region and time in, token out; no I/O. The layout is AWS's (its
//! Java and Python examples, botocore's query signer): `GET http://<cache name>/?Action=connect&
//! User=<user>[&ResourceType=ServerlessCache]` presigned for service `elasticache` (`memorydb`
//! for MemoryDB) with `X-Amz-Expires=900`, only `host` signed, the payload hash of an empty
//! body; the operation parameters first, then `X-Amz-Algorithm`, `X-Amz-Credential`,
//! `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Security-Token`,
//! `X-Amz-Signature`, each value percent-encoded as SigV4 does; the token is that URL without
//! its `http://`. A token is signed for each new connection (an HMAC, no network call); the
//! credentials come from the cache the background refresher keeps.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;

use super::token::SignError;

/// Lifetime of a token for new connections.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// Which cache a token is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheTarget {
    /// `elasticache` or `memorydb`.
    pub service: &'static str,
    /// The replication group, serverless cache or MemoryDB cluster name.
    pub name: String,
    /// The Redis user the token authenticates.
    pub user: String,
    /// An ElastiCache Serverless cache (`ResourceType=ServerlessCache`).
    pub serverless: bool,
    /// The signing region.
    pub region: String,
}

/// `text` percent-encoded as SigV4 and botocore do: letters, digits and `-_.~` kept.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Signs the token of `target` at `time`.
pub fn sign_cache_token(
    credentials: &Credentials,
    target: &CacheTarget,
    time: SystemTime,
) -> Result<String, SignError> {
    let mut operation = vec![("Action", "connect"), ("User", target.user.as_str())];
    if target.serverless {
        operation.push(("ResourceType", "ServerlessCache"));
    }
    let query: Vec<String> = operation.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    let url = format!("http://{}/?{}", target.name, query.join("&"));
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&target.region)
        .name(target.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SignError::Sign(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "GET",
        &url,
        std::iter::once(("host", target.name.as_str())),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| SignError::Sign(e.to_string()))?;
    let (instructions, _signature) =
        sign(request, &params).map_err(|e| SignError::Sign(e.to_string()))?.into_parts();
    let signed: Vec<(&str, &str)> = instructions.params().iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let mut parts = query;
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ] {
        if let Some((_, value)) = signed.iter().find(|(k, _)| *k == name) {
            parts.push(format!("{name}={}", encode(value)));
        }
    }
    Ok(format!("{}/?{}", target.name, parts.join("&")))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn target(serverless: bool) -> CacheTarget {
        CacheTarget {
            service: "elasticache",
            name: "my-cache".into(),
            user: "app-user".into(),
            serverless,
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn the_token_is_the_presigned_url_without_its_scheme() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", Some("tok+en/=".into()), None, "test");
        let token =
            sign_cache_token(&credentials, &target(true), UNIX_EPOCH + Duration::from_secs(1_700_000_000))
                .expect("signed");
        assert!(token.starts_with("my-cache/?Action=connect&User=app-user&ResourceType=ServerlessCache&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Felasticache%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=tok%2Ben%2F%3D&X-Amz-Signature="), "{token}");
        let other =
            sign_cache_token(&credentials, &target(false), UNIX_EPOCH + Duration::from_secs(1_700_000_000))
                .expect("signed");
        assert!(!other.contains("ResourceType"));
        assert_ne!(token.rsplit('=').next(), other.rsplit('=').next(), "the parameters are signed");
    }
}
