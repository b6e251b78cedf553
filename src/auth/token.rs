//! The MSK IAM auth token: a SigV4-presigned `kafka-cluster:Connect` URL, base64url-encoded.
//!
//! Pure: credentials, region and time in, token and expiry out; no I/O. The layout follows AWS's
//! signer libraries: `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`
//! presigned for service `kafka-cluster` with `X-Amz-Expires=900`, only `host` signed, the
//! payload hash of an empty body, the session token signed in the query, then an unsigned
//! `User-Agent` parameter. The expiry handed to librdkafka is `X-Amz-Date + 900 s`, capped at
//! the credentials' own expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use url::Url;

/// Lifetime of a presigned token, as MSK and the AWS signers use.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// SigV4 service name of MSK IAM.
const SERVICE: &str = "kafka-cluster";

/// The user agent appended to every token.
pub fn user_agent() -> String {
    format!("msk-sidecar/{}", env!("CARGO_PKG_VERSION"))
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// aws-sigv4 rejected the input (a region or credential it cannot encode).
    #[error("cannot sign the MSK IAM token: {0}")]
    Sign(String),
}

/// A signed token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The token handed to librdkafka (base64url without padding).
    pub value: String,
    /// The presigned URL inside it.
    pub url: String,
    /// When the token expires, ms since the epoch.
    pub expires_at_ms: i64,
}

/// Tokens are credentials: Debug shows only the expiry.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(expires_at_ms={})", self.expires_at_ms)
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Signs a token for `region` at `time`.
pub fn sign_token(
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    user_agent: &str,
) -> Result<Token, SignError> {
    let host = format!("kafka.{region}.amazonaws.com");
    let mut url = Url::parse(&format!("https://{host}/")).map_err(|e| SignError::Sign(e.to_string()))?;
    url.query_pairs_mut().append_pair("Action", "kafka-cluster:Connect");

    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SignError::Sign(e.to_string()))?
        .into();
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::once(("host", host.as_str())),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| SignError::Sign(e.to_string()))?;
    let (instructions, _signature) =
        sign(request, &params).map_err(|e| SignError::Sign(e.to_string()))?.into_parts();
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in instructions.params() {
            query.append_pair(name, value);
        }
        query.append_pair("User-Agent", user_agent);
    }
    let signed_at = truncate_to_seconds(time);
    let mut expires = signed_at + TOKEN_LIFETIME;
    if let Some(credentials_expiry) = credentials.expiry() {
        expires = expires.min(credentials_expiry);
    }
    Ok(Token {
        value: URL_SAFE_NO_PAD.encode(url.as_str()),
        url: url.to_string(),
        expires_at_ms: millis(expires),
    })
}

/// SigV4 dates have second resolution; the expiry follows `X-Amz-Date`.
fn truncate_to_seconds(time: SystemTime) -> SystemTime {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(session_token: Option<&str>, expiry: Option<SystemTime>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token.map(str::to_string),
            expiry,
            "test",
        )
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn query(token: &Token) -> Vec<(String, String)> {
        Url::parse(&token.url)
            .expect("url")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn token_is_the_base64url_of_a_presigned_connect_url() {
        let token = sign_token(&credentials(None, None), "eu-west-1", at(1_704_164_645), "msk-sidecar/test")
            .expect("token");
        let decoded =
            String::from_utf8(URL_SAFE_NO_PAD.decode(&token.value).expect("base64url")).expect("utf8");
        assert_eq!(decoded, token.url);
        assert!(!token.value.contains('='), "no padding");
        assert!(
            token.url.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&")
        );
        let q = query(&token);
        let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(
            get("X-Amz-Credential"),
            Some("AKIDEXAMPLE/20240102/eu-west-1/kafka-cluster/aws4_request")
        );
        assert_eq!(get("X-Amz-Date"), Some("20240102T030405Z"));
        assert_eq!(get("X-Amz-Expires"), Some("900"));
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host"));
        assert_eq!(get("X-Amz-Security-Token"), None);
        assert_eq!(q.last().map(|(k, v)| (k.as_str(), v.as_str())), Some(("User-Agent", "msk-sidecar/test")));
        assert_eq!(token.expires_at_ms, (1_704_164_645 + 900) * 1000);
    }

    #[test]
    fn session_token_is_in_the_query_and_signed() {
        let with = sign_token(&credentials(Some("SESSION"), None), "us-east-1", at(1_704_164_645), "ua")
            .expect("token");
        let without =
            sign_token(&credentials(None, None), "us-east-1", at(1_704_164_645), "ua").expect("token");
        let get = |t: &Token, name: &str| query(t).into_iter().find(|(k, _)| k == name).map(|(_, v)| v);
        assert_eq!(get(&with, "X-Amz-Security-Token").as_deref(), Some("SESSION"));
        assert_ne!(
            get(&with, "X-Amz-Signature"),
            get(&without, "X-Amz-Signature"),
            "the session token is signed"
        );
    }

    #[test]
    fn expiry_is_capped_at_the_credentials_expiry() {
        let soon = at(1_704_164_645 + 120);
        let token = sign_token(&credentials(Some("S"), Some(soon)), "us-east-1", at(1_704_164_645), "ua")
            .expect("token");
        assert_eq!(token.expires_at_ms, millis(soon));
    }

    #[test]
    fn every_input_changes_the_signature() {
        let base = || {
            sign_token(&credentials(Some("S"), None), "us-east-1", at(1_704_164_645), "ua").expect("token")
        };
        let signature =
            |t: &Token| query(t).into_iter().find(|(k, _)| k == "X-Amz-Signature").map(|(_, v)| v);
        let reference = signature(&base());
        assert_eq!(reference, signature(&base()), "deterministic");
        let variants = [
            sign_token(&credentials(Some("T"), None), "us-east-1", at(1_704_164_645), "ua"),
            sign_token(&credentials(Some("S"), None), "us-east-2", at(1_704_164_645), "ua"),
            sign_token(&credentials(Some("S"), None), "us-east-1", at(1_704_164_646), "ua"),
            sign_token(
                &Credentials::new("AKIDEXAMPLE", "other-secret", Some("S".into()), None, "t"),
                "us-east-1",
                at(1_704_164_645),
                "ua",
            ),
        ];
        for variant in variants {
            assert_ne!(signature(&variant.expect("token")), reference);
        }
        let other_agent = sign_token(&credentials(Some("S"), None), "us-east-1", at(1_704_164_645), "other")
            .expect("token");
        assert_eq!(signature(&other_agent), reference, "the user agent is not signed");
    }

    #[test]
    fn debug_hides_the_token() {
        let token =
            sign_token(&credentials(None, None), "us-east-1", at(1_704_164_645), "ua").expect("token");
        assert_eq!(format!("{token:?}"), format!("Token(expires_at_ms={})", token.expires_at_ms));
    }
}
