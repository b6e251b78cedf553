//! Just enough of the Kafka wire protocol for the test SASL gateway and its raw test clients:
//! size-prefixed frames, request and response headers, and the bodies of the few requests the
//! gateway answers itself (ApiVersions, SaslHandshake, SaslAuthenticate) or a test sends by hand
//! (Metadata).
//!
//! Written from the protocol description (kafka.apache.org/protocol): a request frame is
//! `i32 size`, then the header (`api_key i16, api_version i16, correlation_id i32, client_id
//! nullable string`, then tagged fields when the request version is "flexible"), then the body.
//! A response frame is `i32 size, correlation_id i32` (then tagged fields when flexible, except
//! for ApiVersions, whose response header is always v0), then the body.

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncRead, AsyncReadExt as _};

/// API keys the gateway or its tests look at.
pub const PRODUCE: i16 = 0;
pub const METADATA: i16 = 3;
pub const SASL_HANDSHAKE: i16 = 17;
pub const API_VERSIONS: i16 = 18;
pub const CREATE_TOPICS: i16 = 19;
pub const SASL_AUTHENTICATE: i16 = 36;

/// Error codes the gateway sends.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// The largest frame accepted (a guard against reading garbage as a length).
const MAX_FRAME: usize = 100 << 20;

/// Reads one size-prefixed frame; `None` at a clean end of stream before the size.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> anyhow::Result<Option<Vec<u8>>> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let size = usize::try_from(i32::from_be_bytes(size)).context("negative frame size")?;
    ensure!(size <= MAX_FRAME, "frame of {size} bytes is too large");
    let mut frame = vec![0; size];
    reader.read_exact(&mut frame).await.context("frame cut short")?;
    Ok(Some(frame))
}

/// `payload` with its i32 size in front.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let size = i32::try_from(payload.len()).expect("frame size");
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Whether a request of this key and version uses the flexible (tagged fields) encoding, for
/// the keys this module knows; `None` for the others (the gateway forwards them unread).
pub fn is_flexible(api_key: i16, version: i16) -> Option<bool> {
    let first_flexible = match api_key {
        PRODUCE | METADATA => 9,
        SASL_HANDSHAKE => i16::MAX,
        API_VERSIONS => 3,
        CREATE_TOPICS => 5,
        SASL_AUTHENTICATE => 2,
        _ => return None,
    };
    Some(version >= first_flexible)
}

/// A parsed request header.
#[derive(Debug, Clone)]
pub struct RequestHeader {
    /// Which API.
    pub api_key: i16,
    /// Which version of it.
    pub api_version: i16,
    /// Echoed in the response; the client matches responses by it.
    pub correlation_id: i32,
    /// The client's name (nullable).
    pub client_id: Option<String>,
}

/// Parses a request frame's header; the body is returned only when [`is_flexible`] knows the
/// key (otherwise where the header ends is unknown).
pub fn parse_request(frame: &[u8]) -> anyhow::Result<(RequestHeader, Option<&[u8]>)> {
    let mut d = Decoder::new(frame);
    let api_key = d.i16()?;
    let api_version = d.i16()?;
    let correlation_id = d.i32()?;
    let client_id = d.nullable_string()?;
    let header = RequestHeader { api_key, api_version, correlation_id, client_id };
    let body = match is_flexible(api_key, api_version) {
        Some(true) => {
            d.skip_tags()?;
            Some(d.rest())
        }
        Some(false) => Some(d.rest()),
        None => None,
    };
    Ok((header, body))
}

/// Whether a forwarded request gets a response: all do except Produce with `acks=0`.
pub fn expects_response(header: &RequestHeader, body: Option<&[u8]>) -> anyhow::Result<bool> {
    if header.api_key != PRODUCE {
        return Ok(true);
    }
    let body = body.context("produce body")?;
    let flexible = is_flexible(PRODUCE, header.api_version) == Some(true);
    let mut d = Decoder::new(body);
    if header.api_version >= 3 {
        if flexible {
            d.compact_nullable_string()?
        } else {
            d.nullable_string()?
        };
    }
    Ok(d.i16()? != 0)
}

/// A request frame (size included) with header v1, or v2 when the request is flexible.
pub fn request(api_key: i16, version: i16, correlation_id: i32, client_id: &str, body: &[u8]) -> Vec<u8> {
    let mut e = Encoder::default();
    e.i16(api_key).i16(version).i32(correlation_id).nullable_string(Some(client_id));
    if is_flexible(api_key, version) == Some(true) {
        e.empty_tags();
    }
    e.raw(body);
    framed(&e.buf)
}

/// Whether the response to this request has the flexible header (v1): ApiVersions never does.
pub fn response_header_is_flexible(api_key: i16, version: i16) -> bool {
    api_key != API_VERSIONS && is_flexible(api_key, version) == Some(true)
}

/// A response frame (size included).
pub fn response(correlation_id: i32, flexible_header: bool, body: &[u8]) -> Vec<u8> {
    let mut e = Encoder::default();
    e.i32(correlation_id);
    if flexible_header {
        e.empty_tags();
    }
    e.raw(body);
    framed(&e.buf)
}

/// Splits a response frame (without size) into its correlation id and body.
pub fn parse_response(frame: &[u8], flexible_header: bool) -> anyhow::Result<(i32, &[u8])> {
    let mut d = Decoder::new(frame);
    let correlation_id = d.i32()?;
    if flexible_header {
        d.skip_tags()?;
    }
    Ok((correlation_id, d.rest()))
}

/// One entry of an ApiVersions response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API key.
    pub key: i16,
    /// Lowest supported version.
    pub min: i16,
    /// Highest supported version.
    pub max: i16,
}

/// ApiVersions request body (v3+ name the client software).
pub fn api_versions_request(version: i16) -> Vec<u8> {
    let mut e = Encoder::default();
    if version >= 3 {
        e.compact_string("msk-sidecar-tests").compact_string("0").empty_tags();
    }
    e.buf
}

/// ApiVersions response body in `version`'s encoding.
pub fn encode_api_versions(version: i16, error: i16, apis: &[ApiRange]) -> Vec<u8> {
    let flexible = version >= 3;
    let mut e = Encoder::default();
    e.i16(error).array_len(apis.len(), flexible);
    for api in apis {
        e.i16(api.key).i16(api.min).i16(api.max);
        if flexible {
            e.empty_tags();
        }
    }
    if version >= 1 {
        e.i32(0); // throttle_time_ms
    }
    if flexible {
        e.empty_tags();
    }
    e.buf
}

/// Decodes an ApiVersions response body: error code and API ranges.
pub fn decode_api_versions(version: i16, body: &[u8]) -> anyhow::Result<(i16, Vec<ApiRange>)> {
    let flexible = version >= 3;
    let mut d = Decoder::new(body);
    let error = d.i16()?;
    let count = d.array_len(flexible)?.unwrap_or(0);
    let mut apis = Vec::with_capacity(count);
    for _ in 0..count {
        apis.push(ApiRange { key: d.i16()?, min: d.i16()?, max: d.i16()? });
        if flexible {
            d.skip_tags()?;
        }
    }
    Ok((error, apis))
}

/// SaslHandshake response body (v0 and v1 are the same): error and enabled mechanisms.
pub fn encode_sasl_handshake(error: i16, mechanisms: &[&str]) -> Vec<u8> {
    let mut e = Encoder::default();
    e.i16(error).array_len(mechanisms.len(), false);
    for mechanism in mechanisms {
        e.nullable_string(Some(mechanism));
    }
    e.buf
}

/// Decodes a SaslHandshake response body: error and enabled mechanisms.
pub fn decode_sasl_handshake(body: &[u8]) -> anyhow::Result<(i16, Vec<String>)> {
    let mut d = Decoder::new(body);
    let error = d.i16()?;
    let count = d.array_len(false)?.unwrap_or(0);
    let mechanisms =
        (0..count).map(|_| d.nullable_string()?.context("null mechanism")).collect::<Result<_, _>>()?;
    Ok((error, mechanisms))
}

/// SaslHandshake request body: the mechanism.
pub fn sasl_handshake_request(mechanism: &str) -> Vec<u8> {
    let mut e = Encoder::default();
    e.nullable_string(Some(mechanism));
    e.buf
}

/// The mechanism named in a SaslHandshake request body.
pub fn decode_sasl_handshake_request(body: &[u8]) -> anyhow::Result<String> {
    Decoder::new(body).nullable_string()?.context("null mechanism")
}

/// SaslAuthenticate request body: the SASL client message.
pub fn sasl_authenticate_request(version: i16, auth_bytes: &[u8]) -> Vec<u8> {
    let mut e = Encoder::default();
    if version >= 2 {
        e.compact_bytes(auth_bytes).empty_tags();
    } else {
        e.bytes(auth_bytes);
    }
    e.buf
}

/// The SASL client message of a SaslAuthenticate request body.
pub fn decode_sasl_authenticate_request(version: i16, body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut d = Decoder::new(body);
    let bytes = if version >= 2 { d.compact_bytes()? } else { d.bytes()? };
    Ok(bytes.to_vec())
}

/// What a SaslAuthenticate response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslAuthenticateResponse {
    /// 0 on success.
    pub error: i16,
    /// Why it failed.
    pub message: Option<String>,
    /// Server's SASL message (empty for OAUTHBEARER success).
    pub auth_bytes: Vec<u8>,
    /// KIP-368 session lifetime (v1+; 0: no limit).
    pub session_lifetime_ms: i64,
}

/// SaslAuthenticate response body in `version`'s encoding.
pub fn encode_sasl_authenticate(version: i16, response: &SaslAuthenticateResponse) -> Vec<u8> {
    let mut e = Encoder::default();
    e.i16(response.error);
    if version >= 2 {
        e.compact_nullable_string(response.message.as_deref()).compact_bytes(&response.auth_bytes);
    } else {
        e.nullable_string(response.message.as_deref()).bytes(&response.auth_bytes);
    }
    if version >= 1 {
        e.i64(response.session_lifetime_ms);
    }
    if version >= 2 {
        e.empty_tags();
    }
    e.buf
}

/// Decodes a SaslAuthenticate response body.
pub fn decode_sasl_authenticate(version: i16, body: &[u8]) -> anyhow::Result<SaslAuthenticateResponse> {
    let mut d = Decoder::new(body);
    let error = d.i16()?;
    let (message, auth_bytes) = if version >= 2 {
        (d.compact_nullable_string()?, d.compact_bytes()?.to_vec())
    } else {
        (d.nullable_string()?, d.bytes()?.to_vec())
    };
    let session_lifetime_ms = if version >= 1 { d.i64()? } else { 0 };
    Ok(SaslAuthenticateResponse { error, message, auth_bytes, session_lifetime_ms })
}

/// Metadata v1 request body asking for every topic.
pub fn metadata_v1_all_topics() -> Vec<u8> {
    (-1i32).to_be_bytes().to_vec()
}

/// The brokers (node id, host, port) of a Metadata v1 response body.
pub fn decode_metadata_v1_brokers(body: &[u8]) -> anyhow::Result<Vec<(i32, String, i32)>> {
    let mut d = Decoder::new(body);
    let count = d.array_len(false)?.unwrap_or(0);
    let mut brokers = Vec::with_capacity(count);
    for _ in 0..count {
        let node = d.i32()?;
        let host = d.nullable_string()?.context("null host")?;
        let port = d.i32()?;
        d.nullable_string()?; // rack
        brokers.push((node, host, port));
    }
    Ok(brokers)
}

/// Reads protocol primitives from a byte slice.
pub struct Decoder<'a> {
    /// What is read.
    buf: &'a [u8],
    /// How far.
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        ensure!(self.buf.len() - self.pos >= n, "message cut short at byte {}", self.pos);
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> anyhow::Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }

    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn i8(&mut self) -> anyhow::Result<i8> {
        Ok(i8::from_be_bytes(self.array()?))
    }

    pub fn i16(&mut self) -> anyhow::Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> anyhow::Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> anyhow::Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// An unsigned varint (compact lengths, tag counts).
    pub fn uvarint(&mut self) -> anyhow::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("varint too long")
    }

    /// A compact length (`uvarint - 1`); `None` for null.
    fn compact_len(&mut self) -> anyhow::Result<Option<usize>> {
        let n = self.uvarint()?;
        Ok(if n == 0 { None } else { Some(usize::try_from(n - 1)?) })
    }

    /// An array length in either encoding; `None` for a null array.
    pub fn array_len(&mut self, flexible: bool) -> anyhow::Result<Option<usize>> {
        if flexible {
            return self.compact_len();
        }
        let n = self.i32()?;
        Ok(usize::try_from(n).ok())
    }

    fn utf8(bytes: &[u8]) -> anyhow::Result<String> {
        String::from_utf8(bytes.to_vec()).context("string is not UTF-8")
    }

    /// An i16-length string, -1 for null.
    pub fn nullable_string(&mut self) -> anyhow::Result<Option<String>> {
        let n = self.i16()?;
        let Ok(n) = usize::try_from(n) else { return Ok(None) };
        Ok(Some(Self::utf8(self.take(n)?)?))
    }

    /// A compact (varint length) nullable string.
    pub fn compact_nullable_string(&mut self) -> anyhow::Result<Option<String>> {
        match self.compact_len()? {
            Some(n) => Ok(Some(Self::utf8(self.take(n)?)?)),
            None => Ok(None),
        }
    }

    /// i32-length bytes (null read as empty).
    pub fn bytes(&mut self) -> anyhow::Result<&'a [u8]> {
        let n = self.i32()?;
        Ok(match usize::try_from(n) {
            Ok(n) => self.take(n)?,
            Err(_) => &[],
        })
    }

    /// Compact bytes (null read as empty).
    pub fn compact_bytes(&mut self) -> anyhow::Result<&'a [u8]> {
        Ok(match self.compact_len()? {
            Some(n) => self.take(n)?,
            None => &[],
        })
    }

    /// Skips a tagged-fields section.
    pub fn skip_tags(&mut self) -> anyhow::Result<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?; // tag
            let size = usize::try_from(self.uvarint()?)?;
            self.take(size)?;
        }
        Ok(())
    }
}

/// Writes protocol primitives.
#[derive(Default)]
pub struct Encoder {
    /// What was written.
    pub buf: Vec<u8>,
}

impl Encoder {
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    pub fn i8(&mut self, v: i8) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    pub fn uvarint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
        self
    }

    /// An array length in either encoding.
    pub fn array_len(&mut self, n: usize, flexible: bool) -> &mut Self {
        if flexible { self.uvarint(n as u64 + 1) } else { self.i32(i32::try_from(n).expect("array length")) }
    }

    pub fn nullable_string(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.i16(i16::try_from(s.len()).expect("string length")).raw(s.as_bytes()),
            None => self.i16(-1),
        }
    }

    pub fn compact_string(&mut self, s: &str) -> &mut Self {
        self.uvarint(s.len() as u64 + 1).raw(s.as_bytes())
    }

    pub fn compact_nullable_string(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.compact_string(s),
            None => self.uvarint(0),
        }
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.i32(i32::try_from(b.len()).expect("bytes length")).raw(b)
    }

    pub fn compact_bytes(&mut self, b: &[u8]) -> &mut Self {
        self.uvarint(b.len() as u64 + 1).raw(b)
    }

    /// An empty tagged-fields section.
    pub fn empty_tags(&mut self) -> &mut Self {
        self.uvarint(0)
    }
}
