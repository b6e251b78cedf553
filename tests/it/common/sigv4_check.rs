//! Checks an MSK IAM auth token the way MSK does, written from the SigV4 description and with
//! no SigV4 library, so that it is an independent second opinion on the sidecar's signer.
//!
//! The token is the base64url (no padding) encoding of a SigV4 presigned URL:
//! `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=
//! AWS4-HMAC-SHA256&X-Amz-Credential=<akid>%2F<date>%2F<region>%2Fkafka-cluster%2Faws4_request&
//! X-Amz-Date=<yyyymmddThhmmssZ>&X-Amz-Expires=900&X-Amz-SignedHeaders=host
//! [&X-Amz-Security-Token=..]&X-Amz-Signature=<hex>&User-Agent=<ua>` (User-Agent is added after
//! signing). The check recomputes the signature from the test key's secret. The token reaches
//! the broker inside an OAUTHBEARER client message, which [`bearer_token`] unwraps.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

/// How far in the future a signing time may be (clock skew MSK tolerates).
const MAX_FUTURE: Duration = Duration::from_secs(5 * 60);

/// Longest presigned lifetime MSK accepts, in seconds.
const MAX_EXPIRES: u64 = 900;

/// An access key the gateway knows: its secret to check signatures, and the session token a
/// token signed with it must carry (temporary credentials) or must not carry (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestKey {
    /// `AKID...`: names the key in the credential scope.
    pub access_key_id: String,
    /// The secret the signature is computed from.
    pub secret_access_key: String,
    /// The session token expected in `X-Amz-Security-Token`.
    pub session_token: Option<String>,
    /// The IAM principal the key belongs to (a role has many temporary keys); `None`: the key.
    pub principal: Option<String>,
    /// When temporary credentials expire: later tokens are rejected and sessions end there.
    pub expires: Option<SystemTime>,
}

impl TestKey {
    /// A long-term key (no session token).
    pub fn new(access_key_id: &str, secret_access_key: &str) -> TestKey {
        TestKey {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            session_token: None,
            principal: None,
            expires: None,
        }
    }

    /// Marks the key as expiring at `at`.
    pub fn expiring_at(mut self, at: SystemTime) -> TestKey {
        self.expires = Some(at);
        self
    }

    /// Marks the key as temporary credentials of `role`, like keys STS issues at each refresh.
    pub fn of_role(mut self, role: &str) -> TestKey {
        self.principal = Some(role.to_string());
        self
    }

    /// The same key as temporary credentials with `token`.
    pub fn with_session_token(mut self, token: &str) -> TestKey {
        self.session_token = Some(token.to_string());
        self
    }
}

/// A token that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Which known key signed it.
    pub access_key_id: String,
    /// The principal behind the key (its role, else the key itself).
    pub principal: String,
    /// When the session ends: `X-Amz-Date + X-Amz-Expires`, or the key's own expiry if earlier
    /// (temporary credentials cannot outlive themselves).
    pub expiry: SystemTime,
}

/// Decodes a token into its presigned URL.
pub fn decode_token(token: &str) -> Result<String, String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|err| format!("token is not base64url: {err}"))?;
    String::from_utf8(bytes).map_err(|_| "token is not a UTF-8 URL".to_string())
}

/// Encodes a presigned URL as a token (for tests that alter a URL).
pub fn encode_token(url: &str) -> String {
    URL_SAFE_NO_PAD.encode(url)
}

/// The token of an OAUTHBEARER client first message (RFC 7628):
/// `n,[a=authzid],` `\x01` then `key=value\x01` pairs (one is `auth=Bearer <token>`) then `\x01`.
pub fn bearer_token(message: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(message).map_err(|_| "OAUTHBEARER message is not UTF-8".to_string())?;
    let body = text.strip_suffix("\x01\x01").ok_or("OAUTHBEARER message does not end with \\x01\\x01")?;
    let mut parts = body.split('\x01');
    let gs2 = parts.next().unwrap_or_default();
    if !gs2.starts_with("n,") || !gs2[2..].ends_with(',') {
        return Err(format!("OAUTHBEARER message has a bad GS2 header {gs2:?}"));
    }
    for pair in parts {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| format!("OAUTHBEARER pair {pair:?} has no ="))?;
        if key == "auth" {
            let (scheme, token) = value.split_once(' ').ok_or("OAUTHBEARER auth value has no scheme")?;
            if !scheme.eq_ignore_ascii_case("Bearer") || token.trim().is_empty() {
                return Err(format!("OAUTHBEARER auth value is not \"Bearer <token>\" (scheme {scheme:?})"));
            }
            return Ok(token.trim().to_string());
        }
    }
    Err("OAUTHBEARER message has no auth=Bearer pair".to_string())
}

/// Checks `token` for `region` against `keys` at `now`; the reason is one line.
pub fn verify_token(
    token: &str,
    region: &str,
    keys: &[TestKey],
    now: SystemTime,
) -> Result<Verified, String> {
    verify_url(&decode_token(token)?, region, keys, now)
}

/// Checks a presigned URL (see [`verify_token`]).
pub fn verify_url(url: &str, region: &str, keys: &[TestKey], now: SystemTime) -> Result<Verified, String> {
    let rest = url.strip_prefix("https://").ok_or("URL does not start with https://")?;
    let (authority, rest) = rest.split_once('/').ok_or("URL has no path")?;
    let (path, query) = rest.split_once('?').ok_or("URL has no query")?;
    let expected_host = format!("kafka.{region}.amazonaws.com");
    if authority != expected_host {
        return Err(format!("host is {authority:?}, expected {expected_host:?}"));
    }
    if !path.is_empty() {
        return Err(format!("path is \"/{path}\", expected \"/\""));
    }
    let params = parse_query(query)?;
    let get = |name: &str| params.get(name).map(String::as_str).ok_or(format!("{name} is missing"));

    let action = get("Action")?;
    if action != "kafka-cluster:Connect" {
        return Err(format!("Action is {action:?}, expected \"kafka-cluster:Connect\""));
    }
    let algorithm = get("X-Amz-Algorithm")?;
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(format!("X-Amz-Algorithm is {algorithm:?}, expected \"AWS4-HMAC-SHA256\""));
    }
    let amz_date = get("X-Amz-Date")?;
    let signed_at = parse_amz_date(amz_date)?;
    let credential = get("X-Amz-Credential")?;
    let [akid, scope_date, scope_region, service, terminator] =
        <[&str; 5]>::try_from(credential.split('/').collect::<Vec<_>>())
            .map_err(|_| format!("X-Amz-Credential {credential:?} does not have 5 parts"))?;
    if scope_date != &amz_date[..8] {
        return Err(format!("credential scope date {scope_date} differs from X-Amz-Date {amz_date}"));
    }
    if scope_region != region {
        return Err(format!("credential scope region is {scope_region:?}, expected {region:?}"));
    }
    if service != "kafka-cluster" || terminator != "aws4_request" {
        return Err(format!("credential scope {credential:?} is not for kafka-cluster/aws4_request"));
    }
    let key = keys
        .iter()
        .find(|k| k.access_key_id == akid)
        .ok_or_else(|| format!("unknown access key {akid:?}"))?;
    match (&key.session_token, params.get("X-Amz-Security-Token")) {
        (Some(expected), Some(got)) if expected == got => {}
        (Some(_), Some(_)) => return Err(format!("session token of {akid} does not match")),
        (Some(_), None) => return Err(format!("session token of {akid} is missing")),
        (None, Some(_)) => {
            return Err(format!("{akid} is a long-term key but the token has a session token"));
        }
        (None, None) => {}
    }
    let signed_headers = get("X-Amz-SignedHeaders")?;
    if signed_headers != "host" {
        return Err(format!("X-Amz-SignedHeaders is {signed_headers:?}, expected \"host\""));
    }
    let expires = get("X-Amz-Expires")?;
    let expires = expires
        .parse::<u64>()
        .ok()
        .filter(|e| (1..=MAX_EXPIRES).contains(e))
        .ok_or_else(|| format!("X-Amz-Expires {expires:?} is not 1 to {MAX_EXPIRES}"))?;
    if signed_at > now + MAX_FUTURE {
        return Err(format!("X-Amz-Date {amz_date} is more than 5 minutes in the future"));
    }
    let expiry = signed_at + Duration::from_secs(expires);
    if expiry <= now {
        return Err(format!("token expired (X-Amz-Date {amz_date} + {expires}s)"));
    }

    let scope = format!("{scope_date}/{region}/kafka-cluster/aws4_request");
    let expected = signature(&params, &expected_host, amz_date, &scope, &key.secret_access_key, region);
    let got = get("X-Amz-Signature")?;
    if got != expected {
        return Err(format!("signature mismatch (got {got}, computed {expected})"));
    }
    let principal = key.principal.clone().unwrap_or_else(|| akid.to_string());
    let expiry = match key.expires {
        Some(key_expiry) if key_expiry <= now => {
            return Err(format!("the credentials of {akid} expired"));
        }
        Some(key_expiry) => expiry.min(key_expiry),
        None => expiry,
    };
    Ok(Verified { access_key_id: akid.to_string(), principal, expiry })
}

/// Query parameters, percent-decoded once; a repeated name is an error.
fn parse_query(query: &str) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        if params.insert(name.clone(), percent_decode(value)?).is_some() {
            return Err(format!("query parameter {name} is repeated"));
        }
    }
    Ok(params)
}

/// Percent-decodes `%XX` escapes (`+` stays a plus: this is a URL, not a form).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| format!("bad escape in {s:?}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape in {s:?}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// SigV4 URI encoding: unreserved characters kept, every other byte `%XX` (upper case).
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `yyyymmddThhmmssZ` as a time.
fn parse_amz_date(s: &str) -> Result<SystemTime, String> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = time::PrimitiveDateTime::parse(s, format)
        .map_err(|err| format!("X-Amz-Date {s:?} is not yyyymmddThhmmssZ: {err}"))?;
    Ok(parsed.assume_utc().into())
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The hex SigV4 signature of a presigned GET of `https://<host>/` with these parameters.
fn signature(
    params: &BTreeMap<String, String>,
    host: &str,
    amz_date: &str,
    scope: &str,
    secret: &str,
    region: &str,
) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| *name != "X-Amz-Signature" && *name != "User-Agent")
        .map(|(name, value)| (uri_encode(name), uri_encode(value)))
        .collect();
    pairs.sort();
    let query = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&");
    let empty_payload = hex::encode(Sha256::digest(b""));
    let canonical = format!("GET\n/\n{query}\nhost:{host}\n\nhost\n{empty_payload}");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let date = &amz_date[..8];
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), date);
    for part in [region, "kafka-cluster", "aws4_request"] {
        key = hmac_sha256(&key, part);
    }
    hex::encode(hmac_sha256(&key, &string_to_sign))
}
