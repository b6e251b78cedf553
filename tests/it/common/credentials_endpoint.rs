//! A container-credentials endpoint (what ECS and EKS Pod Identity serve at
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`) handing out short-lived, rotating credentials.
//!
//! Key `i` is served from `i * rotation` on and expires at `i * rotation + lifetime`, so fresh
//! credentials appear well before the old ones expire, like STS-backed providers do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::sigv4_check::TestKey;

/// The role every rotating key belongs to (one principal, as MSK sees it).
pub const ROLE: &str = "arn:aws:iam::123456789012:role/msk-sidecar";

struct Shared {
    keys: Vec<TestKey>,
    started: Instant,
    started_wall: SystemTime,
    rotation: Duration,
    lifetime: Duration,
    available: AtomicBool,
    served: AtomicUsize,
    distinct: std::sync::Mutex<std::collections::BTreeSet<usize>>,
}

/// A running endpoint.
pub struct CredentialsEndpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// A plan of rotating credentials: key `i` is served from `start + i * rotation` and expires at
/// `start + i * rotation + lifetime`.
#[derive(Clone)]
pub struct Plan {
    /// The keys, for the gateway and the endpoint.
    pub keys: Vec<TestKey>,
    start: SystemTime,
    rotation: Duration,
    lifetime: Duration,
}

impl Plan {
    /// `count` temporary keys of [`ROLE`], starting now.
    pub fn new(count: usize, rotation: Duration, lifetime: Duration) -> Plan {
        let start = SystemTime::now();
        let keys = (0..count)
            .map(|i| {
                let index = u32::try_from(i).expect("index");
                TestKey::new(
                    &format!("ASIAROTATING{i:04}"),
                    &format!("secret-{i}-{:08x}", rand::random::<u32>()),
                )
                .with_session_token(&format!("session/{i}+token=="))
                .of_role(ROLE)
                .expiring_at(start + rotation * index + lifetime)
            })
            .collect();
        Plan { keys, start, rotation, lifetime }
    }
}

impl CredentialsEndpoint {
    /// Serves the keys of `plan`.
    pub async fn start(plan: Plan, available: bool) -> Self {
        let elapsed = SystemTime::now().duration_since(plan.start).unwrap_or_default();
        let shared = Arc::new(Shared {
            keys: plan.keys,
            started: Instant::now() - elapsed,
            started_wall: plan.start,
            rotation: plan.rotation,
            lifetime: plan.lifetime,
            available: AtomicBool::new(available),
            served: AtomicUsize::new(0),
            distinct: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind credentials endpoint");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/credentials", get(serve)).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        CredentialsEndpoint { addr, shared }
    }

    /// The value for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn uri(&self) -> String {
        format!("http://{}/credentials", self.addr)
    }

    /// Starts or stops answering with credentials (500 meanwhile).
    pub fn set_available(&self, available: bool) {
        self.shared.available.store(available, Ordering::SeqCst);
    }

    /// How many different keys were handed out.
    pub fn distinct_keys_served(&self) -> usize {
        self.shared.distinct.lock().unwrap().len()
    }

    /// How many requests were answered with credentials.
    pub fn served(&self) -> usize {
        self.shared.served.load(Ordering::SeqCst)
    }
}

async fn serve(State(shared): State<Arc<Shared>>) -> Response {
    if !shared.available.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "credentials are not available").into_response();
    }
    let index = (shared.started.elapsed().as_millis() / shared.rotation.as_millis().max(1)) as usize;
    let index = index.min(shared.keys.len() - 1);
    let key = &shared.keys[index];
    let expiry =
        shared.started_wall + shared.rotation * u32::try_from(index).expect("index") + shared.lifetime;
    shared.served.fetch_add(1, Ordering::SeqCst);
    shared.distinct.lock().unwrap().insert(index);
    let expiration = time::OffsetDateTime::from(expiry)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("rfc3339");
    Json(serde_json::json!({
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret_access_key,
        "Token": key.session_token,
        "Expiration": expiration,
        "RoleArn": ROLE,
    }))
    .into_response()
}
