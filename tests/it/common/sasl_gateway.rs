//! A test-only SASL gateway: a TLS listener that authenticates Kafka clients with MSK IAM
//! tokens (SASL/OAUTHBEARER) the way MSK does, then forwards their requests to a plain tansu
//! broker behind it. It lets the sidecar's real IAM auth path run end to end with no AWS.
//!
//! The gateway answers ApiVersions, SaslHandshake and SaslAuthenticate itself and forwards every
//! other request once the connection is authenticated. Re-authentications (KIP-368) arrive in
//! the middle of a stream of requests, so responses leave in request order through a FIFO of
//! slots: a local answer, or "the next response from upstream" (the broker answers in order).
//! Tokens are checked by [`super::sigv4_check`]; a failed (re-)authentication gets
//! SASL_AUTHENTICATION_FAILED and the connection is closed, as MSK does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, ensure};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::kafka_wire::{self as wire, ApiRange, RequestHeader, SaslAuthenticateResponse};
pub use super::sigv4_check::TestKey;
use super::sigv4_check::{bearer_token, verify_token};
use super::tansu::Tansu;

/// What the gateway accepts.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The region tokens must be signed for (the "cluster's" region).
    pub region: String,
    /// The access keys it knows (any other key is rejected).
    pub keys: Vec<TestKey>,
    /// Test-only cap on the session lifetime it grants, so re-authentication happens soon.
    pub max_session: Option<Duration>,
}

impl GatewaySettings {
    /// Tokens for `region` signed by one of `keys`; sessions last as long as the token.
    pub fn new(region: &str, keys: Vec<TestKey>) -> GatewaySettings {
        GatewaySettings { region: region.to_string(), keys, max_session: None }
    }
}

/// What happened on one client connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionStats {
    /// Accept order, from 0.
    pub id: usize,
    /// The access key of its first successful authentication.
    pub principal: Option<String>,
    /// Successful first authentications (0 or 1).
    pub authentications: u64,
    /// Successful re-authentications on the authenticated connection.
    pub reauthentications: u64,
    /// Requests forwarded to the broker.
    pub forwarded: u64,
    /// Why the connection ended, when the gateway closed it or it failed.
    pub ended: Option<String>,
}

/// A snapshot of the gateway's counters.
#[derive(Debug, Clone, Default)]
pub struct GatewayStats {
    /// Client connections accepted.
    pub connections: usize,
    /// Successful first authentications, all connections.
    pub authentications: u64,
    /// Successful re-authentications, all connections.
    pub reauthentications: u64,
    /// One line per rejected authentication or request, in order.
    pub rejections: Vec<String>,
    /// Per connection.
    pub per_connection: Vec<ConnectionStats>,
}

/// A running gateway with its own tansu broker; both stop on drop.
pub struct SaslGateway {
    /// The accept loop; aborting it drops (and so aborts) every connection task.
    server: tokio::task::JoinHandle<()>,
    /// Where clients connect.
    addr: std::net::SocketAddr,
    /// The CA certificate (PEM) clients trust, for `ssl.ca.location`.
    ca_file: PathBuf,
    /// The same CA (DER), for raw rustls test clients.
    ca_der: CertificateDer<'static>,
    /// Settings, advertised APIs and counters, shared with the connection tasks.
    shared: Arc<Shared>,
    /// The broker behind the gateway (advertises the gateway's address).
    tansu: Tansu,
    /// Holds the CA file.
    _dir: tempfile::TempDir,
}

/// State shared by the gateway's tasks.
struct Shared {
    /// What to accept.
    settings: GatewaySettings,
    /// What ApiVersions answers: the broker's APIs with the gateway's SASL versions.
    apis: Vec<ApiRange>,
    /// The broker's address.
    upstream: String,
    /// Per connection counters and rejections.
    ledger: Mutex<(Vec<ConnectionStats>, Vec<String>)>,
}

impl Shared {
    fn connection(&self, id: usize, update: impl FnOnce(&mut ConnectionStats)) {
        update(&mut self.ledger.lock().expect("ledger").0[id]);
    }

    fn reject(&self, id: usize, reason: &str) {
        let mut ledger = self.ledger.lock().expect("ledger");
        ledger.0[id].ended = Some(reason.to_string());
        ledger.1.push(format!("connection {id}: {reason}"));
    }
}

impl SaslGateway {
    /// Binds a loopback port, starts a tansu broker that advertises it, learns the broker's
    /// API versions, and serves.
    pub async fn start(settings: GatewaySettings) -> SaslGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the gateway");
        let addr = listener.local_addr().expect("gateway address");
        let tansu = Tansu::start(&addr.to_string()).await;
        let apis = advertised_apis(&tansu).await;
        let (acceptor, ca_der, ca_pem) = tls().expect("gateway TLS certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("gateway-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write the CA file");
        let shared = Arc::new(Shared {
            settings,
            apis,
            upstream: tansu.bootstrap(),
            ledger: Mutex::new((Vec::new(), Vec::new())),
        });
        let server = tokio::spawn(accept_loop(listener, acceptor, Arc::clone(&shared)));
        SaslGateway { server, addr, ca_file, ca_der, shared, tansu, _dir: dir }
    }

    /// "127.0.0.1:port": the bootstrap address for clients.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The CA certificate (PEM file) that signed the gateway's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// The broker behind the gateway (plain TCP; for creating topics).
    pub fn upstream(&self) -> &Tansu {
        &self.tansu
    }

    /// Client settings for librdkafka through the gateway: SASL_SSL, OAUTHBEARER, our CA.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "OAUTHBEARER")
            .set("ssl.ca.location", self.ca_file.to_string_lossy());
        config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> GatewayStats {
        let ledger = self.shared.ledger.lock().expect("ledger");
        GatewayStats {
            connections: ledger.0.len(),
            authentications: ledger.0.iter().map(|c| c.authentications).sum(),
            reauthentications: ledger.0.iter().map(|c| c.reauthentications).sum(),
            rejections: ledger.1.clone(),
            per_connection: ledger.0.clone(),
        }
    }
}

impl Drop for SaslGateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The broker's API versions (asked once) with the SASL APIs and ApiVersions versions that
/// the gateway itself implements.
async fn advertised_apis(tansu: &Tansu) -> Vec<ApiRange> {
    let body = wire::api_versions_request(3);
    let frame = tansu.call(wire::API_VERSIONS, 3, &body).await.expect("ApiVersions to tansu");
    let (_, body) = wire::parse_response(&frame, false).expect("ApiVersions response");
    let (error, mut apis) = wire::decode_api_versions(3, body).expect("ApiVersions response body");
    assert_eq!(error, 0, "tansu answered ApiVersions v3 with error {error}");
    let versions_max = apis.iter().find(|a| a.key == wire::API_VERSIONS).map_or(3, |a| a.max.min(4));
    apis.retain(|a| ![wire::SASL_HANDSHAKE, wire::SASL_AUTHENTICATE, wire::API_VERSIONS].contains(&a.key));
    apis.push(ApiRange { key: wire::SASL_HANDSHAKE, min: 0, max: 1 });
    apis.push(ApiRange { key: wire::SASL_AUTHENTICATE, min: 0, max: 2 });
    apis.push(ApiRange { key: wire::API_VERSIONS, min: 0, max: versions_max });
    apis.sort_by_key(|a| a.key);
    apis
}

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it: the acceptor, the
/// CA as DER and as PEM.
fn tls() -> anyhow::Result<(TlsAcceptor, CertificateDer<'static>, String)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name.push(DnType::CommonName, "msk-sidecar test gateway CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &*ca)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)?;
    Ok((TlsAcceptor::from(Arc::new(config)), ca.der().clone(), ca.pem()))
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((tcp, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        let id = {
            let mut ledger = shared.ledger.lock().expect("ledger");
            let id = ledger.0.len();
            ledger.0.push(ConnectionStats { id, ..ConnectionStats::default() });
            id
        };
        let (acceptor, shared) = (acceptor.clone(), Arc::clone(&shared));
        connections.spawn(async move {
            if let Err(err) = serve(tcp, acceptor, &shared, id).await {
                shared.connection(id, |c| c.ended = Some(format!("{err:#}")));
            }
        });
    }
}

/// One queued response, in request order.
enum Slot {
    /// An answer made by the gateway (a whole frame).
    Local(Vec<u8>),
    /// The broker's next response, which must carry this correlation id.
    Upstream(i32),
    /// Close the connection here.
    Close,
}

/// What to do with one request.
enum Action {
    Reply(Vec<u8>),
    ReplyAndClose(Vec<u8>, String),
    Close(String),
    Forward { correlation_id: i32, expects_response: bool },
}

async fn serve(tcp: TcpStream, acceptor: TlsAcceptor, shared: &Shared, id: usize) -> anyhow::Result<()> {
    let tls = acceptor.accept(tcp).await.context("TLS handshake")?;
    let upstream = TcpStream::connect(&shared.upstream).await.context("connecting to the broker")?;
    upstream.set_nodelay(true)?;
    let (upstream_read, upstream_write) = upstream.into_split();
    let (client_read, client_write) = tokio::io::split(tls);
    let (slots, queue) = mpsc::channel(1024);
    let mut session = Session { id, shared, principal: None, handshake: None, expires: None };
    let writer = write_responses(queue, client_write, upstream_read);
    tokio::pin!(writer);
    tokio::select! {
        result = &mut writer => result,
        result = read_requests(client_read, upstream_write, slots, &mut session) => {
            result?;
            writer.await
        }
    }
}

/// Reads request frames until the client stops or a request closes the connection.
async fn read_requests(
    mut client: impl AsyncRead + Unpin,
    mut upstream: impl AsyncWrite + Unpin,
    slots: mpsc::Sender<Slot>,
    session: &mut Session<'_>,
) -> anyhow::Result<()> {
    let gone = |_| anyhow::anyhow!("response writer stopped");
    while let Some(frame) = wire::read_frame(&mut client).await? {
        match session.handle(&frame) {
            Action::Reply(response) => slots.send(Slot::Local(response)).await.map_err(gone)?,
            Action::ReplyAndClose(response, reason) => {
                session.shared.reject(session.id, &reason);
                slots.send(Slot::Local(response)).await.map_err(gone)?;
                slots.send(Slot::Close).await.map_err(gone)?;
                return Ok(());
            }
            Action::Close(reason) => {
                session.shared.reject(session.id, &reason);
                slots.send(Slot::Close).await.map_err(gone)?;
                return Ok(());
            }
            Action::Forward { correlation_id, expects_response } => {
                if expects_response {
                    slots.send(Slot::Upstream(correlation_id)).await.map_err(gone)?;
                }
                upstream.write_all(&wire::framed(&frame)).await.context("writing to the broker")?;
                session.shared.connection(session.id, |c| c.forwarded += 1);
            }
        }
    }
    Ok(())
}

/// Writes the responses in slot order; closes the client connection at the end.
async fn write_responses(
    mut queue: mpsc::Receiver<Slot>,
    mut client: impl AsyncWrite + Unpin,
    mut upstream: impl AsyncRead + Unpin,
) -> anyhow::Result<()> {
    while let Some(slot) = queue.recv().await {
        match slot {
            Slot::Local(frame) => client.write_all(&frame).await?,
            Slot::Upstream(expected) => {
                let frame =
                    wire::read_frame(&mut upstream).await?.context("the broker closed the connection")?;
                let (correlation_id, _) = wire::parse_response(&frame, false)?;
                ensure!(correlation_id == expected, "broker answered {correlation_id}, expected {expected}");
                client.write_all(&wire::framed(&frame)).await?;
            }
            Slot::Close => break,
        }
        client.flush().await?;
    }
    client.shutdown().await?;
    Ok(())
}

/// The authentication state of one connection.
struct Session<'a> {
    /// Connection id (stats).
    id: usize,
    /// Settings and stats.
    shared: &'a Shared,
    /// The access key of the first authentication; re-authentications must keep it.
    principal: Option<String>,
    /// `Some(version)` between an accepted SaslHandshake and its authentication.
    handshake: Option<i16>,
    /// When the session ends (KIP-368): later requests other than SASL close the connection.
    expires: Option<Instant>,
}

impl Session<'_> {
    fn handle(&mut self, frame: &[u8]) -> Action {
        if self.handshake == Some(0) {
            // After SaslHandshake v0 the next frame is the bare SASL message, not a request.
            self.handshake = None;
            return match self.authenticate(frame) {
                Ok(_) => Action::Reply(wire::framed(&[])),
                Err(reason) => Action::Close(reason),
            };
        }
        let (header, body) = match wire::parse_request(frame) {
            Ok(parsed) => parsed,
            Err(err) => return Action::Close(format!("malformed request: {err:#}")),
        };
        let (key, version) = (header.api_key, header.api_version);
        let body = body.unwrap_or_default();
        match key {
            wire::API_VERSIONS => self.api_versions(&header),
            wire::SASL_HANDSHAKE => self.sasl_handshake(&header, body),
            wire::SASL_AUTHENTICATE => self.sasl_authenticate(&header, body),
            _ if self.principal.is_none() => {
                Action::Close(format!("request with API key {key} v{version} before authentication"))
            }
            _ if self.expires.is_some_and(|end| Instant::now() >= end) => {
                Action::Close(format!("request with API key {key} after the session expired"))
            }
            _ => match wire::expects_response(&header, Some(body)) {
                Ok(expects_response) => {
                    Action::Forward { correlation_id: header.correlation_id, expects_response }
                }
                Err(err) => Action::Close(format!("malformed request with API key {key}: {err:#}")),
            },
        }
    }

    /// The broker's APIs with the gateway's SASL versions; a version we cannot encode gets
    /// UNSUPPORTED_VERSION in a v0 body (KIP-511).
    fn api_versions(&self, header: &RequestHeader) -> Action {
        let (key, version) = (header.api_key, header.api_version);
        let supported = self.shared.apis.iter().find(|a| a.key == key).map_or(3, |a| a.max);
        let body = if version > supported {
            wire::encode_api_versions(
                0,
                wire::UNSUPPORTED_VERSION,
                &[ApiRange { key, min: 0, max: supported }],
            )
        } else {
            wire::encode_api_versions(version, 0, &self.shared.apis)
        };
        Action::Reply(wire::response(header.correlation_id, false, &body))
    }

    fn sasl_handshake(&mut self, header: &RequestHeader, body: &[u8]) -> Action {
        let version = header.api_version;
        if version > 1 {
            return Action::Close(format!("SaslHandshake v{version} is not supported"));
        }
        let mechanism = wire::decode_sasl_handshake_request(body).unwrap_or_default();
        let ok = mechanism == "OAUTHBEARER";
        let error = if ok { 0 } else { wire::UNSUPPORTED_SASL_MECHANISM };
        let body = wire::encode_sasl_handshake(error, &["OAUTHBEARER"]);
        let response = wire::response(header.correlation_id, false, &body);
        if !ok {
            return Action::ReplyAndClose(response, format!("SASL mechanism {mechanism:?} is not enabled"));
        }
        self.handshake = Some(version);
        Action::Reply(response)
    }

    fn sasl_authenticate(&mut self, header: &RequestHeader, body: &[u8]) -> Action {
        let version = header.api_version;
        if version > 2 {
            return Action::Close(format!("SaslAuthenticate v{version} is not supported"));
        }
        let result = match self.handshake.take() {
            None => Err((wire::ILLEGAL_SASL_STATE, "SaslAuthenticate without SaslHandshake".to_string())),
            Some(_) => wire::decode_sasl_authenticate_request(version, body)
                .map_err(|err| format!("malformed SaslAuthenticate: {err:#}"))
                .and_then(|message| self.authenticate(&message))
                .map_err(|reason| (wire::SASL_AUTHENTICATION_FAILED, reason)),
        };
        let response = match &result {
            Ok(lifetime) => SaslAuthenticateResponse {
                error: 0,
                message: None,
                auth_bytes: Vec::new(),
                session_lifetime_ms: i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX),
            },
            Err((error, reason)) => SaslAuthenticateResponse {
                error: *error,
                message: Some(reason.clone()),
                auth_bytes: Vec::new(),
                session_lifetime_ms: 0,
            },
        };
        let body = wire::encode_sasl_authenticate(version, &response);
        let flexible = wire::response_header_is_flexible(header.api_key, version);
        let response = wire::response(header.correlation_id, flexible, &body);
        match result {
            Ok(_) => Action::Reply(response),
            Err((_, reason)) => Action::ReplyAndClose(response, reason),
        }
    }

    /// Checks an OAUTHBEARER client message; on success records the (re-)authentication and
    /// returns the session lifetime to grant.
    fn authenticate(&mut self, message: &[u8]) -> Result<Duration, String> {
        let token = bearer_token(message)?;
        let settings = &self.shared.settings;
        let now = SystemTime::now();
        let verified = verify_token(&token, &settings.region, &settings.keys, now)?;
        if let Some(principal) = &self.principal
            && *principal != verified.principal
        {
            return Err(format!(
                "Cannot change principals during re-authentication from {principal} to {}",
                verified.access_key_id
            ));
        }
        let remaining = verified.expiry.duration_since(now).unwrap_or_default();
        let lifetime = settings.max_session.map_or(remaining, |cap| remaining.min(cap));
        self.expires = Some(Instant::now() + lifetime);
        let first = self.principal.is_none();
        self.principal = Some(verified.principal.clone());
        self.shared.connection(self.id, |c| {
            if first {
                c.authentications += 1;
                c.principal = Some(verified.principal);
            } else {
                c.reauthentications += 1;
            }
        });
        Ok(lifetime)
    }
}
