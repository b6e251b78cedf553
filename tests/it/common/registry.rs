//! A Confluent-compatible schema registry for the decoding tests, serving the documented REST
//! endpoints the serializers and the sidecar use: `POST /subjects/{subject}/versions` (register,
//! answers the id; the same schema twice gets the same id) and `GET /schemas/ids/{id}` (the
//! schema, `schemaType` left out for Avro, as Confluent does). Protobuf schemas are answered as
//! `.proto` text when the test gives one, as a real registry converts what was registered. It
//! counts the schema fetches, can fail them (an outage), and checks basic auth when asked to.
//! No Confluent registry server can be installed on this machine.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

#[derive(Default)]
struct Registry {
    /// (schema, type) by id, from 1.
    schemas: Mutex<Vec<(String, String)>>,
    /// GET /schemas/ids/{id} per id.
    fetches: Mutex<BTreeMap<u32, usize>>,
    /// While set, schema fetches answer 503.
    failing: AtomicBool,
    /// The `.proto` text to answer for Protobuf schemas.
    proto_text: Mutex<Option<String>>,
    /// `Authorization` every request must carry, when set.
    auth: Mutex<Option<String>>,
}

/// A running registry.
pub struct TestRegistry {
    addr: std::net::SocketAddr,
    state: Arc<Registry>,
}

fn authorized(state: &Registry, headers: &HeaderMap) -> bool {
    let want = state.auth.lock().expect("lock").clone();
    want.is_none_or(|want| headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str()))
}

async fn register(
    State(state): State<Arc<Registry>>,
    Path(_subject): Path<String>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> (StatusCode, Json<serde_json::Value>) {
    if !authorized(&state, &headers) {
        return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error_code": 401})));
    }
    let schema = body["schema"].as_str().unwrap_or_default().to_string();
    let kind = body["schemaType"].as_str().unwrap_or("AVRO").to_string();
    let mut schemas = state.schemas.lock().expect("lock");
    let id = match schemas.iter().position(|s| s.0 == schema && s.1 == kind) {
        Some(index) => index + 1,
        None => {
            schemas.push((schema, kind));
            schemas.len()
        }
    };
    (StatusCode::OK, Json(serde_json::json!({"id": id})))
}

async fn schema(
    State(state): State<Arc<Registry>>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> (StatusCode, Json<serde_json::Value>) {
    *state.fetches.lock().expect("lock").entry(id).or_default() += 1;
    if state.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error_code": 50301})));
    }
    if !authorized(&state, &headers) {
        return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({"error_code": 401})));
    }
    let found = state.schemas.lock().expect("lock").get((id as usize).wrapping_sub(1)).cloned();
    match found {
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error_code": 40403, "message": "Schema not found"})),
        ),
        Some((text, kind)) => {
            let text = match (kind.as_str(), state.proto_text.lock().expect("lock").clone()) {
                ("PROTOBUF", Some(proto)) => proto,
                _ => text,
            };
            let mut answer = serde_json::json!({"schema": text, "references": []});
            if kind != "AVRO" {
                answer["schemaType"] = serde_json::Value::String(kind);
            }
            (StatusCode::OK, Json(answer))
        }
    }
}

impl TestRegistry {
    /// Starts a registry on a free loopback port.
    pub async fn start() -> TestRegistry {
        let state = Arc::new(Registry::default());
        let router = Router::new()
            .route("/subjects/{subject}/versions", post(register))
            .route("/schemas/ids/{id}", get(schema))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind registry");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await.expect("serve registry") });
        TestRegistry { addr, state }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its URL with basic auth user info.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// From now on requests need these credentials.
    pub fn require(&self, user: &str, password: &str) {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        *self.state.auth.lock().expect("lock") = Some(format!("Basic {token}"));
    }

    /// Answers Protobuf schemas as this `.proto` text.
    pub fn answer_protobuf_as(&self, text: &str) {
        *self.state.proto_text.lock().expect("lock") = Some(text.to_string());
    }

    /// Schema fetches fail (503) while `failing`.
    pub fn fail(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// Fetches of each schema id so far.
    pub fn fetches(&self) -> BTreeMap<u32, usize> {
        self.state.fetches.lock().expect("lock").clone()
    }
}
